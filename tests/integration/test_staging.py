"""staging: real MLflow and ZenML servers on 127.0.0.1, started and stopped by run.py."""

from __future__ import annotations

from pathlib import Path

import httpx
import psutil
import pytest
import yaml

from tests.helpers import free_port, invoke

pytestmark = pytest.mark.integration

MODEL = "it_staging"
KILLED = "it_staging_killed"
STAGING = Path(__file__).resolve().parents[2] / "configs" / "environments" / "staging.yaml"


def staging_file(tmp_path: Path) -> tuple[Path, int, int]:
    """staging.yaml on free ports, its stores in a temporary directory; nothing started."""
    config = yaml.safe_load(STAGING.read_text())
    mlflow_port, zenml_port = free_port(), free_port()
    config["services"]["mlflow"].update(
        port=mlflow_port,
        backend_store=str(tmp_path / "mlflow" / "mlflow.db"),
        artifacts_destination=str(tmp_path / "mlflow" / "artifacts"),
    )
    config["services"]["zenml"]["port"] = zenml_port
    tracker = config["stack"]["components"]["experiment_tracker"]
    tracker["configuration"]["tracking_uri"] = f"http://127.0.0.1:{mlflow_port}"
    tracker["name"] = "it-staging-mlflow-tracker"
    config["stack"]["name"] = "it-staging"
    path = tmp_path / "it-staging.yaml"
    path.write_text(yaml.safe_dump(config))
    return path, mlflow_port, zenml_port


@pytest.fixture(scope="module")
def staging_env(dev_stack, tmp_path_factory):
    """staging's servers up on free ports (once for the module: starting them takes most of
    a minute), and down afterwards."""
    path, mlflow_port, zenml_port = staging_file(tmp_path_factory.mktemp("staging"))
    try:
        result = invoke("stack", "up", "--env", str(path))
        assert result.exit_code == 0, result.output
        assert _job_runners(mlflow_port) == []
        yield path, f"http://127.0.0.1:{mlflow_port}", f"http://127.0.0.1:{zenml_port}"
    finally:
        result = invoke("stack", "down", "--env", str(path))
        invoke("stack", "register", "--env", "dev")
    assert "Stopped: ZenML, MLflow" in result.output
    for port in (mlflow_port, zenml_port):
        with pytest.raises(httpx.ConnectError):
            httpx.get(f"http://127.0.0.1:{port}/health", timeout=2)


def _job_runners(port: int) -> list[str]:
    """The command lines of what the MLflow server on ``port`` started beside itself to
    run jobs (MLflow 3's huey consumer, for GenAI jobs this project never submits)."""
    server = psutil.Process(_listener(port))
    while server.parent() is not None and "mlflow" in " ".join(server.parent().cmdline()):
        server = server.parent()  # `mlflow server` starts uvicorn, which listens
    commands = [" ".join(child.cmdline()) for child in server.children(recursive=True)]
    return [command for command in commands if "huey" in command or "jobs" in command]


def test_training_on_staging_shows_in_both_servers(staging_env):
    path, mlflow_url, zenml_url = staging_env
    result = invoke("train", "--env", str(path), "--set", f"model.name={MODEL}")
    assert result.exit_code == 0, result.output
    assert f"Model '{MODEL}' version 1: promoted to production" in result.output
    assert f"MLflow UI:       {mlflow_url}" in result.output

    api = f"{mlflow_url}/api/2.0/mlflow"
    experiments = httpx.post(f"{api}/experiments/search", json={"max_results": 50}).json()
    names = [e["name"] for e in experiments["experiments"]]
    assert "training_pipeline" in names
    champion = httpx.get(
        f"{api}/registered-models/alias", params={"name": MODEL, "alias": "champion"}
    ).json()["model_version"]
    run = httpx.get(f"{api}/runs/get", params={"run_id": champion["run_id"]}).json()["run"]
    metrics = {m["key"] for m in run["data"]["metrics"]}
    assert {"train_accuracy", "test_roc_auc"} <= metrics
    # MLflow's own loader, by alias, from the tracking server
    import mlflow

    from tabular_mlops.adapters.sources import load_dataset
    from tabular_mlops.core.config import DataSourceConfig

    mlflow.set_tracking_uri(mlflow_url)
    rows = load_dataset(DataSourceConfig()).drop(columns=["target"]).head(2)
    loaded = mlflow.pyfunc.load_model(f"models:/{MODEL}@champion")
    assert list(loaded.predict(rows)) == ["malignant", "malignant"]

    # staging's production lives in staging's project: dev's production is untouched
    from zenml.client import Client
    from zenml.enums import ModelStages

    assert Client().active_project.name == "staging"
    assert invoke("stack", "register", "--env", "dev").exit_code == 0
    assert Client().active_project.name == "default"
    with pytest.raises(KeyError):
        Client().get_model_version(MODEL, ModelStages.PRODUCTION)
    assert invoke("stack", "register", "--env", str(path)).exit_code == 0

    runs = httpx.get(f"{zenml_url}/api/v1/runs", params={"size": 100, "project": "staging"}).json()[
        "items"
    ]
    assert any(r["name"].startswith("training_pipeline-") for r in runs)
    info = httpx.get(f"{zenml_url}/api/v1/info").json()
    assert info["version"] == "0.98.0"


def test_stack_up_needs_services(dev_stack):
    result = invoke("stack", "up", "--env", "dev")
    assert result.exit_code == 1
    assert "environment 'dev' declares no services to start" in result.output


def test_unknown_environment_file(dev_stack, tmp_path):
    result = invoke("stack", "up", "--env", str(tmp_path / "nope.yaml"))
    assert result.exit_code == 1
    assert "nope.yaml: no such environment file" in result.output


def test_with_its_servers_down_staging_fails_before_any_pipeline_naming_url_and_fix(
    dev_stack, tmp_path
):
    from zenml.client import Client

    # dev active (the module's live staging servers may have left staging active)
    assert invoke("stack", "register", "--env", "dev").exit_code == 0
    path, mlflow_port, zenml_port = staging_file(tmp_path)
    runs_before = Client().list_pipeline_runs(size=1).total
    result = invoke("train", "--env", str(path), "--set", f"model.name={MODEL}")
    assert result.exit_code == 1
    fix = f"start it with `python run.py stack up --env {path}`"
    assert (
        f"the MLflow tracking server at http://127.0.0.1:{mlflow_port} does not answer; {fix}"
        in result.output
    )
    assert f"the ZenML server at http://127.0.0.1:{zenml_port} does not answer" in result.output
    assert invoke("stack", "register", "--env", "dev").exit_code == 0
    assert Client().list_pipeline_runs(size=1).total == runs_before


def _listener(port: int) -> int:
    for connection in psutil.net_connections("tcp"):
        if connection.laddr and connection.laddr.port == port and connection.status == "LISTEN":
            return int(connection.pid)
    raise LookupError(f"nothing listens on {port}")


def test_staging_server_killed_mid_run_breaks_only_staging_and_stack_up_recovers(staging_env):
    """kill -9 of staging's ZenML server while `train --env staging` runs, and of the
    command: dev keeps working (its client state is its own), staging stops at once
    with the cause and the fix, `stack up` recovers, and the killed run is marked
    failed by the next staging command."""
    import os
    import signal
    import subprocess
    import sys
    import time

    from zenml.client import Client

    from tabular_mlops.adapters.paths import PROJECT_ROOT

    path, _, zenml_url = staging_env
    zenml_port = int(zenml_url.rsplit(":", 1)[1])
    assert invoke("stack", "register", "--env", str(path)).exit_code == 0  # staging active
    command = subprocess.Popen(
        [sys.executable, "run.py", "train", "--env", str(path), "--set", f"model.name={KILLED}"],
        cwd=PROJECT_ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    try:
        deadline, started_run = time.monotonic() + 180, None
        while time.monotonic() < deadline and command.poll() is None:
            runs = Client().list_pipeline_runs(sort_by="desc:created", size=5).items
            mine = [r for r in runs if r.model_version and r.model_version.model.name == KILLED]
            if mine and mine[0].steps:
                started_run = mine[0]
                break
            time.sleep(0.2)
        assert started_run is not None, "the staging training never started a step"
        os.kill(_listener(zenml_port), signal.SIGKILL)
    finally:
        command.kill()
        command.communicate(timeout=60)

    # dev: untouched by staging's dead server
    result = invoke("stack", "register", "--env", "dev")
    assert result.exit_code == 0, result.output
    assert Client().active_stack_model.name == "dev"
    # staging: stops before any pipeline (the preflight), one line with the cause and the fix
    result = invoke("train", "--env", str(path), "--set", f"model.name={KILLED}")
    assert result.exit_code == 1
    assert f"the ZenML server at {zenml_url} does not answer; start it with" in result.output
    # stack up recovers from the dead server; the killed run is marked failed
    result = invoke("stack", "up", "--env", str(path))
    assert result.exit_code == 0, result.output
    assert "marked failed: its process" in result.output, result.output
    runs = Client().list_pipeline_runs(size=50, hydrate=True).items
    assert started_run.id in {r.id for r in runs}
    assert all(r.status.value != "running" for r in runs), [(r.name, r.status) for r in runs]
