"""Explanations through real processes: a model trained, deployed behind its stable
address, asked over HTTP why it answered as it did, and a batch file scored with
``--explain``; each explanation sums to the model's own raw output."""

from __future__ import annotations

import json

import httpx
import numpy as np
import pandas as pd
import pytest

from tabular_mlops.adapters.deployment import local as local_server
from tabular_mlops.adapters.net import free_port
from tests.helpers import invoke, serving_env

pytestmark = pytest.mark.integration

MODEL = "it_explained"


def total(explanation: dict) -> float:
    return (
        explanation["base"]
        + sum(c["contribution"] for c in explanation["contributions"])
        + explanation["rest"]
    )


@pytest.mark.parametrize(
    "estimator",
    ["sklearn.linear_model.LogisticRegression", "sklearn.ensemble.HistGradientBoostingClassifier"],
    ids=["linear", "tree"],
)
def test_a_served_model_explains_its_answers_over_http_and_in_a_batch(
    dev_stack, tmp_path, estimator
):
    from sklearn.datasets import load_breast_cancer
    from zenml.client import Client

    from tabular_mlops.adapters.champion import load_version, version_at_stage
    from tabular_mlops.core.explain import SUM_TOLERANCE, Explainer

    name = f"{MODEL}_{estimator.rsplit('.', 1)[-1].lower()}"
    trained = invoke("train", "--set", f"model.name={name}",
                     "--set", f"parameters.training.estimator={estimator}",
                     "--set", "parameters.training.params={}")  # fmt: skip
    assert trained.exit_code == 0 and "promoted to production" in trained.output, trained.output
    state, port = tmp_path / "state", free_port()
    deploy = ["deploy", "--set", f"model.name={name}", "--env", serving_env(tmp_path, port, state)]
    assert invoke(*deploy).exit_code == 0
    try:
        production = version_at_stage(name, "production")
        assert production is not None
        staged = load_version(production.id)
        frame = load_breast_cancer(as_frame=True).frame.drop(columns="target").head(20)
        rows = json.loads(frame.to_json(orient="records"))
        url = f"http://127.0.0.1:{port}/predict"
        plain = httpx.post(url, json={"rows": rows[:1]}, timeout=30).json()["predictions"][0]
        assert "explanation" not in plain  # off by default
        answer = httpx.post(url, json={"rows": rows, "explain": True}, timeout=30)
        assert answer.status_code == 200, answer.text
        explained = answer.json()["predictions"]
        raw = Explainer(staged.model).raw_output(frame)
        np.testing.assert_allclose([total(p["explanation"]) for p in explained], raw,
                                   atol=SUM_TOLERANCE)  # fmt: skip
        unit = explained[0]["explanation"]["unit"]
        assert unit == "log-odds of 'malignant'"
        assert all(p["reasons"] for p in explained)
        assert {c["feature"] for p in explained for c in p["explanation"]["contributions"]} <= set(
            frame.columns
        )
        # the same explanations in the batch file
        path = tmp_path / "rows.csv"
        frame.to_csv(path, index=False)
        result = invoke("infer", "--input", str(path), "--explain", "--set", f"model.name={name}")
        assert result.exit_code == 0, result.output
        run = Client().list_pipeline_runs(sort_by="desc:created", size=1).items[0]
        batch_result = run.steps["score_batch"].outputs["batch_result"][0].load()
        written = pd.read_parquet(batch_result.predictions_path).sort_values("row_number")
        np.testing.assert_allclose([total(json.loads(e)) for e in written["explanation"]], raw,
                                   atol=SUM_TOLERANCE)  # fmt: skip
        assert list(written["reasons"]) == [",".join(p["reasons"]) for p in explained]
    finally:
        invoke(*deploy, "--stop")
        assert local_server.stray_processes(state, name, keep=set()) == []
