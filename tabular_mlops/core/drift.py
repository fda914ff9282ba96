"""Evidently's drift and quality figures, reduced to what a gate, a chart and a page use."""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel


class ColumnDrift(BaseModel):
    """One column's drift test: which test, its score and threshold, and the verdict."""

    column: str
    test: str
    score: float
    threshold: float
    drifted: bool
    #: Evidently's small histograms of the column: (bin edges or categories, heights)
    reference_distribution: tuple[list[Any], list[float]] | None = None
    current_distribution: tuple[list[Any], list[float]] | None = None


class DriftSummary(BaseModel):
    """The figures of an Evidently report that are charted, shown and acted on."""

    compared_with_reference: bool
    drift_share: float = 0.0
    drifted_columns: list[str] = []
    dataset_drift: bool = False
    #: one entry per compared column, in the report's order
    columns: list[ColumnDrift] = []
    #: dataset-level quality figures of the current data (rows, columns, missing values)
    quality: dict[str, float] = {}


#: DatasetSummaryMetric figures shown on the summary page
QUALITY_FIGURES = (
    "number_of_rows",
    "number_of_columns",
    "number_of_missing_values",
    "number_of_constant_columns",
    "number_of_empty_columns",
    "number_of_duplicated_rows",
)


def summarize(report: dict[str, Any], compared_with_reference: bool = True) -> DriftSummary:
    """Pull the dataset-level and per-column figures out of ``Report.as_dict()``."""
    dataset: dict[str, Any] = {}
    columns: dict[str, Any] = {}
    quality: dict[str, Any] = {}
    for metric in report["metrics"]:
        result = metric["result"]
        if metric["metric"] == "DatasetDriftMetric":
            dataset = result
        elif metric["metric"] == "DataDriftTable":
            columns = result["drift_by_columns"]
        elif metric["metric"] == "DatasetSummaryMetric":
            quality = result.get("current") or {}
    return DriftSummary(
        compared_with_reference=compared_with_reference,
        drift_share=float(dataset.get("share_of_drifted_columns", 0.0)),
        dataset_drift=bool(dataset.get("dataset_drift", False)),
        drifted_columns=sorted(c for c, r in columns.items() if r["drift_detected"]),
        columns=[
            ColumnDrift(
                column=name,
                test=str(r["stattest_name"]),
                score=float(r["drift_score"]),
                threshold=float(r["stattest_threshold"]),
                drifted=bool(r["drift_detected"]),
                reference_distribution=_histogram(r.get("reference")),
                current_distribution=_histogram(r.get("current")),
            )
            for name, r in columns.items()
        ],
        quality={k: float(quality[k]) for k in QUALITY_FIGURES if quality.get(k) is not None},
    )


def _histogram(side: dict[str, Any] | None) -> tuple[list[Any], list[float]] | None:
    distribution = (side or {}).get("small_distribution") or {}
    if not distribution.get("x") or not distribution.get("y"):
        return None
    return list(distribution["x"]), [float(v) for v in distribution["y"]]
