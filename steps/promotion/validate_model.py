from __future__ import annotations

import logging
from typing import Annotated

import pandas as pd
from sklearn.pipeline import Pipeline
from zenml import step

from tabular_mlops.adapters.champion import Champion, load_artifact
from tabular_mlops.core.config import PromotionConfig
from tabular_mlops.core.gate import PromotionDecision, decide
from tabular_mlops.core.metrics import evaluate
from tabular_mlops.core.report import EvaluationReport

logger = logging.getLogger(__name__)


@step
def validate_model(
    report: EvaluationReport,
    test_set: pd.DataFrame,
    champion: Champion,
    promotion: PromotionConfig,
    target: str,
) -> Annotated[PromotionDecision, "promotion_decision"]:
    """The model gate. The champion is scored on the candidate's own test rows,
    so the comparison is like for like even when the data has changed since
    the champion was trained."""
    champion_metrics = None
    if champion.model_artifact_id is not None:
        champion_model: Pipeline = load_artifact(champion.model_artifact_id)
        champion_metrics = evaluate(champion_model, test_set, target).metrics
    decision = decide(report.metrics, champion_metrics, promotion, champion.version)
    logger.info(
        "model gate: %s (%s)",
        "approved" if decision.approved else "rejected",
        "; ".join(decision.reasons),
    )
    return decision
