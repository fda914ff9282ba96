"""Model selection's cost, side by side with the default path in one run.

The example's candidates (``configs/examples/model_selection.yaml``: logistic regression
at two C, a random forest, histogram gradient boosting) cross-validated on the
breast-cancer training split, in process, against one ``fit_model`` of the default
estimator (what ``make run`` does, no selection). Prints each trial's seconds and the
ratio of the whole search to the default fit.

    python bench/selection.py [--repeats 3]
"""

from __future__ import annotations

import statistics
import time
from datetime import UTC, datetime

import click
import yaml

from tabular_mlops.adapters.paths import CONFIG_DIR
from tabular_mlops.adapters.sources import load_dataset
from tabular_mlops.core.config import DataSourceConfig, SplitConfig, TrainingConfig
from tabular_mlops.core.model_factory import fit_model
from tabular_mlops.core.selection import select
from tabular_mlops.core.splits import split_rows


@click.command()
@click.option("--repeats", default=3, show_default=True)
def main(repeats: int) -> None:
    click.echo(f"bench/selection.py, {datetime.now(UTC):%Y-%m-%d %H:%M} UTC")
    example = yaml.safe_load((CONFIG_DIR / "examples" / "model_selection.yaml").read_text())
    training = TrainingConfig.model_validate(example["parameters"]["training"])
    data = load_dataset(DataSourceConfig())
    train, _ = split_rows(data, SplitConfig(), "target", "classification")
    default = TrainingConfig(params={"C": 1.0, "max_iter": 1000})
    fits, searches = [], []
    board = None
    for _ in range(repeats):
        started = time.perf_counter()
        fit_model(train, "target", default)
        fits.append(time.perf_counter() - started)
        started = time.perf_counter()
        board = select(train, "target", training, "classification", "roc_auc")
        searches.append(time.perf_counter() - started)
    assert board is not None
    click.echo(f"\n{len(board.trials)} trials, {board.folds} folds each (last run):")
    for trial in board.trials:
        name = trial.estimator.rsplit(".", 1)[-1]
        fold_ms = trial.fit_seconds * 1000
        click.echo(f"  {trial.rank}. {name:32s} {trial.params}  cv roc_auc {trial.mean:.4f}  "
                   f"fit {fold_ms:7.1f} ms/fold")  # fmt: skip
    fit, search = statistics.median(fits), statistics.median(searches)
    per_trial = search / len(board.trials)
    click.echo(f"\nmedians of {repeats}: default fit_model {fit:.3f} s; selection {search:.2f} "
               f"s ({per_trial:.2f} s a trial); ratio {search / fit:.0f}x")  # fmt: skip


if __name__ == "__main__":
    main()
