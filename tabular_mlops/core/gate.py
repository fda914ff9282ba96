"""The model gate's decision: absolute floors, no regression against the champion, and the
governance limits (fairness, calibration, robustness, cost; ``core/governance.py``)."""

from __future__ import annotations

import pandas as pd
from pydantic import BaseModel
from sklearn.base import ClassifierMixin

from tabular_mlops.core.config import EvaluationConfig, PromotionConfig
from tabular_mlops.core.governance import GovernanceReport, assess, violations
from tabular_mlops.core.metrics import evaluate


class PromotionDecision(BaseModel):
    approved: bool
    reasons: list[str]
    primary_metric: str
    candidate_metrics: dict[str, float]
    champion_metrics: dict[str, float] | None = None
    champion_version: str | None = None
    #: fairness, calibration, robustness, importance and cost of both, same rows
    governance: GovernanceReport | None = None
    champion_governance: GovernanceReport | None = None


def judge(
    candidate_metrics: dict[str, float],
    candidate_governance: GovernanceReport | None,
    champion_model: ClassifierMixin | None,
    champion_version: str | None,
    test_set: pd.DataFrame,
    target: str,
    promotion: PromotionConfig,
    evaluation: EvaluationConfig,
) -> PromotionDecision:
    """The whole model gate: floors, no regression on the primary metric and no higher
    cost than the champion (scored on the candidate's own test rows), and the limits on
    fairness, calibration and robustness."""
    champion_metrics = champion_governance = None
    if champion_model is not None:
        champion_metrics = evaluate(champion_model, test_set, target).metrics
        champion_governance = assess(
            champion_model, test_set, target, evaluation, comparable_only=True
        )
    found = (
        violations(candidate_governance, champion_governance, evaluation)
        if candidate_governance is not None
        else []
    )
    decision = decide(candidate_metrics, champion_metrics, promotion, champion_version, found)
    return decision.model_copy(
        update={"governance": candidate_governance, "champion_governance": champion_governance}
    )


def decide(
    candidate: dict[str, float],
    champion: dict[str, float] | None,
    promotion: PromotionConfig,
    champion_version: str | None = None,
    governance_violations: list[str] | None = None,
) -> PromotionDecision:
    reasons = []
    for name, floor in sorted(promotion.min_metrics.items()):
        value = candidate.get(name)
        if value is None:
            reasons.append(f"{name} could not be computed on the test set (floor {floor})")
        elif value < floor:
            reasons.append(f"{name} = {value:.4f} is below the floor {floor}")
    primary = promotion.primary_metric
    if champion is not None and primary in champion:
        new, old = candidate.get(primary, float("-inf")), champion[primary]
        if new < old - promotion.max_regression:
            reasons.append(
                f"{primary} = {new:.4f} regresses against champion version "
                f"{champion_version} ({old:.4f}) by more than {promotion.max_regression}"
            )
    reasons.extend(governance_violations or [])
    return PromotionDecision(
        approved=not reasons,
        reasons=reasons or ["all gates passed"],
        primary_metric=primary,
        candidate_metrics=candidate,
        champion_metrics=champion,
        champion_version=champion_version,
    )


class PromotionOutcome(BaseModel):
    """What the promote step did: the continuous-training loop redeploys only on ``promoted``."""

    promoted: bool
    stage: str
    model_version: str
    reason: str = ""
    #: the version at the stage the candidate was last gated against (None: there was none)
    gated_against: str | None = None

    def __str__(self) -> str:
        return f"promoted to {self.stage}" if self.promoted else f"not promoted: {self.reason}"
