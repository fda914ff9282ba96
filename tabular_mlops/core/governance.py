"""The model gate's wider questions, asked of the candidate on its own test rows.

- **Fairness**: metrics per group of each sensitive column (fairlearn's
  ``MetricFrame``) and the gaps between groups (demographic-parity and
  equalized-odds differences), binary models;
- **calibration**: Brier score, expected calibration error and the reliability
  curve of P(positive);
- **robustness**: how many predictions small noise on the numeric features
  flips, and directional expectations declared in config;
- **importance**: permutation importance (scikit-learn) per feature, so two
  versions can be compared;
- **cost**: the expected cost per 1,000 predictions under the config's cost
  matrix, at the model's own decision threshold.

Everything is computed with well-kept libraries where one exists; what is
computed here (the calibration bins, the noise) is a few lines of numpy.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np
import pandas as pd
from pydantic import BaseModel
from sklearn.base import ClassifierMixin

from tabular_mlops.core.columns import column_kind
from tabular_mlops.core.config import (
    CalibrationConfig,
    EvaluationConfig,
    FairnessConfig,
    RobustnessConfig,
    Task,
)
from tabular_mlops.core.latency import ScoringLatency


def decision_cost(y_true: Any, y_pred: Any, matrix: dict[str, dict[str, float]]) -> float:
    """The mean cost of the decisions ``y_pred`` for the truth ``y_true``:
    ``matrix[true label][predicted label]``, 0 where the matrix says nothing."""
    truth, guess = np.asarray(y_true).astype(str), np.asarray(y_pred).astype(str)
    costs = [matrix.get(t, {}).get(p, 0.0) for t, p in zip(truth, guess, strict=True)]
    return float(np.mean(costs)) if costs else 0.0


class GovernanceConfigError(ValueError):
    """A governance setting names a column or label the data does not have."""


class GroupMetrics(BaseModel):
    group: str
    rows: int
    accuracy: float
    selection_rate: float | None = None
    true_positive_rate: float | None = None
    false_positive_rate: float | None = None


class FairnessResult(BaseModel):
    column: str
    groups: list[GroupMetrics]
    #: None: not defined (a multiclass model, or fewer than two groups large enough)
    demographic_parity_difference: float | None = None
    equalized_odds_difference: float | None = None
    #: groups under ``min_group_rows``: shown, but not in the gaps
    small_groups: list[str] = []


class CalibrationResult(BaseModel):
    brier_score: float
    expected_calibration_error: float
    #: per non-empty bin: (mean predicted P(positive), observed share positive, rows)
    curve: list[tuple[float, float, int]]


class DirectionalResult(BaseModel):
    feature: str
    label: str
    direction: str
    step: float
    tolerance: float
    #: the largest move of P(label) against the expected direction (0: none)
    worst_move: float
    violations: int
    example_rows: list[int]


class RobustnessResult(BaseModel):
    noise_scale: float
    flip_share: float
    flipped_rows: list[int]
    directional: list[DirectionalResult] = []


class ErrorGroup(BaseModel):
    group: str
    rows: int
    mae: float


class ErrorGaps(BaseModel):
    """A regressor's mean absolute error per group of a sensitive column, and the gaps."""

    column: str
    groups: list[ErrorGroup]
    #: largest MAE over smallest, and their difference (None: fewer than two large groups)
    ratio: float | None = None
    difference: float | None = None
    small_groups: list[str] = []


class IntervalResult(BaseModel):
    level: float
    half_width: float
    #: the share of test rows whose true value the interval held
    coverage: float


class DirectionalChange(BaseModel):
    feature: str
    direction: str
    step: float
    tolerance: float
    #: the largest move of the prediction against the expected direction (0: none)
    worst_move: float
    violations: int
    example_rows: list[int]


class RegressionRobustness(BaseModel):
    noise_scale: float
    #: mean absolute change of the prediction under noise, over the predictions' std
    mean_change: float
    directional: list[DirectionalChange] = []


class GovernanceReport(BaseModel):
    """What the wider gate measured on the candidate's test rows."""

    task: Task = "classification"
    positive_label: str | None = None
    #: the probability of ``positive_label`` above which the model says it (None: argmax)
    decision_threshold: float | None = None
    fairness: list[FairnessResult] = []
    calibration: CalibrationResult | None = None
    robustness: RobustnessResult | None = None
    #: mean drop in accuracy when the feature's values are shuffled
    importance: dict[str, float] = {}
    #: a few test rows explained (``core/explain.py``): the row, its answer and why;
    #: or why the model has no explanation
    explained_examples: list[dict[str, Any]] = []
    not_explained: str | None = None
    cost_per_1000: float | None = None
    #: regression: MAE gaps between groups, the prediction intervals' test coverage, and
    #: how far noise and declared steps move the prediction
    error_gaps: list[ErrorGaps] = []
    interval: IntervalResult | None = None
    prediction_change: RegressionRobustness | None = None
    #: regression with unit costs: the served decision is this quantile of the predictive
    #: distribution, the prediction plus ``decision_offset``
    decision_quantile: float | None = None
    decision_offset: float | None = None
    #: the same rows' cost per 1,000 decisions without a model (the cost-optimal quantity
    #: of the training targets, every time): the model's worth is the difference
    baseline_cost_per_1000: float | None = None
    #: the scoring path's speed, as the service will run it (measured at evaluation;
    #: packaging measures it again and gates on it)
    latency: ScoringLatency | None = None


def decision_rule(model: ClassifierMixin) -> tuple[str | None, float | None]:
    """(positive label, threshold) of a binary model: the threshold its classifier was
    frozen with (a FixedThresholdClassifier, see ``model_factory.cost_threshold``), else
    None (the most probable class)."""
    from sklearn.base import is_regressor
    from sklearn.model_selection import FixedThresholdClassifier

    if is_regressor(model):
        return None, None
    classes = [str(c) for c in model.classes_]
    if len(classes) != 2:
        return None, None
    classifier = getattr(model, "named_steps", {}).get("classifier", model)
    if isinstance(classifier, FixedThresholdClassifier) and classifier.threshold != "auto":
        return classes[1], float(classifier.threshold)
    return classes[1], None


def fairness(
    labels: pd.Series,
    predicted: np.ndarray,
    sensitive: pd.Series,
    positive: str | None,
    config: FairnessConfig,
) -> FairnessResult:
    """Per-group metrics of one sensitive column, and the gaps among the groups with at
    least ``min_group_rows`` rows (fairlearn)."""
    from fairlearn.metrics import (
        MetricFrame,
        count,
        demographic_parity_difference,
        equalized_odds_difference,
        false_positive_rate,
        selection_rate,
        true_positive_rate,
    )

    groups = sensitive.astype(str).where(sensitive.notna(), "<missing>").to_numpy()
    truth, guess = labels.astype(str).to_numpy(), np.asarray(predicted).astype(str)
    metrics: dict[str, Any] = {"rows": count, "accuracy": _accuracy}
    if positive is not None:
        truth, guess = (truth == positive).astype(int), (guess == positive).astype(int)
        metrics.update(
            selection_rate=selection_rate,
            true_positive_rate=true_positive_rate,
            false_positive_rate=false_positive_rate,
        )
    frame = MetricFrame(metrics=metrics, y_true=truth, y_pred=guess, sensitive_features=groups)
    table = frame.by_group
    rows = [
        GroupMetrics.model_validate(
            {"group": str(group), **{k: None if _undefined(v) else v for k, v in values.items()}}
        )
        for group, values in table.iterrows()
    ]
    small = sorted(g.group for g in rows if g.rows < config.min_group_rows)
    result = FairnessResult(column=str(sensitive.name), groups=rows, small_groups=small)
    large = ~np.isin(groups, small)
    if positive is not None and len(set(groups[large])) >= 2:
        kept = {"sensitive_features": groups[large]}
        result.demographic_parity_difference = float(
            demographic_parity_difference(truth[large], guess[large], **kept)
        )
        result.equalized_odds_difference = float(
            equalized_odds_difference(truth[large], guess[large], **kept)
        )
    return result


def _accuracy(y_true: np.ndarray, y_pred: np.ndarray) -> float:
    return float(np.mean(np.asarray(y_true) == np.asarray(y_pred)))


def _undefined(value: Any) -> bool:
    return value is None or (isinstance(value, float) and math.isnan(value))


def calibration(
    labels: pd.Series, positive_probability: np.ndarray, positive: str, config: CalibrationConfig
) -> CalibrationResult:
    """Brier score (scikit-learn), and the reliability curve over ``bins`` equal-width bins
    with its expected calibration error: the row-weighted gap between the mean
    predicted probability and the observed share of positives, bin by bin."""
    from sklearn.metrics import brier_score_loss

    observed = (labels.astype(str).to_numpy() == positive).astype(float)
    probability = np.clip(np.asarray(positive_probability, dtype=float), 0.0, 1.0)
    which = np.minimum((probability * config.bins).astype(int), config.bins - 1)
    curve, gap = [], 0.0
    for b in range(config.bins):
        inside = which == b
        if inside.any():
            predicted, seen = float(probability[inside].mean()), float(observed[inside].mean())
            curve.append((predicted, seen, int(inside.sum())))
            gap += inside.sum() * abs(seen - predicted)
    return CalibrationResult(
        brier_score=float(brier_score_loss(observed, probability)),
        expected_calibration_error=gap / len(probability),
        curve=curve,
    )


def robustness(
    model: ClassifierMixin, features: pd.DataFrame, config: RobustnessConfig, seed: int = 0
) -> RobustnessResult:
    """Labels flipped by small Gaussian noise on the numeric features, and each declared
    directional expectation checked row by row (with the rows that break it)."""
    rng = np.random.default_rng(seed)
    base = np.asarray(model.predict(features))
    noisy = features.copy()
    for column in features.columns:
        if column_kind(features[column]) == "numeric":
            values = features[column].astype(float)
            noisy[column] = values + rng.normal(
                0, config.noise_scale * (values.std() or 0), len(values)
            )
    flipped = np.flatnonzero(base != np.asarray(model.predict(noisy)))
    classes = [str(c) for c in model.classes_]
    results = []
    for expectation in config.directional:
        if expectation.feature not in features.columns:
            raise GovernanceConfigError(
                f"evaluation.robustness.directional: feature '{expectation.feature}' is not a "
                f"model input; inputs are {list(features.columns)}"
            )
        if expectation.label not in classes:
            raise GovernanceConfigError(
                f"evaluation.robustness.directional: label '{expectation.label}' is not one of "
                f"the model's classes {classes}"
            )
        index = classes.index(expectation.label)
        raised = features.copy()
        raised[expectation.feature] = raised[expectation.feature].astype(float) + expectation.step
        move = model.predict_proba(raised)[:, index] - model.predict_proba(features)[:, index]
        against = -move if expectation.direction == "increases" else move
        broken = np.flatnonzero(against > expectation.tolerance)
        results.append(
            DirectionalResult(
                feature=expectation.feature,
                label=expectation.label,
                direction=expectation.direction,
                step=expectation.step,
                tolerance=expectation.tolerance,
                worst_move=float(max(against.max(), 0.0)),
                violations=len(broken),
                example_rows=[
                    int(features.index[i])
                    for i in broken[np.argsort(-against[broken])][: config.examples]
                ],
            )
        )
    return RobustnessResult(
        noise_scale=config.noise_scale,
        flip_share=len(flipped) / max(len(base), 1),
        flipped_rows=[int(features.index[i]) for i in flipped[: config.examples]],
        directional=results,
    )


#: rows scored in one call by ``importance`` (memory: this many rows of the features)
IMPORTANCE_BATCH_ROWS = 50_000


def importance(
    model: ClassifierMixin, features: pd.DataFrame, labels: pd.Series, repeats: int
) -> dict[str, float]:
    """Permutation importance: the mean drop in accuracy when one feature's values are
    shuffled (``repeats`` shuffles each), most important first.

    scikit-learn's ``permutation_importance`` scores each shuffled copy in a call of its
    own: features x repeats calls (150 for 30 features), and a 200-tree forest pays 36 ms
    a call in per-tree overhead whatever the rows, 5.8 s in all. Here the shuffled copies
    are stacked and scored in as few calls as ``IMPORTANCE_BATCH_ROWS`` allows (0.14 s
    for the same forest), through the serving path (``scoring.scorer_for``) with the model's
    own decision rule."""
    from tabular_mlops.core.scoring import scorer_for
    from tabular_mlops.core.spec import label_indexes

    scorer = scorer_for(model, list(features.columns), features)
    classes = np.asarray([str(c) for c in model.classes_])
    positive, threshold = decision_rule(model)
    truth = np.asarray(labels).astype(str)
    rows = len(features)

    def correct(frame: pd.DataFrame) -> np.ndarray:
        probabilities = scorer.predict_proba_frame(frame)
        predicted = classes[label_indexes(probabilities, list(classes), positive, threshold)]
        copies = len(frame) // max(rows, 1)
        return np.asarray(predicted == np.tile(truth, copies))

    baseline = float(np.mean(correct(features))) if rows else 0.0
    rng = np.random.default_rng(0)
    shuffles = [(column, rng.permutation(rows)) for column in features.columns
                for _ in range(repeats)]  # fmt: skip
    per_call = max(1, IMPORTANCE_BATCH_ROWS // max(rows, 1))
    accuracies: list[float] = []
    for start in range(0, len(shuffles), per_call):
        chunk = shuffles[start : start + per_call]
        stacked = features.iloc[np.tile(np.arange(rows), len(chunk))].reset_index(drop=True)
        for copy, (column, order) in enumerate(chunk):
            shuffled = features[column].to_numpy()[order]
            stacked.iloc[copy * rows : (copy + 1) * rows, features.columns.get_loc(column)] = (
                shuffled
            )
        hits = correct(stacked).reshape(len(chunk), rows)
        accuracies.extend(hits.mean(axis=1))
    drops = baseline - np.asarray(accuracies).reshape(len(features.columns), repeats)
    ranked = sorted(
        zip(features.columns, drops.mean(axis=1), strict=True), key=lambda item: -item[1]
    )
    return {str(name): round(float(value), 6) for name, value in ranked}


def assess(
    model: ClassifierMixin,
    test_set: pd.DataFrame,
    target: str,
    config: EvaluationConfig,
    comparable_only: bool = False,
) -> GovernanceReport:
    """Every governance figure of ``model`` on ``test_set`` (features, the target, and any
    assessment-only columns beside them); ``comparable_only``: just what a candidate is
    compared on (importance and cost), as for the champion."""
    features = test_set[list(model.feature_names_in_)]
    labels = test_set[target].astype(str)
    predicted = np.asarray(model.predict(features)).astype(str)
    positive, threshold = decision_rule(model)
    report = GovernanceReport(positive_label=positive, decision_threshold=threshold)
    if config.cost.matrix:
        report.cost_per_1000 = 1000 * decision_cost(labels, predicted, config.cost.matrix)
    report.importance = importance(model, features, labels, config.importance_repeats)
    if comparable_only:
        return report
    for column in config.fairness.sensitive_columns:
        report.fairness.append(
            fairness(labels, predicted, sensitive(test_set, column), positive, config.fairness)
        )
    if positive is not None:
        index = [str(c) for c in model.classes_].index(positive)
        report.calibration = calibration(
            labels, model.predict_proba(features)[:, index], positive, config.calibration
        )
    report.robustness = robustness(model, features, config.robustness)
    return report


def violations(
    candidate: GovernanceReport, champion: GovernanceReport | None, config: EvaluationConfig
) -> list[str]:
    """What fails the gate, each naming the check, the group or feature and the figures."""
    found = []
    limits = config.fairness
    for result in candidate.fairness:
        for name, value, limit in (
            ("demographic-parity difference", result.demographic_parity_difference,
             limits.max_demographic_parity_difference),
            ("equalized-odds difference", result.equalized_odds_difference,
             limits.max_equalized_odds_difference),
        ):  # fmt: skip
            if value is not None and limit is not None and value > limit:
                rates = ", ".join(
                    f"{g.group} {g.selection_rate:.3f}" for g in result.groups
                    if g.selection_rate is not None and g.group not in result.small_groups
                )  # fmt: skip
                found.append(
                    f"fairness: {name} over '{result.column}' is {value:.3f}, above "
                    f"{limit:g} (selection rate by group: {rates})"
                )
    ece = config.calibration.max_expected_calibration_error
    measured = candidate.calibration.expected_calibration_error if candidate.calibration else None
    if measured is not None and ece is not None and measured > ece:
        found.append(
            f"calibration: expected calibration error {measured:.3f} above {ece:g} "
            "(training.calibration calibrates the probabilities)"
        )
    robust = candidate.robustness
    limit = config.robustness.max_flip_share
    if robust and limit is not None and robust.flip_share > limit:
        found.append(
            f"robustness: noise of {robust.noise_scale:g} std flips {robust.flip_share:.1%} of "
            f"predictions, above {limit:.1%} (e.g. rows {robust.flipped_rows})"
        )
    found += directional_violations(robust.directional if robust else [], lambda d: f"P({d.label})")
    return found + cost_violations(candidate, champion, config)


def sensitive(test_set: pd.DataFrame, column: str) -> pd.Series:
    """A sensitive column's values on the test rows, or an error naming the key and fix."""
    if column not in test_set.columns:
        raise GovernanceConfigError(
            f"evaluation.fairness.sensitive_columns: '{column}' is not in the data; keep it "
            "as a feature or list it in data.assessment_columns"
        )
    return test_set[column]


def directional_violations(
    results: Sequence[DirectionalResult | DirectionalChange], moved: Callable[[Any], str]
) -> list[str]:
    """Each declared direction the model broke (``moved``: P(label), or the prediction)."""
    return [
        f"robustness: raising '{d.feature}' by {d.step:g} moves {moved(d)} against "
        f"'{d.direction}' by up to {d.worst_move:.4g} (tolerance {d.tolerance:g}) on "
        f"{d.violations} rows (e.g. rows {d.example_rows})"
        for d in results
        if d.violations
    ]


def cost_violations(
    candidate: GovernanceReport, champion: GovernanceReport | None, config: EvaluationConfig
) -> list[str]:
    """A candidate whose cost per 1,000 is above the champion's on the same rows (beyond
    ``cost.max_increase_per_1000``): a classifier's decisions' or a regressor's."""
    if (
        candidate.cost_per_1000 is not None
        and champion is not None
        and champion.cost_per_1000 is not None
        and candidate.cost_per_1000 > champion.cost_per_1000 + config.cost.max_increase_per_1000
    ):
        return [
            f"cost: {candidate.cost_per_1000:.1f} per 1,000 predictions, above the champion's "
            f"{champion.cost_per_1000:.1f} on the same rows"
        ]
    return []


def importance_shift(
    candidate: dict[str, float], champion: dict[str, float], top: int = 5
) -> list[tuple[str, float, float]]:
    """The features whose importance changed most between two versions:
    (feature, champion's, candidate's), largest change first."""
    names = set(candidate) | set(champion)
    changes = [(n, champion.get(n, 0.0), candidate.get(n, 0.0)) for n in names]
    return sorted(changes, key=lambda c: -abs(c[2] - c[1]))[:top]


def governance_metrics(report: GovernanceReport | None) -> dict[str, float]:
    """The headline figures as flat metrics (MLflow, metadata): calibration, fairness
    gaps per column, noise flips, cost, threshold."""
    if report is None:
        return {}
    figures: dict[str, float | None] = {
        "brier_score": report.calibration.brier_score if report.calibration else None,
        "expected_calibration_error": report.calibration.expected_calibration_error
        if report.calibration
        else None,
        "noise_flip_share": report.robustness.flip_share if report.robustness else None,
        "cost_per_1000": report.cost_per_1000,
        "baseline_cost_per_1000": report.baseline_cost_per_1000,
        "decision_threshold": report.decision_threshold,
        "single_row_p99_ms": report.latency.single_row_p99_ms if report.latency else None,
        "rows_per_second": report.latency.rows_per_second if report.latency else None,
    }
    if report.interval is not None:
        figures["interval_coverage"] = report.interval.coverage
        figures["interval_half_width"] = report.interval.half_width
    if report.prediction_change is not None:
        figures["noise_mean_change"] = report.prediction_change.mean_change
    for gaps in report.error_gaps:
        figures[f"mae_ratio_{gaps.column}"] = gaps.ratio
        figures[f"mae_difference_{gaps.column}"] = gaps.difference
    for result in report.fairness:
        figures[f"demographic_parity_difference_{result.column}"] = (
            result.demographic_parity_difference
        )
        figures[f"equalized_odds_difference_{result.column}"] = result.equalized_odds_difference
    return {k: v for k, v in figures.items() if v is not None}
