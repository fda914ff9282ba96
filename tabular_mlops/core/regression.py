"""What a regressor is judged on: its errors, its prediction intervals, the cost of the
decision it serves, and the same wider questions a classifier is asked (fairness as
error gaps between groups, robustness, importance).

**Intervals** are split-conformal: the out-of-fold absolute errors of the training
split (5 seeded folds) give the half-width that held ``level`` of them, with the
finite-sample correction ``ceil((n + 1) * level) / n``; the test split then says how
many true values the intervals really held. This is the absolute-residual method
MAPIE calls "split" (or "cv+" without the per-fold models); a few lines of numpy and
a known-answer test are easier to keep than MAPIE's API, which changed shape
between its 0.x and 1.x releases.

**The decision** (e.g. how many units to stock) under a cost per unit short
(``under``) and per unit over (``over``) is the newsvendor quantile
``under / (under + over)`` of the predictive distribution: the prediction plus that
quantile of the out-of-fold signed errors (truth - prediction).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import numpy as np
import pandas as pd
from pydantic import BaseModel
from sklearn import metrics

from tabular_mlops.core.columns import column_kind
from tabular_mlops.core.config import CostConfig, EvaluationConfig, IntervalConfig
from tabular_mlops.core.governance import (
    DirectionalChange,
    ErrorGaps,
    ErrorGroup,
    GovernanceReport,
    IntervalResult,
    RegressionRobustness,
    cost_violations,
    directional_violations,
    sensitive,
)

#: a target within this share of the mean absolute target of zero makes MAPE meaningless
NEAR_ZERO_SHARE = 0.01
#: the fitted pipeline's attribute holding its :class:`PredictionErrors`
ERRORS_ATTRIBUTE = "prediction_errors_"


class PredictionErrors(BaseModel):
    """What the out-of-fold errors of the training split say about new predictions."""

    #: the share of true values an interval should hold, and its half-width
    level: float
    half_width: float
    #: with unit costs: the newsvendor quantile and the offset added to each prediction
    decision_quantile: float | None = None
    decision_offset: float | None = None
    #: ...and the decision without a model: the same quantile of the training targets,
    #: every time (what the model's decisions are worth is measured against it)
    baseline_decision: float | None = None
    #: out-of-fold rows the figures come from
    rows: int
    #: the lowest an interval or a decision reaches: 0 when no training target was
    #: negative (a count, an amount: stocking -2 units means nothing), else none
    floor: float | None = None


def regression_scores(truth: Any, predicted: Any) -> dict[str, float]:
    """MAE, RMSE, R², WAPE (total absolute error over total absolute truth) and, where no
    true value is near zero, MAPE."""
    y, p = np.asarray(truth, dtype=float), np.asarray(predicted, dtype=float)
    if len(y) == 0:
        return {}
    errors = np.abs(y - p)
    scores = {
        "mae": float(errors.mean()),
        "rmse": float(math.sqrt(np.mean(errors**2))),
        "wape": float(errors.sum() / np.abs(y).sum()) if np.abs(y).sum() else math.nan,
    }
    if len(y) > 1 and np.ptp(y) > 0:
        scores["r2"] = float(metrics.r2_score(y, p))
    scale = float(np.abs(y).mean())
    if scale and np.abs(y).min() > NEAR_ZERO_SHARE * scale:
        scores["mape"] = float(np.mean(errors / np.abs(y)))
    return {name: value for name, value in scores.items() if not math.isnan(value)}


def conformal_half_width(absolute_errors: Sequence[float], level: float) -> float:
    """The split-conformal half-width: the ``ceil((n + 1) level)``-th smallest absolute
    error (the whole range when there are too few errors for that rank)."""
    errors = np.sort(np.asarray(absolute_errors, dtype=float))
    n = len(errors)
    if n == 0:
        return math.inf
    rank = math.ceil((n + 1) * level)
    return float(errors[min(rank, n) - 1])


def newsvendor_quantile(under: float, over: float) -> float:
    """The cost-optimal quantile of demand: ``under / (under + over)``."""
    return under / (under + over)


def decision_cost(truth: Any, decision: Any, under: float, over: float) -> float:
    """The mean cost of the decisions: ``under`` per unit short, ``over`` per unit over."""
    y, d = np.asarray(truth, dtype=float), np.asarray(decision, dtype=float)
    if len(y) == 0:
        return 0.0
    return float(np.mean(under * np.maximum(y - d, 0) + over * np.maximum(d - y, 0)))


def prediction_errors(
    truth: Any, out_of_fold: Any, interval: IntervalConfig, cost: CostConfig
) -> PredictionErrors:
    """The interval's half-width and the decision's offset from out-of-fold predictions."""
    signed = np.asarray(truth, dtype=float) - np.asarray(out_of_fold, dtype=float)
    errors = PredictionErrors(
        level=interval.level,
        half_width=conformal_half_width(np.abs(signed), interval.level),
        rows=len(signed),
        floor=0.0 if len(signed) and float(np.min(truth)) >= 0 else None,
    )
    if cost.under_prediction is not None and cost.over_prediction is not None:
        quantile = newsvendor_quantile(cost.under_prediction, cost.over_prediction)
        errors.decision_quantile = quantile
        errors.decision_offset = float(np.quantile(signed, quantile))
        errors.baseline_decision = float(np.quantile(np.asarray(truth, dtype=float), quantile))
    return errors


def errors_of(model: Any) -> PredictionErrors | None:
    """The :class:`PredictionErrors` a regressor was fitted with (None: none recorded)."""
    recorded = getattr(model, ERRORS_ATTRIBUTE, None)
    return PredictionErrors.model_validate(recorded) if recorded else None


def predict(model: Any, features: pd.DataFrame) -> np.ndarray:
    return np.asarray(model.predict(features), dtype=float)


def decisions(model: Any, predicted: np.ndarray) -> np.ndarray:
    """The served decision per prediction: the prediction moved by the decision offset
    (the prediction itself when no unit costs were given)."""
    errors = errors_of(model)
    offset = errors.decision_offset if errors and errors.decision_offset is not None else 0.0
    floor = errors.floor if errors and errors.floor is not None else -np.inf
    return np.maximum(predicted + offset, floor)


def error_gaps(
    truth: np.ndarray, predicted: np.ndarray, groups: pd.Series, column: str, min_rows: int
) -> ErrorGaps:
    keys = groups.astype(str).where(groups.notna(), "<missing>").to_numpy()
    result = ErrorGaps(column=column, groups=[])
    errors = np.abs(truth - predicted)
    for key in sorted(set(keys)):
        mask = keys == key
        result.groups.append(
            ErrorGroup(group=key, rows=int(mask.sum()), mae=float(errors[mask].mean()))
        )
    large = [g for g in result.groups if g.rows >= min_rows]
    result.small_groups = [g.group for g in result.groups if g.rows < min_rows]
    if len(large) >= 2:
        worst, best = max(g.mae for g in large), min(g.mae for g in large)
        result.difference = worst - best
        result.ratio = worst / best if best > 0 else math.inf
    return result


def robustness(
    model: Any, features: pd.DataFrame, config: EvaluationConfig
) -> RegressionRobustness:
    """Mean change of the prediction under Gaussian noise on the numeric features, and the
    declared directional expectations."""
    settings = config.robustness
    base = predict(model, features)
    rng = np.random.default_rng(0)
    noisy = features.copy()
    for name in features.columns:
        if column_kind(features[name]) == "numeric":
            values = features[name].astype(float)
            noisy[name] = values + rng.normal(0, settings.noise_scale * float(values.std() or 0),
                                              len(values))  # fmt: skip
    spread = float(base.std()) or 1.0
    change = float(np.mean(np.abs(predict(model, noisy) - base))) / spread
    result = RegressionRobustness(noise_scale=settings.noise_scale, mean_change=change)
    for expectation in settings.directional:
        if expectation.feature not in features.columns:
            raise ValueError(
                f"evaluation.robustness.directional: '{expectation.feature}' is not a feature; "
                f"features are {list(features.columns)}"
            )
        raised = features.copy()
        raised[expectation.feature] = features[expectation.feature].astype(float) + (
            expectation.step
        )
        move = predict(model, raised) - base
        against = -move if expectation.direction == "increases" else move
        bad = np.flatnonzero(against > expectation.tolerance)
        result.directional.append(
            DirectionalChange(
                feature=expectation.feature,
                direction=expectation.direction,
                step=expectation.step,
                tolerance=expectation.tolerance,
                worst_move=float(max(against.max(initial=0.0), 0.0)),
                violations=len(bad),
                example_rows=[int(i) for i in bad[: settings.examples]],
            )
        )
    return result


def importance(
    model: Any, features: pd.DataFrame, truth: np.ndarray, repeats: int
) -> dict[str, float]:
    """Permutation importance: the mean rise in MAE when one feature's values are shuffled
    (``repeats`` shuffles each), most important first; the shuffled copies are stacked and
    scored in one call."""
    rows = len(features)
    if rows == 0:
        return {}
    baseline = float(np.mean(np.abs(truth - predict(model, features))))
    rng = np.random.default_rng(0)
    copies = []
    for column in features.columns:
        for _ in range(repeats):
            shuffled = features.copy()
            shuffled[column] = features[column].to_numpy()[rng.permutation(rows)]
            copies.append(shuffled)
    stacked = pd.concat(copies, ignore_index=True)
    errors = np.abs(np.tile(truth, len(copies)) - predict(model, stacked)).reshape(
        len(features.columns), repeats, rows
    )
    rises = errors.mean(axis=2).mean(axis=1) - baseline
    ranked = sorted(zip(features.columns, rises, strict=True), key=lambda item: -item[1])
    return {str(name): round(float(value), 6) for name, value in ranked}


def assess(
    model: Any,
    test_set: pd.DataFrame,
    target: str,
    config: EvaluationConfig,
    comparable_only: bool = False,
) -> GovernanceReport:
    """Every governance figure of a regressor on ``test_set``; ``comparable_only``: just
    what a candidate is compared with the champion on (importance and cost)."""
    features = test_set[list(model.feature_names_in_)]
    truth = test_set[target].to_numpy(dtype=float)
    predicted = predict(model, features)
    report = GovernanceReport(task="regression")
    errors = errors_of(model)
    if errors is not None:
        report.decision_quantile = errors.decision_quantile
        report.decision_offset = errors.decision_offset
    cost = config.cost
    if cost.under_prediction is not None and cost.over_prediction is not None:
        report.cost_per_1000 = 1000 * decision_cost(
            truth, decisions(model, predicted), cost.under_prediction, cost.over_prediction
        )
        if errors is not None and errors.baseline_decision is not None:
            report.baseline_cost_per_1000 = 1000 * decision_cost(
                truth, np.full(len(truth), errors.baseline_decision),
                cost.under_prediction, cost.over_prediction,
            )  # fmt: skip
    report.importance = importance(model, features, truth, config.importance_repeats)
    if comparable_only:
        return report
    for column in config.fairness.sensitive_columns:
        groups = sensitive(test_set, column)
        report.error_gaps.append(
            error_gaps(truth, predicted, groups, column, config.fairness.min_group_rows)
        )
    if errors is not None:
        # the interval as served: floored where the answers are (a count's at 0)
        low = np.maximum(
            predicted - errors.half_width, -np.inf if errors.floor is None else errors.floor
        )
        held = (truth >= low) & (truth <= predicted + errors.half_width)
        report.interval = IntervalResult(
            level=errors.level, half_width=errors.half_width, coverage=float(held.mean())
        )
    report.prediction_change = robustness(model, features, config)
    return report


def violations(
    candidate: GovernanceReport,
    champion: GovernanceReport | None,
    config: EvaluationConfig,
) -> list[str]:
    """What fails the gate, each naming the check, the group or feature and the figures."""
    found = []
    limits = config.fairness
    for gaps in candidate.error_gaps:
        maes = ", ".join(f"{g.group} {g.mae:.4g}" for g in gaps.groups
                         if g.group not in gaps.small_groups)  # fmt: skip
        for name, value, limit in (
            ("MAE ratio", gaps.ratio, limits.max_error_ratio),
            ("MAE difference", gaps.difference, limits.max_error_difference),
        ):
            if value is not None and limit is not None and value > limit:
                found.append(
                    f"fairness: {name} between groups of '{gaps.column}' is {value:.3f}, above "
                    f"{limit:g} (MAE by group: {maes})"
                )
    shortfall = config.interval.max_coverage_shortfall
    if candidate.interval is not None and shortfall is not None:
        held = candidate.interval
        if held.coverage < held.level - shortfall:
            found.append(
                f"intervals: the {held.level:.0%} prediction intervals (±{held.half_width:.4g}) "
                f"held {held.coverage:.1%} of the test split's true values, below "
                f"{held.level - shortfall:.1%} (the errors on new rows are larger than on the "
                "training split's folds)"
            )
    robust, limit = candidate.prediction_change, config.robustness.max_mean_change
    if robust and limit is not None and robust.mean_change > limit:
        found.append(
            f"robustness: noise of {robust.noise_scale:g} std moves predictions by "
            f"{robust.mean_change:.3f} of their std on average, above {limit:g}"
        )
    found += directional_violations(
        robust.directional if robust else [], lambda d: "the prediction"
    )
    return found + cost_violations(candidate, champion, config)
