"""Batch inference, monitoring and the drift-triggered retrain, on the dev stack."""

from __future__ import annotations

import re

import pandas as pd
import pytest

from tabular_mlops.adapters.paths import LOCAL_DIR
from tests.conftest import SHARED_MODEL
from tests.helpers import invoke

pytestmark = pytest.mark.integration

MODEL = SHARED_MODEL


def production_version() -> str:
    from zenml.client import Client
    from zenml.enums import ModelStages

    return str(Client().get_model_version(MODEL, ModelStages.PRODUCTION).name)


@pytest.fixture(scope="module")
def staged(trained_model):
    from zenml import Model
    from zenml.enums import ModelStages

    from tabular_mlops.adapters.champion import load_staged_model

    return load_staged_model(Model(name=MODEL, version=ModelStages.PRODUCTION))


def test_batch_inference_scores_and_sets_bad_rows_aside(staged, tmp_path):
    served = production_version()  # the shared model: other modules may have moved it
    batch = staged.test_set[staged.features].head(40).astype(object)
    batch.loc[batch.index[3], "mean radius"] = "abc"
    batch.loc[batch.index[9], "worst area"] = None
    path = tmp_path / "batch.csv"
    batch.to_csv(path, index=False)
    result = invoke(
        "infer", "--input", str(path),
        "--set", f"model.name={MODEL}",
        "--set", f"parameters.batch.output_dir={tmp_path / 'out'}",
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    assert f"38 of 40 rows scored by version {served}" in result.output
    assert "2 rows rejected, with reasons" in result.output
    [predictions] = (tmp_path / "out").glob("predictions-*.parquet")
    assert len(pd.read_parquet(predictions)) == 38
    [rejected] = (tmp_path / "out").glob("rejected-*.csv")
    reasons = pd.read_csv(rejected)["rejection_reason"].tolist()
    assert reasons == [
        "column 'mean radius': 'abc' is not a number",
        "column 'worst area': missing, never missing in training",
    ]


def test_batch_missing_a_column_stops_with_its_name(staged, tmp_path):
    path = tmp_path / "batch.parquet"
    staged.test_set[staged.features].drop(columns=["mean texture"]).to_parquet(path)
    result = invoke("infer", "--input", str(path), "--set", f"model.name={MODEL}")
    assert result.exit_code == 1
    assert "step 'read_batch_sample'" in result.output
    assert "missing column(s) ['mean texture']" in result.output


def _monitor(log_dir, fresh_path, tmp_path):
    return invoke(
        "monitor",
        "--set", f"model.name={MODEL}",
        "--set", f"parameters.monitoring.inference_log_dir={log_dir}",
        "--set", f"parameters.monitoring.batch_predictions_dir={tmp_path / 'none'}",
        "--set", f"retraining.data={{source: file, path: '{fresh_path}', target: target}}",
    )  # fmt: skip


def test_no_drift_no_retraining_then_drift_retrains_a_candidate(staged, tmp_path):
    from tabular_mlops.adapters.simulation import log_requests, shifted

    served = production_version()
    stable_log = tmp_path / "stable"
    _lose_rows_then_write_again(stable_log, rows=20)
    log_requests(
        staged.train_set.sample(300, random_state=0), staged.model, staged.spec, stable_log
    )
    result = _monitor(stable_log, tmp_path / "unused.parquet", tmp_path)
    assert result.exit_code == 0, result.output
    assert "Monitoring decision: NONE (300 rows)" in result.output
    assert "Retraining" not in result.output
    assert production_version() == served
    # the rows the log lost are no silent hole in what monitoring judged: the alerter hears
    alerts = (LOCAL_DIR / "alerts" / "dev.jsonl").read_text()
    assert f"the serving log under {stable_log} lost 20 prediction(s)" in alerts

    world = shifted(staged.train_set, staged.spec, 1.5, seed=1)
    fresh = tmp_path / "fresh.parquet"
    world.to_parquet(fresh)
    drift_log = tmp_path / "drift"
    log_requests(world.sample(300, random_state=0), staged.model, staged.spec, drift_log)
    result = _monitor(drift_log, fresh, tmp_path)
    assert result.exit_code == 0, result.output
    assert "Monitoring decision: RETRAIN (300 rows)" in result.output
    alerts = (LOCAL_DIR / "alerts" / "dev.jsonl").read_text()
    assert f"monitoring of '{MODEL}' version {served}: RETRAIN: " in alerts
    # a retrained model is a candidate: staging offline, production only if it wins online
    assert "promoted to staging" in result.output
    assert production_version() == served
    _assert_monitoring_runs_are_followed_across_runs(["none", "retrain"])


def _lose_rows_then_write_again(log_dir, rows: int) -> None:
    """A server's log writer on a volume that fails (its file's path is taken by a
    directory: every write raises) and comes back before the writer closes."""
    import time
    from datetime import UTC, datetime

    from tabular_mlops.serving.inference_log import InferenceLogWriter, log_file

    blocked = log_file(log_dir, datetime.now(UTC))
    blocked.mkdir(parents=True)
    writer = InferenceLogWriter(log_dir, flush_interval=0.02)
    for number in range(rows):
        writer.append(f'{{"lost": {number}}}')
    deadline = time.monotonic() + 30
    while writer.dropped < rows and time.monotonic() < deadline:
        time.sleep(0.02)
    blocked.rmdir()
    writer.close()


def _assert_monitoring_runs_are_followed_across_runs(actions: list[str]) -> None:
    """Each monitoring run's decision figures are *run* metadata (the run's Metadata tab),
    and its monitoring_trend artifact charts them with the runs before it."""
    from zenml.client import Client

    runs = Client().list_pipeline_runs(
        pipeline_name="continuous_training_pipeline", sort_by="desc:created", size=2,
        hydrate=True,
    ).items  # fmt: skip
    assert [run.run_metadata["action"] for run in reversed(runs)] == actions
    assert runs[0].run_metadata["rows"] == 300
    assert 0.5 < float(runs[0].run_metadata["drift_share"]) <= 1.0  # type: ignore[arg-type]
    trend = str(runs[0].steps["chart_monitoring_trend"].outputs["monitoring_trend"][0].load())
    assert "<script" not in trend.lower()
    shown = re.search(r"Monitoring over the last (\d+) runs", trend)
    assert shown and int(shown.group(1)) >= 2
    assert "<polyline" in trend  # the drift share line across both runs
    decisions = trend[trend.index("<table") :]
    assert decisions.index(">retrain<") < decisions.index(">none<")  # newest first
