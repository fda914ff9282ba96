"""Model selection: known-best estimators picked on synthetic data, the budget, ties and
the leaderboard page."""

from __future__ import annotations

import itertools

import numpy as np
import pandas as pd
import pytest

from tabular_mlops.core.config import CandidateConfig, SelectionConfig, TrainingConfig
from tabular_mlops.core.model_factory import TrainingConfigError
from tabular_mlops.core.selection import (
    Trial,
    chosen_training,
    planned_trials,
    ranked,
    select,
)

DUMMY = CandidateConfig(estimator="sklearn.dummy.DummyClassifier")
LOGISTIC = CandidateConfig(estimator="sklearn.linear_model.LogisticRegression")
TREE = CandidateConfig(
    estimator="sklearn.tree.DecisionTreeClassifier", params={"random_state": 0},
    search={"max_depth": [1, 4]},
)  # fmt: skip


def xor_frame(rows: int = 600, seed: int = 0) -> pd.DataFrame:
    """A label a tree learns and a linear model cannot: the sign of x1 * x2."""
    rng = np.random.default_rng(seed)
    x1, x2 = rng.normal(size=rows), rng.normal(size=rows)
    return pd.DataFrame({"x1": x1, "x2": x2, "y": np.where(x1 * x2 > 0, "same", "other")})


def linear_frame(rows: int = 600, seed: int = 0) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    x1, x2 = rng.normal(size=rows), rng.normal(size=rows)
    return pd.DataFrame({"x1": x1, "x2": x2, "y": np.where(x1 + 0.1 * x2 > 0, "up", "down")})


def test_every_combination_of_a_search_is_a_trial():
    assert planned_trials([DUMMY, TREE]) == [
        ("sklearn.dummy.DummyClassifier", {}),
        ("sklearn.tree.DecisionTreeClassifier", {"random_state": 0, "max_depth": 1}),
        ("sklearn.tree.DecisionTreeClassifier", {"random_state": 0, "max_depth": 4}),
    ]


@pytest.mark.parametrize(
    "frame, best",
    [(xor_frame(), "sklearn.tree.DecisionTreeClassifier"),
     (linear_frame(), "sklearn.linear_model.LogisticRegression")],
    ids=["interactions: a tree", "a line: logistic regression"],
)  # fmt: skip
def test_the_leaderboard_picks_the_estimator_known_to_be_best(frame, best):
    training = TrainingConfig(candidates=[DUMMY, LOGISTIC, TREE])
    seen: list[Trial] = []
    board = select(frame, "y", training, "classification", "accuracy", on_trial=seen.append)
    assert len(seen) == len(board.trials) == 4 and board.stopped_by is None
    assert board.winner.estimator == best and board.winner.rank == 1
    assert [t.rank for t in board.trials] == [1, 2, 3, 4]
    assert all(len(t.scores) == 5 for t in board.trials)
    chosen = chosen_training(training, board)
    assert chosen.estimator == best and chosen.candidates == []


def test_seeded_folds_give_the_same_scores_on_every_run():
    training = TrainingConfig(candidates=[LOGISTIC, TREE])
    frame = xor_frame(200)
    board = select(frame, "y", training, "classification", "accuracy")
    again = select(frame, "y", training, "classification", "accuracy")
    assert [t.scores for t in again.trials] == [t.scores for t in board.trials]


def test_an_error_metric_ranks_the_lowest_first_and_ties_go_to_the_faster_fit():
    def trial(mean: float, seconds: float) -> Trial:
        return Trial(estimator=f"m.{mean}.{seconds}", params={}, scores=[mean], mean=mean,
                     std=0.0, fit_seconds=seconds)  # fmt: skip

    board = ranked([trial(3.0, 0.1), trial(2.0, 0.5), trial(2.0, 0.2)], "mae", 5, None, 1.0)
    assert [(t.mean, t.fit_seconds) for t in board.trials] == [(2.0, 0.2), (2.0, 0.5),
                                                               (3.0, 0.1)]  # fmt: skip
    assert board.winner.fit_seconds == 0.2
    scored = ranked([trial(0.8, 0.1), trial(0.9, 0.5)], "roc_auc", 5, None, 1.0)
    assert scored.winner.mean == 0.9


def test_the_budget_stops_the_search_and_says_which():
    frame = linear_frame(300)
    capped = TrainingConfig(candidates=[DUMMY, LOGISTIC, TREE],
                            selection=SelectionConfig(max_trials=2))  # fmt: skip
    board = select(frame, "y", capped, "classification", "accuracy")
    assert len(board.trials) == 2
    assert board.stopped_by == "training.selection.max_trials (2)"
    ticks = itertools.count(0, 10)  # every trial "takes" 10 s on this clock
    timed = TrainingConfig(candidates=[DUMMY, LOGISTIC, TREE],
                           selection=SelectionConfig(max_seconds=15))  # fmt: skip
    board = select(frame, "y", timed, "classification", "accuracy",
                   clock=lambda: float(next(ticks)))  # fmt: skip
    assert board.stopped_by == "training.selection.max_seconds (15)"
    assert 1 <= len(board.trials) < 4


def test_a_candidate_that_cannot_run_is_named():
    broken = CandidateConfig(estimator="sklearn.linear_model.LogisticRegression",
                             params={"penalty": "l1", "solver": "lbfgs"})  # fmt: skip
    with pytest.raises(TrainingConfigError, match=r"training\.candidates: .*LogisticRegression"):
        select(linear_frame(200), "y", TrainingConfig(candidates=[broken]), "classification",
               "accuracy")  # fmt: skip


def test_the_leaderboard_page_marks_the_chosen_trial():
    from materializers.leaderboard_materializer import render_html

    board = select(xor_frame(300), "y", TrainingConfig(candidates=[DUMMY, TREE]),
                   "classification", "roc_auc")  # fmt: skip
    page = render_html(board)
    assert "Model selection: 3 trials" in page and "1 (chosen)" in page
    assert "DecisionTreeClassifier" in page and "roc_auc, mean" in page
    assert "nothing was compared" in render_html(board.model_copy(update={"trials": []}))


def test_a_search_without_values_or_beside_candidates_is_refused_by_key():
    from pydantic import ValidationError

    with pytest.raises(ValidationError, match=r"search: \['alpha'\] list no value to try"):
        CandidateConfig(estimator="sklearn.linear_model.Ridge", search={"alpha": []})
    with pytest.raises(ValidationError, match="give each candidate its own search"):
        TrainingConfig(candidates=[LOGISTIC], search={"param_grid": {"C": [1.0]}})


def test_a_candidate_of_the_wrong_task_or_parameter_is_named_by_its_place_before_any_trial():
    seen: list[Trial] = []
    wrong = TrainingConfig(candidates=[DUMMY, CandidateConfig(
        estimator="sklearn.linear_model.Ridge")])  # fmt: skip
    with pytest.raises(TrainingConfigError, match=r"training\.candidates\[1\] \(sklearn\.linear"
                       r"_model\.Ridge\): .*not a scikit-learn classifier"):  # fmt: skip
        select(linear_frame(200), "y", wrong, "classification", "accuracy", on_trial=seen.append)
    assert seen == []  # refused before the first trial ran
    typo = TrainingConfig(candidates=[CandidateConfig(
        estimator="sklearn.linear_model.LogisticRegression", params={"CC": 1.0})])  # fmt: skip
    with pytest.raises(
        TrainingConfigError, match=r"training\.candidates\[0\] .*params\.CC: not a parameter"
    ):
        select(linear_frame(200), "y", typo, "classification", "accuracy")


def test_a_budget_spent_before_the_first_trial_still_leaves_a_winner():
    ticks = itertools.count(0, 100)
    spent = TrainingConfig(candidates=[DUMMY, LOGISTIC],
                           selection=SelectionConfig(max_seconds=1))  # fmt: skip
    board = select(linear_frame(200), "y", spent, "classification", "accuracy",
                   clock=lambda: float(next(ticks)))  # fmt: skip
    assert len(board.trials) == 1 and board.winner.estimator == DUMMY.estimator


def test_a_wape_search_is_ranked_and_shown_by_the_mae_it_computes():
    rng = np.random.default_rng(0)
    x = rng.normal(size=300)
    frame = pd.DataFrame({"x": x, "y": 50 + 5 * x + rng.normal(0, 1, 300)})
    ridge = CandidateConfig(estimator="sklearn.linear_model.Ridge")
    mean = CandidateConfig(estimator="sklearn.dummy.DummyRegressor")
    training = TrainingConfig(candidates=[ridge, mean])
    board = select(frame, "y", training, "regression", "wape")
    assert board.metric == "mae" and board.winner.estimator == "sklearn.linear_model.Ridge"
    assert 0.5 < board.winner.mean < 1.5  # an MAE in the target's units, not a share


def test_a_baseline_gate_without_its_metric_refuses_and_says_so():
    from tabular_mlops.core.baselines import baseline_violations
    from tabular_mlops.core.report import BaselineScore

    median = BaselineScore(name="median", description="d", metrics={"mae": 9.0})
    (reason,) = baseline_violations({"mae": 5.0}, [median], "mape", 0.0)
    assert "mape could not be computed on the test set" in reason


def test_a_regressors_experiment_with_a_given_sample_reports_its_progress():
    from tabular_mlops.core.rollout import (
        AbsoluteErrors,
        ArmEvidence,
        Evidence,
        RolloutPlan,
        decide,
        planned,
    )

    plan = planned(RolloutPlan(strategy="ab", sample_size_per_arm=200), None, 3.0)
    errors = AbsoluteErrors(rows=10, total=10.0, deviations=2.0)
    evidence = Evidence(strategy="ab", task="regression",
                        champion=ArmEvidence(version="1", absolute_errors=errors),
                        candidate=ArmEvidence(version="2", absolute_errors=errors))  # fmt: skip
    decision = decide(evidence, plan)
    assert decision.action == "continue" and "10 / 10 rows of the 200 per arm planned" in (
        decision.reasons[0])  # fmt: skip
