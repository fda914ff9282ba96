from __future__ import annotations

import functools
from collections.abc import Callable
from typing import Annotated

import mlflow
import numpy as np
import pandas as pd
from sklearn.pipeline import Pipeline
from zenml import step

from materializers.evaluation_report_materializer import EvaluationReportMaterializer
from tabular_mlops.core import regression
from tabular_mlops.core.config import EvaluationConfig
from tabular_mlops.core.explain import NotExplainableError, explained_examples
from tabular_mlops.core.governance import assess, decision_rule, governance_metrics
from tabular_mlops.core.latency import measure
from tabular_mlops.core.metrics import evaluate
from tabular_mlops.core.report import BaselineScore, EvaluationReport
from tabular_mlops.core.scoring import rows_of_frame, scorer_for
from tabular_mlops.core.spec import label_indexes


@step(experiment_tracker=True, output_materializers=EvaluationReportMaterializer)
def evaluate_model(
    model: Pipeline,
    test_set: pd.DataFrame,
    evaluation: EvaluationConfig,
    target: str,
    baselines: list[BaselineScore] | None = None,
) -> Annotated[EvaluationReport, "evaluation_report"]:
    """Held-out metrics, per-slice metrics and curves, and the governance figures (fairness,
    calibration, robustness, importance, cost), beside the trivial baselines' metrics on
    the same rows; the report renders in the dashboard."""
    report = evaluate(model, test_set, target, evaluation.slice_column, evaluation.slice_bins)
    regressor = report.task == "regression"
    governance = (regression.assess if regressor else assess)(model, test_set, target, evaluation)
    features = test_set[list(model.feature_names_in_)]
    scorer = scorer_for(model, list(features.columns), features)
    positive, threshold = decision_rule(model)
    # as the service answers: a class by the model's rule, or the predicted value
    rule: Callable[[np.ndarray], np.ndarray] = (
        np.ravel
        if regressor
        else functools.partial(
            label_indexes, classes=report.classes, positive_label=positive, threshold=threshold
        )
    )
    governance.latency = measure(scorer, rule, rows_of_frame(features))
    try:  # why a few test rows got their answers, for the report and the card
        governance.explained_examples = explained_examples(model, test_set)
    except NotExplainableError as exc:
        governance.not_explained = str(exc)
    report = report.model_copy(update={"governance": governance, "baselines": baselines or []})
    mlflow.log_metrics(
        {f"test_{name}": value for name, value in report.metrics.items()}
        | governance_metrics(report.governance)
    )
    return report
