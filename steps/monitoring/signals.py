"""What monitoring looks at, and what it decides from it."""

from __future__ import annotations

from datetime import datetime
from pathlib import Path
from typing import Literal

import pandas as pd
import pyarrow.parquet as pq
from pydantic import BaseModel
from sklearn.metrics import accuracy_score, f1_score

from configs.schema import MonitoringConfig
from service.inference_log import read_records
from steps.data.drift import DriftSummary
from steps.inference.batch import MONITORING_SAMPLE_PREFIX

PREDICTION = "prediction"


class LabelsError(ValueError):
    """The labels file cannot be used; the message names the file and column."""


def collect(
    config: MonitoringConfig, features: list[str], start: datetime, end: datetime
) -> pd.DataFrame:
    """Live requests from the serving log and the feature samples of batches scored in
    [start, end)."""
    frames = []
    logged = read_records(config.inference_log_dir, start, end)
    if not logged.empty:
        live = logged[logged["source"] == "live"]
        frames.append(live[[*features, PREDICTION, "request_id", "row"]].assign(origin="online"))
    for path in sorted(Path(config.batch_predictions_dir).glob(f"{MONITORING_SAMPLE_PREFIX}*")):
        table = pq.read_table(path, columns=[*features, PREDICTION, "scored_at"])
        batch = table.to_pandas()
        scored_at = pd.to_datetime(batch["scored_at"], utc=True)
        in_window = (scored_at >= pd.Timestamp(start)) & (scored_at < pd.Timestamp(end))
        if in_window.any():
            frames.append(batch.loc[in_window, [*features, PREDICTION]].assign(origin="batch"))
    if not frames:
        return pd.DataFrame(columns=[*features, PREDICTION, "request_id", "row", "origin"])
    return pd.concat(frames, ignore_index=True)


def performance(current: pd.DataFrame, labels_path: Path | None) -> dict[str, float] | None:
    """Accuracy and macro F1 of logged predictions whose ground truth has arrived."""
    if labels_path is None:
        return None
    if not labels_path.is_file():
        raise LabelsError(f"{labels_path}: no such labels file")
    labels = pd.read_csv(labels_path, dtype={"request_id": str})
    missing = {"request_id", "row", "label"} - set(labels.columns)
    if missing:
        raise LabelsError(f"{labels_path}: missing column(s) {sorted(missing)}")
    online = current.dropna(subset=["request_id"])
    joined = online.merge(labels, on=["request_id", "row"], how="inner")
    if joined.empty:
        return None
    truth, predicted = joined["label"].astype(str), joined[PREDICTION].astype(str)
    return {
        "labelled_rows": float(len(joined)),
        "accuracy": float(accuracy_score(truth, predicted)),
        "f1_macro": float(f1_score(truth, predicted, average="macro")),
    }


Action = Literal["none", "alert", "retrain"]


class MonitoringDecision(BaseModel):
    action: Action
    reasons: list[str]
    rows: int
    drift_share: float
    drifted_columns: list[str]
    prediction_drift: bool
    performance: dict[str, float] | None = None


def decide(
    rows: int,
    drift: DriftSummary,
    measured: dict[str, float] | None,
    config: MonitoringConfig,
) -> MonitoringDecision:
    reasons: list[str] = []
    action: Action = "none"
    if rows < config.min_rows:
        reasons.append(f"{rows} rows in the window, fewer than {config.min_rows}: no decision")
    else:
        share = drift.drift_share
        if share >= config.retrain_drift_share:
            action = "retrain"
            reasons.append(
                f"{share:.0%} of features drifted, at or above {config.retrain_drift_share:.0%}"
            )
        elif share >= config.alert_drift_share:
            action = "alert"
            reasons.append(
                f"{share:.0%} of features drifted, at or above {config.alert_drift_share:.0%}"
            )
        if measured and measured["accuracy"] < config.retrain_below_accuracy:
            action = "retrain"
            reasons.append(
                f"accuracy {measured['accuracy']:.3f} on {int(measured['labelled_rows'])} "
                f"labelled rows, below {config.retrain_below_accuracy}"
            )
        if not reasons:
            reasons.append(f"{share:.0%} of features drifted; below every threshold")
    features_drifted = [c for c in drift.drifted_columns if c != PREDICTION]
    return MonitoringDecision(
        action=action,
        reasons=reasons,
        rows=rows,
        drift_share=drift.drift_share,
        drifted_columns=features_drifted,
        prediction_drift=PREDICTION in drift.drifted_columns,
        performance=measured,
    )
