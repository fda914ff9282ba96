"""Regression through the training side: config, data gate, split, fit, metrics,
intervals, cost, governance and the gate, each with a known answer."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest

from tabular_mlops.adapters.config_files import (
    ConfigError,
    load_environment,
    load_run_config,
)
from tabular_mlops.adapters.paths import CONFIG_DIR as CONFIGS
from tabular_mlops.core import regression
from tabular_mlops.core.checks import find_violations
from tabular_mlops.core.config import (
    CostConfig,
    DataValidationConfig,
    EvaluationConfig,
    FairnessConfig,
    IntervalConfig,
    PromotionConfig,
    RobustnessConfig,
    SplitConfig,
    TrainingConfig,
    TrainingParameters,
    TrainingRunConfig,
)
from tabular_mlops.core.gate import decide, judge
from tabular_mlops.core.metrics import evaluate
from tabular_mlops.core.model_factory import TrainingConfigError, fit_model, make_estimator
from tabular_mlops.core.scoring import rows_of_frame, scorer_for
from tabular_mlops.core.splits import SplitError, split_rows

RIDGE = TrainingConfig(estimator="sklearn.linear_model.Ridge")


def linear_frame(rows: int = 600, seed: int = 0, noise: float = 1.0) -> pd.DataFrame:
    """y = 3 x1 - 2 x2 + 5 + N(0, noise), with a categorical column shifting y by group."""
    rng = np.random.default_rng(seed)
    x1, x2 = rng.normal(size=rows), rng.normal(size=rows)
    group = rng.choice(["a", "b"], size=rows)
    y = 3 * x1 - 2 * x2 + 5 + np.where(group == "b", 1.0, 0.0) + rng.normal(0, noise, rows)
    return pd.DataFrame({"x1": x1, "x2": x2, "group": group, "y": y})


# --------------------------------------------------------------------------- metrics
def test_regression_scores_have_known_values_and_mape_only_away_from_zero():
    scores = regression.regression_scores([1.0, 2.0, 4.0], [2.0, 2.0, 2.0])
    assert scores["mae"] == pytest.approx(1.0)
    assert scores["rmse"] == pytest.approx(math.sqrt(5 / 3))
    assert scores["wape"] == pytest.approx(3 / 7)
    assert scores["mape"] == pytest.approx((1 + 0 + 0.5) / 3)
    assert scores["r2"] == pytest.approx(1 - 5 / (14 / 3))
    assert "mape" not in regression.regression_scores([0.0, 2.0, 4.0], [1.0, 2.0, 4.0])


def test_the_conformal_half_width_is_the_finite_sample_rank():
    errors = list(range(1, 10))  # nine errors: rank ceil(10 * 0.8) = 8
    assert regression.conformal_half_width(errors, 0.8) == 8
    assert regression.conformal_half_width(errors, 0.95) == 9  # rank 10 > n: the largest


def test_conformal_intervals_cover_the_nominal_share_of_new_rows():
    train, new = linear_frame(2000, seed=1), linear_frame(5000, seed=2)
    model, _ = fit_model(train, "y", RIDGE, task="regression", interval=IntervalConfig(level=0.9))
    errors = regression.errors_of(model)
    assert errors is not None and errors.rows == 2000
    held = np.abs(new["y"] - model.predict(new.drop(columns="y"))) <= errors.half_width
    # 5,000 rows: the coverage's standard error is 0.004
    assert abs(float(held.mean()) - 0.9) < 0.02
    assert errors.half_width == pytest.approx(1.645, abs=0.15)  # N(0, 1) noise


def test_the_newsvendor_decision_is_the_cost_quantile_and_costs_what_it_should():
    assert regression.newsvendor_quantile(3, 1) == 0.75
    assert regression.decision_cost([10, 10], [8, 13], under=3, over=1) == pytest.approx(
        (3 * 2 + 1 * 3) / 2
    )
    cost = CostConfig(under_prediction=3, over_prediction=1)
    model, _ = fit_model(linear_frame(2000), "y", RIDGE, cost, task="regression")
    errors = regression.errors_of(model)
    assert errors is not None and errors.decision_quantile == 0.75
    assert errors.decision_offset == pytest.approx(0.674, abs=0.1)  # N(0, 1)'s 75th percentile


def test_the_cost_optimal_decision_costs_less_than_the_prediction_itself():
    cost = CostConfig(under_prediction=9, over_prediction=1)
    model, _ = fit_model(linear_frame(2000), "y", RIDGE, cost, task="regression")
    new = linear_frame(3000, seed=5)
    predicted = model.predict(new.drop(columns="y"))
    decided = regression.decisions(model, predicted)
    assert regression.decision_cost(new["y"], decided, 9, 1) < 0.6 * regression.decision_cost(
        new["y"], predicted, 9, 1
    )


# --------------------------------------------------------------------------- config
def test_a_regression_config_that_kept_a_classifier_setting_is_named():
    with pytest.raises(
        ValueError, match=r"promotion.min_metrics: \['roc_auc'\] are not regression"
    ):
        TrainingParameters(
            task="regression", promotion=PromotionConfig(min_metrics={"roc_auc": 0.9})
        )
    with pytest.raises(ValueError, match=r"evaluation\.cost\.matrix: only for task classification"):
        TrainingParameters(
            task="regression",
            data={"dataset": "diabetes"},
            evaluation=EvaluationConfig(cost=CostConfig(matrix={"a": {"b": 1.0}})),
        )
    with pytest.raises(ValueError, match="'diabetes' is not a classification data set"):
        TrainingParameters(data={"dataset": "diabetes"})


def test_an_error_gets_a_ceiling_not_a_floor():
    with pytest.raises(ValueError, match=r"min_metrics: \['mae'\] are errors"):
        PromotionConfig(min_metrics={"mae": 3.0})
    with pytest.raises(ValueError, match=r"max_metrics: \['r2'\] are higher-is-better"):
        PromotionConfig(max_metrics={"r2": 0.5})


def test_a_regressors_gate_defaults_to_r2():
    parameters = TrainingParameters(task="regression", data={"dataset": "diabetes"})
    assert parameters.promotion.primary_metric == "r2"
    assert parameters.promotion.plausibility_ceiling == {"r2": 1.0}


def test_the_task_block_of_the_shipped_config_makes_a_regressor_and_set_flags_still_win():
    dev, path = load_environment("dev"), CONFIGS / "training.yaml"
    config = load_run_config(TrainingRunConfig, path, dev, ["parameters.task=regression"])
    p = config.parameters
    assert (config.model.name, p.data.dataset) == ("tabular_regressor", "diabetes")
    assert p.training.estimator == "sklearn.linear_model.Ridge"
    assert (p.promotion.primary_metric, p.promotion.min_metrics) == ("mae", {"r2": 0.3})
    assert p.evaluation.slice_column is None
    flags = ["parameters.task=regression", "model.name=reg", "parameters.data.dataset=demand"]
    config = load_run_config(TrainingRunConfig, path, dev, flags)
    assert (config.model.name, config.parameters.data.dataset) == ("reg", "demand")
    classifier = load_run_config(TrainingRunConfig, path, dev)
    assert classifier.parameters.promotion.primary_metric == "roc_auc"


def test_an_environment_keeps_its_floors_per_task():
    prod, path = load_environment("prod"), CONFIGS / "training.yaml"
    config = load_run_config(TrainingRunConfig, path, prod, ["parameters.task=regression"])
    assert config.parameters.promotion.min_metrics == {"r2": 0.3}  # the config's own
    assert config.parameters.promotion.max_regression == 0.0
    demand = CONFIGS / "examples" / "demand_training.yaml"
    config = load_run_config(TrainingRunConfig, demand, prod)
    assert config.parameters.promotion.min_metrics == {"r2": 0.7}  # never lowered by prod


def test_an_unknown_task_in_a_task_block_is_named(tmp_path):
    mine = tmp_path / "training.yaml"
    mine.write_text((CONFIGS / "training.yaml").read_text() + "\n  regresion: {}\n")
    with pytest.raises(ConfigError, match=r"tasks\.regresion: unknown task"):
        load_run_config(TrainingRunConfig, mine, load_environment("dev"))


# --------------------------------------------------------------------------- data gate
def test_a_regression_target_must_be_numbers_that_vary_and_are_finite():
    frame = linear_frame(200)
    rules = DataValidationConfig()

    def found(data: pd.DataFrame) -> set[tuple[str, str | None]]:
        return {(v.check, v.column) for v in find_violations(data, "y", rules, task="regression")}

    assert found(frame) == set()
    assert ("numeric_target", "y") in found(frame.assign(y=frame["y"].map("{:.1f} kg".format)))
    assert ("varying_target", "y") in found(frame.assign(y=7.0))
    assert ("infinite", "y") in found(frame.assign(y=frame["y"].where(frame.index != 3, np.inf)))


def test_a_column_that_is_the_target_in_disguise_is_a_leak():
    frame = linear_frame(400)
    leaked = frame.assign(y_cents=frame["y"] * 100)
    violations = find_violations(leaked, "y", DataValidationConfig(), task="regression")
    leak = [v for v in violations if v.check == "label_leak"]
    assert [v.column for v in leak] == ["y_cents"]
    assert "R² 1.000" in leak[0].detail


def test_a_target_in_other_units_is_caught_against_the_reference():
    reference = linear_frame(400, seed=1).assign(y=lambda f: f["y"] + 20)
    new = linear_frame(400, seed=2).assign(y=lambda f: (f["y"] + 20) * 1000)
    violations = {
        v.check
        for v in find_violations(new, "y", DataValidationConfig(), reference, task="regression")
    }
    assert {"median_shift", "label_shift"} <= violations
    same = find_violations(linear_frame(400, seed=3), "y", DataValidationConfig(),
                           linear_frame(400, seed=4), task="regression")  # fmt: skip
    assert same == []


# --------------------------------------------------------------------------- split
def test_a_time_split_never_tests_on_rows_older_than_a_training_row():
    days = pd.date_range("2024-01-01", periods=100).strftime("%Y-%m-%d")
    frame = pd.DataFrame({"day": np.repeat(days, 3), "y": np.arange(300.0)}).sample(
        frac=1, random_state=0
    )
    train, test = split_rows(
        frame, SplitConfig(test_size=0.25, time_column="day"), "y", "regression"
    )
    assert len(train) + len(test) == 300
    assert train["day"].max() < test["day"].min()
    assert len(test) == 75  # the cut falls between days here
    with pytest.raises(SplitError, match=r"'day' has 1 value\(s\) that are not dates"):
        split_rows(frame.assign(day=frame["day"].where(frame.index != 5, "soon")),
                   SplitConfig(time_column="day"), "y")  # fmt: skip


# --------------------------------------------------------------------------- fit and gate
def test_a_classifier_is_refused_where_a_regressor_is_asked_for():
    with pytest.raises(TrainingConfigError, match="is not a scikit-learn regressor"):
        make_estimator(TrainingConfig(), "regression")


@pytest.mark.parametrize(
    "estimator", ["sklearn.linear_model.PoissonRegressor", "sklearn.linear_model.GammaRegressor"]
)
def test_a_target_outside_the_estimators_loss_is_named_with_its_range(estimator):
    from tabular_mlops.core.config import SearchConfig

    frame = linear_frame(200)
    frame["y"] = frame["y"].abs() + 1
    frame.loc[7, "y"] = -3.0
    training = TrainingConfig(estimator=estimator)
    match = rf"{estimator} cannot learn target 'y'.* -3 \(row 7\) to .*fix the target's values"
    with pytest.raises(TrainingConfigError, match=match):
        fit_model(frame, "y", training, task="regression")
    searched = training.model_copy(
        update={"search": SearchConfig(param_grid={"alpha": [0.1, 1.0]}, scoring="mae")}
    )
    with pytest.raises(TrainingConfigError, match=match):
        fit_model(frame, "y", searched, task="regression")


def test_a_regressor_is_evaluated_sliced_and_scored_on_the_fast_path():
    frame = linear_frame(800)
    model, _ = fit_model(frame.iloc[:600], "y", RIDGE, task="regression")
    report = evaluate(model, frame.iloc[600:], "y", slice_column="group")
    assert report.task == "regression" and set(report.metrics) == {
        "mae",
        "rmse",
        "r2",
        "wape",
        "mape",
    }
    assert report.metrics["r2"] > 0.9
    assert [s.value for s in report.slices] == ["a", "b"]
    assert len(report.predicted_vs_actual) == 200
    features = frame.iloc[600:].drop(columns="y")
    scorer = scorer_for(model, list(features.columns), features)
    assert type(scorer).__name__ == "FastModel" and scorer.linear is not None
    np.testing.assert_allclose(
        scorer.predict_proba(rows_of_frame(features))[:, 0], model.predict(features), rtol=1e-9
    )


def test_a_tree_regressor_is_scored_the_same_on_the_fast_path():
    frame = linear_frame(600)
    trees = TrainingConfig(estimator="sklearn.ensemble.HistGradientBoostingRegressor",
                           params={"max_iter": 30})  # fmt: skip
    model, _ = fit_model(frame, "y", trees, task="regression")
    features = frame.drop(columns="y")
    scorer = scorer_for(model, list(features.columns), features)
    np.testing.assert_allclose(scorer.predict_proba_frame(features)[:, 0], model.predict(features))


def test_the_gate_refuses_a_worse_and_passes_a_better_regressor_on_an_error_metric():
    gate = PromotionConfig(primary_metric="mae", max_regression=0.5, max_metrics={"rmse": 4.0})
    champion = {"mae": 2.0, "rmse": 3.0}
    worse = decide({"mae": 2.6, "rmse": 3.5}, champion, gate, "1")
    assert not worse.approved
    assert worse.reasons == [
        "mae = 2.6000 regresses against champion version 1 (2.0000) by more than 0.5"
    ]
    assert decide({"mae": 2.4, "rmse": 3.5}, champion, gate, "1").approved
    ceiling = decide({"mae": 1.0, "rmse": 4.5}, champion, gate, "1")
    assert ceiling.reasons == ["rmse = 4.5000 is above the ceiling 4.0"]


def test_governance_gates_coverage_error_gaps_and_a_higher_price_that_raises_demand():
    frame = linear_frame(1200)
    # the model learns that raising x1 raises y: an expectation that it lowers y breaks
    config = EvaluationConfig(
        fairness=FairnessConfig(sensitive_columns=["group"], max_error_ratio=1.01),
        robustness=RobustnessConfig(
            directional=[{"feature": "x1", "step": 1.0, "direction": "decreases"}]
        ),
        interval=IntervalConfig(level=0.9, max_coverage_shortfall=0.0),
    )
    model, _ = fit_model(frame.iloc[:800], "y", RIDGE, task="regression")
    test = frame.iloc[800:].assign(y=lambda f: f["y"] + np.where(f["group"] == "a", 3.0, 0.0))
    report = regression.assess(model, test, "y", config)
    assert report.interval is not None and report.interval.coverage < 0.9
    found = regression.violations(report, None, config)
    assert any(v.startswith("intervals: the 90% prediction intervals") for v in found)
    assert any(v.startswith("fairness: MAE ratio between groups of 'group'") for v in found)
    assert any("raising 'x1' by 1 moves the prediction against 'decreases'" in v for v in found)
    assert next(iter(report.importance)) == "x1"


def test_a_costlier_regressor_is_refused_against_the_champion_on_the_same_rows():
    frame = linear_frame(1200)
    config = EvaluationConfig(cost=CostConfig(under_prediction=3, over_prediction=1))
    champion, _ = fit_model(frame.iloc[:800], "y", RIDGE, config.cost, task="regression")
    weak = TrainingConfig(estimator="sklearn.dummy.DummyRegressor")
    candidate, _ = fit_model(frame.iloc[:800], "y", weak, config.cost, task="regression")
    test = frame.iloc[800:]
    governance = regression.assess(candidate, test, "y", config)
    metrics = evaluate(candidate, test, "y").metrics
    decision = judge(metrics, governance, champion, "3", test, "y",
                     PromotionConfig(primary_metric="r2"), config, "regression")  # fmt: skip
    assert not decision.approved
    assert any(r.startswith("cost: ") and "above the champion's" in r for r in decision.reasons)
    with pytest.raises(
        ValueError, match=r"the champion .* is a regressor and the candidate is not"
    ):
        judge({"accuracy": 1.0}, None, champion, "3", test, "y", PromotionConfig(), config)


# --------------------------------------------------------------------------- demand data
def test_the_demand_data_is_the_same_on_every_machine_and_behaves_like_demand():
    from tabular_mlops.core.demand import demand_frame

    frame = demand_frame()
    assert frame.shape == (730 * 3 * 4, 7)
    assert frame.equals(demand_frame())
    assert frame.iloc[0].tolist() == ["2023-01-01", "north", "cola", 1.83, 0, 1, 76.0]
    promoted = frame.groupby("promotion")["units_sold"].mean()
    weekday = frame.groupby(pd.to_datetime(frame["date"]).dt.weekday)["units_sold"].mean()
    assert promoted[1] > 1.3 * promoted[0]  # the lift and the discount's price effect
    assert weekday[5] == weekday.max()  # Saturdays sell most
    assert (frame["units_sold"] >= 0).all() and frame["date"].str.fullmatch(
        r"\d{4}-\d\d-\d\d"
    ).all()


def test_a_date_column_reaches_the_model_as_its_weekday_and_month_only():
    from tabular_mlops.core.demand import demand_frame

    frame = demand_frame(days=120)
    model, _ = fit_model(frame, "units_sold", RIDGE, task="regression", date_columns=["date"])
    names = list(model.named_steps["preprocess"].get_feature_names_out())
    assert "dates__date_day_of_week_5" in names and "dates__date_month_4" in names
    assert not any("2023" in name for name in names)
    # a date the model never saw (next year) is answered from its weekday and month
    future = frame.head(3).assign(date="2031-06-07")
    assert np.isfinite(model.predict(future.drop(columns="units_sold"))).all()


def test_the_data_gate_names_a_date_that_is_not_one_and_no_longer_calls_dates_text():
    from tabular_mlops.core.demand import demand_frame

    frame = demand_frame(days=60)
    rules = DataValidationConfig(max_duplicate_share=1.0)

    def checks(data: pd.DataFrame, dates: tuple[str, ...]) -> dict[tuple[str, str | None], str]:
        found = find_violations(data, "units_sold", rules, task="regression", date_columns=dates)
        return {(v.check, v.column): v.detail for v in found}

    assert "name it in data.date_columns" in checks(frame, ())[("date_column", "date")]
    assert checks(frame, ("date",)) == {}
    broken = frame.assign(date=frame["date"].where(frame.index != 4, "04/02/2023x"))
    assert (
        "1 value(s) are not ISO dates (e.g. '04/02/2023x')"
        in checks(broken, ("date",))[("date", "date")]
    )


def test_the_fast_path_reads_dates_as_the_pipeline_does_odd_ones_included():
    from tabular_mlops.core.demand import demand_frame

    frame = demand_frame(days=90)
    poisson = TrainingConfig(estimator="sklearn.linear_model.PoissonRegressor",
                             params={"alpha": 0.001, "max_iter": 500})  # fmt: skip
    model, _ = fit_model(frame, "units_sold", poisson, task="regression", date_columns=["date"])
    features = frame.drop(columns="units_sold")
    scorer = scorer_for(model, list(features.columns), features)
    assert type(scorer).__name__ == "FastModel"
    odd = features.head(5).astype(object)
    odd["date"] = ["2031-06-07T10:00:00", "2025-13-01", None, "20250607", "07/06/2025"]
    expected = model.predict(odd)
    np.testing.assert_allclose(scorer.predict_proba(rows_of_frame(odd))[:, 0], expected)
    np.testing.assert_allclose(scorer.predict_proba_frame(odd)[:, 0], expected)


def test_a_batch_row_whose_answer_overflows_is_rejected_as_the_service_refuses_it(tmp_path):
    """A price of -1e6 against training's 0.7-2.6: a Poisson model's answer is inf. The
    service refuses the row (422, naming the feature); the batch rejects it alone with
    the same words, and writes no infinite answer."""
    from datetime import UTC, datetime

    from tabular_mlops.adapters.batch import score_file
    from tabular_mlops.adapters.champion import regression_answer
    from tabular_mlops.core.demand import demand_frame
    from tabular_mlops.core.spec import ServingSpec

    frame = demand_frame(days=60)
    poisson = TrainingConfig(estimator="sklearn.linear_model.PoissonRegressor",
                             params={"alpha": 0.001, "max_iter": 500})  # fmt: skip
    model, _ = fit_model(frame, "units_sold", poisson, task="regression", date_columns=["date"])
    spec = ServingSpec.from_training_data(
        "demand", "1", frame, "units_sold", [], **regression_answer(model)
    )
    batch = frame.drop(columns="units_sold").head(6).copy()
    batch.loc[2, "price"] = -1e6
    path = tmp_path / "far.csv"
    batch.to_csv(path, index=False)
    with np.errstate(over="ignore"):
        result = score_file(path, model, spec, tmp_path / "out", "b", 4, datetime.now(UTC))
    assert (result.rows_scored, result.rows_rejected) == (5, 1)
    (reason,) = pd.read_csv(result.rejected_path)["rejection_reason"]
    assert reason.startswith("column 'price': -1000000.0 is far outside the range training "
                             "covered [")  # fmt: skip
    assert reason.endswith("]: the model's answer overflows")
    scored = pd.read_parquet(result.predictions_path)
    assert np.isfinite(scored["prediction"]).all() and 2 not in scored["row_number"].tolist()


def test_every_reader_of_a_date_reads_the_same_day_or_none():
    import sys

    from tabular_mlops.adapters.paths import PROJECT_ROOT
    from tabular_mlops.core.scoring import one_date_part
    from tabular_mlops.core.transformers import read_dates

    sys.path.insert(0, str(PROJECT_ROOT))
    from embedded.scorer import read_date

    odd = ["2024-01-05", "2024-1-5", "2024-01-05T10:00:00+02:00", "2024-01-05x", "2024/01/05",
           "20240105", "2024-02-30", " 2024-01-05", "2024-13-01", "0224-01-05", "1677-10-01",
           "1899-12-31", "1900-01-01", "2199-12-31", "2200-01-01", "9999-12-31", ""]  # fmt: skip
    pipeline = read_dates(pd.Series(odd, dtype=object))
    for value, day in zip(odd, pipeline, strict=True):
        expected = None if pd.isna(day) else day.date()
        assert read_date(value) == expected, value
        assert one_date_part(value, 1) == (None if expected is None else str(expected.month))
    assert pipeline.isna().sum() == 11


def test_a_model_with_a_date_column_is_exported_and_the_file_reads_dates_as_it_does():
    from embedded import EmbeddedModel
    from materializers.onnx_model_materializer import render_html
    from tabular_mlops.adapters.champion import regression_answer
    from tabular_mlops.adapters.onnx_export import export_onnx
    from tabular_mlops.core.demand import demand_frame
    from tabular_mlops.core.spec import ServingSpec

    frame = demand_frame(days=90)
    cost = CostConfig(under_prediction=2, over_prediction=1)
    model, _ = fit_model(frame, "units_sold", RIDGE, cost, task="regression",
                         date_columns=["date"])  # fmt: skip
    spec = ServingSpec.from_training_data(
        "demand", "1", frame, "units_sold", [], **regression_answer(model)
    )
    features = frame.drop(columns="units_sold")
    exported = export_onnx(model, spec, features)
    assert exported.skipped is None and exported.manifest["check"]["rows"] == len(frame)
    (date,) = [f for f in exported.manifest["features"] if f["name"] == "date"]
    assert date["kind"] == "date" and [p["part"] for p in date["parts"]] == [
        "day_of_week", "month"]  # fmt: skip
    odd = features.head(5).astype(object)
    odd["date"] = ["2031-06-07T10:00:00", "2025-13-01", "soon", "0224-01-05", "07/06/2025"]
    records = odd.where(odd.notna(), None).to_dict("records")
    embedded = EmbeddedModel.from_bytes(exported.onnx, exported.manifest)
    np.testing.assert_allclose(embedded.predict(records), model.predict(odd), rtol=1e-4)
    (answer, *_) = embedded.answers(records)
    assert set(answer) == {"prediction", "interval", "decision"}
    # the dashboard's page of the export names each part's input and fill
    page = render_html(exported.manifest)
    assert "date_day_of_week, date_month" in page and "day_of_week 0, month 1" in page


def test_a_date_part_named_like_another_feature_is_refused_by_name():
    from tabular_mlops.adapters.champion import regression_answer
    from tabular_mlops.adapters.onnx_export import OnnxExportError, export_onnx
    from tabular_mlops.core.demand import demand_frame
    from tabular_mlops.core.spec import ServingSpec

    frame = demand_frame(days=30)
    frame["date_month"] = frame["price"] * 2  # a real feature of the part's name
    model, _ = fit_model(frame, "units_sold", RIDGE, None, task="regression",
                         date_columns=["date"])  # fmt: skip
    spec = ServingSpec.from_training_data(
        "demand", "1", frame, "units_sold", [], **regression_answer(model)
    )
    message = (
        r"model 'demand' version 1: the date column 'date' enters the ONNX file as its part "
        r"'date_month', which is also a feature's name; not exported \(rename the column "
        r"'date_month'"
    )
    with pytest.raises(OnnxExportError, match=message):
        export_onnx(model, spec, frame.drop(columns="units_sold"))


def test_a_regressors_batch_refuses_only_the_columns_it_writes(tmp_path):
    """An id column named like an answer the model does not give (no decision without a
    cost, no reason codes but for a binary classifier) is carried; one named like an
    answer it gives is refused; a feature named like the row number never scores."""
    from tabular_mlops.adapters.batch import BatchSchemaError, check_columns
    from tabular_mlops.adapters.champion import regression_answer
    from tabular_mlops.core.demand import demand_frame
    from tabular_mlops.core.spec import ServingSpec

    frame = demand_frame(days=20)
    model, _ = fit_model(frame, "units_sold", RIDGE, None, task="regression",
                         date_columns=["date"])  # fmt: skip
    spec = ServingSpec.from_training_data(
        "demand", "1", frame, "units_sold", [], **regression_answer(model)
    )
    assert spec.decision_offset is None
    path = tmp_path / "ids.csv"
    frame.assign(decision="kept", reasons="kept").to_csv(path, index=False)
    check_columns(path, spec, explain=True)
    frame.assign(prediction=1.0).to_csv(path, index=False)
    with pytest.raises(BatchSchemaError, match=r"\['prediction'\] would be carried"):
        check_columns(path, spec)
    numbered = frame.rename(columns={"price": "row_number"})
    model, _ = fit_model(numbered, "units_sold", RIDGE, None, task="regression",
                         date_columns=["date"])  # fmt: skip
    spec = ServingSpec.from_training_data(
        "demand", "2", numbered, "units_sold", [], **regression_answer(model)
    )
    numbered.to_csv(path, index=False)
    with pytest.raises(BatchSchemaError, match=r"has a feature named 'row_number'.*rename that "
                       r"column in the training data and train again"):  # fmt: skip
        check_columns(path, spec)


# --------------------------------------------------------------------------- monitoring
def test_monitoring_measures_a_regressors_error_and_retrains_above_its_ceiling(tmp_path):
    from tabular_mlops.adapters.monitoring_data import LabelsError, performance
    from tabular_mlops.core.config import MonitoringConfig
    from tabular_mlops.core.drift import DriftSummary
    from tabular_mlops.core.signals import decide

    logged = pd.DataFrame({"request_id": ["a", "a", "b"], "row": [0, 1, 0],
                           "prediction": [10.0, 20.0, 30.0]})  # fmt: skip
    labels = tmp_path / "labels.csv"
    labels.write_text("request_id,row,label\na,0,12\na,1,20\nb,0,26\n")
    measured = performance(logged, labels, "regression")
    assert measured is not None and measured["mae"] == pytest.approx(2.0)
    # a classifier whose labels are numbers is still judged on its labels
    as_labels = performance(logged.assign(prediction=["12", "20", "30"]), labels)
    assert as_labels is not None and as_labels["accuracy"] == pytest.approx(2 / 3)
    config = MonitoringConfig(min_rows=1, alert_above_mae=1.0, retrain_above_mae=1.5)
    drift = DriftSummary(compared_with_reference=True)
    decision = decide(3, drift, measured, config)
    assert decision.action == "retrain"
    assert "MAE 2 on 3 labelled rows, above 1.5" in decision.reasons
    assert "MAE 2, RMSE" in decision.reasons[-1]
    calm = decide(3, drift, measured, MonitoringConfig(min_rows=1, alert_above_mae=1.0))
    assert calm.action == "alert"
    labels.write_text("request_id,row,label\na,0,twelve\n")
    with pytest.raises(LabelsError, match="'twelve', not a number"):
        performance(logged, labels, "regression")


# --------------------------------------------------------------------------- serving
def test_the_service_answers_a_regressors_value_interval_and_decision_and_documents_them(
    tmp_path,
):
    from fastapi.testclient import TestClient
    from openapi_spec_validator import validate

    from tabular_mlops.adapters.champion import regression_answer
    from tabular_mlops.core.spec import ServingSettings, ServingSpec
    from tabular_mlops.serving.app import bind, create_app
    from tabular_mlops.serving.credentials import Tokens, write_tokens

    frame = linear_frame(600)
    cost = CostConfig(under_prediction=3, over_prediction=1)
    model, _ = fit_model(frame, "y", RIDGE, cost, task="regression")
    spec = ServingSpec.from_training_data("reg", "1", frame, "y", [], **regression_answer(model))
    tokens = tmp_path / "tokens.json"
    write_tokens(tokens, Tokens(current={"feedback": "f", "admin": "a", "source": "s"}))
    app = create_app(spec, ServingSettings(model_tag="reg:1", tokens_file=str(tokens)))
    features = frame.drop(columns="y")
    bind(app, scorer_for(model, list(features.columns), features), None)
    client = TestClient(app)
    row = {"x1": 0.5, "x2": -1.0, "group": "b"}
    answer = client.post("/predict", json={"rows": [row]})
    assert answer.status_code == 200, answer.text
    (prediction,) = answer.json()["predictions"]
    value = float(model.predict(pd.DataFrame([row]))[0])
    assert prediction["prediction"] == pytest.approx(value, rel=1e-9)
    assert prediction["interval"] == pytest.approx(
        [value - spec.interval_half_width, value + spec.interval_half_width]
    )
    assert prediction["decision"] == pytest.approx(value + spec.decision_offset)
    document = client.get("/openapi.json").json()
    validate(document)
    declared = document["components"]["schemas"]["Prediction"]
    assert declared["required"] == ["prediction", "interval", "decision"]
    assert set(declared["properties"]) == {"prediction", "interval", "decision", "explanation"}


def test_monitoring_reads_only_its_models_rows_from_a_log_two_models_share(tmp_path):
    from datetime import UTC, datetime, timedelta

    from tabular_mlops.adapters.monitoring_data import collect
    from tabular_mlops.core.config import MonitoringConfig
    from tabular_mlops.serving.inference_log import InferenceRecord

    now = datetime.now(UTC)
    logs = tmp_path / "log"
    logs.mkdir()
    lines = [
        InferenceRecord(
            request_id=f"{name}-{i}",
            timestamp=now - timedelta(minutes=1),
            model_name=name,
            model_version="1",
            inputs=inputs,
            prediction=prediction,
        ).model_dump_json()
        for i in range(3)
        for name, inputs, prediction in (
            ("classifier", {"radius": 1.0}, "malignant"),
            ("regressor", {"x1": 0.5, "x2": 1.0}, 12.5),
        )
    ]
    (logs / "requests-2026-12-03-host-1.jsonl").write_text("\n".join(lines) + "\n")
    config = MonitoringConfig(inference_log_dir=logs, batch_predictions_dir=tmp_path / "none")
    window = (now - timedelta(hours=1), now)
    rows = collect(config, ["x1", "x2"], *window, model_name="regressor")
    assert list(rows["prediction"]) == [12.5, 12.5, 12.5]
    assert set(rows["request_id"]) == {"regressor-0", "regressor-1", "regressor-2"}


def test_a_counts_interval_and_decision_never_go_below_zero_in_any_reader():
    from embedded import EmbeddedModel
    from tabular_mlops.adapters.batch import value_columns
    from tabular_mlops.adapters.champion import regression_answer
    from tabular_mlops.adapters.onnx_export import export_onnx
    from tabular_mlops.core.spec import ServingSpec

    counts = linear_frame(600).assign(y=lambda f: (f["y"] - 1).clip(lower=0).round())
    cost = CostConfig(under_prediction=1, over_prediction=3)  # the decision sits below
    model, _ = fit_model(counts, "y", RIDGE, cost, task="regression")
    spec = ServingSpec.from_training_data("c", "1", counts, "y", [], **regression_answer(model))
    assert spec.answer_floor == 0 and spec.decision_offset is not None
    features = counts.drop(columns="y")
    low = features.assign(x1=-3.0, x2=3.0).head(3)  # predicted below zero
    values = model.predict(low)
    assert (values < 0).all()
    served = spec.value_answers(values.tolist())
    assert [a["prediction"] for a in served] == pytest.approx(values)  # the model's, as it is
    assert all(a["interval"][0] == 0 and a["decision"] == 0 for a in served)
    batch = value_columns(spec, values)
    assert (batch["interval_low"] == 0).all() and (batch["decision"] == 0).all()
    exported = export_onnx(model, spec, features)
    records = low.to_dict("records")
    embedded = EmbeddedModel.from_bytes(exported.onnx, exported.manifest).answers(records)
    assert all(a["interval"][0] == 0 and a["decision"] == 0 for a in embedded)
    # a target that may be negative keeps its intervals whole
    signed, _ = fit_model(linear_frame(600), "y", RIDGE, cost, task="regression")
    assert regression.errors_of(signed).floor is None


def test_a_run_of_the_other_task_is_refused_against_the_champion_naming_both():
    from tabular_mlops.adapters.champion import Champion, TaskMismatchError, check_same_task

    champion = Champion(version="3", stage="production", task="classification")
    check_same_task(champion, "churn", "classification")
    check_same_task(Champion(), "churn", "regression")  # no champion yet
    with pytest.raises(TaskMismatchError, match=(
        r"model 'churn' version 3 \(production\) is a classifier, and this run trains a "
        r"regressor \(parameters.task: regression\)"
    )):  # fmt: skip
        check_same_task(champion, "churn", "regression")


def test_the_demand_csv_reads_back_as_the_rows_the_example_trains_on(tmp_path):
    from tabular_mlops.adapters.sources import load_dataset
    from tabular_mlops.core.config import DataSourceConfig
    from tabular_mlops.core.demand import demand_frame
    from tests.helpers import invoke

    path = tmp_path / "demand.csv"
    result = invoke("demand-data", "--output", str(path))
    assert result.exit_code == 0, result.output
    assert (
        f"Wrote 8,760 rows (date, store, product, price, promotion, holiday, units_sold) to {path}"
        in result.output
    )
    read = load_dataset(DataSourceConfig(source="file", path=path, target="units_sold"))
    pd.testing.assert_frame_equal(read, demand_frame())


# --------------------------------------------------------------------------- A/B on errors
def _errors(errors: np.ndarray):
    from tabular_mlops.core.rollout import AbsoluteErrors

    stats = AbsoluteErrors()
    for error in errors:
        stats.add(float(error))
    return stats


def _summed(errors: np.ndarray):
    """What ``_errors`` adds up row by row, in one go (the A/B tests below draw half a
    million rows: 2 s of ``add`` calls)."""
    from tabular_mlops.core.rollout import AbsoluteErrors

    deviations = float(((errors - errors.mean()) ** 2).sum()) if len(errors) else 0.0
    return AbsoluteErrors(rows=len(errors), total=float(errors.sum()), deviations=deviations)


def test_errors_summed_in_one_go_are_the_rows_added_one_by_one():
    errors = np.abs(np.random.default_rng(3).normal(0, 7, 200))
    one_by_one, summed = _errors(errors), _summed(errors)
    assert (summed.rows, summed.total) == (one_by_one.rows, pytest.approx(one_by_one.total))
    assert summed.deviations == pytest.approx(one_by_one.deviations, rel=1e-9)


def _arm(version: str, errors: np.ndarray, randomized: np.ndarray | None = None):
    from tabular_mlops.core.rollout import ArmEvidence

    return ArmEvidence(
        version=version, requests=len(errors), absolute_errors=_summed(errors),
        randomized_errors=_summed(errors if randomized is None else randomized),
    )  # fmt: skip


def test_error_sums_of_an_older_layout_are_refused_naming_the_field():
    """A stored arm whose errors carry a field this version does not know (the sum of
    squares an earlier layout kept) is not read as a spread of zero."""
    from pydantic import ValidationError

    from tabular_mlops.core.rollout import ArmEvidence

    with pytest.raises(ValidationError, match="squares"):
        ArmEvidence.model_validate(
            {"version": "2", "absolute_errors": {"rows": 3, "total": 6.0, "squares": 14.0}}
        )


def test_welchs_test_on_absolute_errors_matches_scipys():
    from scipy.stats import ttest_ind

    from tabular_mlops.core.rollout import welch_p_value

    rng = np.random.default_rng(3)
    champion, candidate = np.abs(rng.normal(0, 10, 300)), np.abs(rng.normal(0, 8, 200))
    expected = ttest_ind(candidate, champion, equal_var=False, alternative="less").pvalue
    assert welch_p_value(_errors(champion), _errors(candidate)) == pytest.approx(expected)


def test_the_error_spread_does_not_cancel_for_huge_errors():
    """Errors of 1e9 +/- 1: a variance from the sum of squares loses every digit (it
    read 0.0, so any difference looked certain); the running update keeps them."""
    errors = 1e9 + np.array([-1.0, 0.0, 1.0] * 50)
    stats = _errors(errors)
    assert stats.mean == pytest.approx(1e9)
    assert stats.variance == pytest.approx(np.var(errors, ddof=1), rel=1e-6)


def test_an_ab_of_regressors_is_planned_on_the_error_spread_and_decided_by_welch():
    from tabular_mlops.core.rollout import (
        Evidence,
        PlanError,
        RolloutPlan,
        decide,
        error_sample_size,
        planned,
    )

    # 2 (1.645 + 0.842)² 10² / 2² = 309.2
    assert error_sample_size(10.0, 2.0, 0.05, 0.8) == 310
    with pytest.raises(PlanError, match=r"rollout\.min_error_reduction"):
        planned(RolloutPlan(strategy="ab"), None, 10.0)
    assert planned(RolloutPlan(strategy="shadow"), None, 10.0).sample_size_per_arm is None
    plan = planned(RolloutPlan(strategy="ab", min_error_reduction=2.0), None, 10.0)
    assert (plan.error_spread, plan.sample_size_per_arm) == (10.0, 310)
    rng = np.random.default_rng(0)

    def evidence(champion_scale: float, candidate_scale: float, rows: int) -> Evidence:
        return Evidence(
            strategy="ab", task="regression",
            champion=_arm("1", np.abs(rng.normal(0, champion_scale, rows))),
            candidate=_arm("2", np.abs(rng.normal(0, candidate_scale, rows))),
        )  # fmt: skip

    early = decide(evidence(12, 6, 100), plan)
    assert early.action == "continue" and "100 / 100 rows of the 310 per arm" in early.reasons[0]
    better = decide(evidence(12, 6, 320), plan)
    assert better.action == "promote" and "(Welch, one-sided)" in better.reasons[0]
    assert better.figures["candidate_mae"] < better.figures["champion_mae"]
    worse = decide(evidence(6, 12, 320), plan)
    assert worse.action == "rollback" and "the champion stays" in worse.reasons[0]
    # a candidate no better is promoted at most `significance` of the time
    promoted = sum(decide(evidence(10, 10, 320), plan).action == "promote" for _ in range(400))
    assert promoted / 400 < 0.05 + 3 * (0.05 * 0.95 / 400) ** 0.5


def test_a_regressors_bandit_sends_traffic_to_smaller_errors_and_is_tested_on_random_rows():
    import random

    from tabular_mlops.core.rollout import (
        Evidence,
        RolloutPlan,
        decide,
        planned,
        thompson_error_choice,
    )

    rng, draws = random.Random(0), np.random.default_rng(1)
    # an arm without two errors fed back is tried first; then the smaller errors win
    assert thompson_error_choice([_errors(np.ones(50)), _errors(np.ones(1))], rng) == 1
    small, large = _errors(np.abs(draws.normal(0, 5, 60))), _errors(np.abs(draws.normal(0, 9, 60)))
    chosen = [thompson_error_choice([large, small], rng) for _ in range(200)]
    assert sum(chosen) > 190
    plan = planned(RolloutPlan(strategy="bandit", min_error_reduction=2.0), None, 10.0)
    assert plan.sample_size_per_arm == 310

    def evidence(champion: float, candidate: float, rows: int, randomized: int) -> Evidence:
        def arm(version: str, scale: float):
            errors = np.abs(draws.normal(0, scale, rows))
            return _arm(version, errors, errors[:randomized])

        return Evidence(strategy="bandit", task="regression",
                        champion=arm("1", champion), candidate=arm("2", candidate))  # fmt: skip

    # many rows, but the test reads only those sent to an arm at random
    waiting = decide(evidence(12, 6, 2000, 100), plan)
    assert waiting.action == "continue"
    assert "100 / 100 randomly assigned rows of the 310" in waiting.reasons[0]
    better = decide(evidence(12, 6, 2000, 320), plan)
    assert better.action == "promote" and "(Welch, one-sided)" in better.reasons[0]
    futile = decide(evidence(6, 12, 200, 40), plan)
    assert futile.action == "rollback" and "futile" in futile.reasons[0]


def test_a_regressors_canary_is_decided_on_errors_like_an_ab_test():
    from tabular_mlops.core.rollout import Evidence, RolloutPlan, decide, planned

    plan = planned(RolloutPlan(strategy="canary", min_error_reduction=2.0), None, 10.0)
    assert plan.sample_size_per_arm == 310
    draws = np.random.default_rng(2)
    evidence = Evidence(
        strategy="canary", task="regression",
        champion=_arm("1", np.abs(draws.normal(0, 12, 400))),
        candidate=_arm("2", np.abs(draws.normal(0, 6, 320))),
    )  # fmt: skip
    assert decide(evidence, plan).action == "promote"


def test_a_true_value_fed_back_as_text_counts_by_its_error():
    from tabular_mlops.core.rollout import absolute_error

    assert absolute_error(150.0, "151.5") == pytest.approx(1.5)
    assert absolute_error(150.0, "n/a") is None
    assert absolute_error(150.0, "inf") is None


def test_the_card_says_what_the_models_decisions_save_against_deciding_without_one():
    from tabular_mlops.core.model_card import governance_sections

    frame = linear_frame(1500)
    config = EvaluationConfig(cost=CostConfig(under_prediction=2, over_prediction=1))
    model, _ = fit_model(frame.iloc[:1000], "y", RIDGE, config.cost, task="regression")
    report = regression.assess(model, frame.iloc[1000:], "y", config)
    assert report.baseline_cost_per_1000 is not None and report.cost_per_1000 is not None
    assert report.cost_per_1000 < 0.5 * report.baseline_cost_per_1000  # x1, x2 explain y
    page = "".join(governance_sections(report))
    assert "What it is worth" in page and "the model's decisions save" in page
    assert "Answers the predicted value with a 90% prediction interval" in page


def test_a_regressors_shadow_agrees_within_the_tolerance_and_a_classifiers_exactly():
    from tabular_mlops.core.rollout import answers_agree

    assert answers_agree([100.0, 2.0], [104.0, 2.1], 0.05)  # 4 of 104; 0.1 of 2.1
    assert not answers_agree([100.0], [106.0], 0.05)
    assert answers_agree(["malignant"], ["malignant"], 0.05)
    assert not answers_agree(["malignant"], ["benign"], 0.05)
    assert not answers_agree([1.0, 2.0], [1.0], 0.05)


def test_the_error_spread_an_ab_is_planned_on_comes_from_the_recorded_mae_and_rmse():
    from tabular_mlops.core.rollout import error_spread

    assert error_spread({"mae": 3.0, "rmse": 5.0}) == pytest.approx(4.0)  # sqrt(25 - 9)
    assert error_spread({"accuracy": 0.9, "roc_auc": 0.95}) is None
