"""Progressive delivery end to end: real service processes behind the router, real HTTP,
real feedback, the rollout pipeline deciding on a real ZenML store.

One model through one life: a weak first version in production; a truly better
candidate wins an A/B test and is promoted; a truly worse one is rolled back
during its canary while clients see no failed request; a shadow candidate's
answers are logged and never returned; a bandit moves traffic to the better arm.
"""

from __future__ import annotations

import json
import time

import pandas as pd
import pytest

from tabular_mlops.adapters import simulation
from tabular_mlops.adapters.deployment import local as local_server
from tabular_mlops.adapters.deployment.local import LocalProcessTarget
from tabular_mlops.adapters.paths import LOCAL_DIR
from tabular_mlops.adapters.sources import load_dataset
from tabular_mlops.core.config import DataSourceConfig, LocalServingConfig, ServingConfig
from tests.helpers import SteadyClient, bearer, free_port, invoke, serving_env

pytestmark = pytest.mark.integration

MODEL = "it_rollout"
#: a logistic regression this strongly regularised gets about 84% right, the default 97%
WEAK, STRONG = "0.0005", "1.0"


@pytest.fixture(scope="module")
def paths(tmp_path_factory):
    root = tmp_path_factory.mktemp("rollout")
    paths = {"state": root / "state", "log": root / "inference_log", "port": free_port()}
    return paths | {"env": serving_env(root, paths["port"], paths["state"], paths["log"])}


def serving_args(paths) -> list[str]:
    return [
        "--set", f"model.name={MODEL}",
        "--env", paths["env"],
        "--set", "parameters.serving.rollout.min_effect=0.1",
        "--set", "parameters.serving.rollout.hold_requests=50",
        "--set", "parameters.serving.rollout.canary_steps=[0.25, 0.5, 1.0]",
    ]  # fmt: skip


def train(c: str, stage: str) -> None:
    result = invoke(
        "train",
        "--set", f"model.name={MODEL}",
        "--set", f"parameters.training.params.C={c}",
        "--set", f"parameters.promotion.stage={stage}",
        "--set", "parameters.promotion.max_regression=1.0",  # a worse one must get through
        "--set", "enable_cache=false",
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    assert f"promoted to {stage}" in result.output, result.output


def deploy(paths, *extra: str):
    result = invoke("deploy", *serving_args(paths), *extra)
    assert result.exit_code == 0, result.output
    return result


def rollout(paths, *extra: str):
    result = invoke("rollout", *serving_args(paths), *extra)
    assert result.exit_code == 0, result.output
    return result


def production_version() -> str:
    from zenml.client import Client
    from zenml.enums import ModelStages

    return str(Client().get_model_version(MODEL, ModelStages.PRODUCTION).number)


@pytest.fixture(scope="module")
def service(dev_stack, paths):
    train(WEAK, "production")
    deploy(paths)
    yield paths
    invoke("deploy", *serving_args(paths), "--stop")
    assert local_server.stray_processes(paths["state"], MODEL, keep=set()) == []


@pytest.fixture(scope="module")
def traffic():
    """The breast-cancer rows with their true labels, resampled: what users send."""
    frame = load_dataset(DataSourceConfig())
    return lambda n, seed: frame.sample(n, replace=True, random_state=seed)


def target(paths) -> LocalProcessTarget:
    local = LocalServingConfig(state_dir=paths["state"], port=paths["port"])
    return LocalProcessTarget(ServingConfig(), local)


def url(paths) -> str:
    return f"http://127.0.0.1:{paths['port']}"


def drive(paths, rows, **how):
    """Users of the model's address, and their labels fed back with the feedback token."""
    token = bearer(paths["state"], MODEL, "feedback")["authorization"].removeprefix("Bearer ")
    return simulation.drive_traffic(url(paths), rows, "target", token=token, **how)


def settle() -> None:
    """The router and the services write their logs every 0.2 s: let the last lines land."""
    time.sleep(0.6)


def test_ab_a_truly_better_candidate_wins_and_is_promoted(service, traffic):
    champion = production_version()
    train(STRONG, "staging")
    deploy(service, "--set", "stage=staging", "--strategy", "ab")
    experiment = target(service).rollout(MODEL)
    assert experiment is not None and experiment.champion.model_version == champion
    candidate = experiment.candidate.model_version
    report = drive(service, traffic(800, 1))
    assert report.failed == {}
    assert set(report.answered_by) == {champion, candidate}  # both arms answered
    _a_clients_request_id_names_no_answer(service, traffic)
    settle()
    status = invoke("rollout", *serving_args(service), "--status")
    assert "The rules say now: promote" in status.output, status.output
    _a_router_log_lost_lines(service, 5)
    decided = rollout(service)
    assert f"promote: version {candidate} serves all traffic" in decided.output
    alerts = (LOCAL_DIR / "alerts" / "dev.jsonl").read_text()  # decided, but not unseen
    assert f"the evidence of rollout {experiment.experiment} lost 5 line(s)" in alerts
    assert production_version() == candidate
    assert target(service).rollout(MODEL) is None
    after = drive(service, traffic(50, 2), feedback=None)
    assert after.answered_by == {candidate: 50}
    from zenml.client import Client

    recorded = Client().get_model_version(MODEL, int(candidate)).run_metadata
    assert recorded["rollout_decision"] == "promote"
    assert recorded["rollout_figures"]["p_value"] < 0.05
    run = (
        Client()
        .list_pipeline_runs(pipeline_name="rollout_pipeline", sort_by="desc:created", size=1)
        .items[0]
    )
    page = str(run.steps["decide_rollout"].outputs["rollout_report"][0].load())
    assert "<script" not in page.lower()  # the dashboard's panel runs no scripts
    for shown in ("Rollout (ab)", "promote", f"candidate v{candidate}", "p_value"):
        assert shown in page, shown


def _a_clients_request_id_names_no_answer(service, traffic) -> None:
    """Two requests with one client x-request-id: two answer ids, through the router too;
    feedback naming the client's id is not evidence (it is only a correlation id)."""
    import httpx

    row = json.loads(traffic(1, 3).drop(columns=["target"]).to_json(orient="records"))
    answers = [
        httpx.post(f"{url(service)}/predict", json={"rows": row},
                   headers={"x-request-id": "order-42"}).json()
        for _ in range(2)
    ]  # fmt: skip
    assert answers[0]["request_id"] != answers[1]["request_id"]
    assert {a["correlation_id"] for a in answers} == {"order-42"}
    feedback = {"request_id": "order-42", "reward": 1.0}
    anonymous = httpx.post(f"{url(service)}/feedback", json=feedback)
    assert anonymous.status_code == 401  # and nothing written: see the unit tests
    forged = httpx.post(f"{url(service)}/feedback", json=feedback,
                        headers=bearer(service["state"], MODEL, "feedback")).json()  # fmt: skip
    assert forged["matched"] == 0 and forged["unknown"] == 1, forged


def _a_router_log_lost_lines(service, lines: int) -> None:
    """What a router's evidence writer leaves after a full disk: a gap line in its log."""
    from datetime import UTC, datetime, timedelta

    from tabular_mlops.serving.inference_log import gap_line

    lost = target(service).evidence_dir(MODEL) / "routing-2026-12-03-lost-1.jsonl"
    lost.write_text(gap_line(lines, datetime.now(UTC) - timedelta(seconds=5)) + "\n")


def test_canary_a_truly_worse_candidate_is_rolled_back_with_no_failed_request(service, traffic):
    champion = production_version()
    train(WEAK, "staging")
    deploy(service, "--set", "stage=staging", "--strategy", "canary")
    body = json.dumps({"rows": json.loads(traffic(1, 3).drop(columns=["target"])
                                          .to_json(orient="records"))})  # fmt: skip
    with SteadyClient(f"{url(service)}/predict", body, threads=2) as steady:
        report = drive(service, traffic(900, 4))
        settle()
        decided = rollout(service)
    assert report.failed == {} and steady.failed == {}, (report.failed, steady.outcomes)
    assert "rollback: version" in decided.output, decided.output
    assert production_version() == champion  # production stays as it was
    after = drive(service, traffic(50, 5), feedback=None)
    assert after.answered_by == {champion: 50}


def test_shadow_answers_are_logged_and_never_returned(service, traffic):
    from tabular_mlops.adapters.net import wait_until
    from tabular_mlops.serving.inference_log import read_records

    champion = production_version()
    train("0.5", "staging")
    deploy(
        service,
        "--set",
        "stage=staging",
        "--strategy",
        "shadow",
        "--set",
        "parameters.serving.rollout.shadow_share=1.0",
    )  # every request, for the count
    candidate = target(service).rollout(MODEL).candidate.model_version
    report = drive(service, traffic(200, 6))
    assert report.failed == {}
    assert report.answered_by == {champion: 200}  # the shadow never answers

    def answers() -> tuple[pd.DataFrame, pd.DataFrame]:
        logged = read_records(service["log"])
        shadow = logged[logged["source"] == "shadow"]
        live = logged[
            (logged["source"] == "live") & logged["request_id"].isin(shadow["request_id"])
        ]
        return shadow, live

    def both_logged() -> bool:  # each writer flushes every 0.2 s, the shadow's in batches
        shadow, live = answers()
        return len(shadow) >= 200 and len(live) == len(shadow)

    wait_until(both_logged, 10)
    shadow, live = answers()
    assert set(shadow["model_version"]) == {candidate}
    assert set(live["model_version"]) == {champion}
    assert len(live) == len(shadow)  # one answer of each, under the same request id
    view = target(service).router_view(MODEL)
    assert view["shadow"]["compared"] >= 190
    rollout(service, "--abort", "--reason", "the test moves on")
    assert production_version() == champion


def test_a_bandit_shifts_traffic_toward_the_better_arm(service, traffic):
    champion = production_version()
    train(WEAK, "staging")
    deploy(service, "--set", "stage=staging", "--strategy", "bandit")
    candidate = target(service).rollout(MODEL).candidate.model_version
    early = drive(service, traffic(300, 7), feedback="reward", feedback_every=10)
    late = drive(service, traffic(300, 8), feedback="reward", feedback_every=10)
    assert early.failed == {} and late.failed == {}
    settle()
    share = late.answered_by.get(candidate, 0) / 300
    assert share < 0.3, (early.answered_by, late.answered_by)
    decided = rollout(service)
    assert "rollback: version" in decided.output or "continue" in decided.output
    if "continue" in decided.output:
        rollout(service, "--abort", "--reason", "the test moves on")
    assert production_version() == champion


def test_a_killed_canary_is_pulled_back_by_its_own_errors_and_no_client_sees_one(service, traffic):
    """``kill -9`` of the candidate mid-canary: the router retries its requests on the
    champion (clients see no failure) and books each refused attempt to the candidate,
    so the error guardrail pulls it back at once, whatever the latencies."""
    import psutil

    from tabular_mlops.adapters.net import wait_until
    from tabular_mlops.serving.inference_log import read_evidence

    champion = production_version()
    train("0.5", "staging")
    deploy(service, "--set", "stage=staging", "--strategy", "canary")
    experiment = target(service).rollout(MODEL)
    candidate = experiment.candidate
    body = json.dumps({"rows": json.loads(traffic(1, 9).drop(columns=["target"])
                                          .to_json(orient="records"))})  # fmt: skip
    with SteadyClient(f"{url(service)}/predict", body, threads=2) as steady:
        time.sleep(1.0)
        root = psutil.Process(candidate.runs_as.pid)
        for process in [*root.children(recursive=True), root]:
            process.kill()
        wait_until(lambda: target(service).router_view(MODEL)["state"] == "rolled_back", 30)
        time.sleep(0.5)
    assert steady.failed == {}, steady.outcomes
    view = target(service).router_view(MODEL)
    assert "error rate" in view["reason"], view
    settle()
    evidence = read_evidence(target(service).evidence_dir(MODEL), "routing", experiment.experiment)
    failed = [r for r in evidence if r.get("role") == "failed"]
    assert failed and {r["version"] for r in failed} == {candidate.model_version}
    retried = [r for r in evidence if r.get("retry_of") == candidate.model_version]
    assert retried and {r["version"] for r in retried} == {champion}
    assert all(r["status"] == 200 for r in retried)
    decided = rollout(service)
    assert "rollback: version" in decided.output, decided.output
    assert production_version() == champion


def test_a_killed_router_resumes_the_canary_at_its_step(service, traffic):
    """``kill -9`` of the router mid-canary: the supervisor starts it again, it rebuilds the
    experiment from the routing and feedback logs (the same step, the candidate's counts
    going on from where they were), and a client that keeps the address sees failures
    only until it answers again."""
    import psutil

    from tabular_mlops.adapters.net import wait_until

    train("0.5", "staging")
    deploy(service, "--set", "stage=staging", "--strategy", "canary")
    body = json.dumps({"rows": json.loads(traffic(1, 11).drop(columns=["target"])
                                          .to_json(orient="records"))})  # fmt: skip

    def view() -> dict:
        return target(service).router_view(MODEL) or {}

    killed = target(service).router(MODEL)
    with SteadyClient(f"{url(service)}/predict", body, threads=2) as steady:
        assert wait_until(lambda: view().get("canary_step", 0) >= 1, 120, interval=0.05)
        before = view()
        time.sleep(0.5)  # the evidence written (flushed every 0.2 s) covers `before`
        psutil.Process(killed.pid).kill()  # kill -9

        def back() -> bool:
            now = target(service).router(MODEL)
            return now is not None and now.pid != killed.pid and bool(view())

        assert wait_until(back, 90, interval=0.05)
        after, window = view(), dict(steady.failed)
        time.sleep(1.5)
    assert after["experiment"] == before["experiment"] and after["pid"] != before["pid"]
    assert after["canary_step"] >= before["canary_step"] >= 1
    assert after["arms"][1]["requests"] >= before["arms"][1]["requests"] > 0
    assert after["state"] in {before["state"], "awaiting_decision"}, after  # not rolled back
    late = {k: v - window.get(k, 0) for k, v in steady.failed.items()}
    assert not any(late.values()), f"failures after the restart: {late} (until then: {window})"
    print(f"killed router mid-canary: {window} failed until it answered again")
    rollout(service, "--abort", "--reason", "the test moves on")


def test_a_version_keeps_every_decision_and_a_rolled_back_one_cannot_be_served_by_stage(
    service, traffic
):
    """Two experiments of one version: both decisions stay on it (ZenML metadata and
    MLflow tags), and after a rollback it has left staging."""
    from mlflow import MlflowClient
    from zenml.client import Client

    champion = production_version()
    train("0.5", "staging")
    candidate = str(Client().get_model_version(MODEL, "staging").number)
    deploy(service, "--set", "stage=staging", "--strategy", "ab")
    rollout(service, "--abort", "--reason", "the test moves on")
    assert Client().get_model_version(MODEL, int(candidate)).stage == "archived"
    refused = invoke("deploy", *serving_args(service), "--set", "stage=staging")
    assert refused.exit_code != 0 and "staging" in refused.output, refused.output
    deploy(
        service, "--version", candidate, "--strategy", "ab", "--reason", "again"
    )  # again, on purpose
    from tabular_mlops.adapters.audit import read_trail

    again = [e for e in read_trail(service["env"])[0] if e.reason == "again"]
    # beside the live version, not in its place: a deploy of a candidate, not a rollback
    assert [(e.action, e.version, e.details.get("rollout")) for e in again] == [
        ("deploy", candidate, "ab")
    ]
    rollout(service, "--abort", "--reason", "the test moves on")
    version = Client().get_model_version(MODEL, int(candidate))
    history = version.run_metadata["rollout_history"]
    assert [h["decision"] for h in history] == ["rollback", "rollback"]
    assert len({h["experiment"] for h in history}) == 2
    assert version.stage == "archived"
    registry_version = str(version.run_metadata["registry_version"])
    tracking = Client().active_stack.experiment_tracker.get_tracking_uri()
    tags = MlflowClient(tracking_uri=tracking).get_model_version(MODEL, registry_version).tags
    assert json.loads(tags["rollout_2"])["decision"] == "rollback"
    assert tags["rollout_decision"] == "rollback" and tags["stage"] == "archived"
    aliases = MlflowClient(tracking_uri=tracking).get_registered_model(MODEL).aliases
    assert str(aliases.get("staging")) != registry_version  # not loadable as @staging
    assert production_version() == champion
    # a rollback, then a canary of the production version beside it, aborted: the
    # production version stays in production (it was archived, and the model had none)
    deploy(service, "--version", candidate, "--reason", "champion misprices")
    for _ in range(2):  # a stop, or a second rollback in a row, forgets nothing
        refused = invoke("deploy", *serving_args(service))
        assert refused.exit_code == 1, refused.output
        assert f"a rollback took version {champion} out (champion misprices, " in refused.output
        invoke("deploy", *serving_args(service), "--stop")
    # stopped first, then rolled back (the usual panic): the version stopped is taken out
    deploy(service, "--force", "--reason", "the champion again")
    invoke("deploy", *serving_args(service), "--stop")
    deploy(service, "--version", candidate, "--reason", "champion still misprices")
    rollbacks = [e for e in read_trail(service["env"])[0] if e.action == "rollback"]
    assert rollbacks[-1].details["replaced"] == champion, rollbacks[-1]
    assert invoke("deploy", *serving_args(service)).exit_code == 1
    canary = deploy(service, "--force", "--strategy", "canary", "--reason", "carefully")
    assert f"this deploy starts a canary of the production version {champion}" in canary.output
    rollout(service, "--abort", "--reason", "the champion misprices in the canary too")
    assert production_version() == champion
    assert target(service).live(MODEL).model_version == candidate  # the rollback stays
    assert invoke("deploy", *serving_args(service)).exit_code == 1
    unsaid = invoke("deploy", *serving_args(service), "--force")
    assert unsaid.exit_code == 2 and "say why with --reason" in unsaid.output, unsaid.output
    # the champion serves again, for the tests after this one
    deploy(service, "--force", "--reason", "the test moves on")


def test_a_promote_and_an_abort_sent_together_leave_one_decision_everywhere(service):
    """Two people decide one experiment at the same moment, in two processes: one
    decision is carried out; the other finds no rollout left and changes nothing. The
    stage, the served version, the registry and the audit trail tell the same story."""
    import subprocess
    import sys

    from mlflow import MlflowClient
    from zenml.client import Client

    from tabular_mlops.adapters.audit import read_trail
    from tabular_mlops.adapters.paths import PROJECT_ROOT

    champion = production_version()
    train("0.7", "staging")
    candidate = str(Client().get_model_version(MODEL, "staging").number)
    started = deploy(service, "--set", "stage=staging", "--strategy", "canary")
    experiment = target(service).rollout(MODEL)
    assert experiment is not None
    # the command it names for the feedback token is this environment's and model's
    hint = f"python run.py deploy --env {service['env']} --set model.name={MODEL} --print-token"
    assert hint in started.output, started.output
    printed = invoke(*hint.split()[2:], "feedback").output.strip().splitlines()[-1]
    assert f"Bearer {printed}" == bearer(service["state"], MODEL, "feedback")["authorization"]
    # meanwhile, nothing promotes to production under the experiment
    for command in (["train"], ["monitor"]):
        refused = invoke(*command, "--set", f"model.name={MODEL}", "--env", service["env"])
        assert refused.exit_code != 0, refused.output
        assert (
            f"rollout {experiment.experiment} of version {candidate} against version "
            f"{champion} of '{MODEL}' is in progress, and " in refused.output
        )
        assert "nothing was changed" in refused.output
    # nor does a stop end it with no decision on record (and lift the freeze)
    stop = invoke("deploy", "--stop", "--set", f"model.name={MODEL}", "--env", service["env"])
    assert stop.exit_code == 1, stop.output
    assert f"rollout {experiment.experiment} of version {candidate} is in progress" in stop.output
    assert target(service).rollout(MODEL) is not None
    # a training a schedule starts is not refused by a command: its promotion step refuses
    import cli.train

    with pytest.MonkeyPatch.context() as scheduled:
        scheduled.setattr(cli.train, "refuse_during_rollout", lambda *args, **kwargs: None)
        trained = invoke("train", "--set", f"model.name={MODEL}", "--env", service["env"],
                         "--set", "parameters.training.params.C=0.9")  # fmt: skip
    assert (
        f"rollout {experiment.experiment} of version {candidate} against version {champion} "
        "is in progress, so production stays as it is" in trained.output
    ), trained.output
    assert production_version() == champion

    def decide(*how: str) -> subprocess.Popen[str]:
        return subprocess.Popen(
            [sys.executable, "run.py", "rollout", *serving_args(service), *how],
            cwd=PROJECT_ROOT, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
        )  # fmt: skip

    both = [decide("--promote", "--reason", "ship it"), decide("--abort", "--reason", "stop it")]
    outputs = [process.communicate(timeout=600)[0] for process in both]
    assert target(service).rollout(MODEL) is None, outputs
    version = Client().get_model_version(MODEL, int(candidate))
    promoted = production_version() == candidate
    live = target(service).live(MODEL)
    assert live is not None
    assert live.model_version == (candidate if promoted else champion), outputs
    assert version.stage == ("production" if promoted else "archived"), outputs
    assert version.run_metadata["rollout_decision"] == ("promote" if promoted else "rollback")
    entries, problems = read_trail(service["env"])
    assert problems == []
    decisions = [e for e in entries if e.action == "rollout-decision"
                 and e.details.get("experiment") == experiment.experiment]  # fmt: skip
    assert [e.details.get("decision") for e in decisions] == [
        "promote" if promoted else "rollback"
    ], outputs
    asked = [e.action for e in entries if e.action in ("rollout-promote", "rollout-abort")
             and e.details.get("experiment") == experiment.experiment]  # fmt: skip
    assert asked == ["rollout-promote" if promoted else "rollout-abort"], outputs
    tracking = Client().active_stack.experiment_tracker.get_tracking_uri()
    registry = MlflowClient(tracking_uri=tracking)
    registry_version = str(version.run_metadata["registry_version"])
    tags = registry.get_model_version(MODEL, registry_version).tags
    assert tags["stage"] == ("production" if promoted else "archived")
    aliases = registry.get_registered_model(MODEL).aliases
    assert str(aliases.get("staging")) != registry_version  # neither loads it as @staging


def test_a_decision_whose_command_was_killed_half_way_is_carried_out_by_the_next_one(service):
    """`kill -9` of `rollout --promote` after the traffic moved and before the rest: the
    candidate served all traffic while production, the registry, the version's record
    and the audit trail still said otherwise, and both its locks blocked every promotion
    for ten minutes. The decision was written down first: the next command carries it
    out (once), with who asked and why, taking over the dead command's locks at once. A
    deploy killed once it began a canary has recorded it, with its reason."""
    import os
    import subprocess
    import sys

    from zenml.client import Client

    from tabular_mlops.adapters.audit import read_trail
    from tabular_mlops.adapters.failpoints import FAILPOINT_ENV
    from tabular_mlops.adapters.paths import PROJECT_ROOT
    from tabular_mlops.adapters.rollout_decisions import PENDING_TAG

    champion = production_version()
    train("0.8", "staging")
    candidate = str(Client().get_model_version(MODEL, "staging").number)

    def killed_at(point: str, command: str, *extra: str) -> None:
        killed = subprocess.run(
            [sys.executable, "run.py", command, *serving_args(service), *extra],
            cwd=PROJECT_ROOT, capture_output=True, text=True, timeout=600,
            env=os.environ | {FAILPOINT_ENV: point},
        )  # fmt: skip
        assert killed.returncode == -9, killed.stdout + killed.stderr

    killed_at("deploy-switched", "deploy", "--set", "stage=staging", "--strategy", "canary",
              "--reason", "try it")  # fmt: skip
    experiment = target(service).rollout(MODEL)
    assert experiment is not None
    begun = [e for e in read_trail(service["env"])[0] if e.action == "deploy"
             and e.details.get("experiment") == experiment.experiment]  # fmt: skip
    assert [(e.version, e.reason) for e in begun] == [(candidate, "try it")]
    # a decision refused before the traffic moved (another deployment holds the model's
    # lock) is not kept for a later command to carry out
    lock_file = service["state"] / f"{MODEL}.lock"
    holding = "import fcntl, sys; f = open(sys.argv[1], 'a+'); fcntl.flock(f, fcntl.LOCK_EX); " \
              "print('held', flush=True); sys.stdin.readline()"  # fmt: skip
    holder = subprocess.Popen([sys.executable, "-c", holding, str(lock_file)],
                              stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)  # fmt: skip
    try:
        assert holder.stdout is not None and holder.stdout.readline() == "held\n"
        refused = invoke("rollout", *serving_args(service), "--promote", "--reason", "now")
    finally:
        holder.kill()
        holder.wait()
    assert refused.exit_code == 1 and "DeploymentInProgressError" in refused.output
    version = Client().get_model_version(MODEL, int(candidate))
    assert PENDING_TAG not in [tag.name for tag in version.tags]
    assert target(service).noted_decision(MODEL) is None
    assert target(service).rollout(MODEL) is not None
    killed_at("rollout-decision-moved", "rollout", "--promote", "--reason", "ship it")
    # `deploy --status` (no ZenML) names the decision cut short; `--stop` waits for it
    cut_short = (
        f"the promote of rollout {experiment.experiment} (candidate version {candidate}) is "
        "not carried out to its end (its command died, or is still at it): `python run.py "
        f"rollout --env {service['env']} --set model.name={MODEL}` carries it out"
    )
    status = invoke("deploy", *serving_args(service), "--status")
    assert status.exit_code == 0 and cut_short in status.output, status.output
    live = target(service).live(MODEL)
    assert live is not None and live.model_version == candidate
    assert target(service).rollout(MODEL) is None
    assert production_version() == champion  # what the killed command left
    waiting = invoke("rollout", *serving_args(service), "--status")
    assert (
        f"The promote of rollout {experiment.experiment} (version {candidate}) is not carried "
        "out to its end (its command died, or is still at it): `python run.py rollout --env "
        f"{service['env']} --set "
        f"model.name={MODEL}` (or a deploy) carries it out." in waiting.output
    ), waiting.output

    started = time.monotonic()
    after = rollout(service)
    assert time.monotonic() - started < 60, after.output  # no ten-minute wait for a lock
    assert (
        f"Carried out: the promote of rollout {experiment.experiment} (version {candidate} "
        f"against version {champion}), cut short when its command died, was carried out: "
        f"version {candidate} serves all traffic" in after.output
    ), after.output
    assert production_version() == candidate
    version = Client().get_model_version(MODEL, int(candidate))
    assert version.stage == "production" and version.run_metadata["rollout_decision"] == "promote"
    assert PENDING_TAG not in [tag.name for tag in version.tags]
    assert target(service).noted_decision(MODEL) is None
    entries, problems = read_trail(service["env"])
    assert problems == []
    mine = [e for e in entries if e.details.get("experiment") == experiment.experiment]
    assert [(e.action, e.reason if e.action != "rollout-decision" else e.details["decision"],
             "recorded_late" in e.details) for e in mine] == [
        ("deploy", "try it", False),
        ("rollout-decision", "promote", True),
        ("rollout-promote", "ship it", True),
    ]  # fmt: skip
    # a promote or an abort asked for when nothing is left to decide: said, and not exit 0
    nothing = invoke("rollout", *serving_args(service), "--abort", "--reason", "too late")
    assert nothing.exit_code == 1 and "--abort changed nothing" in nothing.output
    locks = [t.name for t in Client().list_tags(name=f"startswith:promotion-lock-{MODEL}").items]
    assert locks == [], locks
    # and the next deploy finds it served, as production says
    again = deploy(service)
    assert f"Version {candidate} of '{MODEL}' is already served" in again.output, again.output

    # an abort killed as its traffic moved back, the experiment's record still there: it
    # is named by `rollout --status`, `deploy --stop` stops nothing and says to carry it
    # out (not to decide the experiment again), and the next `rollout` carries it out
    train("0.7", "staging")
    deploy(service, "--set", "stage=staging", "--strategy", "canary", "--reason", "again")
    second = target(service).rollout(MODEL)
    assert second is not None
    killed_at("rollout-switched", "rollout", "--abort", "--reason", "not now")
    assert target(service).rollout(MODEL) is not None
    assert target(service).live(MODEL).model_version == candidate
    waiting = invoke("rollout", *serving_args(service), "--status")
    assert f"The rollback of rollout {second.experiment}" in waiting.output, waiting.output
    stopped = invoke("deploy", *serving_args(service), "--stop")
    assert stopped.exit_code == 1, stopped.output
    assert f"the rollback of rollout {second.experiment}" in stopped.output, stopped.output
    after = rollout(service)
    assert f"Carried out: the rollback of rollout {second.experiment}" in after.output
    assert f"No rollout of '{MODEL}' is in progress" in after.output, after.output
    assert target(service).rollout(MODEL) is None
    assert target(service).noted_decision(MODEL) is None
    assert production_version() == candidate
