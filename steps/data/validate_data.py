from __future__ import annotations

import logging
from typing import Annotated

import pandas as pd
from zenml import get_step_context, log_metadata, step
from zenml.client import Client
from zenml.types import HTMLString

from materializers.dataframe_materializer import ContentHashedDataFrameMaterializer
from tabular_mlops.adapters.champion import (
    Champion,
    check_same_task,
    find_version,
    load_artifact,
    reference_name,
)
from tabular_mlops.adapters.evidently_reports import build_report
from tabular_mlops.core.checks import DataValidationError, check_dataset, drift_violations
from tabular_mlops.core.config import DataValidationConfig, as_task

logger = logging.getLogger(__name__)


@step(output_materializers={"validated_dataset": ContentHashedDataFrameMaterializer})
def validate_data(
    dataset: pd.DataFrame,
    champion: Champion,
    rules: DataValidationConfig,
    target: str,
    assessment_columns: list[str],
    task: str = "classification",
    date_columns: list[str] | None = None,
    named_columns: dict[str, list[str]] | None = None,
) -> tuple[
    Annotated[pd.DataFrame, "validated_dataset"],
    Annotated[HTMLString, "data_report"],
    Annotated[str, "data_report_evidently"],
]:
    """The data gate: schema and quality checks (dates or numbers read as text, duplicated
    rows, a column that gives the label away), columns added or removed and departures
    from the reference, then Evidently's drift, which blocks too unless the run accepts it.

    The reference is the data the production model was trained on (the champion),
    so a new dataset must still fit the model that serves today, or the version
    ``rules.reference_version`` names. On any violation the step raises and
    nothing downstream runs. ``named_columns`` are the columns other blocks of the run's
    configuration name (``evaluation.slice_column``...), by key: checked here, before
    anything is trained.
    """
    check_same_task(champion, get_step_context().model.name, task)
    source = (
        find_version(get_step_context().model.name, rules.reference_version)
        if rules.reference_version is not None
        else champion
    )
    reference = (
        load_artifact(source.train_set_artifact_id) if source.train_set_artifact_id else None
    )
    described = reference_name(source)
    check_dataset(
        dataset, target, rules, reference, assessment_columns, as_task(task), date_columns or [],
        named_columns,
    )  # fmt: skip
    # a date column's days are always new: drift is the model's inputs' (weekday, month)
    dates = [c for c in date_columns or [] if c in dataset.columns]
    summary, html, snapshot = build_report(
        Client().active_stack.data_validator,
        dataset.drop(columns=dates),
        reference.drop(columns=dates, errors="ignore") if reference is not None else None,
        title=f"Data gate: the new data against {described}",
        artifact="data_report_evidently",
        target=target,
    )
    drift = drift_violations(summary.drift_share, summary.drifted_columns, rules)
    if drift:
        raise DataValidationError(drift)
    log_metadata(
        metadata={
            "data_drift": summary.model_dump(exclude={"columns"}),
            "data_reference": {"version": source.version or "none", "stage": source.stage or ""},
        },
        artifact_name="data_report",
        infer_artifact=True,
    )
    if rules.accept_drift and summary.drift_share > rules.max_drift_share:
        log_metadata(
            metadata={
                "drift_accepted": {
                    "drift_share": summary.drift_share,
                    "columns": summary.drifted_columns,
                }
            },
            infer_model=True,
        )
    logger.info(
        "data gate passed: %d rows; drift share %.2f against %s",
        len(dataset),
        summary.drift_share,
        described,
    )
    return dataset, HTMLString(html), snapshot
