"""What the wider model gate costs a training run: each governance check timed against the
plain evaluation it extends (metrics, slices, curves), on the same model and rows.

Two data sets: the default breast-cancer model (30 numeric features, 143 test rows)
and a census-like frame with sensitive columns (1,500 rows, fairness on two columns,
a directional expectation, a cost matrix with a tuned threshold). Medians of
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
        "scoring speed (3 x (200 single rows + 10k batch))": lambda: measure(
            scorer, rule, rows_of_frame(features)
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
        total += seconds
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
