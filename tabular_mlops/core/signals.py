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


def label_match(measured: dict[str, float], least: float) -> str:
    """What the labels file gave: how many of its labels matched a logged prediction."""
    labels, matched = int(measured["labels"]), int(measured["labelled_rows"])
    if matched == 0:
        return (
            f"labels: none of the file's {labels} labels matches a logged prediction by "
            "request_id and row (ids from another service or window?): accuracy not measured"
        )
    said = f"labels: {matched} of {labels} match a logged prediction"
    if matched < least * labels:
        said += f" (under {least:.0%}: ids from another service or window?)"
    if "mae" in measured:
        return f"{said}; MAE {measured['mae']:.4g}, RMSE {measured['rmse']:.4g}"
    return f"{said}; accuracy {measured['accuracy']:.3f}, F1 {measured['f1_macro']:.3f}"


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
        if (
            measured
            and "accuracy" in measured
            and measured["accuracy"] < config.retrain_below_accuracy
        ):
            action = "retrain"
            reasons.append(
                f"accuracy {measured['accuracy']:.3f} on {int(measured['labelled_rows'])} "
                f"labelled rows, below {config.retrain_below_accuracy}"
            )
        mae = measured.get("mae") if measured else None
        thresholds: tuple[tuple[float | None, Action], ...] = (
            (config.retrain_above_mae, "retrain"),
            (config.alert_above_mae, "alert"),
        )
        for limit, raised in thresholds:  # the first one crossed, the strongest first
            if mae is not None and measured and limit is not None and mae > limit:
                action = raised if raised == "retrain" or action == "none" else action
                reasons.append(
                    f"MAE {mae:.4g} on {int(measured['labelled_rows'])} labelled rows, above "
                    f"{limit:g}"
                )
                break
        if not reasons:
            reasons.append(f"{share:.0%} of features drifted; below every threshold")
    if measured is not None:
        reasons.append(label_match(measured, config.min_label_match))
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
