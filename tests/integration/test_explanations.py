"""Explanations and model selection through real processes: a model trained (the best of
several candidates, each a tracked trial), deployed behind its stable address, asked
over HTTP why it answered as it did, and a batch file scored with ``--explain``; each
explanation sums to the model's own raw output."""

from __future__ import annotations

import json

import httpx
import numpy as np
import pandas as pd
import pytest

from tabular_mlops.adapters.deployment import local as local_server
from tests.helpers import explained_total, free_port, invoke, serving_env

pytestmark = pytest.mark.integration

MODEL = "it_explained"


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
    # a tree is scored by its pipeline, slower than the dev budget on a busy machine: the
    # deployment gate's speed budget is tested in test_serving.py
    deploy = ["deploy", "--set", f"model.name={name}", "--env", serving_env(tmp_path, port, state),
              "--set", "parameters.serving.max_single_row_p99_ms=200",
              "--set", "parameters.serving.min_rows_per_second=500"]  # fmt: skip
    deployed = invoke(*deploy)
    assert deployed.exit_code == 0, deployed.output
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
        np.testing.assert_allclose([explained_total(p["explanation"]) for p in explained], raw,
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
        totals = [explained_total(json.loads(e)) for e in written["explanation"]]
        np.testing.assert_allclose(totals, raw, atol=SUM_TOLERANCE)
        assert list(written["reasons"]) == [",".join(p["reasons"]) for p in explained]
    finally:
        invoke(*deploy, "--stop")
        assert local_server.stray_processes(state, name, keep=set()) == []


def test_three_candidates_are_tracked_trials_and_the_winner_is_served_and_explained(
    dev_stack, tmp_path
):
    """Model selection end to end: three candidates (four trials) cross-validated on the
    training split, each a nested MLflow run under the training run, the leaderboard an
    artifact of the run and recorded on the version; the winner deployed and explained."""
    from pathlib import Path

    import mlflow
    from zenml.client import Client

    config = Path(__file__).parents[2] / "configs" / "examples" / "model_selection.yaml"
    name = "it_selected"
    trained = invoke("train", "--config", str(config), "--set", f"model.name={name}")
    assert trained.exit_code == 0, trained.output
    assert "promoted to production" in trained.output
    assert "from 4 trials (cv roc_auc" in trained.output
    run = Client().list_pipeline_runs(sort_by="desc:created", size=1).items[0]
    board = run.steps["select_model"].outputs["leaderboard"][0].load()
    assert len(board.trials) == 4 and [t.rank for t in board.trials] == [1, 2, 3, 4]
    estimators = {t.estimator.rsplit(".", 1)[-1] for t in board.trials}
    assert estimators == {"LogisticRegression", "RandomForestClassifier",
                          "HistGradientBoostingClassifier"}  # fmt: skip
    version = Client().get_model_version(name, "1")
    recorded = version.run_metadata["leaderboard"]
    assert isinstance(recorded, list) and recorded[0]["chosen"] is True
    # the trials as nested MLflow runs under the training run
    mlflow.set_tracking_uri(Client().active_stack.experiment_tracker.get_tracking_uri())
    parent = mlflow.search_runs(search_all_experiments=True,
                                filter_string=f"tags.mlflow.runName = '{run.name}'")  # fmt: skip
    children = mlflow.search_runs(
        search_all_experiments=True,
        filter_string=f"tags.mlflow.parentRunId = '{parent.iloc[0]['run_id']}'",
    )
    assert len(children) == 4
    assert set(children["params.estimator"]) == {t.estimator for t in board.trials}
    assert children["metrics.cv_roc_auc_mean"].max() == pytest.approx(board.winner.mean)
    # the winner served, and asked why
    state, port = tmp_path / "state", free_port()
    deploy = ["deploy", "--set", f"model.name={name}", "--env", serving_env(tmp_path, port, state)]
    assert invoke(*deploy).exit_code == 0
    try:
        from sklearn.datasets import load_breast_cancer

        row = load_breast_cancer(as_frame=True).frame.drop(columns="target").head(1)
        body = {"rows": json.loads(row.to_json(orient="records")), "explain": True}
        answer = httpx.post(f"http://127.0.0.1:{port}/predict", json=body, timeout=30)
        assert answer.status_code == 200, answer.text
        assert answer.json()["predictions"][0]["explanation"]["contributions"]
        path = tmp_path / "rows.csv"
        row.to_csv(path, index=False)
        scored = invoke("infer", "--input", str(path), "--explain", "--set", f"model.name={name}")
        assert scored.exit_code == 0 and "1 of 1 rows scored" in scored.output, scored.output
    finally:
        invoke(*deploy, "--stop")
        assert local_server.stray_processes(state, name, keep=set()) == []
