from __future__ import annotations

from typing import Annotated

import pandas as pd
from zenml import get_step_context, log_metadata, step
from zenml.client import Client
from zenml.types import HTMLString

from tabular_mlops.adapters.champion import load_staged_model
from tabular_mlops.adapters.evidently_reports import build_report
from tabular_mlops.core.drift import DriftSummary


@step
def report_batch_drift(
    batch_sample: pd.DataFrame,
) -> tuple[
    Annotated[DriftSummary, "batch_drift"],
    Annotated[HTMLString, "batch_drift_report"],
    Annotated[str, "batch_drift_evidently"],
]:
    """Evidently drift of the batch against the data the scoring model was trained on."""
    staged = load_staged_model(get_step_context().model)
    features = staged.features
    summary, html, snapshot = build_report(
        Client().active_stack.data_validator,
        batch_sample[features],
        staged.train_set[features],
        title=f"Batch drift against the training data of version {staged.spec.model_version}",
        artifact="batch_drift_evidently",
        presets=("DataDriftPreset",),
    )
    log_metadata(metadata={"batch_drift": summary.model_dump(exclude={"columns"})})
    return summary, HTMLString(html), snapshot
