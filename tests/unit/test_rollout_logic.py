"""The pure part of progressive delivery: assignment, sample size, tests, decisions."""

from __future__ import annotations

import random

import numpy as np
import pytest
from pydantic import ValidationError

from tabular_mlops.core.rollout import (
    ArmEvidence,
    Evidence,
    RolloutPlan,
    decide,
    one_sided_p_value,
    planned,
    probability_to_beat,
    sample_size,
    sticky_bucket,
    thompson_choice,
)


def test_a_user_always_lands_in_the_same_bucket_and_buckets_spread_evenly():
    assert sticky_bucket("user-7", "exp-1") == sticky_bucket("user-7", "exp-1")
    buckets = [sticky_bucket(f"user-{i}", "exp-1") for i in range(10_000)]
    assert 0.48 < sum(b < 0.5 for b in buckets) / len(buckets) < 0.52
    assert sticky_bucket("user-7", "exp-1") != sticky_bucket("user-7", "exp-2")


def test_thompson_sampling_prefers_the_arm_that_earns_more():
    rng = random.Random(0)
    picks = [thompson_choice([90, 60], [10, 40], rng) for _ in range(1000)]
    assert picks.count(0) > 950


def test_sample_size_matches_the_textbook_figure():
    # 0.90 vs 0.95, alpha 0.05 one-sided, power 0.8: about 343 per arm
    assert 335 <= sample_size(0.9, 0.05, 0.05, 0.8) <= 350


def test_the_sample_is_fixed_when_the_experiment_starts():
    plan = planned(RolloutPlan(strategy="ab"), champion_accuracy=0.9)
    assert plan.baseline_rate == 0.9 and plan.sample_size_per_arm == sample_size(
        0.9, 0.05, 0.05, 0.8
    )
    assert planned(plan, champion_accuracy=0.5) == plan  # what the arms show never moves it


def test_one_sided_test_and_probability_to_beat():
    assert one_sided_p_value(840, 1000, 970, 1000) < 1e-6
    assert one_sided_p_value(970, 1000, 840, 1000) > 0.99  # worse: no evidence of better
    assert 0.4 < one_sided_p_value(50, 100, 51, 100) < 0.5
    assert probability_to_beat((84, 16), (97, 3)) > 0.99
    assert abs(probability_to_beat((50, 50), (51, 49)) - 0.5558) < 0.002  # Monte Carlo: 0.5558


def test_canary_steps_must_rise_to_all_traffic():
    with pytest.raises(ValidationError, match="rise strictly"):
        RolloutPlan(canary_steps=[0.5, 0.25, 1.0])
    with pytest.raises(ValidationError, match=r"end at 1\.0"):
        RolloutPlan(canary_steps=[0.05, 0.5])


def evidence(strategy="ab", **candidate) -> Evidence:
    champion = ArmEvidence(
        version="1", requests=500, labelled=300, correct=252, p99_ms=5.0, scoring_cpu_p99_ms=5.0
    )
    return Evidence(
        strategy=strategy,
        champion=champion,
        candidate=ArmEvidence(
            version="2", **{"requests": 500, "p99_ms": 5.0, "scoring_cpu_p99_ms": 5.0, **candidate}
        ),
    )


def test_a_significantly_better_candidate_is_promoted_a_worse_one_rolled_back():
    plan = RolloutPlan(strategy="ab", min_effect=0.1, sample_size_per_arm=300)
    better = decide(evidence(labelled=300, correct=291), plan)
    assert better.action == "promote" and better.figures["p_value"] < 0.05
    worse = decide(evidence(labelled=300, correct=210), plan)
    assert worse.action == "rollback"


def test_too_little_feedback_means_continue():
    decision = decide(evidence(labelled=20, correct=20), RolloutPlan(strategy="ab"))
    assert decision.action == "continue"
    assert "planned to detect" in decision.reasons[0]


def test_no_significant_improvement_at_the_planned_sample_keeps_the_champion():
    plan = RolloutPlan(strategy="ab", sample_size_per_arm=300)
    decision = decide(evidence(labelled=300, correct=262), plan)  # 0.873 vs 0.840
    assert decision.action == "rollback"
    assert "no significant improvement at the planned sample" in decision.reasons[0]
    assert decision.figures["probability_to_beat"] > 0.85  # no fallback promotes on it


def test_guardrails_come_before_the_experiment():
    plan = RolloutPlan(strategy="canary", min_effect=0.1, sample_size_per_arm=300)
    erring = decide(evidence(labelled=300, correct=299, errors=50), plan)
    assert erring.action == "rollback" and "error rate" in erring.reasons[0]
    slow = decide(evidence(labelled=300, correct=299, scoring_cpu_p99_ms=80.0), plan)
    assert slow.action == "rollback" and "budget" in slow.reasons[0]
    cold_start = decide(evidence(labelled=300, correct=299, scoring_cpu_p99_ms=9.0), plan)
    assert cold_start.action == "promote"  # 1.8x the champion, but within the 25 ms budget


def test_a_busy_machine_does_not_roll_back_a_candidate_whose_scoring_costs_the_same():
    """The time to answer grows with the machine's load (the candidate's requests can fall
    into a busy minute the champion's did not); the guardrail judges the CPU time each
    version spent scoring, which does not."""
    plan = RolloutPlan(strategy="canary", min_effect=0.1, sample_size_per_arm=300)
    busy = decide(evidence(labelled=300, correct=299, p99_ms=400.0), plan)
    assert busy.action == "promote", busy.reasons


def test_shadow_without_feedback_decides_on_agreement():
    plan = RolloutPlan(strategy="shadow", shadow_requests=100)
    agreeing = evidence("shadow").model_copy(update={"compared": 200, "agreed": 199})
    assert decide(agreeing, plan).action == "promote"
    differing = evidence("shadow").model_copy(update={"compared": 200, "agreed": 150})
    assert decide(differing, plan).action == "rollback"


def test_a_shadow_is_promoted_only_with_a_latency_of_its_own_within_the_guardrail():
    plan = RolloutPlan(strategy="shadow", shadow_requests=100)
    unmeasured = evidence("shadow", scoring_cpu_p99_ms=None)
    agreeing = unmeasured.model_copy(update={"compared": 200, "agreed": 199})
    assert decide(agreeing, plan).action == "continue"
    slow = evidence("shadow", scoring_cpu_p99_ms=80.0).model_copy(
        update={"compared": 200, "agreed": 199}
    )
    decision = decide(slow, plan)
    assert decision.action == "rollback" and "budget" in decision.reasons[0]


# --- the error rates the plan states, by simulation -------------------------------------
def simulate(plan, champion_rate, candidate_rate, experiments, look_every=100, seed=0):
    """Promotions out of ``experiments``: feedback arrives in steps of ``look_every`` rows
    per arm and the pipeline looks after each step (the bandit: its Thompson-sampled
    allocation of ``2 * look_every`` rows per step), until a decision."""
    rng = np.random.default_rng(seed)
    promoted = 0
    for _ in range(experiments):
        rows, right, randomized, randomized_right = [0, 0], [0, 0], [0, 0], [0, 0]
        while True:
            if plan.strategy == "bandit":  # as the router: explore, or Thompson sampling
                # per step, not per request: P(Thompson picks the candidate) is
                # P(candidate beats champion) under the arms' posteriors so far
                requests = 2 * look_every
                explored = int(rng.binomial(requests, plan.explore_share))
                to_candidate = probability_to_beat(
                    (right[0], rows[0] - right[0]), (right[1], rows[1] - right[1])
                )
                sampled = int(rng.binomial(requests - explored, to_candidate))
                explored_candidate = int(rng.binomial(explored, 0.5))
                for arm, rate, drawn, randomly in (
                    (
                        0,
                        champion_rate,
                        requests - explored - sampled,
                        explored - explored_candidate,
                    ),
                    (1, candidate_rate, sampled, explored_candidate),
                ):
                    lucky = int(rng.binomial(randomly, rate))
                    rows[arm] += drawn + randomly
                    right[arm] += int(rng.binomial(drawn, rate)) + lucky
                    randomized[arm] += randomly
                    randomized_right[arm] += lucky
            else:
                for arm, rate in enumerate((champion_rate, candidate_rate)):
                    rows[arm] += look_every
                    right[arm] += int(rng.binomial(look_every, rate))
            arms = [
                ArmEvidence(version=str(arm + 1), labelled=rows[arm], correct=right[arm],
                            randomized=randomized[arm], randomized_successes=randomized_right[arm])
                for arm in (0, 1)
            ]  # fmt: skip
            decision = decide(
                Evidence(strategy=plan.strategy, champion=arms[0], candidate=arms[1]),
                plan,
            )
            if decision.action != "continue":
                promoted += decision.action == "promote"
                break
    return promoted


def bound(rate, experiments):
    """``rate`` plus three standard errors of a simulated proportion."""
    return rate + 3 * (rate * (1 - rate) / experiments) ** 0.5


# A canary is decided by the same rule as an A/B test (only its guardrails differ)
def test_a_candidate_no_better_is_promoted_at_most_at_the_stated_significance():
    plan = planned(RolloutPlan(strategy="ab"), champion_accuracy=0.9)
    experiments = 2000
    promoted = simulate(plan, 0.9, 0.9, experiments)
    assert promoted / experiments <= bound(plan.significance, experiments), promoted


def test_a_candidate_better_by_the_minimum_effect_is_promoted_with_the_stated_power():
    plan = planned(RolloutPlan(strategy="ab"), champion_accuracy=0.9)
    experiments = 1000
    promoted = simulate(plan, 0.9, 0.95, experiments, seed=1)
    error = 3 * (plan.power * (1 - plan.power) / experiments) ** 0.5
    assert promoted / experiments >= plan.power - error, promoted


def test_the_bandit_promotes_a_candidate_no_better_at_most_at_the_stated_significance():
    # a larger effect than the default, for a smaller sample: the rate does not depend on it
    plan = planned(RolloutPlan(strategy="bandit", min_effect=0.08), champion_accuracy=0.9)
    experiments = 600
    promoted = simulate(plan, 0.9, 0.9, experiments, look_every=100, seed=2)
    assert promoted / experiments <= bound(plan.significance, experiments), promoted


def test_feedback_is_joined_to_its_answers_whenever_the_clock_says_they_were_logged(tmp_path):
    """The answers the feedback names are found by request id: an answer stamped before
    the rollout's start (the clock was set back after it began: a restored VM, NTP
    stepping) still counts for the arm that gave it."""
    import json
    from datetime import UTC, datetime, timedelta

    from tabular_mlops.adapters.deployment.target import LocalProcess, Rollout, RunningService
    from tabular_mlops.adapters.rollout_evidence import gather

    started = datetime(2026, 12, 4, 12, tzinfo=UTC)

    def service(version: str) -> RunningService:
        return RunningService(
            model_name="m", model_version=version, bento_tag="m:1", url="http://127.0.0.1:1",
            started_at=started, runs_as=LocalProcess(pid=1, port=1, log_file="x"),
        )  # fmt: skip

    rollout = Rollout(experiment="m-v2-1", plan=RolloutPlan(strategy="ab"), started_at=started,
                      champion=service("1"), candidate=service("2"))  # fmt: skip
    evidence, logs = tmp_path / "evidence", tmp_path / "logs"
    evidence.mkdir()
    logs.mkdir()
    earlier = started - timedelta(minutes=30)  # the clock, set back after the start
    routing = [{"timestamp": earlier.isoformat(), "role": "answered", "request_id": f"r{n}",
                "version": str(1 + n % 2), "status": 200, "latency_ms": 1.0, "labels": None,
                "experiment": "m-v2-1", "strategy": "ab"} for n in range(4)]  # fmt: skip
    (evidence / "routing-2026-12-04-h-1.jsonl").write_text(
        "".join(json.dumps(line) + "\n" for line in routing)
    )
    feedback = [{"timestamp": earlier.isoformat(), "request_id": f"r{n}", "row": 0,
                 "label": "yes", "version": str(1 + n % 2), "experiment": "m-v2-1"}
                for n in range(4)]  # fmt: skip
    (evidence / "feedback-2026-12-04-h-1.jsonl").write_text(
        "".join(json.dumps(line) + "\n" for line in feedback)
    )
    answers = [{"request_id": f"r{n}", "row": 0, "timestamp": earlier.isoformat(),
                "model_name": "m", "model_version": str(1 + n % 2), "inputs": {"x": 1.0},
                "prediction": "yes" if n < 3 else "no"} for n in range(4)]  # fmt: skip
    answers.append({**answers[0], "request_id": "other"})  # not this experiment's
    (logs / "requests-2026-12-04-h-1.jsonl").write_text(
        "".join(json.dumps(line) + "\n" for line in answers)
    )
    found = gather(rollout, evidence, logs, router=None)
    assert (found.champion.labelled, found.champion.correct) == (2, 2)
    assert (found.candidate.labelled, found.candidate.correct) == (2, 1)


@pytest.mark.parametrize("moved", [True, False], ids=["after the switch", "refused before"])
def test_a_decision_whose_end_failed_after_the_switch_is_kept_one_refused_before_is_not(
    monkeypatch, moved
):
    """carry_out with the ZenML client, step context and lock stood in for: a rollout's
    end that failed after its traffic moved keeps the decision written down (its tag and
    note) and says why for the next command; one refused before anything moved, while the
    experiment's record is there, drops both (nothing changed, nothing is left to do)."""
    import contextlib
    from types import SimpleNamespace

    import zenml
    import zenml.client

    from tabular_mlops.adapters import rollout_decisions
    from tabular_mlops.adapters.deployment.target import TrafficMovedError

    calls: list[tuple] = []
    failure = TrafficMovedError("all traffic moved to version 2, then ...") if moved else \
        RuntimeError("another deployment of 'm' is in progress")  # fmt: skip

    class Target:
        def rollout(self, name):
            return SimpleNamespace(experiment="m-v2-1")  # its record is still there

        def finish_rollout(self, name, promote):
            raise failure

        def note_decision(self, name, decision):
            calls.append(("note", None if decision is None else decision.get("decision")))

    class Client:
        def update_model_version(self, model_id, version_id, **tags):
            calls.append(("tags", tags))

    monkeypatch.setattr(zenml.client, "Client", Client)
    monkeypatch.setattr(
        zenml,
        "get_step_context",
        lambda: SimpleNamespace(pipeline_run=SimpleNamespace(name="run-1")),
    )
    monkeypatch.setattr(rollout_decisions, "promotion_lock", lambda *args: contextlib.nullcontext())
    monkeypatch.setattr(rollout_decisions, "_log",
                        lambda version, metadata: calls.append(("log", metadata)))  # fmt: skip
    version = SimpleNamespace(model=SimpleNamespace(name="m", id=1), id=2, number=2)
    decision = {"experiment": "m-v2-1", "decision": "promote", "champion": "1"}
    with pytest.raises(type(failure)):
        rollout_decisions.carry_out(None, Target(), version, decision, "production")
    kept = ("tags", {"remove_tags": [rollout_decisions.PENDING_TAG]}) not in calls
    assert kept == moved and (("note", None) not in calls) == moved, calls
    logged = [metadata[rollout_decisions.PENDING_KEY] for kind, metadata in calls[1:]
              if kind == "log"]  # fmt: skip
    if moved:
        assert [rollout_decisions.cut_short(d) for d in logged] == [
            "its command failed after the traffic moved"]  # fmt: skip
    else:
        assert logged == []
    assert rollout_decisions.cut_short(decision) == "its command died"
