"""Model selection as tracked trials: which of these estimators is best on my data?

Each candidate of ``training.candidates``, at each combination of its search values,
is one trial: cross-validated on the training split only (seeded folds, stratified for
a classifier), scored by the model gate's primary metric. The best mean score wins (ties:
the faster fit); the winner is then trained, evaluated and gated like any model. The
test split is never looked at here, so the gate's figures stay honest.
"""

from __future__ import annotations

import itertools
import time
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np
import pandas as pd
from pydantic import BaseModel
from sklearn.model_selection import KFold, StratifiedKFold, cross_validate
from sklearn.pipeline import Pipeline

from tabular_mlops.core.config import (
    LOWER_IS_BETTER,
    CandidateConfig,
    Task,
    TrainingConfig,
)
from tabular_mlops.core.model_factory import (
    ESTIMATOR_STEP,
    SCORERS,
    TrainingConfigError,
    make_estimator,
    make_preprocessor,
)

#: the folds' shuffle seed: the same trials give the same scores on every machine
SEED = 0


class Trial(BaseModel):
    """One estimator at one set of parameters, cross-validated on the training split."""

    estimator: str
    params: dict[str, Any]
    #: the primary metric on each fold (an error as itself: lower is better)
    scores: list[float]
    mean: float
    std: float
    #: mean seconds to fit on one fold's training rows
    fit_seconds: float
    rank: int = 0
    chosen: bool = False


class Leaderboard(BaseModel):
    """Every trial, best first, and why the search stopped where it did."""

    metric: str
    folds: int
    trials: list[Trial]
    #: the budget that ended the search early, if one did
    stopped_by: str | None = None
    seconds: float = 0.0

    @property
    def winner(self) -> Trial:
        return next(trial for trial in self.trials if trial.chosen)


def planned_trials(candidates: Sequence[CandidateConfig]) -> list[tuple[str, dict[str, Any]]]:
    """(estimator, params) of every trial, in the candidates' order: each combination of a
    candidate's search values over its fixed params."""
    trials = []
    for candidate in candidates:
        names = list(candidate.search)
        for values in itertools.product(*(candidate.search[n] for n in names)):
            searched = dict(zip(names, values, strict=True))
            trials.append((candidate.estimator, {**candidate.params, **searched}))
    return trials


def ranking_metric(metric: str) -> str:
    """What the trials are ranked and shown by: the primary metric, or for WAPE the MAE
    (within a fold WAPE is the MAE over a constant, so they rank alike; the figure shown
    is the one computed)."""
    return "mae" if metric == "wape" else metric


def checked_estimators(
    planned: Sequence[tuple[str, dict[str, Any]]], candidates: Sequence[CandidateConfig],
    task: Task,
) -> list[Any]:  # fmt: skip
    """Each planned trial's estimator, built before any trial runs; a candidate of the
    wrong task or with a parameter its estimator lacks is named by its place."""
    place: dict[str, int] = {}
    for index, candidate in enumerate(candidates):
        place.setdefault(candidate.estimator, index)
    built = []
    for estimator, params in planned:
        try:
            built.append(make_estimator(TrainingConfig(estimator=estimator, params=params), task))
        except TrainingConfigError as exc:
            detail = str(exc).removeprefix("training.estimator: ").replace("training.", "")
            raise TrainingConfigError(
                f"training.candidates[{place[estimator]}] ({estimator}): {detail}"
            ) from None
    return built


def folds(task: Task, n_splits: int) -> KFold | StratifiedKFold:
    splitter = StratifiedKFold if task == "classification" else KFold
    return splitter(n_splits=n_splits, shuffle=True, random_state=SEED)


def select(
    train_set: pd.DataFrame,
    target: str,
    training: TrainingConfig,
    task: Task,
    metric: str,
    not_features: Sequence[str] = (),
    date_columns: Sequence[str] = (),
    on_trial: Callable[[Trial], None] | None = None,
    clock: Callable[[], float] = time.perf_counter,
) -> Leaderboard:
    """Run the trials within ``training.selection``'s budget; ``on_trial`` sees each one as
    it ends (the step logs it as a nested MLflow run)."""
    features = train_set.drop(columns=[target, *not_features])
    labels = train_set[target]
    budget = training.selection
    planned = planned_trials(training.candidates)
    if not planned:
        raise TrainingConfigError("training.candidates: no trial to run")
    estimators = checked_estimators(planned, training.candidates, task)
    shown = ranking_metric(metric)
    started = clock()
    done: list[Trial] = []
    stopped_by = None
    for (estimator, params), built in zip(planned, estimators, strict=True):
        # the budget never stops the first trial: a search always has a winner
        if done and budget.max_trials is not None and len(done) >= budget.max_trials:
            stopped_by = f"training.selection.max_trials ({budget.max_trials})"
            break
        if done and budget.max_seconds is not None and clock() - started >= budget.max_seconds:
            stopped_by = f"training.selection.max_seconds ({budget.max_seconds:g})"
            break
        model = Pipeline([
            ("preprocess", make_preprocessor(features, date_columns)),
            (ESTIMATOR_STEP[task], built),
        ])  # fmt: skip
        try:
            result = cross_validate(model, features, labels, cv=folds(task, budget.cv),
                                    scoring=SCORERS[shown], error_score="raise")  # fmt: skip
        except ValueError as exc:
            raise TrainingConfigError(
                f"training.candidates: {estimator} with {params} cannot be cross-validated "
                f"here: {str(exc).splitlines()[0]}"
            ) from None
        # scikit-learn's scorers are higher-is-better; an error is shown as itself
        scores = -result["test_score"] if shown in LOWER_IS_BETTER else result["test_score"]
        trial = Trial(
            estimator=estimator, params=params, scores=[float(s) for s in scores],
            mean=float(np.mean(scores)), std=float(np.std(scores)),
            fit_seconds=float(np.mean(result["fit_time"])),
        )  # fmt: skip
        done.append(trial)
        if on_trial is not None:
            on_trial(trial)
    return ranked(done, shown, budget.cv, stopped_by, clock() - started)


def ranked(
    trials: list[Trial], metric: str, n_folds: int, stopped_by: str | None, seconds: float
) -> Leaderboard:
    """Best first by the mean score in the metric's direction, ties by the faster fit;
    the first is chosen."""
    sign = 1.0 if metric in LOWER_IS_BETTER else -1.0
    order = sorted(trials, key=lambda t: (sign * t.mean, t.fit_seconds))
    board = [t.model_copy(update={"rank": i + 1, "chosen": i == 0}) for i, t in enumerate(order)]
    return Leaderboard(metric=metric, folds=n_folds, trials=board, stopped_by=stopped_by,
                       seconds=seconds)  # fmt: skip


def chosen_training(training: TrainingConfig, leaderboard: Leaderboard) -> TrainingConfig:
    """The training config with the winner's estimator and parameters (its own search,
    calibration and the rest kept)."""
    winner = leaderboard.winner
    return training.model_copy(
        update={"estimator": winner.estimator, "params": winner.params, "candidates": [],
                "search": None}
    )  # fmt: skip
