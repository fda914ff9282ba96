"""The evaluation report: the artifact the model gate and the dashboard read."""

from __future__ import annotations

from pydantic import BaseModel

from tabular_mlops.core.config import Task
from tabular_mlops.core.governance import GovernanceReport


class SliceMetrics(BaseModel):
    value: str
    rows: int
    metrics: dict[str, float]


class BaselineScore(BaseModel):
    """One trivial model's test metrics, on the candidate's own test rows
    (``core/baselines.py``)."""

    name: str
    description: str
    metrics: dict[str, float]
    #: the metric the model gate compares on (``promotion.primary_metric``)
    primary_metric: str = ""


class EvaluationReport(BaseModel):
    task: Task = "classification"
    metrics: dict[str, float]
    rows: int
    classes: list[str]
    #: rows: true class, columns: predicted class, in the order of ``classes``
    confusion_matrix: list[list[int]]
    #: class -> (false positive rates, true positive rates), one-vs-rest
    roc_curves: dict[str, tuple[list[float], list[float]]]
    #: regression: (true, predicted) of up to 500 test rows, for the residual plots
    predicted_vs_actual: list[tuple[float, float]] = []
    slice_column: str | None = None
    slices: list[SliceMetrics] = []
    #: fairness, calibration, robustness, importance, cost and the decision threshold
    governance: GovernanceReport | None = None
    #: the trivial models the candidate must beat, scored on the same test rows
    baselines: list[BaselineScore] = []
