"""The continuous-training loop while a model is served, for every strategy.

A drifted stream is logged, `run.py monitor` decides `retrain`, the retraining child
run gates the new version against production (on production's training data as the
data reference) and the redeployment child run puts it beside (or in place of) the
live service, behind the same address, with real processes and real HTTP.
"""

from __future__ import annotations

import json

import httpx
import pytest
import yaml

from tabular_mlops.adapters.deployment.local import LocalProcessTarget
from tabular_mlops.adapters.paths import CONFIG_DIR, LOCAL_DIR
from tabular_mlops.core.config import LocalServingConfig, ServingConfig
from tests.helpers import invoke, serving_env

pytestmark = pytest.mark.integration

MODEL = "it_continuous"


def production_version() -> str | None:
    from tabular_mlops.adapters.champion import version_at_stage

    version = version_at_stage(MODEL, "production")
    return None if version is None else str(version.number)


@pytest.fixture(scope="module")
def loop(dev_stack, tmp_path_factory):
    """Version 1 trained and served; a deployment config pointing at the test's port and
    state; a drifted world's log and its labelled data for retraining."""
    from tabular_mlops.adapters.champion import load_staged_model
    from tabular_mlops.adapters.simulation import log_requests, shifted
    from tests.helpers import free_port

    root = tmp_path_factory.mktemp("continuous")
    deployment = yaml.safe_load((CONFIG_DIR / "deployment.yaml").read_text())
    deployment["model"]["name"] = MODEL
    deployment_path = root / "deployment.yaml"
    deployment_path.write_text(yaml.safe_dump(deployment))
    local = LocalServingConfig(
        port=free_port(), state_dir=root / "state", inference_log_dir=root / "served"
    )
    env = serving_env(root, local.port, local.state_dir, local.inference_log_dir)
    result = invoke("train", "--set", f"model.name={MODEL}")
    assert result.exit_code == 0, result.output
    result = invoke("deploy", "--config", str(deployment_path), "--env", env)
    assert result.exit_code == 0, result.output
    from zenml import Model
    from zenml.enums import ModelStages

    staged = load_staged_model(Model(name=MODEL, version=ModelStages.PRODUCTION))
    world = shifted(staged.train_set, staged.spec, 1.5, seed=1)
    fresh = root / "fresh.parquet"
    world.to_parquet(fresh)
    drifted = root / "drifted_log"
    log_requests(world.sample(300, random_state=0), staged.model, staged.spec, drifted)
    target = LocalProcessTarget(ServingConfig(), local)
    yield {"deployment": deployment_path, "env": env, "fresh": fresh, "log": drifted,
           "target": target}  # fmt: skip
    invoke("deploy", "--config", str(deployment_path), "--env", env, "--stop")


def monitor(loop, strategy: str):
    return invoke(
        "monitor",
        "--deployment-config", str(loop["deployment"]),
        "--env", loop["env"],
        "--set", f"model.name={MODEL}",
        "--set", f"parameters.monitoring.inference_log_dir={loop['log']}",
        "--set", "parameters.monitoring.batch_predictions_dir=/nonexistent",
        "--set", f"retraining.data={{source: file, path: '{loop['fresh']}', target: target}}",
        "--set", f"retraining.strategy={strategy}",
    )  # fmt: skip


def served_version(loop) -> str:
    live = loop["target"].live(MODEL)
    answer = httpx.get(f"{live.url}/readyz", timeout=10)
    assert answer.status_code == 200, answer.text
    return str(live.model_version)


def latest_data_reference() -> dict[str, str]:
    from zenml.client import Client

    run = (
        Client()
        .list_pipeline_runs(
            pipeline_name="retraining_pipeline", sort_by="desc:created", size=1, hydrate=True
        )
        .items[0]
    )
    report = run.steps["validate_data"].outputs["data_report"][0]
    return dict(report.run_metadata["data_reference"])  # type: ignore[arg-type]


@pytest.mark.parametrize("strategy", ["shadow", "canary", "ab", "bandit", "replace"])
def test_a_retraining_reaches_the_live_service(loop, strategy, monkeypatch):
    import steps.promotion.promote_model as promote_step

    before = production_version()
    alerts = LOCAL_DIR / "alerts" / "dev.jsonl"
    alerts_before = alerts.read_text() if alerts.exists() else ""
    with monkeypatch.context() as pod:
        if strategy == "replace":  # the promote step's entry goes with its pod, as on a cluster
            pod.setattr(promote_step, "record", lambda *args, **kwargs: None)
        result = monitor(loop, strategy)
    assert result.exit_code == 0, result.output
    assert "Monitoring decision: RETRAIN (300 rows)" in result.output
    # the data gate compared with production's training data, and said so
    assert latest_data_reference() == {"version": before, "stage": "production"}
    new_alerts = alerts.read_text()[len(alerts_before) :]
    assert "failed" not in new_alerts, new_alerts
    retrained = json.dumps(result.output)
    # the redeploy is in the audit trail as any deploy is, saying why it happened
    from tabular_mlops.adapters.audit import read_trail

    trail = [e for e in read_trail(loop["env"])[0] if e.model == MODEL]
    last = [e for e in trail if e.action == "deploy"][-1]
    stage = "production" if strategy == "replace" else "staging"
    said = f"a retraining promoted it to {stage}" + (
        ""
        if strategy == "replace"
        else f"; a {strategy} experiment beside the live version decides"
    )
    assert (last.action, last.reason) == ("deploy", said), last
    if strategy == "replace":
        assert "promoted to production" in result.output, retrained
        assert production_version() != before
        # recorded by the command, naming the retraining's run
        promoted = trail[-1]
        assert (promoted.action, promoted.version) == ("promote", production_version())
        assert promoted.details["run"].startswith("retraining_pipeline"), promoted
        assert served_version(loop) == production_version()
        assert loop["target"].rollout(MODEL) is None
        return
    assert "promoted to staging" in result.output, retrained
    assert f"entered a {strategy} experiment beside version {before}" in result.output
    experiment = loop["target"].rollout(MODEL)
    assert experiment is not None and experiment.plan.strategy == strategy
    assert str(experiment.champion.model_version) == before
    assert served_version(loop) == before
    aborted = invoke(
        "rollout",
        "--config",
        str(loop["deployment"]),
        "--env",
        loop["env"],
        "--abort",
        "--reason",
        "the test moves on",
    )
    assert aborted.exit_code == 0, aborted.output
    assert loop["target"].rollout(MODEL) is None
    assert production_version() == before
    from tabular_mlops.adapters.champion import version_at_stage

    # the rolled-back candidate left staging: no later deploy of staging serves it
    assert version_at_stage(MODEL, "staging") is None


def test_a_retraining_that_fails_alerts_and_leaves_the_service_as_it_was(loop, tmp_path):
    """The retraining child run fails (its data is not there): the run-level failure hook,
    which ZenML calls outside any step in a dynamic run, still reaches the alerter, and
    production and the live service are as they were."""
    before, served = production_version(), served_version(loop)
    alerts = LOCAL_DIR / "alerts" / "dev.jsonl"
    alerts_before = alerts.read_text() if alerts.exists() else ""
    from zenml import Model
    from zenml.enums import ModelStages

    from tabular_mlops.adapters.champion import load_staged_model
    from tabular_mlops.adapters.simulation import log_requests, shifted

    # a stream drifted from whatever production is now (the strategies above moved it)
    staged = load_staged_model(Model(name=MODEL, version=ModelStages.PRODUCTION))
    world = shifted(staged.train_set, staged.spec, 1.5, seed=2)
    log_requests(world.sample(300, random_state=0), staged.model, staged.spec, tmp_path / "log")
    loop = {**loop, "fresh": tmp_path / "not_there.parquet", "log": tmp_path / "log"}
    result = monitor(loop, "canary")
    assert result.exit_code == 1
    assert "→ step 'ingest_data' failed" in result.output
    new_alerts = alerts.read_text()[len(alerts_before) :]
    assert "run 'retraining_pipeline-" in new_alerts and "failed" in new_alerts, new_alerts
    assert production_version() == before
    assert served_version(loop) == served
    assert loop["target"].rollout(MODEL) is None
