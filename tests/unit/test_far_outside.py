"""Rows far outside what training covered: answered as ever, logged with a flag, and left
out of what monitoring and the rollout's evidence read."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta


def test_a_value_over_a_training_span_outside_the_range_is_flagged(churn):
    from tabular_mlops.core.problems import far_outside_check

    _, _, spec = churn
    outside = far_outside_check(spec)
    names = [f.name for f in spec.features]
    tenure = next(f for f in spec.features if f.name == "tenure_months")
    span = tenure.maximum - tenure.minimum
    row = {"tenure_months": 12.0, "monthly_charges": 70.5, "contract": "one-year",
           "region": "north"}  # fmt: skip
    assert outside([row[n] for n in names]) is None
    row["tenure_months"] = tenure.maximum + 0.9 * span  # beyond the range, within a span
    assert outside([row[n] for n in names]) is None
    row["tenure_months"] = 1e308  # finite, absurd
    assert outside([row[n] for n in names]) == ["tenure_months"]


def test_the_answer_is_the_same_the_log_flags_it_and_monitoring_leaves_it_out(churn, tmp_path):
    from fastapi.testclient import TestClient

    from tabular_mlops.adapters.monitoring_data import collect
    from tabular_mlops.core.config import MonitoringConfig
    from tabular_mlops.core.scoring import FastModel
    from tabular_mlops.core.spec import ServingSettings
    from tabular_mlops.serving.app import bind, create_app
    from tabular_mlops.serving.inference_log import InferenceLogWriter, read_records

    _, model, spec = churn
    app = create_app(spec, ServingSettings(model_tag="churn:1"))
    log = InferenceLogWriter(tmp_path / "log")
    bind(app, FastModel(model, [f.name for f in spec.features]), log)
    client = TestClient(app)
    usual = {"tenure_months": 12.0, "monthly_charges": 70.5, "contract": "one-year",
             "region": "north"}  # fmt: skip
    absurd = {**usual, "monthly_charges": 7.05e9}
    answered = client.post("/predict", json={"rows": [usual, absurd]})
    assert answered.status_code == 200 and len(answered.json()["predictions"]) == 2
    from prometheus_client import REGISTRY

    counted = REGISTRY.get_sample_value(
        "tabular_predict_far_outside_rows_total", {"model_version": spec.model_version}
    )
    assert counted is not None and counted >= 1
    log.close()
    logged = read_records(tmp_path / "log")
    assert logged["far_outside"].tolist() == [False, True]
    now = datetime.now(UTC)
    config = MonitoringConfig(inference_log_dir=tmp_path / "log",
                              batch_predictions_dir=tmp_path / "none")  # fmt: skip
    collected = collect(config, [f.name for f in spec.features], now - timedelta(hours=1),
                        now + timedelta(minutes=1))  # fmt: skip
    assert collected["far_outside"].tolist() == [False, True]


def test_a_category_training_never_saw_is_answered_and_counted_by_the_service_and_batch(
    churn, tmp_path
):
    """One-hot encoding scores an unknown category as none of the known ones: the answer
    stays, and /metrics (by feature) and the batch's result say how many rows held one."""
    import pandas as pd
    from fastapi.testclient import TestClient
    from prometheus_client import REGISTRY

    from tabular_mlops.adapters.batch import score_file
    from tabular_mlops.core.scoring import PipelineScorer
    from tabular_mlops.core.spec import ServingSettings
    from tabular_mlops.serving.app import bind, create_app

    frame, model, spec = churn
    app = create_app(spec, ServingSettings(model_tag="churn:1"))
    bind(app, PipelineScorer(model, [f.name for f in spec.features]), None)
    labels = {"model_version": spec.model_version, "feature": "contract"}
    before = REGISTRY.get_sample_value("tabular_predict_unseen_category_rows_total", labels) or 0
    usual = {"tenure_months": 12.0, "monthly_charges": 70.5, "contract": "one-year",
             "region": "north"}  # fmt: skip
    weekly = {**usual, "contract": "weekly"}
    answered = TestClient(app).post("/predict", json={"rows": [usual, weekly, weekly]})
    assert answered.status_code == 200 and len(answered.json()["predictions"]) == 3
    after = REGISTRY.get_sample_value("tabular_predict_unseen_category_rows_total", labels)
    assert after == before + 2
    batch = frame.drop(columns=["churn"]).head(6).assign(contract=["weekly"] * 2 + [None] * 4)
    path = tmp_path / "batch.csv"
    batch.to_csv(path, index=False)
    result = score_file(path, model, spec, tmp_path / "out", "b", 4, datetime.now(UTC))
    assert result.rows_scored + result.rows_rejected == 6
    assert result.unseen_categories == {"contract": 2}  # missing is not unseen
    assert len(pd.read_parquet(result.predictions_path)) == result.rows_scored
