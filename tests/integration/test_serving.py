"""Deploy to real local services behind the model's stable address and talk to them over HTTP:
the contract, the address across releases, supervision, and schemathesis against it all."""

from __future__ import annotations

import contextlib
import json
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import httpx
import pandas as pd
import psutil
import pytest

from tabular_mlops.adapters.deployment import local as local_server
from tabular_mlops.adapters.deployment.local import LocalProcessTarget
from tabular_mlops.adapters.net import answers, wait_for_url, wait_until
from tabular_mlops.adapters.paths import PROJECT_ROOT
from tabular_mlops.adapters.processes import has_exited
from tabular_mlops.adapters.sources import load_dataset
from tabular_mlops.core.config import DataSourceConfig, LocalServingConfig, ServingConfig
from tests.conftest import SHARED_MODEL
from tests.helpers import (
    SteadyClient,
    bearer,
    free_port,
    invoke,
    schemathesis_finds_nothing,
    serving_env,
)

pytestmark = pytest.mark.integration

MODEL = SHARED_MODEL

MAX_ROWS = 50


@pytest.fixture(scope="module")
def paths(tmp_path_factory):
    root = tmp_path_factory.mktemp("serving")
    paths = {"state": root / "state", "log": root / "inference_log", "port": free_port()}
    env = serving_env(root, paths["port"], paths["state"], paths["log"], workers=2)
    return paths | {"env": env}


def deploy_args(paths, *extra: str) -> list[str]:
    return [
        "deploy",
        "--set", f"model.name={MODEL}",
        "--env", paths["env"],
        "--set", f"parameters.serving.max_batch_rows={MAX_ROWS}",
        *extra,
    ]  # fmt: skip


def deploy(paths, *extra: str):
    return invoke(*deploy_args(paths, *extra))


def target(paths) -> LocalProcessTarget:
    local = LocalServingConfig(state_dir=paths["state"], port=paths["port"], workers=2)
    return LocalProcessTarget(ServingConfig(), local)


@pytest.fixture(scope="module")
def live(trained_model, paths):
    result = deploy(paths)
    assert result.exit_code == 0, result.output
    service = local_server.read_live(paths["state"], MODEL)
    assert service is not None
    assert service.url == f"http://127.0.0.1:{paths['port']}"
    yield service
    result = deploy(paths, "--stop")
    assert "Stopped" in result.output or "nothing of it is left" in result.output
    assert not answers(f"{service.url}/livez")
    # nothing started for this model (router, services, their workers) may outlive the stop
    left = local_server.stray_processes(paths["state"], MODEL, keep=set())
    assert left == [], f"processes of {MODEL} still running: {left}"


@pytest.fixture(scope="module")
def rows():
    frame = load_dataset(DataSourceConfig()).drop(columns=["target"])
    return json.loads(frame.head(3).to_json(orient="records"))


def refresh(live, paths):
    """Point the module's ``live`` record at what is live now (the fixture stops it)."""
    now = local_server.read_live(paths["state"], MODEL)
    assert now is not None
    live.__dict__.update(now.__dict__)
    return now


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


def test_the_live_service_is_the_stack_model_deployers_in_zenml(live):
    """`zenml model-deployer models list` reads these: the stack's own component, the live
    version at the model's stable address, linked to its model version, answering."""
    from zenml.client import Client

    deployer = Client().active_stack.model_deployer
    assert deployer is not None and deployer.flavor == "tabular_local"
    (served,) = deployer.find_model_server(model_name=MODEL)
    assert served.is_running
    info = deployer.get_model_server_info(served)
    assert info["PREDICTION_URL"] == f"{live.url}/predict"
    assert info["MODEL_VERSION"] == live.model_version
    (record,) = Client().list_services(service_name=f"{MODEL}-served", hydrate=True).items
    assert record.model_version is not None
    assert str(record.model_version.number) == live.model_version


def _without(row, key):
    return {k: v for k, v in row.items() if k != key}


@pytest.mark.parametrize(
    ("make_body", "field", "problem"),
    [
        (lambda r: json.dumps({"rows": [_without(r[0], "mean radius")]}),
         "rows.0.mean radius", "Field required"),
        (lambda r: json.dumps({"rows": [{**r[0], "mean area": "large"}]}),
         "rows.0.mean area", "Input should be a valid number"),
        (lambda r: json.dumps({"rows": [{**r[0], "mean area": "?", "colour": "red"}]}),
         "rows.0.mean area", "missing, never missing in training"),
        (lambda r: "", "(body)", "Invalid JSON"),
        (lambda r: '{"rows": [{"mean radius": 1', "(body)", "Invalid JSON"),
        (lambda r: json.dumps({"rows": [r[0]]}).replace("17.99", "NaN", 1),
         "rows.0.mean radius", "Input should be a finite number"),
        (lambda r: json.dumps({"rows": [{**r[0], "mean radius": None}]}),
         "rows.0.mean radius", "missing, never missing in training"),
        (lambda r: json.dumps({"rows": r * (MAX_ROWS // 3 + 1)}),
         "rows", f"List should have at most {MAX_ROWS} items, not"),
        (lambda r: json.dumps({"rows": []}), "rows", "List should have at least 1 item"),
        (lambda r: json.dumps([r[0]]), "(body)", "Input should be an object"),
    ],
    ids=[
        "missing-field", "wrong-type", "missing-marker", "empty-body", "malformed-json",
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
    fields = [d["field"] for d in response.json()["detail"]]
    assert "rows.0.mean radius" in fields
    assert fields[-1] == "(body)" and all(f.startswith("rows.0.") for f in fields[:-1])
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


def test_health_metrics_and_openapi(live, paths):
    from openapi_spec_validator import validate

    assert httpx.get(f"{live.url}/livez").status_code == 200
    ready = httpx.get(f"{live.url}/readyz")
    assert ready.status_code == 200
    assert ready.json() == {"ready": True, "inference_log": "ok"}  # or what it drops
    router = target(paths).router(MODEL)
    assert router is not None
    assert httpx.get(f"{router.url}/-/metrics").status_code == 401  # the admin token only
    admin = bearer(paths["state"], MODEL, "admin")
    metrics = httpx.get(f"{router.url}/-/metrics", headers=admin).text  # its own port
    assert "tabular_router_forwarded_total" in metrics
    assert 'tabular_router_log_lines_total{log="routing",outcome="dropped"} 0' in metrics
    metrics = httpx.get(f"{live.url}/metrics").text
    ok = f'tabular_predict_requests_total{{model_version="{live.model_version}",outcome="ok"}}'
    assert ok in metrics
    assert "tabular_predict_latency_seconds_bucket" in metrics
    spec = httpx.get(f"{live.url}/openapi.json").json()
    validate(spec)
    schema = spec["paths"]["/predict"]["post"]["requestBody"]["content"]["application/json"]
    assert schema["schema"] == {"$ref": "#/components/schemas/PredictRequest"}
    assert "mean radius" in json.dumps(spec["components"]["schemas"]["Row"])


def test_without_an_experiment_the_live_version_answers_its_address_itself(live, paths, rows):
    """No hop: the live version's workers accept on the stable address; the router
    forwards nothing (``serving/stable.py``)."""
    router = target(paths).router(MODEL)
    assert router is not None
    admin = bearer(paths["state"], MODEL, "admin")
    before = httpx.get(f"{router.url}/-/routes", headers=admin).json()
    assert before["stable"]["owner"]["port"] == live.runs_as.port
    assert before["stable"]["accepting"] == [live.runs_as.port]
    for _ in range(20):
        assert post(live, json.dumps({"rows": rows[:1]})).status_code == 200
    after = httpx.get(f"{router.url}/-/routes", headers=admin).json()
    assert after["forwarded"] == before["forwarded"]


def test_no_token_is_in_an_artifact_a_bento_a_log_or_a_manifest(live, paths, rows):
    """The tokens are in their 0600 file only: not in the artifact store (the
    BentoPackage's settings), the bento or BentoML's store, the state directory's
    records, routes and logs, the inference log, or what deploy prints."""
    import stat

    import bentoml
    from zenml.client import Client

    from tabular_mlops.adapters.deployment.local import deployment_tokens, tokens_file

    tokens = list(deployment_tokens(paths["state"], MODEL).current.values())
    secret = tokens_file(paths["state"], MODEL)
    assert stat.S_IMODE(secret.stat().st_mode) == 0o600
    assert stat.S_IMODE(secret.parent.stat().st_mode) == 0o700
    assert post(live, json.dumps({"rows": rows[:1]})).status_code == 200
    printed = deploy(paths, "--status").output + deploy(paths).output
    searched = [
        Path(Client().active_stack.artifact_store.path),
        Path(bentoml.bentos.get(live.bento_tag).path),
        paths["state"],
        paths["log"],
    ]
    files = [f for root in searched for f in root.rglob("*") if f.is_file() and f != secret]
    assert len(files) > 20
    for file in files:
        content = file.read_bytes()
        assert not any(token.encode() in content for token in tokens), file
    assert not any(token in printed for token in tokens)
    assert str(secret.resolve()) in printed  # where they are, instead


def test_rotated_tokens_take_effect_without_a_restart_and_the_old_ones_keep_working(live, paths):
    old = bearer(paths["state"], MODEL, "feedback")
    item = {"request_id": "not-answered", "row": 0, "label": "malignant"}
    rotated = deploy(paths, "--rotate-tokens")
    assert rotated.exit_code == 0 and "the old ones are accepted until" in rotated.output
    new = bearer(paths["state"], MODEL, "feedback")
    assert new != old
    for headers in (old, new):  # no restart: every server reads the file again
        answer = httpx.post(f"{live.url}/feedback", json=item, headers=headers)
        assert answer.status_code == 202, answer.text
    wrong = httpx.post(f"{live.url}/feedback", json=item, headers={"authorization": "Bearer x"})
    assert wrong.status_code == 403
    router = target(paths).router(MODEL)
    admin = bearer(paths["state"], MODEL, "admin")
    assert httpx.get(f"{router.url}/-/routes", headers=admin).status_code == 200
    assert deploy(paths, "--status").exit_code == 0  # the CLI reads the new admin token


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
    metrics = httpx.get(f"{live.url}/metrics").text
    assert 'tabular_inference_log_rows_total{outcome="written"}' in metrics


def test_the_bento_builds_into_an_image_for_the_cluster(live, tmp_path):
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
    assert (
        f"scikit-learn=={version('scikit-learn')} \\\n    --hash=sha256:"
        in received["requirements"]
    )
    # the same HTTP parser and loop as every test measures (serving/http.py needs it)
    assert f"httptools=={version('httptools')}" in received["requirements"]
    assert f"uvloop=={version('uvloop')}" in received["requirements"]
    assert "pandera" not in received["requirements"]
    _installs_only_the_locked_files(received["dockerfile"], received["requirements"], tmp_path)
    code = {f for f in received["files"] if f.endswith(".py")}
    assert code == {
        "src/tabular_mlops/__init__.py",
        "src/tabular_mlops/core/__init__.py",
        "src/tabular_mlops/core/columns.py",
        "src/tabular_mlops/core/explain.py",
        "src/tabular_mlops/core/files.py",
        "src/tabular_mlops/core/log_policy.py",
        "src/tabular_mlops/core/problems.py",
        "src/tabular_mlops/core/rollout.py",  # the router's (a rollout's pod runs it)
        "src/tabular_mlops/core/scoring.py",
        "src/tabular_mlops/core/spec.py",
        "src/tabular_mlops/core/threads.py",
        "src/tabular_mlops/core/transformers.py",
        "src/tabular_mlops/serving/__init__.py",
        "src/tabular_mlops/serving/app.py",
        "src/tabular_mlops/serving/credentials.py",
        "src/tabular_mlops/serving/feedback.py",
        "src/tabular_mlops/serving/http.py",
        "src/tabular_mlops/serving/inference_log.py",
        "src/tabular_mlops/serving/router.py",
        "src/tabular_mlops/serving/server.py",
        "src/tabular_mlops/serving/service.py",
        "src/tabular_mlops/serving/stable.py",
    }, code


def _installs_only_the_locked_files(dockerfile: str, requirements: str, tmp_path) -> None:
    """The image's install (uv, as the Dockerfile runs it) of the bento's requirements
    passes in a fresh environment, and refuses a wheel whose hash is not the lock's."""
    from tabular_mlops.core.locks import read_lock

    assert (
        "uv --directory $INSTALL_ROOT pip install -r $BENTO_PATH/env/python/requirements.txt"
        in dockerfile
    )
    uv = str(Path(sys.executable).parent / "uv")
    for name, text in [("locked", requirements), ("changed", _one_hash_changed(requirements))]:
        (tmp_path / f"{name}.txt").write_text(text)
        subprocess.run(
            [uv, "venv", "-q", "--python", sys.executable, str(tmp_path / name)], check=True
        )
        result = subprocess.run(
            [uv, "pip", "install", "-q", "--python", str(tmp_path / name / "bin" / "python"),
             "-r", str(tmp_path / f"{name}.txt")],
            capture_output=True, text=True, timeout=600,
        )  # fmt: skip
        if name == "locked":
            assert result.returncode == 0, result.stderr
            # nothing came in beside the hashed lines (a missing dependency would, unhashed)
            python = str(tmp_path / name / "bin" / "python")
            frozen = subprocess.run([uv, "pip", "freeze", "--python", python],
                                    capture_output=True, text=True, check=True).stdout  # fmt: skip
            assert set(read_lock(frozen)) == set(read_lock(text)), frozen
        else:
            assert result.returncode != 0 and "hash mismatch" in result.stderr.lower(), result


def _one_hash_changed(requirements: str) -> str:
    """``requirements`` with scikit-learn's hashes changed in their first digit (one
    package's wheel is then not the one the lock names)."""
    lines, inside = [], False
    for line in requirements.splitlines():
        if not line.startswith(" "):
            inside = line.startswith("scikit-learn==")
        elif inside and "--hash=sha256:" in line:
            head, _, digest = line.partition("sha256:")
            line = f"{head}sha256:{'0' if digest[0] != '0' else '1'}{digest[1:]}"
        lines.append(line)
    return "\n".join(lines) + "\n"


def test_the_pod_spec_serves_the_bento(live, rows, tmp_path):
    """The Deployment's container command, working directory, environment and probes,
    run as a process in the image's build context (the bento with its models, as the
    image lays it out; no container engine here). It is the local services' server
    (``serving/server.py`` under uvicorn, not ``bentoml serve``). Only the host differs:
    tests bind 127.0.0.1, a pod every interface."""
    import os
    import signal
    import subprocess
    import sys

    import bentoml

    from tabular_mlops.adapters.compat import bento_containerfile
    from tabular_mlops.adapters.deployment.kubernetes import BENTO_SOURCE, deployment_manifest
    from tabular_mlops.core.config import ContainerServingConfig
    from tabular_mlops.core.spec import ServingSettings
    from tabular_mlops.serving.server import command as server_command

    bento = bentoml.bentos.get(live.bento_tag)
    baked = {env.name: env.value for env in bento.info.envs}
    settings = ServingSettings.model_validate_json(baked["TABULAR_SERVING_SETTINGS"])
    container = ContainerServingConfig(port=free_port(), inference_log_mount=str(tmp_path / "log"))
    pod = deployment_manifest("release", MODEL, "image", settings, container, container)["spec"][
        "template"
    ]["spec"]
    (spec,) = pod["containers"]
    port = spec["ports"][0]["containerPort"]
    assert spec["command"] == server_command("python", "0.0.0.0", port)
    url = f"http://127.0.0.1:{port}"
    with bento_containerfile(bento) as (root, _):
        image = Path(root)  # the image's /home/bentoml/bento
        source = str(image / Path(BENTO_SOURCE).name)
        assert spec["workingDir"] == BENTO_SOURCE
        env = {e["name"]: e["value"].replace(BENTO_SOURCE, source) for e in spec["env"]}
        env = {**os.environ, **env, "BENTO_PATH": str(image)}  # the image's ENV
        command = [sys.executable, *spec["command"][1:-2], "127.0.0.1", str(port)]
        server = subprocess.Popen(
            command, cwd=source, env=env, start_new_session=True, stdout=subprocess.DEVNULL
        )
        try:
            _answers_as_the_live_service(spec, url, server, rows, live, tmp_path)
        finally:
            os.killpg(server.pid, signal.SIGTERM)
            server.wait(timeout=30)


def _answers_as_the_live_service(spec, url, server, rows, live, tmp_path) -> None:
    """Ready and live by the pod's probes, the live version's answers, logged to the mount."""
    ready = spec["readinessProbe"]["httpGet"]["path"]
    assert wait_for_url(url + ready, 120, lambda: server.poll() is not None)
    assert httpx.get(url + spec["livenessProbe"]["httpGet"]["path"]).status_code == 200
    answer = httpx.post(url + "/predict", json={"rows": rows[:2]})
    assert answer.status_code == 200, answer.text
    assert answer.json()["model_version"] == live.model_version
    logged = wait_until_logged(tmp_path / "log", answer.json()["request_id"])
    assert len(logged) == 2  # where the claim is mounted


def test_the_deployment_exports_the_model_for_embedding(live, rows, tmp_path):
    """The deployed version's `onnx_model` artifact, written by `run.py export`, scored by
    the standalone scorer: the live service's labels and probabilities."""
    result = invoke("export", "--format", "onnx", "--set", f"model.name={MODEL}",
                    "--output", str(tmp_path / "export"))  # fmt: skip
    assert result.exit_code == 0, result.output
    assert f"the `onnx_model` artifact of version {live.model_version}" in result.output
    manifest = json.loads((tmp_path / "export" / "manifest.json").read_text())
    assert manifest["model_version"] == live.model_version
    assert [f["name"] for f in manifest["features"]] == list(rows[0])
    (tmp_path / "rows.json").write_text(json.dumps(rows))
    embedded = subprocess.run(
        [sys.executable, "-m", "embedded", str(tmp_path / "export"), str(tmp_path / "rows.json")],
        cwd=PROJECT_ROOT, capture_output=True, text=True, check=True,
    )  # fmt: skip
    answers_embedded = [json.loads(line) for line in embedded.stdout.splitlines()]
    served = post(live, json.dumps({"rows": rows})).json()["predictions"]
    assert [a["label"] for a in answers_embedded] == [p["label"] for p in served]
    for mine, theirs in zip(answers_embedded, served, strict=True):
        for label, probability in theirs["probabilities"].items():
            assert abs(mine["probabilities"][label] - probability) <= 1e-5


def test_status_shows_the_live_service(live, paths):
    result = deploy(paths, "--status")
    assert result.exit_code == 0
    served = f"Model '{MODEL}' version {live.model_version} at {live.url} (answering)"
    assert served in result.output
    port = live.runs_as.port
    assert f"address: accepted by the service on port {port}, itself (no hop)" in result.output


def ok_count(service) -> float:
    metrics = httpx.get(f"{service.url}/metrics").text
    ok = f'tabular_predict_requests_total{{model_version="{service.model_version}",outcome="ok"}}'
    return float(next(line.split()[-1] for line in metrics.splitlines() if line.startswith(ok)))


def test_failed_redeploy_leaves_the_old_service_and_its_counters(live, paths, rows):
    for _ in range(3):
        assert post(live, json.dumps({"rows": rows[:1]})).status_code == 200
    before = ok_count(live)
    result = deploy(paths, "--force", "--set", "parameters.serving.startup_timeout_seconds=0.5")
    assert result.exit_code == 1, result.output
    assert "step 'start_candidate'" in result.output
    assert "did not become ready" in result.output
    assert local_server.read_live(paths["state"], MODEL) == live
    assert post(live, json.dumps({"rows": rows[:1]})).status_code == 200
    # each service counts in a directory of its own: a candidate's start resets nothing
    assert ok_count(live) == before + 1


def test_a_model_file_changed_after_approval_is_never_loaded(live, paths, rows, tmp_path):
    """Whoever can write the stores must not run code in the services: a model file changed
    in the artifact store is refused by deploy and batch scoring, naming the model, the
    version and both hashes, and the live version serves on; the served copy changed in
    BentoML's store is refused by a worker started again, and the other one serves on."""
    import hashlib
    import pickle

    import psutil
    from zenml.client import Client

    from tabular_mlops.adapters.champion import load_version
    from tabular_mlops.adapters.compat import pickled_file_of
    from tabular_mlops.adapters.integrity import MODEL_HASH_KEY

    version = Client().get_model_version(MODEL, int(live.model_version))
    artifact = version.get_artifact("model")
    approved = version.run_metadata[MODEL_HASH_KEY]
    stored = Path(pickled_file_of(artifact.uri))
    original = stored.read_bytes()
    assert hashlib.sha256(original).hexdigest() == approved == artifact.content_hash
    swapped = pickle.dumps({"not": "the approved model"})
    bad = hashlib.sha256(swapped).hexdigest()
    batch = tmp_path / "batch.csv"
    pd.DataFrame(rows).to_csv(batch, index=False)
    try:
        stored.write_bytes(swapped)
        load_version.cache_clear()  # this process loaded it before: read it again
        for result in (
            deploy(paths, "--force"),
            invoke("infer", "--input", str(batch), "--set", f"model.name={MODEL}"),
        ):
            assert result.exit_code == 1, result.output
            assert f"model '{MODEL}' version {live.model_version}" in result.output
            assert bad in result.output and approved in result.output, result.output
            assert "was recorded when the gates approved it" in result.output
    finally:
        stored.write_bytes(original)
        load_version.cache_clear()
    assert local_server.read_live(paths["state"], MODEL) == live
    assert post(live, json.dumps({"rows": rows[:1]})).status_code == 200
    # the served copy, in BentoML's store: a worker started again refuses it
    served = Path(json.loads(live.runs_as.env["TABULAR_SERVING_SETTINGS"])["model_dir"])
    copy = served / "model.pkl"
    kept = copy.read_bytes()
    log = Path(live.runs_as.log_file)
    try:
        copy.write_bytes(swapped)
        workers = psutil.Process(live.runs_as.pid).children()  # forked: nothing else
        workers[0].kill()  # kill -9: uvicorn starts another, which loads the model
        assert wait_until(lambda: bad in log.read_text(errors="replace"), 30), log.read_text()
        for _ in range(10):  # the worker that kept its model answers
            assert post(live, json.dumps({"rows": rows[:1]})).status_code == 200
    finally:
        copy.write_bytes(kept)
    # with the file back, the worker started again serves too
    assert wait_until(lambda: log.read_text().count(f" serves {MODEL} version") >= 3, 60)
    assert "refused its model" in log.read_text()


def test_a_worker_told_to_stop_is_replaced_and_its_supervisor_serves_on(live, rows):
    """Workers are forked from their supervisor (``serving/server.py``), which imported
    what they need: a signal to one worker is that worker's alone (inherited, the
    supervisor's handlers would have stopped the whole service), and its replacement is
    forked, not a fresh interpreter importing everything again."""
    import os
    import signal

    supervisor = psutil.Process(live.runs_as.pid)
    workers = {child.pid for child in supervisor.children()}
    assert len(workers) == 2
    victim = min(workers)
    os.kill(victim, signal.SIGTERM)
    assert wait_until(lambda: len({c.pid for c in supervisor.children()} - {victim}) == 2, 30)
    assert supervisor.is_running() and supervisor.status() != psutil.STATUS_ZOMBIE
    (new,) = {c.pid for c in supervisor.children()} - workers
    assert psutil.Process(new).cmdline() == supervisor.cmdline()  # forked, not spawned
    for _ in range(10):
        assert post(live, json.dumps({"rows": rows[:1]})).status_code == 200


def test_a_changed_port_never_moves_the_address_from_under_its_clients(live, paths, rows, tmp_path):
    """The environment's port was edited while the model is served: a deploy refuses to
    move the address the clients use (naming both, and how to move it), the service
    answers on, and `deploy --status` under the new port says so without failing."""
    moved = serving_env(tmp_path, free_port(), paths["state"], paths["log"], workers=2)
    result = deploy(paths | {"env": moved}, "--force")
    assert result.exit_code == 1, result.output
    assert "step 'start_candidate' failed (AddressMovedError)" in result.output
    assert f"'{MODEL}' is served at {live.url}" in result.output
    assert local_server.read_live(paths["state"], MODEL) == live
    assert post(live, json.dumps({"rows": rows[:1]})).status_code == 200
    status = deploy(paths | {"env": moved}, "--status")
    assert status.exit_code == 0, status.output
    assert f"at {live.url} (answering, with problems)" in status.output
    assert "`deploy --stop`, then deploy, moves it" in status.output


def test_an_address_another_process_holds_is_refused_before_anything_starts(live, paths, tmp_path):
    """The environment's port is some other program's: the deploy fails at once, naming
    the address and the fix, and starts nothing (no candidate left behind)."""
    import socket

    with socket.socket() as other:
        other.bind(("127.0.0.1", 0))
        other.listen()
        port = other.getsockname()[1]
        state = tmp_path / "state"
        taken = serving_env(tmp_path, port, state, paths["log"], workers=2)
        result = deploy(paths | {"env": taken, "state": state})
    assert result.exit_code == 1, result.output
    assert "step 'start_candidate' failed (AddressTakenError)" in result.output
    assert f"http://127.0.0.1:{port} is taken by a process that is not this model's" in (
        result.output
    )
    assert "another `port` in configs/environments/<env>.yaml" in result.output
    assert local_server.stray_processes(state, MODEL, set()) == []
    assert post(live, json.dumps({"rows": [{}]})).status_code == 400  # the live one answers


def test_a_model_over_the_latency_budget_is_refused_before_anything_is_built(live, paths, rows):
    from zenml.client import Client

    result = deploy(paths, "--force", "--set", "parameters.serving.max_single_row_p99_ms=0.0001")
    assert result.exit_code == 1, result.output
    assert "step 'package_model'" in result.output
    assert "over the latency budget: single-row p99" in result.output
    assert "0.0001 ms budget (serving.max_single_row_p99_ms)" in result.output
    assert local_server.read_live(paths["state"], MODEL) == live  # the live one serves on
    assert post(live, json.dumps({"rows": rows[:1]})).status_code == 200
    measured = Client().get_model_version(MODEL, int(live.model_version)).run_metadata
    latency = measured["scoring_latency"]
    assert latency["scoring_path"] == "FastModel" and latency["rows_per_second"] > 0


def test_deploying_the_served_version_again_changes_nothing(live, paths):
    result = deploy(paths)
    assert result.exit_code == 0, result.output
    assert (
        f"Version {live.model_version} of '{MODEL}' is already served at {live.url}; "
        "nothing to do (--force redeploys it" in result.output
    )
    assert local_server.read_live(paths["state"], MODEL) == live


def test_redeploy_switches_behind_the_same_address_and_stops_the_old_service(live, paths, rows):
    """Also past a model directory a prune cut short left without its YAML in BentoML's
    store (a Ctrl-C there): BentoML refused to list the store, and every later deploy
    failed after its switch."""
    import os

    from tabular_mlops.adapters.compat import bento_store_dirs
    from tabular_mlops.adapters.deployment.packaging import bento_model_name

    torn = bento_store_dirs()[0] / bento_model_name(MODEL) / "cutshort"
    torn.mkdir(parents=True)
    os.utime(torn, (1e9, 1e9))
    old = live.runs_as
    result = deploy(paths, "--force")
    assert result.exit_code == 0, result.output
    assert not torn.exists()
    new = refresh(live, paths)
    assert new.url == f"http://127.0.0.1:{paths['port']}"
    assert new.runs_as.pid != old.pid
    assert post(new, json.dumps({"rows": rows[:1]})).status_code == 200
    assert has_exited(old.pid)  # gone, or a zombie its parent (the supervisor) reaps later
    assert not answers(f"{old.direct_url}/livez")


def promoted_versions(model_name: str) -> list[int]:
    from zenml.client import Client

    return sorted(
        version.number
        for version in Client().list_model_versions(model_name_or_id=model_name, size=100)
        if str(version.run_metadata.get("promotion", "")).startswith("promoted")
    )


def test_a_client_that_keeps_the_address_sees_no_failed_request(live, paths, rows):
    """Under steady load on the stable address: a release, a failed release, a rollback
    to another version and the roll forward again. Not one request may fail."""
    from zenml.client import Client
    from zenml.enums import ModelStages

    def production() -> int:
        return Client().get_model_version(MODEL, ModelStages.PRODUCTION).number

    if not [v for v in promoted_versions(MODEL) if v != production()]:  # one to roll back to
        trained = invoke(
            "train",
            "--set", f"model.name={MODEL}",
            "--set", "parameters.split.random_state=7",
            "--set", "enable_cache=false",
        )  # fmt: skip
        assert trained.exit_code == 0, trained.output
    newest = production()
    other = max(v for v in promoted_versions(MODEL) if v != newest)
    with SteadyClient(f"{live.url}/predict", json.dumps({"rows": rows[:1]})) as client:
        steps = [
            deploy(paths, "--force"),
            deploy(paths, "--force", "--set", "parameters.serving.startup_timeout_seconds=0.5"),
            deploy(paths, "--version", str(other), "--reason", "try it"),
            deploy(paths),  # the version rolled back from: refused, the rollback stays
            deploy(paths, "--force", "--reason", "fixed"),  # the version at production again
        ]
        time.sleep(0.5)
    assert [step.exit_code for step in steps] == [0, 1, 0, 1, 0], [s.output for s in steps]
    assert f"a rollback took version {newest} out (try it, " in steps[3].output, steps[3].output
    assert "undo the rollback with `deploy --force --reason '...'`; nothing was changed" in (
        steps[3].output
    )
    # the deploy that ends the rollback says so, with the rollback's reason
    assert f"Version {other} serves by a rollback (try it, " in steps[4].output, steps[4].output
    assert f"this deploy serves the production version {newest} (" in steps[4].output
    assert client.failed == {}, client.outcomes
    assert set(client.versions) == {str(other), str(newest)}, client.versions
    assert sum(client.outcomes.values()) > 100
    now = refresh(live, paths)
    assert now.url == f"http://127.0.0.1:{paths['port']}"
    assert now.model_version == str(newest)
    # the rollback is in the audit trail with the reason given, then the deploy back
    from tabular_mlops.adapters.audit import read_trail

    entries, problems = read_trail(paths["env"])
    assert problems == []
    rollback = [e for e in entries if e.action == "rollback" and e.model == MODEL][-1]
    assert (rollback.version, rollback.reason) == (str(other), "try it")
    assert rollback.details["replaced"] == str(newest)
    assert entries[-1].action == "deploy" and entries[-1].version == str(newest)
    assert entries[-1].reason == "fixed"  # undoing a rollback says why


def test_a_version_the_gate_never_passed_is_not_rolled_back_to(live, paths):
    result = deploy(paths, "--version", "999", "--reason", "try it")
    assert result.exit_code != 0
    assert f"model '{MODEL}' has no version 999; nothing was changed. Versions that " in (
        result.output
    )
    assert "passed the promotion gate: 1" in result.output, result.output


def test_schemathesis_finds_no_server_error_and_no_schema_violation(live):
    """The live service, through its stable address, against its own OpenAPI document:
    every check schemathesis has, a bounded number of cases."""
    schemathesis_finds_nothing(live.url)


def service_tree(service) -> list[int]:
    root = psutil.Process(service.runs_as.pid)
    return [root.pid, *(child.pid for child in root.children(recursive=True))]


#: how long a test waits for the supervisor to bring a process back (measured: the router
#: 0.5 s, a service 3 s on a quiet 2-core machine); a bound against hanging, not a figure
RESTART_BOUND_SECONDS = 90


def _killed_and_back(live, paths, rows, pid: int, back: Callable[[], bool]) -> dict[str, int]:
    """kill -9 of ``pid`` under a steady client of the stable address; once ``back()``,
    the client goes on a while: the failures it saw, all of them before ``back()``."""
    body = json.dumps({"rows": rows[:1]})
    with SteadyClient(f"{live.url}/predict", body, threads=2) as client:
        time.sleep(0.5)
        psutil.Process(pid).kill()  # kill -9
        assert wait_until(back, RESTART_BOUND_SECONDS, interval=0.05)
        during = dict(client.failed)
        time.sleep(1.5)
        after = {k: v - during.get(k, 0) for k, v in client.failed.items()}
    assert not any(after.values()), f"failures after the restart: {after} (during: {during})"
    assert client.outcomes["200"] > 0
    return during


def test_a_killed_service_or_router_is_started_again_by_the_supervisor(live, paths, rows):
    """The deployment's supervisor brings back the live version's server (same port, so
    the routes stay) and the router (same address): a client that keeps the address sees
    failed requests only until then, and `deploy --status` says what happened."""
    supervisor = target(paths).supervisor(MODEL)
    assert supervisor is not None and supervisor.running
    tree = service_tree(live)
    assert len(tree) >= 3  # uvicorn's supervisor and two workers at least

    def new_server() -> bool:
        now = target(paths).live(MODEL)
        return (
            now is not None
            and now.runs_as.pid != live.runs_as.pid  # type: ignore[union-attr]
            and answers(f"{live.runs_as.direct_url}/readyz")
        )

    failed = _killed_and_back(live, paths, rows, live.runs_as.pid, new_server)
    print(f"killed service: {failed} failed requests until it answered again")
    # the dead server's workers never serve on alone
    assert all(has_exited(pid) for pid in tree[1:])
    router = target(paths).router(MODEL)
    assert router is not None

    def new_router() -> bool:
        now = target(paths).router(MODEL)
        return now is not None and now.pid != router.pid and answers(f"{live.url}/readyz")

    failed = _killed_and_back(live, paths, rows, router.pid, new_router)
    print(f"killed router: {failed} failed requests until it answered again")
    status = deploy(paths, "--status")
    assert status.exit_code == 0, status.output
    assert f"version {live.model_version} (port {live.runs_as.port}) had died" in status.output
    assert f"router had died (pid {router.pid} -> pid" in status.output
    refresh(live, paths)


def test_without_its_supervisor_a_dead_service_is_reported_and_deploy_restarts_both(
    live, paths, rows
):
    supervisor = target(paths).supervisor(MODEL)
    assert supervisor is not None
    psutil.Process(supervisor.pid).kill()
    status = deploy(paths, "--status")
    assert status.exit_code == 0, status.output  # the model still answers
    assert "supervisor: not running" in status.output
    tree = service_tree(live)
    psutil.Process(live.runs_as.pid).kill()  # kill -9
    _, alive = psutil.wait_procs([psutil.Process(p) for p in tree[1:]], timeout=15)
    assert alive == [], f"workers still running after their supervisor was killed: {alive}"
    assert not answers(f"{live.runs_as.direct_url}/livez")
    status = deploy(paths, "--status")
    assert status.exit_code == 3, status.output  # a probe or a script can act on it
    assert f"at {live.url} (NOT answering)" in status.output
    assert f"the service process (pid {live.runs_as.pid}) is gone" in status.output
    assert post(live, json.dumps({"rows": rows[:1]})).status_code == 503  # the router says so
    restarted = deploy(paths)  # not --force: a service that does not answer is redeployed
    assert restarted.exit_code == 0, restarted.output
    assert "The live service has problems" in restarted.output
    now = refresh(live, paths)
    assert post(now, json.dumps({"rows": rows[:1]})).status_code == 200
    again = target(paths).supervisor(MODEL)
    assert again is not None and again.running and again.pid != supervisor.pid


def test_a_heal_stops_the_dead_servers_workers_before_it_trusts_its_port(
    live, paths, rows, monkeypatch
):
    """A killed server's workers hold its port until they leave (and answer its readiness
    check meanwhile): the heal stops them by their process group, even when the sweep by
    marker misses them (seen once under load), so the server it starts binds the port and
    is the one that answers. The workers are stopped (SIGSTOP) so that they cannot leave
    by themselves first."""
    import signal

    supervisor = target(paths).supervisor(MODEL)
    assert supervisor is not None
    psutil.Process(supervisor.pid).kill()  # the heal is this test's, in this process
    tree = service_tree(live)
    try:
        for pid in tree[1:]:
            psutil.Process(pid).send_signal(signal.SIGSTOP)
        psutil.Process(live.runs_as.pid).kill()  # kill -9
        assert wait_until(lambda: has_exited(live.runs_as.pid), 30)
        monkeypatch.setattr(LocalProcessTarget, "strays", lambda *_, **__: [])
        restarts = target(paths).heal(MODEL, lambda what: True)
        assert [r.outcome for r in restarts] == ["answering again"], restarts
        assert all(has_exited(pid) for pid in tree[1:])
        now = refresh(live, paths)
        assert now.runs_as.pid not in tree
        assert psutil.Process(now.runs_as.pid).children()  # its own workers answer the port
        assert post(now, json.dumps({"rows": rows[:1]})).status_code == 200
    finally:  # whatever failed, the tests after this one get a service and a supervisor
        for pid in tree[1:]:
            with contextlib.suppress(psutil.NoSuchProcess):
                psutil.Process(pid).kill()
        monkeypatch.undo()
        assert deploy(paths).exit_code == 0
        refresh(live, paths)
    again = target(paths).supervisor(MODEL)
    assert again is not None and again.running


def live_pids(live, paths) -> set[int]:
    """The live service, the router and the supervisor: what no sweep may stop."""
    router, supervisor = target(paths).router(MODEL), target(paths).supervisor(MODEL)
    assert router is not None and supervisor is not None
    return {live.runs_as.pid, router.pid, supervisor.pid}


def _deploy_process(paths, *extra: str):
    import subprocess
    import sys

    from tabular_mlops.adapters.paths import PROJECT_ROOT

    return subprocess.Popen(
        [sys.executable, "run.py", *deploy_args(paths, *extra)],
        cwd=PROJECT_ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )


def _deploy_until_a_candidate_runs(paths) -> tuple[subprocess.Popen, list[psutil.Process]]:
    """``deploy --force`` in a process of its own, once its candidate's server runs (or it
    ended). The candidate is the deploy's own child: looked for there, every 20 ms, not
    in a scan of every process on the machine, which on a loaded one took longer than
    the candidate's start (forked workers: about two seconds) and missed it."""
    deploying = _deploy_process(paths, "--force")
    command = psutil.Process(deploying.pid)
    candidates: list[psutil.Process] = []

    def is_server(process: psutil.Process) -> bool:
        try:
            return "tabular_mlops.serving.server" in " ".join(process.cmdline())
        except psutil.Error:  # a child that has just exited
            return False

    def candidate_started() -> bool:
        with contextlib.suppress(psutil.Error):
            candidates[:] = [child for child in command.children() if is_server(child)]
        return bool(candidates) or deploying.poll() is not None

    assert wait_until(candidate_started, 120, interval=0.02)
    assert candidates, "the deploy ended before its candidate was seen"
    return deploying, candidates


def test_a_deploy_killed_while_starting_leaves_nothing_behind(live, paths):
    from zenml.client import Client
    from zenml.enums import ExecutionStatus

    deploying, candidates = _deploy_until_a_candidate_runs(paths)
    deploying.kill()  # kill -9, while start_candidate waits for the candidate
    deploying.wait()
    assert candidates and all(c.is_running() for c in candidates)
    status = deploy(paths, "--status")
    assert status.exit_code == 0, status.output  # the live service still answers
    assert "left running by an earlier deployment: pids" in status.output
    assert str(candidates[0].pid) in status.output
    result = deploy(paths)  # the served version: nothing to deploy, strays stopped
    assert result.exit_code == 0, result.output
    assert "an earlier deployment left running" in result.output
    psutil.wait_procs(candidates, timeout=15)
    assert not any(c.is_running() for c in candidates)
    assert local_server.read_live(paths["state"], MODEL) == live
    [run] = (
        Client()
        .list_pipeline_runs(pipeline_name="deployment_pipeline", sort_by="desc:created", size=1)
        .items
    )
    assert run.status == ExecutionStatus.FAILED  # marked by the next command


def test_a_deploy_interrupted_while_starting_stops_its_candidate_and_keeps_the_live_one(
    live, paths
):
    """Ctrl-C once the candidate runs: the command stops what it started and says so, the
    live service is as it was, and nothing of the deployment is left running."""
    import signal

    deploying, candidates = _deploy_until_a_candidate_runs(paths)
    deploying.send_signal(signal.SIGINT)  # Ctrl-C, while start_candidate waits for it
    output, _ = deploying.communicate(timeout=120)
    assert deploying.returncode == 1 and "Aborted!" in output, output[-3000:]
    assert (
        "Interrupted before the switch: nothing changed, version "
        f"{live.model_version} still serves at {live.url}; the same command deploys again."
    ) in output, output[-3000:]
    assert "the interrupted deployment had started" in output, output[-3000:]
    assert "database is locked" not in output
    psutil.wait_procs(candidates, timeout=15)
    assert candidates and not any(c.is_running() for c in candidates)
    assert local_server.read_live(paths["state"], MODEL) == live
    assert local_server.stray_processes(paths["state"], MODEL, live_pids(live, paths)) == []
    status = deploy(paths, "--status")
    assert status.exit_code == 0 and "left running" not in status.output, status.output


def test_two_deploys_at_once_one_waits_its_turn(live, paths, rows):
    first, second = _deploy_process(paths, "--force"), _deploy_process(paths, "--force")
    outputs = [p.communicate(timeout=300)[0] for p in (first, second)]
    codes = sorted(p.returncode for p in (first, second))
    assert codes == [0, 1], outputs
    assert any("another deployment of" in out and "in progress" in out for out in outputs), [
        out[-1500:] for out in outputs
    ]
    now = refresh(live, paths)
    assert post(now, json.dumps({"rows": rows[:1]})).status_code == 200
    assert local_server.stray_processes(paths["state"], MODEL, keep=live_pids(now, paths)) == []


def test_old_bentos_are_pruned_and_the_served_one_kept(live):
    import bentoml

    from tabular_mlops.adapters.deployment.packaging import bento_model_name

    bentos = {str(b.tag) for b in bentoml.bentos.list(f"{bento_model_name(MODEL)}_service")}
    assert live.bento_tag in bentos
    assert len(bentos) <= ServingConfig().keep_bentos + 1  # + a failed deploy's, not yet pruned


def test_a_deployment_that_requires_api_keys_answers_only_its_clients(live, paths, rows):
    """`require_api_key`: the deploy's own smoke test passes by its source token, a client
    with a key made by `deploy --api-key` is answered, one revoked is refused at once;
    both are in the audit trail. Deployed back without keys after."""
    from tabular_mlops.adapters.audit import read_trail

    body = json.dumps({"rows": rows[:1]})
    required = deploy(paths, "--force", "--set", "parameters.serving.require_api_key=true")
    assert required.exit_code == 0, required.output
    try:
        assert post(live, body).status_code == 401
        made = deploy(paths, "--api-key", "checkout", "--reason", "the checkout service")
        assert made.exit_code == 0, made.output
        key = made.output.strip().splitlines()[-1]
        headers = {"content-type": "application/json", "x-api-key": key}
        answered = httpx.post(f"{live.url}/predict", content=body, headers=headers)
        assert answered.status_code == 200, answered.text
        revoked = deploy(paths, "--revoke-api-key", "checkout")
        assert revoked.exit_code == 0 and "refused from now on" in revoked.output
        assert httpx.post(f"{live.url}/predict", content=body, headers=headers).status_code == 403
        entries, problems = read_trail(paths["env"])
        assert problems == [] and [e.action for e in entries[-2:]] == ["api-key", "revoke-api-key"]
        assert key not in entries[-2].model_dump_json()  # who got one, never the key
    finally:
        back = deploy(paths, "--force")
        assert back.exit_code == 0, back.output
    assert post(live, body).status_code == 200
