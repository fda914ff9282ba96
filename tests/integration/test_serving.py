"""Deploy to a real local BentoML server and talk to it over HTTP."""

from __future__ import annotations

import json
import time
from pathlib import Path

import httpx
import pytest

from tabular_mlops.adapters.deployment import local as local_server
from tabular_mlops.adapters.deployment.local import LocalProcessTarget
from tabular_mlops.adapters.net import free_port, wait_for_url
from tabular_mlops.adapters.sources import load_dataset
from tabular_mlops.core.config import DataSourceConfig, ServingConfig
from tests.conftest import SHARED_MODEL
from tests.helpers import invoke

pytestmark = pytest.mark.integration

MODEL = SHARED_MODEL

MAX_ROWS = 50


@pytest.fixture(scope="module")
def paths(tmp_path_factory):
    root = tmp_path_factory.mktemp("serving")
    return {"state": root / "state", "log": root / "inference_log"}


def deploy(paths, *extra: str):
    return invoke(
        "deploy",
        "--set", f"model.name={MODEL}",
        "--set", f"parameters.serving.state_dir={paths['state']}",
        "--set", f"parameters.serving.inference_log_dir={paths['log']}",
        "--set", f"parameters.serving.max_batch_rows={MAX_ROWS}",
        "--set", "parameters.serving.workers=1",
        *extra,
    )  # fmt: skip


@pytest.fixture(scope="module")
def live(trained_model, paths):
    result = deploy(paths)
    assert result.exit_code == 0, result.output
    service = local_server.read_live(paths["state"], MODEL)
    assert service is not None
    yield service
    result = deploy(paths, "--stop")
    assert "Stopped" in result.output
    assert not is_answering(service)
    # BentoML's workers run in process groups of their own: none may outlive the stop
    import psutil

    left = [
        p.pid
        for p in psutil.process_iter(["cmdline"])
        if any(str(service.bento_tag) in part for part in (p.info["cmdline"] or []))
    ]
    assert left == [], f"processes of {service.bento_tag} still running: {left}"


@pytest.fixture(scope="module")
def rows():
    frame = load_dataset(DataSourceConfig()).drop(columns=["target"])
    return json.loads(frame.head(3).to_json(orient="records"))


def is_answering(service) -> bool:
    return LocalProcessTarget(ServingConfig()).is_answering(service)


def post(service, body: bytes | str) -> httpx.Response:
    return httpx.post(
        f"{service.url}/predict",
        content=body,
        headers={"content-type": "application/json"},
        timeout=10,
    )


def test_one_row_and_many_rows_match_the_model(live, rows):
    from zenml.client import Client
    from zenml.enums import ModelStages

    model = Client().get_model_version(MODEL, ModelStages.PRODUCTION).get_artifact("model").load()
    answer = post(live, json.dumps({"rows": rows})).json()
    assert answer["model_name"] == MODEL and answer["model_version"] == live.model_version
    import pandas as pd

    expected = model.predict(pd.DataFrame(rows))
    assert [p["label"] for p in answer["predictions"]] == list(expected)
    for prediction in answer["predictions"]:
        assert set(prediction["probabilities"]) == {"benign", "malignant"}
        assert sum(prediction["probabilities"].values()) == pytest.approx(1.0)
    single = post(live, json.dumps({"rows": rows[:1]}))
    assert single.status_code == 200 and len(single.json()["predictions"]) == 1


def _without(row, key):
    return {k: v for k, v in row.items() if k != key}


@pytest.mark.parametrize(
    ("make_body", "field", "problem"),
    [
        (lambda r: json.dumps({"rows": [_without(r[0], "mean radius")]}),
         "rows.0.mean radius", "Field required"),
        (lambda r: json.dumps({"rows": [{**r[0], "mean area": "large"}]}),
         "rows.0.mean area", "Input should be a valid number"),
        (lambda r: json.dumps({"rows": [{**r[0], "colour": "red"}]}),
         "rows.0.colour", "Extra inputs are not permitted"),
        (lambda r: "", "(body)", "Invalid JSON: EOF while parsing"),
        (lambda r: '{"rows": [{"mean radius": 1', "(body)", "Invalid JSON"),
        (lambda r: json.dumps({"rows": [r[0]]}).replace("17.99", "NaN", 1),
         "rows.0.mean radius", "Input should be a finite number"),
        (lambda r: json.dumps({"rows": [{**r[0], "mean radius": None}]}),
         "rows.0.mean radius", "Input should be a valid number"),
        (lambda r: json.dumps({"rows": r * (MAX_ROWS // 3 + 1)}),
         "rows", f"List should have at most {MAX_ROWS} items"),
        (lambda r: json.dumps({"rows": []}), "rows", "List should have at least 1 item"),
        (lambda r: json.dumps([r[0]]), "(body)", "Input should be an object"),
    ],
    ids=[
        "missing-field", "wrong-type", "unknown-field", "empty-body", "malformed-json",
        "nan", "null-not-allowed", "oversized-batch", "empty-batch", "not-an-object",
    ],
)  # fmt: skip
def test_bad_requests_get_a_400_naming_the_field(live, rows, make_body, field, problem):
    response = post(live, make_body(rows))
    assert response.status_code == 400, response.text
    detail = response.json()["detail"]
    assert any(d["field"] == field and d["problem"].startswith(problem) for d in detail), detail
    assert post(live, json.dumps({"rows": rows[:1]})).status_code == 200  # still serving


def test_huge_finite_inputs_are_refused_not_answered_with_nan(live, rows):
    """Every feature 1e308: finite, valid JSON, but the scaled values overflow."""
    huge = {name: 1e308 for name in rows[0]}
    response = post(live, json.dumps({"rows": [huge, rows[0]]}))
    assert response.status_code == 422, response.text
    assert [d["field"] for d in response.json()["detail"]] == ["rows.0"]
    assert "NaN" not in response.text


def test_the_http_contract_refuses_text_and_foreign_media_types(live, rows):
    body = json.dumps({"rows": [{**rows[0], "mean radius": "17.99"}]})
    assert post(live, body).status_code == 400
    plain = httpx.post(
        f"{live.url}/predict",
        content=json.dumps({"rows": rows[:1]}),
        headers={"content-type": "text/plain"},
        timeout=10,
    )
    assert plain.status_code == 415


def test_health_metrics_and_openapi(live):
    from openapi_spec_validator import validate

    assert httpx.get(f"{live.url}/livez").status_code == 200
    assert httpx.get(f"{live.url}/readyz").status_code == 200
    metrics = httpx.get(f"{live.url}/metrics").text
    ok = f'tabular_predict_requests_total{{model_version="{live.model_version}",outcome="ok"}}'
    assert ok in metrics
    assert "tabular_predict_latency_seconds_bucket" in metrics
    spec = httpx.get(f"{live.url}/openapi.json").json()
    validate(spec)
    schema = spec["paths"]["/predict"]["post"]["requestBody"]["content"]["application/json"]
    assert "mean radius" in json.dumps(schema["schema"])


def wait_until_logged(directory: Path, request_id: str, seconds: float = 5):
    """The log's records once ``request_id`` is among them: the writer flushes on a timer."""
    from tabular_mlops.serving.inference_log import read_records

    deadline = time.monotonic() + seconds
    logged = read_records(directory)
    while time.monotonic() < deadline and request_id not in set(logged.get("request_id", [])):
        time.sleep(0.2)
        logged = read_records(directory)
    return logged


def test_every_prediction_is_logged(live, rows, paths):
    response = post(live, json.dumps({"rows": rows[:2]}))
    request_id = response.json()["request_id"]
    logged = wait_until_logged(paths["log"], request_id)
    mine = logged[logged["request_id"] == request_id]
    assert list(mine["row"]) == [0, 1]
    assert set(mine["source"]) == {"live"}
    assert mine["mean radius"].tolist() == [rows[0]["mean radius"], rows[1]["mean radius"]]
    assert set(logged["source"]) >= {"smoke-test", "live"}


def test_the_bento_builds_into_an_image_for_the_cluster(live):
    """What prod's image builder receives: the same bento, as a Docker build context."""
    from importlib.metadata import version
    from types import SimpleNamespace

    from tabular_mlops.adapters.deployment.container_image import build_bento_image

    received = {}

    class RecordingImageBuilder:
        def build(self, image_name, build_context, container_registry):
            files = build_context.get_files()
            requirements = Path(files["env/python/requirements.txt"]).read_text()
            received.update(
                image=image_name,
                files=set(files),
                dockerfile=build_context.get_extra_files()["Dockerfile"],
                requirements=requirements,
            )
            return f"{image_name}@sha256:0"

    registry = SimpleNamespace(config=SimpleNamespace(uri="registry.example:5000/mlops"))
    image = build_bento_image(live.bento_tag, RecordingImageBuilder(), registry)
    name, build = live.bento_tag.split(":")
    assert image == f"registry.example:5000/mlops/{name.replace('_', '-')}:{build}@sha256:0"
    assert "FROM python:3.11" in received["dockerfile"]
    assert "--mount=type=cache" not in received["dockerfile"]  # Kaniko reads it
    assert any(f.startswith("models/") and f.endswith("model.pkl") for f in received["files"])
    assert f"scikit-learn=={version('scikit-learn')}" in received["requirements"]
    assert "pandera" not in received["requirements"]
    code = {f for f in received["files"] if f.endswith(".py")}
    assert code == {
        "src/tabular_mlops/__init__.py",
        "src/tabular_mlops/core/__init__.py",
        "src/tabular_mlops/core/columns.py",
        "src/tabular_mlops/core/scoring.py",
        "src/tabular_mlops/core/spec.py",
        "src/tabular_mlops/core/transformers.py",
        "src/tabular_mlops/serving/__init__.py",
        "src/tabular_mlops/serving/app.py",
        "src/tabular_mlops/serving/inference_log.py",
        "src/tabular_mlops/serving/service.py",
    }, code


def test_the_pod_spec_serves_the_bento(live, rows, tmp_path):
    """The Deployment's container arguments, environment and probes, run as a process
    on the bento the image is built from (no container engine here). Only the host
    differs: tests bind 127.0.0.1, a pod every interface."""
    import os
    import signal
    import subprocess
    import sys

    import bentoml
    from zenml.integrations.kubernetes.flavors import KubernetesDeployerSettings

    from tabular_mlops.adapters.deployment.kubernetes import deployment_manifest
    from tabular_mlops.core.config import ContainerServingConfig
    from tabular_mlops.core.spec import ServingSettings

    bento = bentoml.bentos.get(live.bento_tag)
    baked = {env.name: env.value for env in bento.info.envs}
    settings = ServingSettings.model_validate_json(baked["TABULAR_SERVING_SETTINGS"])
    container = ContainerServingConfig(port=free_port(), inference_log_mount=str(tmp_path / "log"))
    pod = deployment_manifest(
        "release", MODEL, "image", settings, container, KubernetesDeployerSettings()
    )["spec"]["template"]["spec"]
    (spec,) = pod["containers"]
    url = f"http://127.0.0.1:{spec['ports'][0]['containerPort']}"
    env = {**os.environ, **{e["name"]: e["value"] for e in spec["env"]}}
    command = [sys.executable, "-m", "bentoml", "serve", *spec["args"], "--host", "127.0.0.1"]
    server = subprocess.Popen(
        [*command, bento.path], env=env, start_new_session=True, stdout=subprocess.DEVNULL
    )
    try:
        ready = spec["readinessProbe"]["httpGet"]["path"]
        assert wait_for_url(url + ready, 120, lambda: server.poll() is not None)
        assert httpx.get(url + spec["livenessProbe"]["httpGet"]["path"]).status_code == 200
        answer = httpx.post(url + "/predict", json={"rows": rows[:2]})
        assert answer.status_code == 200, answer.text
        assert answer.json()["model_version"] == live.model_version
        logged = wait_until_logged(tmp_path / "log", answer.json()["request_id"])
        assert len(logged) == 2  # where the claim is mounted
    finally:
        os.killpg(server.pid, signal.SIGTERM)
        server.wait(timeout=30)


def test_status_shows_the_live_service(live, paths):
    result = deploy(paths, "--status")
    assert result.exit_code == 0
    served = f"Model '{MODEL}' version {live.model_version} at {live.url} (answering)"
    assert served in result.output


def test_failed_redeploy_leaves_the_old_service_answering(live, paths, rows):
    result = deploy(paths, "--force", "--set", "parameters.serving.startup_timeout_seconds=0.5")
    assert result.exit_code == 1, result.output
    assert "step 'start_candidate'" in result.output
    assert "did not become ready" in result.output
    assert local_server.read_live(paths["state"], MODEL) == live
    assert post(live, json.dumps({"rows": rows[:1]})).status_code == 200


def test_deploying_the_served_version_again_changes_nothing(live, paths):
    result = deploy(paths)
    assert result.exit_code == 0, result.output
    assert (
        f"Version {live.model_version} of '{MODEL}' is already served at {live.url}; "
        "nothing to do (--force redeploys it" in result.output
    )
    assert local_server.read_live(paths["state"], MODEL) == live


def test_redeploy_switches_and_stops_the_old_service(live, paths, rows):
    result = deploy(paths, "--force")
    assert result.exit_code == 0, result.output
    new = local_server.read_live(paths["state"], MODEL)
    assert new is not None and new.url != live.url
    assert post(new, json.dumps({"rows": rows[:1]})).status_code == 200
    assert not is_answering(live)
    live.__dict__.update(new.__dict__)  # the module fixture stops whichever is live
