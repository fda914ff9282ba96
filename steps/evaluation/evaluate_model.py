from __future__ import annotations

from typing import Annotated

import mlflow
import pandas as pd
from sklearn.pipeline import Pipeline
from zenml import step

from materializers.evaluation_report_materializer import EvaluationReportMaterializer
from tabular_mlops.core.config import EvaluationConfig
from tabular_mlops.core.metrics import evaluate
from tabular_mlops.core.report import EvaluationReport


@step(experiment_tracker=True, output_materializers=EvaluationReportMaterializer)
def evaluate_model(
    model: Pipeline, test_set: pd.DataFrame, evaluation: EvaluationConfig, target: str
) -> Annotated[EvaluationReport, "evaluation_report"]:
    """Held-out metrics, per-slice metrics and curves; the report renders in the dashboard."""
    report = evaluate(model, test_set, target, evaluation.slice_column, evaluation.slice_bins)
    mlflow.log_metrics({f"test_{name}": value for name, value in report.metrics.items()})
    return report
