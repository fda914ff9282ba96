from __future__ import annotations

import json
import signal
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from pydantic import ValidationError

from tabular_mlops.adapters.deployment.packaging import bento_model_name
from tabular_mlops.core.problems import describe_errors
from tabular_mlops.core.scoring import FastModel, PipelineScorer, UnsupportedPipelineError
from tabular_mlops.core.spec import request_model


def test_spec_follows_the_training_data(churn):
    _, _, spec = churn
    kinds = {f.name: (f.kind, f.nullable) for f in spec.features}
    assert kinds == {
        "tenure_months": ("numeric", False),
        "monthly_charges": ("numeric", True),
        "contract": ("categorical", False),
        "region": ("categorical", True),
    }
    assert spec.classes == ["no", "yes"]


def test_request_model_is_strict_where_training_data_was(churn):
    _, _, spec = churn
    body = request_model(spec, max_rows=2)
    row = {"tenure_months": 3, "monthly_charges": None, "contract": "one-year", "region": None}
    assert len(body.model_validate({"rows": [row]}).rows) == 1
    with pytest.raises(ValidationError) as error:
        body.model_validate_json(
            '{"rows": [{"tenure_months": NaN, "monthly_charges": 1, "contract": null,'
            ' "region": "x", "plan": 1}]}'
        )
    problems = {(d.field, d.problem) for d in describe_errors(error.value)}
    assert problems == {
        ("rows.0.tenure_months", "Input should be a finite number"),
        ("rows.0.contract", "missing, never missing in training"),
    }  # "plan", a column the model does not know, is ignored: data.unknown_columns
    refusing = spec.model_copy(
        update={"reading": spec.reading.model_copy(update={"unknown_columns": "refuse"})}
    )
    with pytest.raises(ValidationError) as error:
        request_model(refusing, max_rows=2).model_validate({"rows": [{**row, "plan": 1}]})
    [problem] = describe_errors(error.value)
    assert (problem.field, problem.problem) == ("rows.0.plan", "Extra inputs are not permitted")
    with pytest.raises(ValidationError) as error:
        body.model_validate({"rows": [row, row, row]})
    [problem] = describe_errors(error.value)
    assert problem.field == "rows"
    assert problem.problem == "List should have at most 2 items after validation, not 3"


def _as_rows(frame: pd.DataFrame) -> list[list[object]]:
    return frame.astype(object).where(frame.notna(), None).to_numpy().tolist()


def test_fast_model_reproduces_the_pipeline(churn):
    frame, model, spec = churn
    features = frame.drop(columns=["churn"])
    fast = FastModel(model, [f.name for f in spec.features])
    fast.verify(features)
    unseen = features.head(5).assign(contract="lifetime", region=np.nan)
    np.testing.assert_allclose(fast.predict_proba(_as_rows(unseen)), model.predict_proba(unseen))
    gaps = unseen.assign(tenure_months=np.nan)  # the batch path imputes in place
    np.testing.assert_allclose(fast.predict_proba_frame(gaps), model.predict_proba(gaps))
    plain = PipelineScorer(model, list(features.columns))
    np.testing.assert_allclose(plain.predict_proba(_as_rows(unseen)), model.predict_proba(unseen))


def test_a_two_class_logistic_model_is_scored_by_one_dot_product(churn):
    """The default estimator skips scikit-learn's validated call; three classes, or a
    formula that would disagree with the pipeline, keep it."""
    frame, model, spec = churn
    features = frame.drop(columns=["churn"])
    names = [f.name for f in spec.features]
    fast = FastModel(model, names)
    assert fast.linear is not None
    fast.verify(features)
    np.testing.assert_allclose(
        fast.predict_proba(_as_rows(features)), model.predict_proba(features), atol=1e-12
    )
    off = FastModel(model, names)
    assert off.linear is not None
    off.linear = (off.linear[0], off.linear[1] + 1.0)  # a formula that disagrees
    off.verify(features)
    assert off.linear is None  # scikit-learn's own call, verified instead
    # and wherever one is built (a server, the stream consumer), without data: a
    # LogisticRegression whose two-class probability were not expit(x . w + b) (as
    # softmax of (-d, d) would give) keeps its own call
    odd = model.named_steps["classifier"]

    def softmax_of_pair(rows):
        positive = 1 / (1 + np.exp(-2 * (np.asarray(rows) @ odd.coef_[0] + odd.intercept_[0])))
        return np.column_stack([1 - positive, positive])

    odd.predict_proba = softmax_of_pair
    try:
        fast = FastModel(model, names)
        assert fast.linear is None
        served = fast.predict_proba(_as_rows(features))
        np.testing.assert_allclose(served, model.predict_proba(features), atol=1e-12)
    finally:
        del odd.predict_proba

    from tabular_mlops.core.config import TrainingConfig
    from tabular_mlops.core.model_factory import fit_model

    three = frame.assign(churn=np.where(frame["tenure_months"] > 24, "long", frame["churn"]))
    multi, _ = fit_model(three, "churn", TrainingConfig())
    assert len(multi.classes_) == 3
    fast = FastModel(multi, names)
    assert fast.linear is None
    fast.verify(three.drop(columns=["churn"]))


def test_none_and_nan_are_the_same_missing_value_to_the_model(churn):
    frame, model, _ = churn
    features = frame.drop(columns=["churn"]).head(20)
    with_none = features.assign(region=pd.Series([None] * len(features), dtype=object))
    with_nan = features.assign(region=np.nan)
    np.testing.assert_allclose(model.predict_proba(with_none), model.predict_proba(with_nan))


def test_fast_model_refuses_a_pipeline_of_another_shape(churn):
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import Pipeline

    frame, _, _ = churn
    numeric = frame[["tenure_months"]].assign(churn=frame["churn"])
    other = Pipeline([("clf", LogisticRegression())]).fit(
        numeric[["tenure_months"]], numeric["churn"]
    )
    with pytest.raises(UnsupportedPipelineError):
        FastModel(other, ["tenure_months"])


def test_bento_model_names_are_sanitised():
    assert bento_model_name("Churn Model v2") == "churn_model_v2"


def test_every_writer_has_its_own_log_file_and_all_are_read(tmp_path):
    from datetime import UTC, datetime

    from tabular_mlops.serving.inference_log import (
        InferenceLogWriter,
        InferenceRecord,
        log_file,
        read_records,
    )

    now = datetime.now(UTC)
    record = InferenceRecord(
        request_id="r1",
        timestamp=now,
        model_name="m",
        model_version="1",
        inputs={"x": 1.0},
        prediction="yes",
        probabilities={"yes": 0.9, "no": 0.1},
    )
    writer = InferenceLogWriter(tmp_path)
    writer.write([record])
    writer.close()
    assert log_file(tmp_path, now).exists()  # named after this host and process
    other_pod = tmp_path / f"requests-{now:%Y-%m-%d}-other-pod-1.jsonl"
    other_pod.write_text(record.model_copy(update={"request_id": "r2"}).model_dump_json() + "\n{")
    logged = read_records(tmp_path)
    assert sorted(logged["request_id"]) == ["r1", "r2"]  # a torn line is skipped...
    assert logged.attrs["unreadable_lines"] == 1  # ...and counted


def test_a_service_record_written_by_an_earlier_version_still_names_its_process():
    from tabular_mlops.adapters.deployment.target import LocalProcess, RunningService

    flat = (
        '{"model_name": "m", "model_version": "1", "bento_tag": "b:1", '
        '"url": "http://127.0.0.1:1", "started_at": "2026-11-24T10:00:00Z", "target": "local", '
        '"pid": 123, "port": 1, "log_file": "x.log", "namespace": null, "deployment": null, '
        '"image": null}'
    )
    assert RunningService.model_validate_json(flat).runs_as == LocalProcess(
        pid=123, port=1, log_file="x.log"
    )


def test_a_pid_file_naming_another_process_signals_nothing(tmp_path):
    """A stored pid is checked to still be the server it names before it is signalled."""
    import json
    import os

    from tabular_mlops.adapters.servers import stop_mlflow
    from tabular_mlops.core.config import MlflowServerSpec

    spec = MlflowServerSpec(
        port=1, backend_store=tmp_path / "mlflow.db", artifacts_destination=tmp_path / "a"
    )
    pid_file = tmp_path / "mlflow-server.pid"
    pid_file.write_text(json.dumps({"pid": os.getpid(), "started": 1.0}))  # this test's pid
    assert stop_mlflow(spec) is False  # not running: this pid is someone else now
    assert not pid_file.exists()


def test_a_local_zenml_server_that_does_not_start_is_named_with_its_port_and_the_fix(
    monkeypatch,
):
    from zenml.zen_server.deploy.exceptions import ServerDeploymentError

    from tabular_mlops.adapters import compat, servers

    def refuse(host: str, port: int) -> str:
        raise ServerDeploymentError("the daemon exited")

    monkeypatch.setattr(servers, "answers", lambda url: False)
    monkeypatch.setattr(compat, "stop_local_zenml_server", lambda: None)
    monkeypatch.setattr(compat, "start_local_zenml_server", refuse)
    with pytest.raises(servers.ServerError) as raised:
        servers.start_zenml(8999)
    message = str(raised.value)
    assert "did not start on 127.0.0.1:8999: the daemon exited" in message
    assert "Fix: check that nothing else listens on port 8999" in message


def test_a_deployment_stops_a_supervisor_an_earlier_version_started(tmp_path):
    """A supervisor of a version that recorded wall-clock starts would take this version's
    records for dead processes and start them again: a deployment (which takes the
    model's lock) stops it; one of this version is left alone."""
    import subprocess
    import sys

    import psutil

    from tabular_mlops.adapters.deployment.local import (
        LocalProcessTarget,
        SupervisorProcess,
        _write,
        state_file,
    )
    from tabular_mlops.adapters.processes import identity
    from tabular_mlops.core.config import LocalServingConfig, ServingConfig

    target = LocalProcessTarget(ServingConfig(), LocalServingConfig(state_dir=tmp_path, port=65000))
    sleeper = [sys.executable, "-c", "import time; time.sleep(60)"]
    older, current = subprocess.Popen(sleeper), subprocess.Popen(sleeper)
    try:
        for name, process, started in (
            ("m", older, psutil.Process(older.pid).create_time()),  # seconds since 1970
            ("n", current, identity(current.pid)),
        ):
            record = SupervisorProcess(pid=process.pid, started=started, log_file="x.log")
            _write(state_file(tmp_path, name, ".supervisor"), record)
            target._acquire(name)
            target._release(name)
        assert older.wait(timeout=10) == -15  # SIGTERM
        assert current.poll() is None
    finally:
        older.kill()
        current.kill()


@pytest.fixture
def service(churn, tmp_path):
    """The prediction app with the churn model bound, as a worker serves it."""
    from fastapi.testclient import TestClient

    from tabular_mlops.core.scoring import FastModel
    from tabular_mlops.core.spec import ServingSettings
    from tabular_mlops.serving.app import bind, create_app

    _, model, spec = churn
    settings = ServingSettings(
        model_tag="churn:1", max_batch_rows=5, tokens_file=str(_tokens_file(tmp_path))
    )
    app = create_app(spec, settings)
    bind(app, FastModel(model, [f.name for f in spec.features]), None)
    row = {
        "tenure_months": 12.0,
        "monthly_charges": 70.5,
        "contract": "one-year",
        "region": "north",
    }
    app.state.churn = churn
    return TestClient(app), row


#: the deployment's tokens in these tests (``serving/credentials.py``)
TOKENS = {"feedback": "f33dback", "admin": "adm1n", "source": "s3cret"}
FEEDBACK_AUTH = {"authorization": f"Bearer {TOKENS['feedback']}"}


def _tokens_file(directory):
    from tabular_mlops.serving.credentials import Tokens, write_tokens

    path = directory / "secrets" / "m.tokens.json"
    write_tokens(path, Tokens(current=TOKENS))
    return path


def test_the_contract_takes_json_numbers_not_text_or_booleans(service):
    client, row = service
    assert client.post("/predict", json={"rows": [row]}).status_code == 200
    for value in ("17.99", True):
        answer = client.post("/predict", json={"rows": [{**row, "tenure_months": value}]})
        assert answer.status_code == 400
        [problem] = answer.json()["detail"]
        assert problem["field"] == "rows.0.tenure_months"


def test_only_json_is_scored(service):
    client, row = service
    import json

    for media_type in ("text/plain", "application/x-www-form-urlencoded", None):
        headers = {"content-type": media_type} if media_type else {}
        answer = client.post("/predict", content=json.dumps({"rows": [row]}), headers=headers)
        assert answer.status_code == 415
        assert answer.json()["detail"][0]["field"] == "content-type"


def test_too_many_rows_are_refused_by_size_before_they_are_read(service):
    client, row = service
    answer = client.post("/predict", json={"rows": [row] * 5000})
    assert answer.status_code == 413
    assert "send at most 5 rows" in answer.json()["detail"][0]["problem"]


def test_the_live_version_takes_feedback_itself_outside_an_experiment(churn, tmp_path):
    """Without an experiment the stable address is the live version's own (no router in
    between): feedback posted there is checked as the router checks it and stored."""
    from fastapi.testclient import TestClient

    from tabular_mlops.core.scoring import FastModel
    from tabular_mlops.core.spec import ServingSettings
    from tabular_mlops.serving.app import bind, create_app

    _, model, spec = churn
    settings = ServingSettings(model_tag="churn:1", inference_log_dir=str(tmp_path),
                               tokens_file=str(_tokens_file(tmp_path)))  # fmt: skip
    app = create_app(spec, settings)
    bind(app, FastModel(model, [f.name for f in spec.features]), None)
    client = TestClient(app, headers=FEEDBACK_AUTH)
    two = [{"request_id": "r1", "label": "yes"}, {"request_id": "r2", "reward": 0.5}]
    anonymous = TestClient(app).post("/feedback", json=two)
    assert anonymous.status_code == 401 and anonymous.headers["www-authenticate"] == "Bearer"
    wrong = TestClient(app).post("/feedback", json=two, headers={"authorization": "Bearer no"})
    assert wrong.status_code == 403 and wrong.json()["detail"][0]["field"] == "authorization"
    admin = {"authorization": f"Bearer {TOKENS['admin']}"}  # another role's token
    assert TestClient(app).post("/feedback", json=two, headers=admin).status_code == 403
    stored = client.post("/feedback", json=two)
    assert stored.status_code == 202 and stored.json() == {"accepted": 2, "matched": 0}
    refused = client.post("/feedback", json={"request_id": "r3", "label": "yes", "reward": 1})
    assert refused.status_code == 400
    assert refused.json()["detail"][0]["problem"].endswith("give either label or reward")
    plain = client.post("/feedback", content=b'{"request_id": "r4", "label": "yes"}',
                        headers={"content-type": "text/plain"})  # fmt: skip
    assert plain.status_code == 415
    deep = client.post("/feedback", content=b"[" * 10_000 + b"]" * 10_000,
                       headers={"content-type": "application/json"})  # fmt: skip
    assert deep.status_code == 400

    def chunks():  # no content-length: counted as read
        for _ in range(40):
            yield b" " * 65536

    huge = client.post("/feedback", content=chunks(), headers={"content-type": "application/json"})
    assert huge.status_code == 413
    app.state.feedback_log.close()
    [log] = tmp_path.glob("feedback-*.jsonl")
    lines = [json.loads(line) for line in log.read_text().splitlines()]
    assert [(x["request_id"], x["version"], x["experiment"]) for x in lines] == [
        ("r1", spec.model_version, ""), ("r2", spec.model_version, "")]  # fmt: skip
    off = create_app(spec, ServingSettings(model_tag="churn:1", tokens_file=settings.tokens_file))
    answer = TestClient(off, headers=FEEDBACK_AUTH).post(
        "/feedback", json={"request_id": "r1", "label": "yes"}
    )
    assert answer.status_code == 503 and "inference log is off" in answer.json()["error"]


def _app_reading(churn, **reading):
    from fastapi.testclient import TestClient

    from tabular_mlops.core.scoring import FastModel
    from tabular_mlops.core.spec import ServingSettings
    from tabular_mlops.serving.app import bind, create_app

    _, model, spec = churn
    spec = spec.model_copy(update={"reading": spec.reading.model_copy(update=reading)})
    app = create_app(spec, ServingSettings(model_tag="churn:1", max_batch_rows=5))
    bind(app, FastModel(model, [f.name for f in spec.features]), None)
    return TestClient(app)


def test_columns_the_model_does_not_use_are_ignored_or_refused_by_policy(service):
    client, row = service
    whole_record = {**row, "churn": "yes", "customer_id": "c-17"}
    ignoring = client.post("/predict", json={"rows": [whole_record]})
    assert ignoring.status_code == 200
    assert (
        ignoring.json()["predictions"]
        == client.post("/predict", json={"rows": [row]}).json()["predictions"]
    )
    refusing = _app_reading(client.app.state.churn, unknown_columns="refuse")
    answer = refusing.post("/predict", json={"rows": [whole_record]})
    assert answer.status_code == 400
    assert answer.json()["detail"] == [
        {"field": "rows.0.customer_id", "problem": "Extra inputs are not permitted"}
    ]  # the target is a column the contract knows: read without it, never refused


def test_missing_markers_mean_missing_as_in_training(service):
    client, row = service
    as_none = client.post("/predict", json={"rows": [{**row, "region": None}]}).json()
    for marker in ("?", "NA", ""):
        answer = client.post("/predict", json={"rows": [{**row, "region": marker}]})
        assert answer.json()["predictions"] == as_none["predictions"], marker
    # a numeric field's marker is missing too; where training never had one, refused
    answer = client.post("/predict", json={"rows": [{**row, "tenure_months": "?"}]})
    assert answer.status_code == 400
    assert answer.json()["detail"] == [
        {"field": "rows.0.tenure_months", "problem": "missing, never missing in training"}
    ]


def test_an_error_answer_lists_at_most_twenty_problems(service):
    client, row = service
    bad = {**row, **{f"unknown_{i}": 1 for i in range(100)}}
    answer = _app_reading(client.app.state.churn, unknown_columns="refuse").post(
        "/predict", json={"rows": [bad]}
    )
    assert answer.status_code == 400
    detail = answer.json()["detail"]
    assert len(detail) == 21
    assert detail[-1]["problem"] == "80 more problems"


def test_a_request_id_must_be_short_and_plain(service):
    client, row = service
    answer = client.post("/predict", json={"rows": [row]}, headers={"x-request-id": "x" * 5000})
    assert answer.status_code == 400
    assert answer.json()["detail"][0]["field"] == "x-request-id"


def test_each_answer_has_its_own_id_and_keeps_the_clients_as_correlation_id(service):
    """Two clients sending one x-request-id never share an answer id (feedback names it)."""
    client, row = service
    first, second = (
        client.post("/predict", json={"rows": [row]}, headers={"x-request-id": "order-42"})
        for _ in range(2)
    )
    ids = {first.json()["request_id"], second.json()["request_id"]}
    assert len(ids) == 2 and "order-42" not in ids
    assert first.json()["correlation_id"] == second.json()["correlation_id"] == "order-42"
    assert first.headers["x-request-id"] == first.json()["request_id"]
    # what the rollout's latency guardrail reads: this request's scoring, in CPU ms
    assert 0 < float(first.headers["x-scoring-cpu-ms"]) < 1000
    plain = client.post("/predict", json={"rows": [row]}).json()
    assert "correlation_id" not in plain and len(plain["request_id"]) == 32


def test_rows_the_model_cannot_score_are_refused_not_answered_with_nan(service, churn):
    """A stand-in scorer gives what an overflow gives: NaN probabilities."""
    import numpy as np

    from tabular_mlops.serving.app import bind

    client, row = service

    class Overflowing:
        def predict_proba(self, rows):
            return np.array([[np.nan, np.nan]] * len(rows))

    bind(client.app, Overflowing(), None)
    answer = client.post("/predict", json={"rows": [row, {**row, "monthly_charges": 1e308}]})
    assert answer.status_code == 422
    assert [d["field"] for d in answer.json()["detail"]] == ["rows.0", "rows.1.monthly_charges"]
    assert "outside the range training covered" in answer.json()["detail"][1]["problem"]


def test_a_key_given_twice_is_refused(service):
    client, row = service
    body = '{"rows": [{"tenure_months": 1.0, ' + json.dumps(row)[1:] + "]}"
    answer = client.post("/predict", content=body, headers={"content-type": "application/json"})
    assert answer.status_code == 400
    assert answer.json()["detail"] == [
        {"field": "(body)", "problem": "duplicate key 'tenure_months'"}
    ]


def test_the_row_count_is_checked_before_any_row(service):
    client, _ = service
    answer = client.post("/predict", json={"rows": [{"junk": i} for i in range(6)]})
    assert answer.status_code == 400
    assert answer.json()["detail"] == [
        {"field": "rows", "problem": "List should have at most 5 items, not 6"}
    ]


def test_oversized_headers_are_refused(service):
    client, row = service
    answer = client.post("/predict", json={"rows": [row]}, headers={"x-padding": "p" * 9000})
    assert answer.status_code == 431


def test_only_the_deployment_can_tag_its_own_requests(service, tmp_path):
    """``x-request-source`` keeps requests out of monitoring: it needs the deployment's token."""
    from tabular_mlops.core.scoring import FastModel
    from tabular_mlops.serving.app import bind
    from tabular_mlops.serving.inference_log import InferenceLogWriter, read_records

    client, row = service
    _, model, spec = service_churn = client.app.state.churn
    del service_churn
    log = InferenceLogWriter(tmp_path)
    bind(client.app, FastModel(model, [f.name for f in spec.features]), log)
    spoofed = client.post(
        "/predict", json={"rows": [row]}, headers={"x-request-source": "smoke-test"}
    )
    assert spoofed.status_code == 403
    assert spoofed.json()["detail"][0]["field"] == "x-request-source"
    wrong = {"x-request-source": "smoke-test", "x-source-token": "guess"}
    assert client.post("/predict", json={"rows": [row]}, headers=wrong).status_code == 403
    mine = {"x-request-source": "smoke-test", "x-source-token": "s3cret"}
    assert client.post("/predict", json={"rows": [row]}, headers=mine).status_code == 200
    assert client.post("/predict", json={"rows": [row]}).status_code == 200
    log.close()
    assert sorted(read_records(tmp_path)["source"]) == ["live", "smoke-test"]


def test_a_shadow_batch_is_answered_and_logged_request_by_request(service, tmp_path):
    """The router's batch of mirrored requests: one scoring call, each request answered
    (or refused) on its own and logged under its own id as shadow; only with the token."""
    from tabular_mlops.core.scoring import FastModel
    from tabular_mlops.core.spec import SHADOW_PATH
    from tabular_mlops.serving.app import bind
    from tabular_mlops.serving.inference_log import InferenceLogWriter, read_records

    client, row = service
    _, model, spec = client.app.state.churn
    log = InferenceLogWriter(tmp_path)
    bind(client.app, FastModel(model, [f.name for f in spec.features]), log)
    single = client.post("/predict", json={"rows": [row]}).json()["predictions"][0]["label"]
    batch = {"requests": [
        {"request_id": "a", "body": json.dumps({"rows": [row]})},
        {"request_id": "b", "body": json.dumps({"rows": [{**row, "tenure_months": "x"}]})},
        {"request_id": "c", "body": json.dumps({"rows": [row, row]})},
        {"request_id": "d", "body": "{not json"},
    ]}  # fmt: skip
    assert client.post(SHADOW_PATH, json=batch).status_code == 403  # no token: not the router
    tagged = {"x-request-source": "shadow", "x-source-token": "s3cret"}
    answer = client.post(SHADOW_PATH, json=batch, headers=tagged)
    assert answer.status_code == 200
    answers = answer.json()["answers"]
    own_times = [item.pop("ms") for item in answers if item["status"] == 200]
    assert len(own_times) == 2 and all(ms > 0 for ms in own_times)  # each request's own
    cpu_times = [item.pop("cpu_ms") for item in answers if item["status"] == 200]
    assert all(0 < cpu <= ms for cpu, ms in zip(cpu_times, own_times, strict=True))
    assert answers == [
        {"request_id": "a", "status": 200, "labels": [single]},
        {"request_id": "b", "status": 400},
        {"request_id": "c", "status": 200, "labels": [single, single]},
        {"request_id": "d", "status": 400},
    ]
    bad_id = {"requests": [{"request_id": "x" * 500, "body": "{}"}]}
    refused = client.post(SHADOW_PATH, json=bad_id, headers=tagged)
    assert refused.status_code == 400
    assert refused.json()["detail"][0]["field"] == "requests.0.request_id"
    log.close()
    logged = read_records(tmp_path)
    shadow = logged[logged["source"] == "shadow"]
    assert sorted(zip(shadow["request_id"], shadow["row"], strict=True)) == [
        ("a", 0),
        ("c", 0),
        ("c", 1),
    ]


def test_the_openapi_document_resolves_and_declares_every_answer(service):
    from openapi_spec_validator import validate

    client, _ = service
    document = client.get("/openapi.json").json()
    validate(document)
    operation = document["paths"]["/predict"]["post"]
    assert set(operation["responses"]) == {"200", "400", "403", "413", "415", "422", "431", "503"}
    assert "$defs" not in json.dumps(document)
    labels = document["components"]["schemas"]["Prediction"]["properties"]["label"]
    assert labels["enum"] == ["no", "yes"]


def test_the_router_switches_on_a_new_routes_file_and_keeps_its_routes_on_a_bad_one(tmp_path):
    import asyncio

    from tabular_mlops.serving.router import (
        Router,
        Routes,
        Upstream,
        write_routes,
    )

    routes_file = tmp_path / "m.routes.json"

    async def scenario() -> list[dict]:
        router = Router(routes_file)
        seen = []
        for generation, url in ((1, "http://127.0.0.1:1"), (2, "http://127.0.0.1:2")):
            upstream = Upstream(url=url, model_version=str(generation))
            write_routes(routes_file, Routes(model_name="m", generation=generation,
                                             upstreams=[upstream]))  # fmt: skip
            router.reload()
            seen.append(router.status())
        routes_file.write_text('{"model_name": "m", "upstreams": []}')  # no upstream
        router.reload()
        seen.append(router.status())
        await asyncio.sleep(0)  # the idle old pool closes
        return seen

    first, second, after_bad = asyncio.run(scenario())
    assert first["live"]["url"] == "http://127.0.0.1:1"
    assert second["live"]["url"] == "http://127.0.0.1:2" and second["generation"] == 2
    assert second["draining"] == []  # nothing was in flight on the old upstream
    assert after_bad["generation"] == 2 and after_bad["live"]["url"] == "http://127.0.0.1:2"


def test_feedback_is_checked_item_by_item_and_only_answers_given_are_evidence(tmp_path):
    """As an attacker would try: a reward out of range, no request id, garbage, nesting
    deeper than the parser goes (400, never a 500); labels for ids the router never
    answered, and a second label for a row already fed back, are counted apart and never
    written: nobody relabels an experiment's answers."""
    import asyncio

    from tabular_mlops.serving.router import (
        Router,
        Routes,
        Upstream,
        write_routes,
    )

    routes_file = tmp_path / "m.routes.json"
    write_routes(routes_file, Routes(model_name="m", evidence_dir=str(tmp_path / "evidence"),
                                     upstreams=[Upstream(url="http://127.0.0.1:1",
                                                         model_version="1")]))  # fmt: skip
    deep = b"[" * 10_000 + b"]" * 10_000

    async def scenario() -> tuple[list[tuple[int, dict]], str]:
        router = Router(routes_file)
        router.reload()
        router.remembered["r1"] = (0, ["yes"])  # the router answered r1 (its row 0: "yes")
        answers = []
        two = b'[{"request_id": "r1", "label": "yes"}, {"request_id": "r2", "reward": 1}]'
        flip = b'{"request_id": "r1", "label": "no"}'
        twice = b'{"request_id": "r1", "request_id": "r3", "label": "no"}'
        for body in (b'{"request_id": "r1", "reward": 2}', b"[{}]", b"nope", deep, two, flip,
                     twice):  # fmt: skip
            status, _, answer = router._feedback(body)
            answers.append((status, json.loads(answer)))
        router.feedback_log.close()
        return answers, router.metrics()

    (reward, missing, garbage, nested, stored, flipped, keyed), metrics = asyncio.run(scenario())
    assert reward == (400, {"error": "invalid feedback", "detail": [
        {"field": "reward", "problem": "Input should be less than or equal to 1"}]})  # fmt: skip
    assert missing[1]["detail"][0]["field"] == "0.request_id"
    assert garbage[1]["detail"][0]["problem"].startswith("Invalid JSON")
    assert nested[0] == 400 and nested[1]["detail"][0]["problem"].startswith("Invalid JSON")
    assert keyed[0] == 400 and "request_id" in keyed[1]["detail"][0]["problem"]
    assert stored == (202, {"accepted": 1, "matched": 1, "unknown": 1, "repeated": 0})
    assert flipped == (202, {"accepted": 0, "matched": 0, "unknown": 0, "repeated": 1})
    from prometheus_client.parser import text_string_to_metric_families

    samples = {
        (s.name, s.labels.get("log"), s.labels.get("outcome")): s.value
        for family in text_string_to_metric_families(metrics)
        for s in family.samples
    }  # the router's own /-/metrics: its evidence logs' lines
    assert samples[("tabular_router_log_lines_total", "feedback", "written")] == 1
    assert samples[("tabular_router_log_lines_total", "routing", "dropped")] == 0
    assert samples[("tabular_router_feedback_refused_total", None, None)] == 2
    [log] = (tmp_path / "evidence").glob("feedback-*.jsonl")
    [line] = [json.loads(line) for line in log.read_text().splitlines()]
    assert (line["request_id"], line["label"], line["version"]) == ("r1", "yes", "1")


def test_the_routers_feedback_takes_json_only_and_counts_the_bytes_it_reads(tmp_path):
    """Without the feedback token: 401, with a wrong one: 403, nothing read or written;
    the router's own endpoints take the admin token and GET only. ``text/plain`` is
    refused (415) and a chunked body over the limit is refused (413) after reading no
    more than the limit: the router's memory stays bounded."""
    import asyncio

    from tabular_mlops.serving.credentials import TokenFile
    from tabular_mlops.serving.feedback import MAX_FEEDBACK_BYTES
    from tabular_mlops.serving.router import (
        MAX_BODY_BYTES,
        Router,
        Routes,
        Upstream,
        write_routes,
    )

    routes_file = tmp_path / "m.routes.json"
    write_routes(routes_file, Routes(model_name="m", evidence_dir=str(tmp_path / "evidence"),
                                     upstreams=[Upstream(url="http://127.0.0.1:1",
                                                         model_version="1")]))  # fmt: skip

    tokens = TokenFile(_tokens_file(tmp_path))
    auth = (b"authorization", f"Bearer {TOKENS['feedback']}".encode())

    async def call(
        content_type: bytes, chunks: int, credential=auth, path="/feedback", method="POST"
    ) -> tuple[int, dict, int]:
        router = Router(routes_file, tokens)
        router.reload()
        read = 0

        async def receive():
            nonlocal read
            read += 1
            return {"type": "http.request", "body": b" " * 65536, "more_body": read < chunks}

        sent: list[dict] = []

        async def send(message):
            sent.append(message)

        headers = [(b"content-type", content_type), *([credential] if credential else [])]
        scope = {"type": "http", "path": path, "method": method, "headers": headers}
        await router(scope, receive, send)
        router.feedback_log.close()
        return sent[0]["status"], json.loads(sent[1]["body"]), read

    # a credential first: nothing is read without one, a wrong one, or another role's
    assert asyncio.run(call(b"application/json", 1, None))[::2] == (401, 0)
    assert asyncio.run(call(b"application/json", 1, (b"authorization", b"Bearer x")))[0] == 403
    admin = (b"authorization", f"Bearer {TOKENS['admin']}".encode())
    assert asyncio.run(call(b"application/json", 1, admin))[0] == 403
    # the router's own endpoints: GET with the admin token; /-/ready for anyone
    assert asyncio.run(call(b"", 0, None, "/-/routes", "GET"))[0] == 401
    assert asyncio.run(call(b"", 0, auth, "/-/routes", "GET"))[0] == 403
    status, routes, _ = asyncio.run(call(b"", 0, admin, "/-/routes", "GET"))
    assert status == 200 and routes["model_name"] == "m"
    assert asyncio.run(call(b"", 0, None, "/-/metrics", "GET"))[0] == 401
    assert asyncio.run(call(b"", 0, admin, "/-/routes", "DELETE"))[0] == 405
    assert asyncio.run(call(b"", 0, None, "/-/ready", "GET"))[:2] == (200, {"ready": True})
    written = [log.read_text() for log in (tmp_path / "evidence").glob("feedback-*.jsonl")]
    assert not any(written)

    status, answer, _ = asyncio.run(call(b"text/plain", 1))
    assert status == 415 and answer["detail"][0]["field"] == "content-type"
    status, answer, read = asyncio.run(call(b"application/json", 5000))  # 300 MB offered
    assert status == 413 and answer["error"] == "feedback too large"
    assert read * 65536 <= MAX_FEEDBACK_BYTES + 65536
    # /predict: the router's own limit, counted on the bytes read (no content-length)
    status, answer, read = asyncio.run(call(b"application/json", 1100, None, "/predict"))
    assert status == 413 and answer["detail"][0]["field"] == "(body)"  # 70 MiB offered
    assert read * 65536 <= MAX_BODY_BYTES + 65536


class _TimedScorer:
    """A scorer that burns ``cpu`` seconds of CPU and sleeps ``idle`` seconds a call."""

    def __init__(self, cpu: float, idle: float = 0.0) -> None:
        self.cpu, self.idle, self.calls = cpu, idle, 0

    def predict_proba(self, rows):
        import time

        self.calls += 1
        started = time.thread_time()
        while time.thread_time() - started < self.cpu:
            pass
        time.sleep(self.idle)
        return np.tile([0.5, 0.5], (len(rows), 1))


def test_the_latency_gate_counts_cpu_time_and_measures_a_slow_scorer_on_fewer_calls():
    """A busy machine delays a call without adding to its CPU time: the sleep is not
    counted. A slow scorer is measured on fewer single-row calls, never under MIN_CALLS."""
    from tabular_mlops.core import latency

    def decide(probabilities):
        return np.zeros(len(probabilities), dtype=int)

    rows = [[1.0, 2.0]] * 10
    waiting = _TimedScorer(cpu=0.0, idle=0.002)
    measured = latency.measure(waiting, decide, rows, calls=20, rounds=2, batch_rows=10)
    assert measured.single_row_p99_ms < 1.0  # 2 ms asleep a call, not counted
    assert waiting.calls == 1 + 2 * (20 + 1)  # warm-up, then each round's calls and batch
    slow = _TimedScorer(cpu=0.004)
    latency.measure(slow, decide, rows, rounds=2, batch_rows=10, seconds_per_round=0.04)
    assert slow.calls == 1 + 2 * (latency.MIN_CALLS + 1)


def test_the_latency_gate_runs_one_thread_per_pool_as_a_served_worker_does():
    """A pool's threads spin after each call, spending more CPU the busier the machine:
    the gate measures with one thread per pool, as each served worker runs."""
    from threadpoolctl import threadpool_info, threadpool_limits

    from tabular_mlops.core import latency

    seen: list[int] = []

    class Probe:
        def predict_proba(self, rows):
            seen.extend(pool["num_threads"] for pool in threadpool_info())
            return np.tile([0.5, 0.5], (len(rows), 1))

    with threadpool_limits(limits=2):
        assert {pool["num_threads"] for pool in threadpool_info()} == {2}
        latency.measure(Probe(), lambda p: np.zeros(len(p), dtype=int), [[1.0]], calls=5,
                        rounds=1, batch_rows=10)  # fmt: skip
    assert seen and set(seen) == {1}


def test_a_full_disk_drops_and_counts_lines_and_the_log_writes_again_on_a_line_of_its_own(
    tmp_path,
):
    """A write cut short (ENOSPC) leaves a torn line: the lines are dropped and counted, the
    writer's thread lives on, and the next lines start on a line of their own."""
    import collections
    import errno
    import time
    from datetime import UTC, datetime

    from tabular_mlops.serving.inference_log import JsonLinesLog, log_file

    counts: collections.Counter[str] = collections.Counter()
    log = JsonLinesLog(tmp_path, flush_interval=0.02, counted=lambda o, n: counts.update({o: n}))
    path = log_file(tmp_path, datetime.now(UTC))
    working = log._write

    def full_disk(lines, after_failure):
        with path.open("ab") as handle:
            handle.write(b'{"torn')
        raise OSError(errno.ENOSPC, "No space left on device")

    def wait_for(outcome: str) -> None:
        deadline = time.monotonic() + 5
        while counts[outcome] == 0 and time.monotonic() < deadline:
            time.sleep(0.01)

    assert log.health() == "ok"
    log._write = full_disk
    log.append('{"a": 1}')
    wait_for("dropped")
    assert log.health().startswith("dropping lines: 1 dropped")  # /readyz says so
    log._write = working
    log.append('{"b": 2}')
    wait_for("written")
    log.close()
    assert log.health() == "writing again; 1 lines were dropped earlier"
    torn, gap, resumed = path.read_text().splitlines()
    assert (torn, resumed) == ('{"torn', '{"b": 2}')
    assert json.loads(gap)["gap"]["dropped"] == 1  # the loss stays in the log itself
    assert (log.dropped, log.written) == (1, 1) and counts == {"dropped": 1, "written": 1}


def test_monitoring_reads_the_rows_a_server_could_not_log_from_its_gap_lines(tmp_path):
    """A gap line is no unreadable line: its rows count as dropped when the gap ended
    inside the window read, and not otherwise."""
    from datetime import UTC, datetime, timedelta

    from tabular_mlops.serving.inference_log import gap_line, lost_lines, read_records, row_lines

    now = datetime.now(UTC)
    rows = row_lines("m", "1", "live", ["x"], [("r1", [1.0], "yes", {"yes": 0.9})])
    path = tmp_path / "requests-2026-12-03-host-1.jsonl"
    path.write_text("\n".join([*rows, gap_line(7, now - timedelta(minutes=5)), '{"torn']) + "\n")
    frame = read_records(tmp_path, now - timedelta(hours=1), now + timedelta(hours=1))
    assert (len(frame), frame.attrs["dropped_rows"], frame.attrs["unreadable_lines"]) == (1, 7, 1)
    later = read_records(tmp_path, now + timedelta(hours=1), now + timedelta(hours=2))
    assert later.attrs["dropped_rows"] == 0
    # what a rollout's evidence lost since it began, from the same lines
    assert lost_lines(tmp_path, "requests", now - timedelta(hours=1)) == 7
    assert lost_lines(tmp_path, "requests", now + timedelta(hours=1)) == 0


def test_the_supervisor_gives_up_on_a_process_that_keeps_dying():
    from tabular_mlops.adapters.deployment.supervisor import RestartBudget

    budget = RestartBudget(limit=3, window=60)
    assert [budget.allow("router", now=t) for t in (0, 1, 2, 3)] == [True, True, True, False]
    assert not budget.worth_trying("router", now=30)  # the supervisor stops looking
    assert budget.allow("version 2", now=3)  # each process has a budget of its own
    assert budget.allow("router", now=61)  # the first restart left the window


def test_a_router_started_again_resumes_the_experiment_from_its_evidence(tmp_path):
    """A router killed mid-canary and started again (or another replica) reads the
    experiment's routing and feedback logs: the same step, counters, latencies, feedback
    and verdict as the one that wrote them."""
    import asyncio

    from tabular_mlops.core.rollout import RolloutPlan
    from tabular_mlops.serving.router import (
        Router,
        Routes,
        Upstream,
        write_routes,
    )

    routes_file = tmp_path / "m.routes.json"
    plan = RolloutPlan(strategy="canary", hold_requests=30, canary_steps=[0.1, 0.5, 1.0])
    write_routes(routes_file, Routes(
        model_name="m", experiment="m-v2-1", plan=plan, evidence_dir=str(tmp_path / "ev"),
        upstreams=[Upstream(url="http://127.0.0.1:1", model_version="1"),
                   Upstream(url="http://127.0.0.1:2", model_version="2")],
    ))  # fmt: skip

    def comparable(status: dict) -> dict:
        return {k: v for k, v in status.items() if k not in ("pid", "forwarded", "evidence_logs")}

    async def first() -> dict:
        router = Router(routes_file)
        router.reload()
        for n in range(100):  # the candidate answers 40: a step up after 30, 10 since
            index = 1 if n % 5 < 2 else 0
            arm = router.arms[index]
            arm.requests += 1
            arm.latencies_ms.append(1.0 + n)
            arm.cpu_ms.append(0.5 + n % 3)
            router.at_step += index == 1
            router.remembered[f"r{n}"] = (index, ["yes"])
            router._record("answered", arm, f"r{n}", 200, 1.0 + n, ["yes"], cpu_ms=0.5 + n % 3)
            router._guard()
        router._feedback(b'[{"request_id": "r1", "label": "yes"}, {"request_id": "r2", '
                         b'"label": "no"}]')  # fmt: skip
        status = comparable(router.status())
        for log in (router.routing_log, router.feedback_log):
            log.close()
        await asyncio.gather(*(arm.pool.session.close() for arm in router.arms))
        return status

    async def again() -> dict:
        router = Router(routes_file)
        router.reload()
        status = comparable(router.status())
        await asyncio.gather(*(arm.pool.session.close() for arm in router.arms))
        return status

    before = asyncio.run(first())
    assert before["canary_step"] == 1 and before["arms"][1]["requests"] == 40
    # the CPU windows began again at the step: both arms' since then, not before
    assert before["arms"][1]["scoring_cpu_p99_ms"] is not None
    assert before["arms"][1]["labelled"] == 1 and before["arms"][0]["labelled"] == 1
    assert asyncio.run(again()) == before


def test_the_canary_guardrail_judges_scoring_cpu_time_over_one_step_not_time_to_answer(
    tmp_path,
):
    """A candidate whose answers came slowly (a busy minute on the machine) but whose
    workers spent what the champion's did on each request steps up; one whose scoring
    costs twice the champion's and more than the budget is pulled back. Both arms are
    compared over the same step: the champion's cheap answers of an earlier step do not
    count against the candidate."""
    import asyncio

    from tabular_mlops.core.rollout import RolloutPlan
    from tabular_mlops.serving.router import Router, Routes, Upstream, _scoring_cpu_ms, write_routes

    assert _scoring_cpu_ms([(b"X-Scoring-Cpu-Ms", b"0.412")]) == 0.412
    assert _scoring_cpu_ms([(b"x-scoring-cpu-ms", b"n/a")]) is None
    assert _scoring_cpu_ms([]) is None

    def routes(experiment: str) -> Path:
        routes_file = tmp_path / experiment / "m.routes.json"
        routes_file.parent.mkdir()
        plan = RolloutPlan(strategy="canary", hold_requests=30, canary_steps=[0.1, 0.5, 1.0],
                           latency_budget_ms=10)  # fmt: skip
        write_routes(routes_file, Routes(
            model_name="m", experiment=experiment, plan=plan,
            evidence_dir=str(tmp_path / experiment / "ev"),
            upstreams=[Upstream(url="http://127.0.0.1:1", model_version="1"),
                       Upstream(url="http://127.0.0.1:2", model_version="2")],
        ))  # fmt: skip
        return routes_file

    async def canary(experiment: str, candidate_cpu_ms: float) -> dict:
        router = Router(routes(experiment))
        router.reload()
        for _ in range(60):
            for index, (wall, cpu) in enumerate([(2.0, 4.0), (900.0, candidate_cpu_ms)]):
                arm = router.arms[index]
                arm.requests += 1
                arm.latencies_ms.append(wall)
                arm.cpu_ms.append(cpu)
                router.at_step += index == 1
                router._guard()
        status = router.status()
        for log in (router.routing_log, router.feedback_log):
            log.close()
        await asyncio.gather(*(arm.pool.session.close() for arm in router.arms))
        return status

    slow_to_answer = asyncio.run(canary("busy", candidate_cpu_ms=4.0))
    assert slow_to_answer["state"] != "rolled_back" and slow_to_answer["canary_step"] >= 1
    costly = asyncio.run(canary("costly", candidate_cpu_ms=12.0))
    assert costly["state"] == "rolled_back", costly
    assert "scoring CPU p99 12.0 ms" in costly["reason"]


def test_a_candidate_that_gets_no_connection_in_time_is_answered_by_the_champion(tmp_path):
    """No connection to the candidate within the router's connect timeout (a busy machine,
    or every pooled connection taken): nothing was sent, so the champion answers, and the
    client sees no 502."""
    import asyncio
    import contextlib

    import aiohttp

    from tabular_mlops.core.rollout import RolloutPlan
    from tabular_mlops.serving.router import Router, Routes, Upstream, write_routes

    routes_file = tmp_path / "m.routes.json"
    write_routes(routes_file, Routes(
        model_name="m", experiment="m-v2-1", plan=RolloutPlan(strategy="canary"),
        evidence_dir=str(tmp_path / "ev"),
        upstreams=[Upstream(url="http://127.0.0.1:1", model_version="1"),
                   Upstream(url="http://127.0.0.1:2", model_version="2")],
    ))  # fmt: skip

    class Answer:
        status, headers = 200, {"content-type": "application/json"}

        async def read(self) -> bytes:
            return b'{"model_version": "1"}'

    @contextlib.asynccontextmanager
    async def champion(*args, **kwargs):
        yield Answer()

    @contextlib.asynccontextmanager
    async def no_connection(*args, **kwargs):
        raise aiohttp.ConnectionTimeoutError("Connection timeout to host")
        yield

    async def scenario():
        router = Router(routes_file)
        router.reload()
        router.arms[0].pool.session.request = champion
        router.arms[1].pool.session.request = no_connection
        try:
            return await router._send(router.arms[1], "POST", "/predict", b"{}", {})
        finally:
            await asyncio.gather(*(arm.pool.session.close() for arm in router.arms))

    sent = asyncio.run(scenario())
    assert sent.answer[0] == 200 and b'"1"' in sent.answer[2]
    assert [pool.upstream.model_version for pool in sent.failed] == ["2"]


def test_a_stop_during_a_deployment_is_refused_naming_it(tmp_path):
    """`deploy --stop` while another command deploys: refused at once, naming the holder;
    otherwise the deployment would serve again moments after the stop said "Stopped"."""
    import subprocess
    import sys

    from tabular_mlops.adapters.deployment.local import (
        DeploymentInProgressError,
        LocalProcessTarget,
    )
    from tabular_mlops.core.config import LocalServingConfig, ServingConfig

    target = LocalProcessTarget(ServingConfig(), LocalServingConfig(state_dir=tmp_path, port=65000))
    lock = target._lock_file("m")
    holder = subprocess.Popen(
        [sys.executable, "-c", "import fcntl, sys, time; f = open(sys.argv[1], 'a+'); "
         "fcntl.flock(f, fcntl.LOCK_EX); f.write('pid 4242'); f.flush(); print(1, flush=True); "
         "time.sleep(60)", str(lock)],
        stdout=subprocess.PIPE, text=True,
    )  # fmt: skip
    try:
        assert holder.stdout is not None and holder.stdout.readline().strip() == "1"
        with pytest.raises(DeploymentInProgressError, match=r"in progress \(pid 4242\)"):
            target.forget("m")
    finally:
        holder.kill()
        holder.wait()
    target.forget("m")  # once it is over, the stop goes through


def test_a_served_model_file_that_is_not_the_packaged_one_is_never_loaded(churn, tmp_path):
    """A pickle is code: its hash is checked first, and the refusal names the model, the
    version and both hashes."""
    import hashlib

    import joblib
    from fastapi.testclient import TestClient

    from tabular_mlops.core.files import ModelFileChangedError
    from tabular_mlops.core.spec import ServingSettings
    from tabular_mlops.serving.app import create_app, load_model

    _, model, spec = churn
    joblib.dump(model, tmp_path / "model.pkl")
    packaged = hashlib.sha256((tmp_path / "model.pkl").read_bytes()).hexdigest()
    settings = ServingSettings(model_tag="churn:1", model_sha256=packaged)
    app = create_app(spec, settings)
    assert load_model(app, spec, settings, tmp_path) == "numpy"
    joblib.dump({"not": "the model"}, tmp_path / "model.pkl")
    swapped = hashlib.sha256((tmp_path / "model.pkl").read_bytes()).hexdigest()
    with pytest.raises(ModelFileChangedError) as refused:
        load_model(create_app(spec, settings), spec, settings, tmp_path)
    message = str(refused.value)
    assert f"model '{spec.model_name}' version {spec.model_version}" in message
    assert swapped in message and packaged in message
    assert TestClient(app).get("/readyz").status_code == 200  # the loaded one serves on


def test_predict_can_require_a_clients_api_key(churn, tmp_path):
    """Off by default; when required: 401 without a key, 403 with one that is no client's
    (or was revoked), 200 with a client's, and the deployment's smoke test passes by its
    source token. Keys are read again when the file changes."""
    from fastapi.testclient import TestClient

    from tabular_mlops.core.scoring import FastModel
    from tabular_mlops.core.spec import ServingSettings
    from tabular_mlops.serving.app import bind, create_app
    from tabular_mlops.serving.credentials import (
        Tokens,
        with_api_key,
        without_api_key,
        write_tokens,
    )

    _, model, spec = churn
    path = tmp_path / "secrets" / "m.tokens.json"
    tokens = with_api_key(Tokens(current=TOKENS), "checkout")
    write_tokens(path, tokens)
    settings = ServingSettings(model_tag="churn:1", tokens_file=str(path), require_api_key=True)
    app = create_app(spec, settings)
    bind(app, FastModel(model, [f.name for f in spec.features]), None)
    client = TestClient(app)
    row = {"tenure_months": 12.0, "monthly_charges": 70.5, "contract": "one-year",
           "region": "north"}  # fmt: skip
    body = {"rows": [row]}
    assert client.post("/predict", json=body).status_code == 401
    wrong = client.post("/predict", json=body, headers={"x-api-key": "guess"})
    assert wrong.status_code == 403 and wrong.json()["detail"][0]["field"] == "x-api-key"
    key = {"x-api-key": tokens.api_keys["checkout"]}
    assert client.post("/predict", json=body, headers=key).status_code == 200
    smoke = {"x-request-source": "smoke-test", "x-source-token": TOKENS["source"]}
    assert client.post("/predict", json=body, headers=smoke).status_code == 200
    operation = client.get("/openapi.json").json()["paths"]["/predict"]["post"]
    assert "401" in operation["responses"]
    write_tokens(path, without_api_key(tokens, "checkout"))
    assert client.post("/predict", json=body, headers=key).status_code == 403  # revoked
    plain = create_app(spec, ServingSettings(model_tag="churn:1"))
    bind(plain, FastModel(model, [f.name for f in spec.features]), None)
    assert TestClient(plain).post("/predict", json=body).status_code == 200  # off by default


def test_a_stop_signal_ends_the_workers_supervisor_at_once():
    """uvicorn's multi-worker supervisor queues SIGTERM for a loop that looks every 0.5 s;
    ``stop_at_once`` still queues it (uvicorn's own handling) and ends the loop now. Fails
    by name when an upgrade renames what it relies on."""
    import signal

    import uvicorn
    from uvicorn.supervisors import Multiprocess

    from tabular_mlops.serving.server import stop_at_once

    saved = {number: signal.getsignal(number) for number in (signal.SIGTERM, signal.SIGINT)}
    try:
        supervisor = Multiprocess(uvicorn.Config("x:y", workers=2), sockets=[])
        stop_at_once(supervisor)
        assert not supervisor.should_exit.is_set()
        signal.raise_signal(signal.SIGTERM)
        assert supervisor.should_exit.wait(30)  # set by its thread, not in the handler
        assert supervisor.signal_queue == [signal.SIGTERM]
    finally:
        for number, handler in saved.items():
            signal.signal(number, handler)


def test_evidence_keeps_each_writers_order_when_the_clock_was_set_back(tmp_path):
    """A router's step event follows the requests that earned it in its file; sorted by
    timestamp after the clock was set back, it came first, and a router started again
    on the logs counted the hold from the wrong line. Two writers interleave by time."""
    from tabular_mlops.serving.inference_log import read_evidence

    def write(name: str, lines: list[tuple[str, str]]) -> None:
        (tmp_path / name).write_text("".join(
            json.dumps({"timestamp": stamp, "id": what, "experiment": "e"}) + "\n"
            for stamp, what in lines
        ))  # fmt: skip

    write(
        "routing-2026-12-04-h-1.jsonl",
        [
            ("2026-12-04T10:00:00", "a1"),
            ("2026-12-04T10:00:05", "a2"),
            ("2026-12-04T09:00:00", "a3 (clock set back)"),
        ],
    )
    write("routing-2026-12-04-h-2.jsonl", [("2026-12-04T10:00:02", "b1")])
    with (tmp_path / "routing-2026-12-04-h-2.jsonl").open("a") as handle:
        handle.write("{torn\n")
    order = [line["id"] for line in read_evidence(tmp_path, "routing", "e")]
    assert order == ["a1", "b1", "a2", "a3 (clock set back)"]


def test_uvicorns_supervisor_still_creates_each_worker_through_get_subprocess():
    """``serving/server.fork_workers`` replaces uvicorn 0.54's private ``get_subprocess``
    (which spawns) with one that forks; on an upgrade that moves it, this names it."""
    import inspect

    from uvicorn.supervisors import multiprocess

    assert "get_subprocess(config, self.target, sockets)" in inspect.getsource(
        multiprocess.Process.__init__
    ), "uvicorn no longer creates its workers through get_subprocess: see fork_workers"
    assert list(inspect.signature(multiprocess.get_subprocess).parameters) == [
        "config", "target", "sockets",
    ]  # fmt: skip
    assert signal.SIGTERM in multiprocess.SIGNALS  # a forked worker puts these back
    # the supervisor closes its copy of the worker's end of the health-check pipe
    assert "self.child_conn.recv()" in inspect.getsource(multiprocess.Process.pong)


def test_a_forked_worker_gets_a_new_interpreters_handlers_and_the_supervisor_no_pipe_end():
    """What ``serving/server.forked_worker`` promises, on a real fork: the worker runs
    with the default SIGTERM handler (not the supervisor's), the supervisor's signal
    mask is as it was, and the supervisor holds no copy of the worker's end of the
    health-check pipe (so a dead worker is seen at once, not after the ping's timeout)."""
    from multiprocessing import Pipe
    from types import SimpleNamespace

    from tabular_mlops.serving.server import forked_worker

    class Worker:  # the part of uvicorn's Process the fork uses
        def __init__(self) -> None:
            self.parent_conn, self.child_conn = Pipe()

        def target(self, sockets: list) -> None:
            self.child_conn.send(repr(signal.getsignal(signal.SIGTERM)))

    worker = Worker()
    supervisors = signal.signal(signal.SIGTERM, lambda *_: None)  # as uvicorn's supervisor
    try:
        process = forked_worker(SimpleNamespace(configure_logging=lambda: None), worker.target, [])
        process.start()
        assert worker.child_conn.closed
        assert worker.parent_conn.poll(30) and worker.parent_conn.recv() == repr(signal.SIG_DFL)
        process.join(30)
        assert process.exitcode == 0
        assert signal.SIGTERM not in signal.pthread_sigmask(signal.SIG_BLOCK, [])
    finally:
        signal.signal(signal.SIGTERM, supervisors)
