"""What monitoring decides from the drift and performance it measured."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel

from tabular_mlops.core.config import MonitoringConfig
from tabular_mlops.core.drift import DriftSummary

PREDICTION = "prediction"


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
