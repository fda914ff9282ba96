"""Is ML worth it? The trivial baselines every candidate must beat, with known answers."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from tabular_mlops.core.baselines import (
    BaselineError,
    baseline_violations,
    score_baselines,
    trivial_model,
)
from tabular_mlops.core.config import (
    BaselineConfig,
    EvaluationConfig,
    PromotionConfig,
    TrainingConfig,
)
from tabular_mlops.core.gate import judge
from tabular_mlops.core.metrics import evaluate
from tabular_mlops.core.model_factory import fit_model
from tabular_mlops.core.report import BaselineScore
from tests.helpers import customer_churn_frame


def noise_frame(rows: int = 600, seed: int = 0) -> pd.DataFrame:
    """Features that say nothing of a 70/30 label."""
    rng = np.random.default_rng(seed)
    return pd.DataFrame({
        "a": rng.normal(size=rows), "b": rng.normal(size=rows),
        "label": rng.choice(["no", "yes"], size=rows, p=[0.7, 0.3]),
    })  # fmt: skip


def test_the_trivial_model_fits_the_task_and_the_primary_metric():
    assert trivial_model("classification", "roc_auc")[0] == "majority"
    assert trivial_model("regression", "mae")[0] == "median"  # the median minimises MAE
    assert trivial_model("regression", "rmse")[0] == "mean"
    assert trivial_model("regression", "r2")[0] == "mean"


def test_the_majority_baseline_has_its_known_scores():
    frame = noise_frame()
    (majority,) = score_baselines(
        frame.iloc[:400], frame.iloc[400:], "label", "classification", "accuracy",
        BaselineConfig(),
    )  # fmt: skip
    shares = frame.iloc[400:]["label"].value_counts(normalize=True)
    assert majority.metrics["accuracy"] == pytest.approx(shares["no"])
    assert majority.metrics["roc_auc"] == pytest.approx(0.5)


def test_a_candidate_no_better_than_the_majority_class_is_refused_naming_both_figures():
    frame = noise_frame()
    train, test = frame.iloc[:400], frame.iloc[400:]
    model, _ = fit_model(train, "label", TrainingConfig())
    report = evaluate(model, test, "label")
    promotion = PromotionConfig(primary_metric="accuracy", min_metrics={})
    baselines = score_baselines(train, test, "label", "classification", "accuracy",
                                BaselineConfig())  # fmt: skip
    decision = judge(report.metrics, None, None, None, test, "label", promotion,
                     EvaluationConfig(), "classification", baselines)  # fmt: skip
    assert not decision.approved
    (reason,) = decision.reasons
    ours, theirs = report.metrics["accuracy"], baselines[0].metrics["accuracy"]
    assert f"accuracy = {ours:.4f} does not beat the majority baseline" in reason
    assert f": {theirs:.4f}) by promotion.baseline.min_lift 0" in reason
    # no baseline gate when the config says so
    off = promotion.model_copy(update={"baseline": None})
    assert judge(report.metrics, None, None, None, test, "label", off, EvaluationConfig(),
                 "classification", baselines).approved  # fmt: skip


def test_a_real_model_beats_the_baselines_and_min_lift_is_in_the_metrics_units():
    frame = customer_churn_frame(rows=600)
    train, test = frame.iloc[:450], frame.iloc[450:]
    model, _ = fit_model(train, "churn", TrainingConfig())
    auc = evaluate(model, test, "churn").metrics["roc_auc"]
    baselines = score_baselines(train, test, "churn", "classification", "roc_auc",
                                BaselineConfig(feature="tenure_months"))  # fmt: skip
    assert [b.name for b in baselines] == ["majority", "rule on tenure_months"]
    assert baseline_violations({"roc_auc": auc}, baselines, "roc_auc", 0.0) == []
    rule = baselines[1].metrics["roc_auc"]
    assert 0.5 < rule < auc
    needed = auc - rule + 0.01  # a lift the candidate falls short of, over the rule only
    (reason,) = baseline_violations({"roc_auc": auc}, baselines, "roc_auc", needed)
    assert "the rule on tenure_months baseline" in reason
    with pytest.raises(BaselineError, match=r"promotion\.baseline\.feature: 'tenure' is not"):
        score_baselines(train, test, "churn", "classification", "roc_auc",
                        BaselineConfig(feature="tenure"))  # fmt: skip


def test_a_regressor_is_compared_with_the_median_on_an_error_metric():
    rng = np.random.default_rng(0)
    x = rng.normal(size=500)
    frame = pd.DataFrame({"x": x, "y": 3 * x + rng.normal(0, 1, 500) + 10})
    train, test = frame.iloc[:400], frame.iloc[400:]
    (median,) = score_baselines(train, test, "y", "regression", "mae", BaselineConfig())
    expected = float(np.mean(np.abs(test["y"] - train["y"].median())))
    assert median.name == "median" and median.metrics["mae"] == pytest.approx(expected)
    # lower is better: a smaller MAE is a positive lift
    assert baseline_violations({"mae": expected - 1}, [median], "mae", 0.5) == []
    (reason,) = baseline_violations({"mae": expected}, [median], "mae", 0.0)
    assert "lift +0.0000" in reason
    score = BaselineScore(name="mean", description="d", metrics={})
    assert baseline_violations({"mae": 1.0}, [score], "mae", 0.0) == []  # not computed
