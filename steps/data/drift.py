"""Evidently data-quality and drift reports, reduced to figures a gate can use."""

from __future__ import annotations

from typing import Any

import pandas as pd
from pydantic import BaseModel

from steps.data.checks import column_kind


class DriftSummary(BaseModel):
    """The figures of an Evidently drift report that are charted and acted on."""

    compared_with_reference: bool
    drift_share: float = 0.0
    drifted_columns: list[str] = []
    dataset_drift: bool = False
    #: column -> drift score from the column's statistical test
    column_scores: dict[str, float] = {}


def build_report(
    current: pd.DataFrame,
    reference: pd.DataFrame | None,
    target: str | None = None,
    prediction: str | None = None,
) -> tuple[DriftSummary, str]:
    """Run Evidently on ``current`` (against ``reference`` when there is one).

    Returns the summary and the report's HTML. Evidently's legacy ``Report``
    is used directly because ZenML's ``EvidentlyDataValidator.data_profiling``
    requires a reference, and the first run of a project has none.
    """
    from evidently.legacy.metric_preset import DataDriftPreset, DataQualityPreset
    from evidently.legacy.pipeline.column_mapping import ColumnMapping
    from evidently.legacy.report import Report

    features = [c for c in current.columns if c not in (target, prediction)]
    mapping = ColumnMapping(
        target=target if target in current.columns else None,
        prediction=prediction if prediction in current.columns else None,
        numerical_features=[c for c in features if column_kind(current[c]) == "numeric"],
        categorical_features=[c for c in features if column_kind(current[c]) == "categorical"],
    )
    if reference is None:
        report = Report(metrics=[DataQualityPreset()])
        report.run(reference_data=None, current_data=current, column_mapping=mapping)
        return DriftSummary(compared_with_reference=False), report.get_html()

    shared = [c for c in reference.columns if c in current.columns]
    report = Report(metrics=[DataDriftPreset(), DataQualityPreset()])
    report.run(
        reference_data=reference[shared], current_data=current[shared], column_mapping=mapping
    )
    return summarize(report.as_dict()), report.get_html()


def summarize(report: dict[str, Any]) -> DriftSummary:
    """Pull the dataset-level and per-column drift figures out of ``Report.as_dict()``."""
    dataset: dict[str, Any] = {}
    columns: dict[str, Any] = {}
    for metric in report["metrics"]:
        result = metric["result"]
        if metric["metric"] == "DatasetDriftMetric":
            dataset = result
        elif metric["metric"] == "DataDriftTable":
            columns = result["drift_by_columns"]
    return DriftSummary(
        compared_with_reference=True,
        drift_share=float(dataset.get("share_of_drifted_columns", 0.0)),
        dataset_drift=bool(dataset.get("dataset_drift", False)),
        drifted_columns=sorted(c for c, r in columns.items() if r["drift_detected"]),
        column_scores={c: float(r["drift_score"]) for c, r in columns.items()},
    )
