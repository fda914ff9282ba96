"""Evidently's drift figures, reduced to what a gate and a chart use."""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel


class DriftSummary(BaseModel):
    """The figures of an Evidently drift report that are charted and acted on."""

    compared_with_reference: bool
    drift_share: float = 0.0
    drifted_columns: list[str] = []
    dataset_drift: bool = False
    #: column -> drift score from the column's statistical test
    column_scores: dict[str, float] = {}


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
