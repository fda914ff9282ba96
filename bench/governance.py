"""What the wider model gate costs a training run: each governance check timed against the
plain evaluation it extends (metrics, slices, curves), on the same model and rows.

Three cases: the default breast-cancer model (30 numeric features, 143 test rows),
the README's random forest on the same rows, and a census-like frame with sensitive
columns (1,500 rows, fairness on two columns, a directional expectation, a cost
matrix with a tuned threshold). Permutation importance and the scoring-speed
measure are each timed beside the way they were done before (scikit-learn's
``permutation_importance``; a fixed 200 single-row calls a round). Medians of
``--repeats`` runs each, in one process.

    .venv/bin/python bench/governance.py [--repeats 5]
"""

from __future__ import annotations

import functools
import statistics
import time
from collections.abc import Callable
from typing import Any

import click

from tabular_mlops.core import governance
from tabular_mlops.core.config import (
    CostConfig,
    DataSourceConfig,
    DirectionalExpectation,
    EvaluationConfig,
    FairnessConfig,
    RobustnessConfig,
    TrainingConfig,
)
from tabular_mlops.core.latency import measure
from tabular_mlops.core.metrics import evaluate
from tabular_mlops.core.model_factory import fit_model
from tabular_mlops.core.scoring import rows_of_frame, scorer_for
from tabular_mlops.core.spec import label_indexes


def census_frame(*args: Any, **kwargs: Any) -> Any:
    """The census-like test data of ``tests/helpers.py`` (the checkout's root on the path:
    a bench script runs as ``.venv/bin/python bench/<name>.py``)."""
    import sys

    from tabular_mlops.adapters.paths import PROJECT_ROOT

    if str(PROJECT_ROOT) not in sys.path:
        sys.path.insert(0, str(PROJECT_ROOT))
    from tests.helpers import census_frame as make

    return make(*args, **kwargs)


def sklearn_importance(model: Any, features: Any, labels: Any, repeats: int) -> Any:
    """scikit-learn's ``permutation_importance`` with the same scorer and decision rule as
    ``governance.importance``: each shuffled copy scored in a call of its own."""
    import numpy as np
    from sklearn.inspection import permutation_importance

    scorer = scorer_for(model, list(features.columns), features)
    classes = np.asarray([str(c) for c in model.classes_])
    positive, threshold = governance.decision_rule(model)

    def accuracy(_: Any, rows: Any, truth: Any) -> float:
        probabilities = scorer.predict_proba_frame(rows)
        predicted = classes[label_indexes(probabilities, list(classes), positive, threshold)]
        return float(np.mean(predicted == np.asarray(truth).astype(str)))

    return permutation_importance(
        model, features, labels, n_repeats=repeats, random_state=0, scoring=accuracy
    )


def median_seconds(work: Callable[[], Any], repeats: int) -> float:
    spent = []
    for _ in range(repeats):
        started = time.perf_counter()
        work()
        spent.append(time.perf_counter() - started)
    return statistics.median(spent)


def case(name: str, train: Any, test: Any, target: str, training: TrainingConfig,
         config: EvaluationConfig, repeats: int) -> None:  # fmt: skip
    model, _ = fit_model(train, target, training, config.cost)
    features = test[list(model.feature_names_in_)]
    labels = test[target].astype(str)
    predicted = model.predict(features).astype(str)
    positive, threshold = governance.decision_rule(model)
    scorer = scorer_for(model, list(features.columns), features)
    rule = functools.partial(label_indexes, classes=[str(c) for c in model.classes_],
                             positive_label=positive, threshold=threshold)  # fmt: skip
    plain = median_seconds(lambda: evaluate(model, test, target), repeats)
    parts = {
        "fairness (fairlearn MetricFrame + gaps)": lambda: [
            governance.fairness(labels, predicted, test[c], positive, config.fairness)
            for c in config.fairness.sensitive_columns
        ],
        "calibration (Brier, ECE, curve)": lambda: governance.calibration(
            labels, model.predict_proba(features)[:, 1], positive or "", config.calibration
        ),
        "robustness (noise + directional)": lambda: governance.robustness(
            model, features, config.robustness
        ),
        f"permutation importance ({config.importance_repeats} repeats)": lambda: (
            governance.importance(model, features, labels, config.importance_repeats)
        ),
        "  against scikit-learn's (one call a copy)": lambda: sklearn_importance(
            model, features, labels, config.importance_repeats
        ),
        "scoring speed (3 rounds: single rows + 10k batch)": lambda: measure(
            scorer, rule, rows_of_frame(features)
        ),
        "  against a fixed 200 single rows a round": lambda: measure(
            scorer, rule, rows_of_frame(features), seconds_per_round=1e9
        ),
    }
    click.echo(f"\n{name}: {len(test)} test rows, {features.shape[1]} features")
    click.echo(
        f"  {'plain evaluation (metrics, slices, curves)':<46}{plain * 1000:8.1f} ms   1.00x"
    )
    total = 0.0
    for label, work in parts.items():
        if "fairness" in label and not config.fairness.sensitive_columns:
            continue
        if "calibration" in label and positive is None:
            continue
        seconds = median_seconds(work, repeats)
        total += 0.0 if label.startswith("  against") else seconds
        click.echo(f"  {label:<46}{seconds * 1000:8.1f} ms   {seconds / plain:5.2f}x")
    click.echo(f"  {'all governance checks':<46}{total * 1000:8.1f} ms   {total / plain:5.2f}x")


@click.command()
@click.option("--repeats", default=5, show_default=True)
def main(repeats: int) -> None:
    from tabular_mlops.adapters.sources import load_dataset

    cancer = load_dataset(DataSourceConfig()).sample(frac=1.0, random_state=42)
    cut = int(len(cancer) * 0.75)
    case("breast cancer (default model)", cancer.iloc[:cut], cancer.iloc[cut:], "target",
         TrainingConfig(params={"max_iter": 1000}), EvaluationConfig(), repeats)  # fmt: skip
    forest = TrainingConfig(
        estimator="sklearn.ensemble.RandomForestClassifier", params={"n_estimators": 200}
    )
    case("breast cancer, the README's random forest (200 trees)", cancer.iloc[:cut],
         cancer.iloc[cut:], "target", forest, EvaluationConfig(), repeats)  # fmt: skip
    census = census_frame(rows=2000)
    config = EvaluationConfig(
        fairness=FairnessConfig(sensitive_columns=["sex", "race"]),
        robustness=RobustnessConfig(directional=[
            DirectionalExpectation(feature="capital-gain", step=1000, label=">50K")]),
        cost=CostConfig(matrix={">50K": {"<=50K": 10.0}, "<=50K": {">50K": 1.0}}),
    )  # fmt: skip
    case("census-like (sensitive columns, cost matrix)", census.iloc[:1500], census.iloc[1500:],
         "income", TrainingConfig(params={"max_iter": 2000}), config, repeats)  # fmt: skip


if __name__ == "__main__":
    main()
