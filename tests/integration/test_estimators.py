"""Any scikit-learn estimator family, end to end: each trains (logged to MLflow and
registered), deploys behind the model's address, answers over HTTP as its pipeline
does, and is exported to ONNX or skipped with the reason, never a failed deployment."""

from __future__ import annotations

import json

import httpx
import numpy as np
import pytest

from tabular_mlops.adapters.deployment import local as local_server
from tabular_mlops.adapters.sources import load_dataset
from tabular_mlops.core.config import DataSourceConfig
from tests.helpers import free_port, invoke, serving_env

pytestmark = pytest.mark.integration

FAMILIES = {
    "random_forest": ("sklearn.ensemble.RandomForestClassifier", "{n_estimators: 20}"),
    "extra_trees": ("sklearn.ensemble.ExtraTreesClassifier", "{n_estimators: 20}"),
    "gradient_boosting": ("sklearn.ensemble.GradientBoostingClassifier", "{n_estimators: 30}"),
    "hist_gradient_boosting": (
        "sklearn.ensemble.HistGradientBoostingClassifier",
        "{max_iter: 30}",
    ),
    "linear_svc": ("sklearn.svm.SVC", "{probability: true, kernel: linear}"),
}


@pytest.mark.parametrize("family", list(FAMILIES))
def test_each_estimator_family_trains_deploys_and_answers_as_its_pipeline(
    dev_stack, tmp_path, family
):
    from tabular_mlops.adapters.champion import load_version, version_at_stage

    estimator, params = FAMILIES[family]
    model = f"it_family_{family}"
    result = invoke(
        "train",
        "--set", f"model.name={model}",
        "--set", f"parameters.training.estimator={estimator}",
        "--set", f"parameters.training.params={params}",
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    assert f"Model '{model}' version 1: promoted to production" in result.output, result.output
    port = free_port()
    deploy = ["deploy", "--set", f"model.name={model}",
              "--env", serving_env(tmp_path, port, tmp_path / "state"),
              # not a test of the speed gate: a budget no load can push these over
              "--set", "parameters.serving.max_single_row_p99_ms=200",
              "--set", "parameters.serving.min_rows_per_second=500"]  # fmt: skip
    result = invoke(*deploy)
    try:
        assert result.exit_code == 0, result.output
        frame = load_dataset(DataSourceConfig()).drop(columns=["target"]).head(40)
        rows = json.loads(frame.to_json(orient="records"))
        answer = httpx.post(f"http://127.0.0.1:{port}/predict", json={"rows": rows}, timeout=30)
        assert answer.status_code == 200, answer.text
        production = version_at_stage(model, "production")
        assert production is not None
        staged = load_version(production.id)
        pipeline = staged.model
        served = answer.json()["predictions"]
        expected = pipeline.predict_proba(frame)
        # labels by the model's own decision rule over its probabilities (an SVC's
        # `predict` follows its decision function, which its Platt-scaled probabilities
        # can contradict near the boundary)
        decided = [str(pipeline.classes_[i]) for i in staged.spec.label_indexes(expected)]
        assert [p["label"] for p in served] == decided
        got = np.array([[p["probabilities"][str(c)] for c in pipeline.classes_] for p in served])
        assert np.abs(got - expected).max() <= 1e-9
        exported = invoke("export", "--set", f"model.name={model}",
                          "--output", str(tmp_path / "onnx"))  # fmt: skip
        assert exported.exit_code == 0 or "has no ONNX export" in exported.output, exported.output
    finally:
        invoke(*deploy, "--stop")
        assert local_server.stray_processes(tmp_path / "state", model, keep=set()) == []
