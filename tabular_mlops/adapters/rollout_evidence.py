"""What an online experiment left behind, read back for its decision.

Three durable sources, all JSON lines: the router's routing log (which version
answered each request, its status and latency, the labels it returned, and the
shadow's copy), its feedback log (true labels or rewards by request id and
row), and the services' inference logs (every scored row with its prediction,
live or shadow). Feedback is joined to the inference logs, so accuracy per
version holds even across a router restart.
"""

from __future__ import annotations

from collections import defaultdict
from pathlib import Path
from typing import Any

from tabular_mlops.adapters.deployment.target import Rollout
from tabular_mlops.core.rollout import (
    ArmEvidence,
    Evidence,
    absolute_error,
    answers_agree,
    percentile,
)
from tabular_mlops.serving.inference_log import read_evidence, read_records


def gather(
    rollout: Rollout,
    evidence_dir: Path,
    inference_log_dir: Path,
    router: dict[str, Any] | None,
) -> Evidence:
    """Both arms' figures for ``rollout`` (``router``: what the router reports now)."""
    routing = read_evidence(evidence_dir, "routing", rollout.experiment)
    arms = {
        version: ArmEvidence(version=version)
        for version in (rollout.champion.model_version, rollout.candidate.model_version)
    }
    latencies: dict[str, list[float]] = defaultdict(list)
    #: the CPU time each version's workers spent per request, over the whole experiment
    cpu: dict[str, list[float]] = defaultdict(list)
    answered_labels: dict[str, list[str] | None] = {}
    shadow_labels: dict[str, list[str] | None] = {}
    #: the bandit's requests sent to an arm drawn at random: what its test reads
    explored: set[str] = set()
    for record in routing:
        if "role" not in record or record["version"] not in arms:
            continue
        arm = arms[record["version"]]
        # every attempt counts for the version that made it: a "failed" one (refused or
        # reset, the champion's retry answered) is the chosen version's error
        arm.requests += 1
        arm.errors += int(record["status"] >= 500)
        if isinstance(record.get("cpu_ms"), (int, float)):
            cpu[arm.version].append(float(record["cpu_ms"]))
        if record["role"] == "answered":  # a shadow's latency is its batch's, not comparable
            latencies[arm.version].append(float(record["latency_ms"]))
            answered_labels[record["request_id"]] = record.get("labels")
            if record.get("explore"):
                explored.add(record["request_id"])
        elif record["role"] == "shadow":
            shadow_labels[record["request_id"]] = record.get("labels")
            if record.get("service_ms") is not None:  # its own time, not its batch's
                latencies[arm.version].append(float(record["service_ms"]))
    for version, values in latencies.items():
        arms[version].p50_ms = percentile(values, 50)
        arms[version].p99_ms = percentile(values, 99)
    for version, values in cpu.items():
        arms[version].scoring_cpu_p99_ms = percentile(values, 99)
    compared = agreed = 0
    for request_id, labels in shadow_labels.items():
        answered = answered_labels.get(request_id)
        if labels is not None and answered is not None:
            compared += 1
            agreed += int(answers_agree(labels, answered, rollout.plan.agreement_tolerance))

    feedback = read_evidence(evidence_dir, "feedback", rollout.experiment)
    for item in feedback:
        if item.get("reward") is not None and item.get("version") in arms:
            arm = arms[item["version"]]
            arm.rewarded += 1
            arm.reward_sum += float(item["reward"])
            if item["request_id"] in explored:
                arm.randomized += 1
                arm.randomized_successes += float(item["reward"])
    labelled = {(f["request_id"], f["row"]): f["label"] for f in feedback if f.get("label")}
    regression = False
    if labelled:
        # the answers the feedback names, by id: not by time since the rollout started,
        # which a clock set back (a VM restored, NTP stepping) puts after later answers
        logged = read_records(inference_log_dir, request_ids={rid for rid, _ in labelled})
        if not logged.empty and "far_outside" in logged.columns:
            # rows far outside what training covered are answered, but no evidence
            logged = logged[~logged["far_outside"].fillna(False).astype(bool)]
        if not logged.empty:
            for request_id, row, version, prediction in zip(
                logged["request_id"], logged["row"], logged["model_version"],
                logged["prediction"], strict=True,
            ):  # fmt: skip
                truth = labelled.get((request_id, int(row)))
                if truth is not None and version in arms and isinstance(prediction, float):
                    # a regressor's value (a classifier's label is text): its absolute error
                    regression = True
                    error = absolute_error(prediction, truth)
                    if error is not None:
                        arms[version].absolute_errors.add(error)
                        if request_id in explored:
                            arms[version].randomized_errors.add(error)
                elif truth is not None and version in arms:
                    right = int(str(prediction) == str(truth))
                    arms[version].labelled += 1
                    arms[version].correct += right
                    # an arm scored by rewards is tested on rewards (``successes``)
                    if request_id in explored and not arms[version].rewarded:
                        arms[version].randomized += 1
                        arms[version].randomized_successes += right
    same = router is not None and router.get("experiment") == rollout.experiment
    return Evidence(
        strategy=rollout.plan.strategy,
        task="regression" if regression else "classification",
        champion=arms[rollout.champion.model_version],
        candidate=arms[rollout.candidate.model_version],
        compared=compared,
        agreed=agreed,
        router_state=str(router.get("state", "running")) if same and router else "running",
        router_reason=str(router.get("reason", "")) if same and router else "",
        plan=rollout.plan,
    )
