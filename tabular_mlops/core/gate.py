"""The model gate's decision: absolute floors, and no regression against the champion."""

from __future__ import annotations

from pydantic import BaseModel

from tabular_mlops.core.config import PromotionConfig


class PromotionDecision(BaseModel):
    approved: bool
    reasons: list[str]
    primary_metric: str
    candidate_metrics: dict[str, float]
    champion_metrics: dict[str, float] | None = None
    champion_version: str | None = None


def decide(
    candidate: dict[str, float],
    champion: dict[str, float] | None,
    promotion: PromotionConfig,
    champion_version: str | None = None,
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
