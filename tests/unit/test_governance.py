"""The model gate's wider checks on crafted data: fairness, calibration, robustness,
importance and the business cost with its decision threshold."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from tabular_mlops.core.config import (
    CalibrationConfig,
    CostConfig,
    DirectionalExpectation,
    EvaluationConfig,
    FairnessConfig,
    RobustnessConfig,
    TrainingConfig,
)
from tabular_mlops.core.governance import assess, decision_rule, importance_shift, violations
from tabular_mlops.core.model_factory import TrainingConfigError, fit_model
from tabular_mlops.core.scoring import FastModel
from tabular_mlops.core.spec import ServingSpec
from tests.helpers import census_frame

TARGET = "income"


def _split(frame):
    return frame.iloc[:900], frame.iloc[900:]


def test_a_model_biased_against_one_group_fails_the_fairness_gate_naming_it():
    train, test = _split(census_frame(bias=2.5))
    model, _ = fit_model(train, TARGET, TrainingConfig(params={"max_iter": 2000}))
    config = EvaluationConfig(
        fairness=FairnessConfig(sensitive_columns=["sex", "race"],
                                max_demographic_parity_difference=0.1),
    )  # fmt: skip
    report = assess(model, test, TARGET, config)
    sex = next(r for r in report.fairness if r.column == "sex")
    rates = {g.group: g.selection_rate for g in sex.groups}
    assert rates["Female"] < rates["Male"]
    assert sex.demographic_parity_difference == pytest.approx(rates["Male"] - rates["Female"])
    [problem] = [v for v in violations(report, None, config) if "'sex'" in v]
    assert "demographic-parity difference over 'sex'" in problem
    assert "above 0.1" in problem and "Female" in problem
    # the same data without the bias passes
    fair_train, fair_test = _split(census_frame(bias=0.0))
    fair, _ = fit_model(fair_train, TARGET, TrainingConfig(params={"max_iter": 2000}))
    assert not [v for v in violations(assess(fair, fair_test, TARGET, config), None, config)
                if "'sex'" in v]  # fmt: skip


def test_small_groups_are_shown_but_left_out_of_the_gaps():
    train, test = _split(census_frame())
    model, _ = fit_model(train, TARGET, TrainingConfig(params={"max_iter": 2000}))
    config = EvaluationConfig(
        fairness=FairnessConfig(sensitive_columns=["race"], min_group_rows=40)
    )
    [race] = assess(model, test, TARGET, config).fairness
    assert "Other" in race.small_groups
    assert {g.group for g in race.groups} >= {"White", "Other"}


def test_an_uncalibrated_model_is_reported_and_calibrated_when_configured():
    """Gaussian naive Bayes on correlated features is overconfident; sigmoid calibration
    brings the expected calibration error down."""

    def frame(seed: int):
        data = census_frame(rows=2400, seed=seed)[["age", "hours-per-week", "capital-gain", TARGET]]
        return data.assign(age_again=data["age"] * 1.01, hours_again=data["hours-per-week"] + 1)

    train, test = frame(0), frame(1)
    naive = TrainingConfig(estimator="sklearn.naive_bayes.GaussianNB")
    config = EvaluationConfig(calibration=CalibrationConfig(max_expected_calibration_error=0.05))
    raw, _ = fit_model(train, TARGET, naive)
    before = assess(raw, test, TARGET, config).calibration
    calibrated, _ = fit_model(train, TARGET, naive.model_copy(update={"calibration": "sigmoid"}))
    after = assess(calibrated, test, TARGET, config).calibration
    assert before is not None and after is not None
    assert after.expected_calibration_error < before.expected_calibration_error
    assert sum(rows for _, _, rows in after.curve) == len(test)
    assert any("expected calibration error" in v for v in
               violations(assess(raw, test, TARGET, config), None, config))  # fmt: skip
    # the served probabilities are the calibrated ones: the numpy path reproduces them
    features = [c for c in test.columns if c != TARGET]
    fast = FastModel(calibrated, features)
    fast.verify(test[features])
    assert np.allclose(fast.predict_proba_frame(test[features]),
                       calibrated.predict_proba(test[features]))  # fmt: skip


def test_expensive_false_negatives_move_the_threshold_and_the_served_labels():
    train, test = _split(census_frame(rows=1500))
    plain, _ = fit_model(train, TARGET, TrainingConfig(params={"max_iter": 2000}))
    costly_misses = CostConfig(matrix={">50K": {"<=50K": 10.0}, "<=50K": {">50K": 1.0}})
    tuned, _ = fit_model(train, TARGET, TrainingConfig(params={"max_iter": 2000}), costly_misses)
    positive, threshold = decision_rule(tuned)
    assert positive == ">50K" and threshold is not None and threshold < 0.5
    assert decision_rule(plain) == (">50K", None)
    config = EvaluationConfig(cost=costly_misses)
    cost_plain = assess(plain, test, TARGET, config).cost_per_1000
    cost_tuned = assess(tuned, test, TARGET, config).cost_per_1000
    assert cost_tuned < cost_plain
    # serving decides by the same rule as the model
    features = [c for c in test.columns if c != TARGET]
    spec = ServingSpec.from_training_data("m", "1", train, TARGET, list(tuned.classes_),
                                          positive, threshold)  # fmt: skip
    fast = FastModel(tuned, features)
    served = np.asarray(spec.classes)[spec.label_indexes(fast.predict_proba_frame(test[features]))]
    assert (served == tuned.predict(test[features])).all()
    assert (served == ">50K").sum() > (plain.predict(test[features]) == ">50K").sum()
    # the gate: a candidate costlier than the champion on the same rows is refused
    worse = violations(assess(plain, test, TARGET, config), assess(tuned, test, TARGET, config),
                       config)  # fmt: skip
    assert any(v.startswith("cost: ") and "above the champion's" in v for v in worse)


def test_a_cost_matrix_with_unknown_labels_is_refused_by_name():
    train, _ = _split(census_frame())
    wrong = CostConfig(matrix={"rich": {"<=50K": 5.0}})
    with pytest.raises(TrainingConfigError, match=r"labels \['rich'\] are not classes"):
        fit_model(train, TARGET, TrainingConfig(), wrong)


def test_robustness_names_the_rows_that_break_a_directional_expectation():
    train, test = _split(census_frame())
    model, _ = fit_model(train, TARGET, TrainingConfig(params={"max_iter": 2000}))
    holds = DirectionalExpectation(feature="capital-gain", step=1000, label=">50K")
    broken = DirectionalExpectation(feature="capital-gain", step=1000, label=">50K",
                                    direction="decreases")  # fmt: skip
    config = EvaluationConfig(robustness=RobustnessConfig(directional=[holds, broken]))
    result = assess(model, test, TARGET, config).robustness
    assert result is not None
    kept, wrong = result.directional
    assert kept.violations == 0
    assert wrong.violations > 0 and len(wrong.example_rows) == 3
    assert all(row in test.index for row in wrong.example_rows)
    [problem] = [v for v in violations(assess(model, test, TARGET, config), None, config)
                 if "capital-gain" in v]  # fmt: skip
    assert "against 'decreases'" in problem and "e.g. rows" in problem
    assert 0 <= result.flip_share < 0.1
    unknown = EvaluationConfig(robustness=RobustnessConfig(
        directional=[DirectionalExpectation(feature="salary", step=1, label=">50K")]))  # fmt: skip
    with pytest.raises(ValueError, match="feature 'salary' is not a model input"):
        assess(model, test, TARGET, unknown)


def test_importance_ranks_features_and_shows_what_changed_between_versions():
    train, test = _split(census_frame())
    model, _ = fit_model(train, TARGET, TrainingConfig(params={"max_iter": 2000}))
    ranked = assess(model, test, TARGET, EvaluationConfig()).importance
    assert next(iter(ranked)) in {"capital-gain", "education", "age", "hours-per-week"}
    assert list(ranked.values()) == sorted(ranked.values(), reverse=True)
    shift = importance_shift({**ranked, "capital-gain": 0.0}, ranked, top=1)
    assert shift[0][0] == "capital-gain"


def test_importance_is_zero_for_a_feature_the_model_ignores_and_stacked_calls_agree():
    """Shuffled copies are scored stacked, in as few calls as the batch size allows: the
    figures do not depend on how the copies are split into calls."""
    from tabular_mlops.core import governance

    rng = np.random.default_rng(0)
    frame = pd.DataFrame({"signal": rng.normal(size=200), "noise": rng.normal(size=200)})
    frame["label"] = np.where(frame["signal"] > 0, "yes", "no")
    model, _ = fit_model(frame.drop(columns=["noise"]), "label", TrainingConfig())
    features = frame[list(model.feature_names_in_)]
    ranked = governance.importance(model, features, frame["label"], repeats=4)
    assert list(ranked) == ["signal"] and ranked["signal"] > 0.3
    model, _ = fit_model(frame, "label", TrainingConfig())
    features = frame[list(model.feature_names_in_)]
    stacked = governance.importance(model, features, frame["label"], repeats=4)
    original = governance.IMPORTANCE_BATCH_ROWS
    try:
        governance.IMPORTANCE_BATCH_ROWS = len(frame)  # one shuffled copy a call
        one_by_one = governance.importance(model, features, frame["label"], repeats=4)
    finally:
        governance.IMPORTANCE_BATCH_ROWS = original
    assert stacked == one_by_one
    assert abs(stacked["noise"]) < 0.02 < stacked["signal"]


def test_an_assessment_only_column_is_never_a_model_input():
    train, test = _split(census_frame())
    model, _ = fit_model(train, TARGET, TrainingConfig(params={"max_iter": 2000}),
                         assessment_columns=["race"])  # fmt: skip
    assert "race" not in model.feature_names_in_
    config = EvaluationConfig(fairness=FairnessConfig(sensitive_columns=["race"]))
    assert assess(model, test, TARGET, config).fairness[0].column == "race"


def test_batch_scoring_decides_by_the_tuned_threshold(tmp_path):
    """The batch pipeline's scorer answers with the model's own rule, like the service."""
    from datetime import UTC, datetime

    import pandas as pd

    from tabular_mlops.adapters.batch import score_file

    train, test = _split(census_frame(rows=1500))
    costly_misses = CostConfig(matrix={">50K": {"<=50K": 10.0}, "<=50K": {">50K": 1.0}})
    model, _ = fit_model(train, TARGET, TrainingConfig(params={"max_iter": 2000}), costly_misses)
    positive, threshold = decision_rule(model)
    spec = ServingSpec.from_training_data("m", "1", train, TARGET, list(model.classes_),
                                          positive, threshold)  # fmt: skip
    features = test.drop(columns=[TARGET])
    features.to_parquet(tmp_path / "batch.parquet")
    result = score_file(tmp_path / "batch.parquet", model, spec, tmp_path / "out", "b1", 100,
                        datetime.now(UTC))  # fmt: skip
    scored = pd.read_parquet(result.predictions_path)
    assert scored["prediction"].tolist() == list(model.predict(features))


def test_a_sensitive_or_assessment_column_the_data_lacks_is_named(tmp_path):
    from tabular_mlops.adapters.sources import DataSourceError, load_dataset
    from tabular_mlops.core.config import DataSourceConfig
    from tests.helpers import write_csv

    train, test = _split(census_frame())
    model, _ = fit_model(train, TARGET, TrainingConfig(params={"max_iter": 2000}))
    missing = EvaluationConfig(fairness=FairnessConfig(sensitive_columns=["gender"]))
    with pytest.raises(ValueError, match="sensitive_columns: 'gender' is not in the data"):
        assess(model, test, TARGET, missing)
    path = write_csv(census_frame(rows=50), tmp_path / "census.csv")
    source = DataSourceConfig(source="file", path=path, target=TARGET,
                              assessment_columns=["ethnicity"])  # fmt: skip
    with pytest.raises(DataSourceError, match=r"data.assessment_columns names \['ethnicity'\]"):
        load_dataset(source)
