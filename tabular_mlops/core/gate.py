"""The model gate's decision: absolute floors, no regression against the champion, and the
governance limits (fairness, calibration, robustness, cost; ``core/governance.py``)."""

from __future__ import annotations

from collections.abc import Sequence

import pandas as pd
from pydantic import BaseModel
from sklearn.base import ClassifierMixin, is_regressor

from tabular_mlops.core import governance, regression
from tabular_mlops.core.baselines import baseline_violations
from tabular_mlops.core.config import LOWER_IS_BETTER, EvaluationConfig, PromotionConfig, Task
from tabular_mlops.core.governance import GovernanceReport
from tabular_mlops.core.metrics import evaluate
from tabular_mlops.core.report import BaselineScore


class PromotionDecision(BaseModel):
    task: Task = "classification"
    approved: bool
    reasons: list[str]
    primary_metric: str
    candidate_metrics: dict[str, float]
    champion_metrics: dict[str, float] | None = None
    champion_version: str | None = None
    #: fairness, calibration, robustness, importance and cost of both, same rows
    governance: GovernanceReport | None = None
    champion_governance: GovernanceReport | None = None
    #: scores above the plausibility ceiling that the config accepted, and its reason
    accepted_implausible: list[str] = []


def judge(
    candidate_metrics: dict[str, float],
    candidate_governance: GovernanceReport | None,
    champion_model: ClassifierMixin | None,
    champion_version: str | None,
    test_set: pd.DataFrame,
    target: str,
    promotion: PromotionConfig,
    evaluation: EvaluationConfig,
    task: Task = "classification",
    baselines: Sequence[BaselineScore] = (),
) -> PromotionDecision:
    """The whole model gate: floors, a lift over the trivial baselines, no regression on
    the primary metric and no higher cost than the champion (all scored on the
    candidate's own test rows), and the limits on fairness, calibration and robustness."""
    champion_metrics = champion_governance = None
    regressor = task == "regression"
    judged = regression if regressor else governance
    if champion_model is not None:
        if is_regressor(champion_model) != regressor:
            raise ValueError(
                f"the champion (version {champion_version}) is a "
                f"{'regressor' if is_regressor(champion_model) else 'classifier'} and the "
                "candidate is not: a model of another task needs a model name of its own "
                "(model.name)"
            )
        champion_metrics = evaluate(champion_model, test_set, target).metrics
        champion_governance = judged.assess(
            champion_model, test_set, target, evaluation, comparable_only=True
        )
    found = (
        judged.violations(candidate_governance, champion_governance, evaluation)
        if candidate_governance is not None
        else []
    )
    if promotion.baseline is not None:
        found = (
            baseline_violations(
                candidate_metrics, baselines, promotion.primary_metric, promotion.baseline.min_lift
            )
            + found
        )
    decision = decide(
        candidate_metrics, champion_metrics, promotion, champion_version, found, len(test_set)
    )
    return decision.model_copy(
        update={
            "task": task,
            "governance": candidate_governance,
            "champion_governance": champion_governance,
        }
    )


def decide(
    candidate: dict[str, float],
    champion: dict[str, float] | None,
    promotion: PromotionConfig,
    champion_version: str | None = None,
    governance_violations: list[str] | None = None,
    test_rows: int | None = None,
) -> PromotionDecision:
    reasons = []
    implausible = too_good_to_be_true(candidate, promotion, test_rows)
    accepted = []
    if implausible and promotion.accept_implausible:
        accepted = [f"{text}; accepted: {promotion.accept_implausible}" for text in implausible]
    else:
        reasons += [
            f"{text}: a leak (a column that carries the label) is likelier than a perfect "
            "model; if the score is real, say why in promotion.accept_implausible"
            for text in implausible
        ]
    for name, floor in sorted(promotion.min_metrics.items()):
        value = candidate.get(name)
        if value is None:
            reasons.append(f"{name} could not be computed on the test set (floor {floor})")
        elif value < floor:
            reasons.append(f"{name} = {value:.4f} is below the floor {floor}")
    for name, ceiling in sorted(promotion.max_metrics.items()):
        value = candidate.get(name)
        if value is None:
            reasons.append(f"{name} could not be computed on the test set (ceiling {ceiling})")
        elif value > ceiling:
            reasons.append(f"{name} = {value:.4f} is above the ceiling {ceiling}")
    primary = promotion.primary_metric
    if champion is not None and primary in champion:
        # worse is lower for a score, higher for an error: compare in the score's direction
        sign = -1.0 if primary in LOWER_IS_BETTER else 1.0
        new = candidate.get(primary, float("inf") * -sign)
        old = champion[primary]
        if sign * new < sign * old - promotion.max_regression:
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
        accepted_implausible=accepted,
    )


def too_good_to_be_true(
    metrics: dict[str, float], promotion: PromotionConfig, test_rows: int | None
) -> list[str]:
    """Each test score at or above its plausibility ceiling, on a test split large enough
    for the score to mean something (``promotion.plausibility_min_rows``)."""
    if test_rows is None or test_rows < promotion.plausibility_min_rows:
        return []
    return [
        f"{name} = {metrics[name]:.4f} on {test_rows} test rows is at or above the "
        f"plausibility ceiling {ceiling}"
        for name, ceiling in sorted(promotion.plausibility_ceiling.items())
        if name in metrics and metrics[name] >= ceiling
    ]


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
