from __future__ import annotations

import logging
from typing import Annotated

import pandas as pd
from sklearn.pipeline import Pipeline
from zenml import log_metadata, step

from tabular_mlops.adapters.champion import Champion, load_artifact
from tabular_mlops.core.config import EvaluationConfig, PromotionConfig
from tabular_mlops.core.gate import PromotionDecision, judge
from tabular_mlops.core.report import EvaluationReport

logger = logging.getLogger(__name__)


@step
def validate_model(
    report: EvaluationReport,
    test_set: pd.DataFrame,
    champion: Champion,
    promotion: PromotionConfig,
    evaluation: EvaluationConfig,
    target: str,
) -> Annotated[PromotionDecision, "promotion_decision"]:
    """The model gate: floors, a lift over the trivial baselines, no regression and no
    higher cost than the champion, and the fairness, calibration and robustness limits.
    The champion and the baselines are scored on the candidate's own test rows, so the
    comparison is like for like even when the data has changed since the champion was
    trained."""
    champion_model: Pipeline | None = (
        load_artifact(champion.model_artifact_id) if champion.model_artifact_id else None
    )
    decision = judge(
        report.metrics, report.governance, champion_model, champion.version, test_set, target,
        promotion, evaluation, report.task, report.baselines,
    )  # fmt: skip
    logger.info(
        "model gate: %s (%s)",
        "approved" if decision.approved else "rejected",
        "; ".join(decision.reasons),
    )
    if decision.accepted_implausible:  # on the version, where a reviewer looks
        log_metadata(
            metadata={"accepted_implausible": decision.accepted_implausible}, infer_model=True
        )
    return decision
