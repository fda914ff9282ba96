"""Is ML worth it here? Trivial models every candidate must beat on its own test rows.

- **the trivial model**: scikit-learn's ``DummyClassifier`` with the prior strategy (the
  class shares; as a decision, the majority class), or ``DummyRegressor`` predicting the
  training median where the primary metric is an absolute error (MAE, WAPE, MAPE: the
  median minimises them) and the mean otherwise (RMSE, R²);
- **a one-feature rule**, when ``promotion.baseline.feature`` names a column: a depth-2
  decision tree on that column alone (the rule a person would write: "over 40 months,
  churn is unlikely"), through the same preprocessing as the model.

Both are fitted on the training split and scored by the same metrics as the candidate;
the gate refuses a candidate whose primary metric does not beat the best of them by
``promotion.baseline.min_lift`` (in the metric's units, in its direction).
"""

from __future__ import annotations

from collections.abc import Sequence

import pandas as pd
from sklearn.dummy import DummyClassifier, DummyRegressor
from sklearn.pipeline import Pipeline
from sklearn.tree import DecisionTreeClassifier, DecisionTreeRegressor

from tabular_mlops.core.config import LOWER_IS_BETTER, BaselineConfig, Task
from tabular_mlops.core.metrics import evaluate
from tabular_mlops.core.model_factory import ESTIMATOR_STEP, make_preprocessor
from tabular_mlops.core.report import BaselineScore

#: primary metrics the median minimises (an absolute error), else the mean
MEDIAN_METRICS = frozenset({"mae", "wape", "mape"})


class BaselineError(ValueError):
    """A baseline cannot be built as configured; the message names the key."""


def trivial_model(task: Task, primary_metric: str) -> tuple[str, str, object]:
    """(name, what it does, the estimator) of the task's trivial model."""
    if task == "classification":
        return (
            "majority",
            "the class shares of the training split (DummyClassifier, prior)",
            (DummyClassifier(strategy="prior")),
        )
    strategy = "median" if primary_metric in MEDIAN_METRICS else "mean"
    return (
        strategy,
        f"the training split's {strategy}, every time (DummyRegressor)",
        (DummyRegressor(strategy=strategy)),
    )


def score_baselines(
    train_set: pd.DataFrame,
    test_set: pd.DataFrame,
    target: str,
    task: Task,
    primary_metric: str,
    config: BaselineConfig,
    not_features: Sequence[str] = (),
    date_columns: Sequence[str] = (),
) -> list[BaselineScore]:
    """Each configured baseline fitted on ``train_set`` and scored on ``test_set``."""
    features = train_set.drop(columns=[target, *not_features])
    step = ESTIMATOR_STEP[task]
    name, description, estimator = trivial_model(task, primary_metric)
    models = [(name, description, Pipeline([
        ("preprocess", make_preprocessor(features, date_columns)), (step, estimator)
    ]), features)]  # fmt: skip
    if config.feature is not None:
        if config.feature not in features.columns:
            raise BaselineError(
                f"promotion.baseline.feature: '{config.feature}' is not a feature; features "
                f"are {list(features.columns)}"
            )
        one = features[[config.feature]]
        tree = (DecisionTreeClassifier if task == "classification" else DecisionTreeRegressor)(
            max_depth=2, random_state=0
        )
        dates = [c for c in date_columns if c == config.feature]
        models.append((
            f"rule on {config.feature}",
            f"a depth-2 decision tree on '{config.feature}' alone",
            Pipeline([("preprocess", make_preprocessor(one, dates)), (step, tree)]),
            one,
        ))  # fmt: skip
    scores = []
    for name, description, model, inputs in models:
        model.fit(inputs, train_set[target])
        metrics = evaluate(model, test_set, target).metrics
        scores.append(BaselineScore(name=name, description=description, metrics=metrics,
                                    primary_metric=primary_metric))  # fmt: skip
    return scores


def lift(candidate: float, baseline: float, metric: str) -> float:
    """How much better the candidate is, in the metric's units (positive: better)."""
    return baseline - candidate if metric in LOWER_IS_BETTER else candidate - baseline


def baseline_violations(
    candidate: dict[str, float],
    baselines: Sequence[BaselineScore],
    primary_metric: str,
    min_lift: float,
) -> list[str]:
    """The gate's reason when the candidate does not beat a baseline by ``min_lift`` (and
    never by nothing: a tie is no reason to run a model), naming both figures."""
    value = candidate.get(primary_metric)
    if value is None and baselines:  # e.g. MAPE, left out where a target is near zero
        return [f"{primary_metric} could not be computed on the test set, so the candidate "
                "cannot be compared with the baselines: choose another promotion."
                "primary_metric"]  # fmt: skip
    reasons = []
    for baseline in baselines:
        theirs = baseline.metrics.get(primary_metric)
        if value is None or theirs is None:
            continue
        gained = lift(value, theirs, primary_metric)
        if gained <= 0 or gained < min_lift:
            reasons.append(
                f"{primary_metric} = {value:.4f} does not beat the {baseline.name} baseline "
                f"({baseline.description}: {theirs:.4f}) by promotion.baseline.min_lift "
                f"{min_lift:g} (lift {gained:+.4f}): a trivial model does as well"
            )
    return reasons
