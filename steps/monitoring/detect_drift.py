from __future__ import annotations

import logging
from typing import Annotated

import pandas as pd
from zenml import get_step_context, step
from zenml.client import Client
from zenml.types import HTMLString

from tabular_mlops.adapters.alerts import notify
from tabular_mlops.adapters.champion import load_staged_model
from tabular_mlops.adapters.evidently_reports import build_report
from tabular_mlops.adapters.monitoring_data import performance
from tabular_mlops.core.config import MonitoringConfig
from tabular_mlops.core.drift import DriftSummary
from tabular_mlops.core.pages import page
from tabular_mlops.core.scoring import date_columns_of
from tabular_mlops.core.signals import PREDICTION, MonitoringDecision, decide

logger = logging.getLogger(__name__)


@step(enable_cache=False)  # the labels file and the production model change under it
def detect_drift(
    monitored_predictions: pd.DataFrame, monitoring: MonitoringConfig
) -> tuple[
    Annotated[MonitoringDecision, "monitoring_decision"],
    Annotated[HTMLString, "monitoring_report"],
    Annotated[str, "monitoring_evidently"],
]:
    """Feature and prediction drift against the production model's training data
    (Evidently), performance where labels arrived, and the decision they lead to."""
    staged = load_staged_model(get_step_context().model)
    # rows far outside what training covered were answered, but are not the world's data
    flags = monitored_predictions.get("far_outside")
    far_outside = int(flags.fillna(False).astype(bool).sum()) if flags is not None else 0
    if far_outside:
        monitored_predictions = monitored_predictions[~flags.fillna(False).astype(bool)]
    left_out = (
        f"<p>{far_outside} row(s) far outside the range training covered (over a training "
        "span beyond it) were answered but left out of this comparison.</p>"
        if far_outside
        else ""
    )
    # inputs the inference log hashes or drops were left out when collected
    # dates are compared as the model sees them (weekday, month), not as ever-new text
    dates = date_columns_of(staged.model)
    compared = [f for f in staged.features
                if f in monitored_predictions.columns and f not in dates]  # fmt: skip
    columns = [*compared, PREDICTION]
    reference = staged.train_set[staged.features].assign(
        **{PREDICTION: staged.model.predict(staged.train_set[staged.features])}
    )
    if len(monitored_predictions) >= monitoring.min_rows:
        drift, html, snapshot = build_report(
            Client().active_stack.data_validator,
            monitored_predictions[columns],
            reference[columns],
            title="Served and batch predictions of the window against the training data",
            artifact="monitoring_evidently",
            presets=("DataDriftPreset",),
            prediction=PREDICTION,
        )
        html = html.replace("<body>", f"<body>{left_out}", 1)
    else:
        drift, snapshot = DriftSummary(compared_with_reference=False), ""
        html = page(
            "Monitoring",
            f"<h3>Monitoring</h3><p>{len(monitored_predictions)} rows in the window: fewer "
            f"than {monitoring.min_rows}, too few to compare.</p>{left_out}",
        )
    decision = decide(
        len(monitored_predictions),
        drift,
        performance(monitored_predictions, monitoring.labels_path, staged.spec.task),
        monitoring,
    )
    logger.info("monitoring decision: %s (%s)", decision.action, "; ".join(decision.reasons))
    if decision.action != "none":
        notify(
            Client().active_stack,
            f"monitoring of '{staged.spec.model_name}' version {staged.spec.model_version}: "
            f"{decision.action.upper()}: {'; '.join(decision.reasons)}",
        )
    return decision, HTMLString(html), snapshot
