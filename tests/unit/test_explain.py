"""Per-prediction explanations: known answers for linear and tree models, one-hot columns
summed back to their feature, reason codes, and a refusal where no exact method exists."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from tabular_mlops.core.config import TrainingConfig
from tabular_mlops.core.explain import (
    SUM_TOLERANCE,
    Explainer,
    NotExplainableError,
    reason_code,
    reasons,
)
from tabular_mlops.core.model_factory import fit_model
from tests.helpers import customer_churn_frame, explained_total


@pytest.fixture(scope="module")
def churn():
    frame = customer_churn_frame(rows=400)
    return frame, frame.drop(columns="churn")


@pytest.mark.parametrize(
    "estimator",
    [
        "sklearn.linear_model.LogisticRegression",
        "sklearn.ensemble.RandomForestClassifier",
        "sklearn.ensemble.HistGradientBoostingClassifier",
        "sklearn.ensemble.GradientBoostingClassifier",
    ],
)
def test_base_plus_contributions_is_the_models_raw_output(churn, estimator):
    frame, features = churn
    # a forest of 20 trees sums as one of 100 does, in a fifth of the time
    params = {"n_estimators": 20} if "Forest" in estimator else {}
    model, _ = fit_model(frame, "churn", TrainingConfig(estimator=estimator, params=params))
    explainer = Explainer(model)
    explained = explainer.explain(features, top_k=2)
    raw = explainer.raw_output(features)
    assert (
        max(abs(explained_total(e) - r) for e, r in zip(explained, raw, strict=True))
        < SUM_TOLERANCE
    )
    # the original columns, never a one-hot column's name
    assert explainer.features == ["tenure_months", "monthly_charges", "contract", "region"]
    assert len(explained[0]["contributions"]) == 2
    sizes = [abs(c["contribution"]) for c in explained[0]["contributions"]]
    assert sizes == sorted(sizes, reverse=True)


def test_a_linear_explanation_is_shaps_with_the_training_split_as_background(churn):
    import shap

    frame, features = churn
    model, _ = fit_model(frame, "churn", TrainingConfig())
    transformed = model[:-1].transform(features)
    reference = shap.LinearExplainer(
        model.steps[-1][1], shap.maskers.Independent(transformed, max_samples=len(transformed))
    )
    per_column = np.asarray(reference.shap_values(transformed[:20]))
    explainer = Explainer(model)
    base, grouped = explainer.contributions(features.head(20))
    assert base[0] == pytest.approx(reference.expected_value)
    # a categorical's contribution is the sum of its one-hot columns'
    owners = np.array(explainer.owners)
    for index, name in enumerate(explainer.features):
        np.testing.assert_allclose(grouped[:, index], per_column[:, owners == name].sum(axis=1),
                                   atol=1e-12)  # fmt: skip


def test_a_poisson_regressors_explanation_sums_to_the_log_of_its_value():
    from tabular_mlops.core.demand import demand_frame

    frame = demand_frame(days=90)
    poisson = TrainingConfig(estimator="sklearn.linear_model.PoissonRegressor",
                             params={"alpha": 0.001, "max_iter": 500})  # fmt: skip
    model, _ = fit_model(frame, "units_sold", poisson, task="regression", date_columns=["date"])
    features = frame.drop(columns="units_sold").head(30)
    explainer = Explainer(model)
    assert explainer.unit == "log of the predicted value" and "date" in explainer.features
    explained = explainer.explain(features)
    totals = [explained_total(e) for e in explained]
    np.testing.assert_allclose(np.exp(totals), model.predict(features), rtol=1e-9)


def test_a_model_without_an_exact_explanation_is_refused_with_the_reason(churn):
    frame, _ = churn
    svm, _ = fit_model(frame, "churn", TrainingConfig(estimator="sklearn.svm.SVC",
                                                     params={"probability": True}))  # fmt: skip
    with pytest.raises(NotExplainableError, match="SVC cannot be explained exactly"):
        Explainer(svm)
    calibrated, _ = fit_model(frame, "churn", TrainingConfig(calibration="sigmoid"))
    with pytest.raises(NotExplainableError, match="CalibratedClassifierCV"):
        Explainer(calibrated)
    old, _ = fit_model(frame, "churn", TrainingConfig())
    del old.explanation_center_
    with pytest.raises(NotExplainableError, match="retrain it"):
        Explainer(old)


def test_reason_codes_are_stable_names_of_what_pushed_the_answer():
    assert reason_code("tenure months", 3.0, 30.0) == "TENURE_MONTHS_LOW"
    assert reason_code("capital-gain", 9000, 1000.0) == "CAPITAL_GAIN_HIGH"
    assert reason_code("contract", "month-to-month", None) == "CONTRACT_IS_MONTH_TO_MONTH"
    explanation = {"contributions": [
        {"feature": "contract", "contribution": 2.0},
        {"feature": "tenure_months", "contribution": -1.5},
        {"feature": "monthly_charges", "contribution": 0.5},
    ]}  # fmt: skip
    row = {"contract": "month-to-month", "tenure_months": 3.0, "monthly_charges": 99.0}
    averages = {"tenure_months": 30.0, "monthly_charges": 70.0}
    # toward the positive class: what raised its log-odds, largest first
    assert reasons(explanation, row, 1.0, averages) == [
        "CONTRACT_IS_MONTH_TO_MONTH", "MONTHLY_CHARGES_HIGH"]  # fmt: skip
    assert reasons(explanation, row, -1.0, averages) == ["TENURE_MONTHS_LOW"]


def served(model, frame, target, tmp_path):
    from fastapi.testclient import TestClient

    from tabular_mlops.core.governance import decision_rule
    from tabular_mlops.core.scoring import scorer_for
    from tabular_mlops.core.spec import ServingSettings, ServingSpec
    from tabular_mlops.serving.app import bind, create_app, load_explainer
    from tabular_mlops.serving.credentials import Tokens, write_tokens

    positive, threshold = decision_rule(model)
    spec = ServingSpec.from_training_data(
        "m", "1", frame, target, [str(c) for c in model.classes_], positive, threshold
    )
    tokens = tmp_path / "tokens.json"
    write_tokens(tokens, Tokens(current={"feedback": "f", "admin": "a", "source": "s"}))
    app = create_app(spec, ServingSettings(model_tag="m:1", tokens_file=str(tokens)))
    names = [f.name for f in spec.features]
    bind(app, scorer_for(model, names, frame[names]), None)
    load_explainer(app, model)
    return TestClient(app)


def test_the_service_explains_an_answer_when_asked_and_only_then(churn, tmp_path):
    from openapi_spec_validator import validate

    frame, features = churn
    model, _ = fit_model(frame, "churn", TrainingConfig())
    client = served(model, frame, "churn", tmp_path)
    row = {"tenure_months": 2.0, "monthly_charges": 99.0, "contract": "month-to-month",
           "region": "north"}  # fmt: skip
    plain = client.post("/predict", json={"rows": [row]}).json()["predictions"][0]
    assert set(plain) == {"label", "probabilities"}
    answer = client.post("/predict", json={"rows": [row], "explain": True})
    assert answer.status_code == 200, answer.text
    (explained,) = answer.json()["predictions"]
    explanation = explained["explanation"]
    raw = Explainer(model).raw_output(pd.DataFrame([row])[features.columns])[0]
    assert explained_total(explanation) == pytest.approx(raw, abs=SUM_TOLERANCE)
    assert explanation["unit"] == "log-odds of 'yes'"
    assert {c["feature"] for c in explanation["contributions"]} <= set(features.columns)
    toward_yes = explained["label"] == "yes"
    assert explained["reasons"] and all(isinstance(code, str) for code in explained["reasons"])
    if toward_yes:
        assert "CONTRACT_IS_MONTH_TO_MONTH" in explained["reasons"]
    document = client.get("/openapi.json").json()
    validate(document)
    declared = document["components"]["schemas"]["Prediction"]
    assert declared["required"] == ["label", "probabilities"]
    assert {"explanation", "reasons"} <= set(declared["properties"])


def test_asking_a_model_without_an_exact_explanation_is_refused_naming_why(churn, tmp_path):
    frame, _ = churn
    model, _ = fit_model(frame, "churn", TrainingConfig(calibration="sigmoid"))
    client = served(model, frame, "churn", tmp_path)
    row = frame.drop(columns="churn").head(1).to_dict("records")[0]
    answer = client.post("/predict", json={"rows": [row], "explain": True})
    assert answer.status_code == 422
    (problem,) = answer.json()["detail"]
    assert problem["field"] == "explain" and "CalibratedClassifierCV" in problem["problem"]
    assert client.post("/predict", json={"rows": [row]}).status_code == 200


def test_a_batch_file_is_written_with_each_rows_explanation_and_reasons(churn, tmp_path):
    import json
    from datetime import UTC, datetime

    from tabular_mlops.adapters.batch import BatchExplainError, score_file
    from tabular_mlops.core.governance import decision_rule
    from tabular_mlops.core.spec import ServingSpec

    frame, features = churn
    model, _ = fit_model(frame, "churn", TrainingConfig())
    positive, threshold = decision_rule(model)
    spec = ServingSpec.from_training_data(
        "m", "1", frame, "churn", [str(c) for c in model.classes_], positive, threshold
    )
    path = tmp_path / "rows.csv"
    features.head(50).to_csv(path, index=False)
    now = datetime.now(UTC)
    result = score_file(path, model, spec, tmp_path / "out", "b1", 20, now, explain=True)
    written = pd.read_parquet(result.predictions_path).sort_values("row_number")
    raw = Explainer(model).raw_output(features.head(50))
    totals = [explained_total(json.loads(e)) for e in written["explanation"]]
    np.testing.assert_allclose(totals, raw, atol=SUM_TOLERANCE)
    assert written["reasons"].str.fullmatch(r"[A-Z0-9_]+(,[A-Z0-9_]+)*").all()
    plain = score_file(path, model, spec, tmp_path / "out", "b2", 20, now)
    assert "explanation" not in pd.read_parquet(plain.predictions_path).columns
    calibrated, _ = fit_model(frame, "churn", TrainingConfig(calibration="sigmoid"))
    with pytest.raises(BatchExplainError, match=r"cannot explain its answers: .*nothing was"):
        score_file(path, calibrated, spec, tmp_path / "out", "b3", 20, now, explain=True)


def test_the_card_shows_a_few_test_rows_explained_beside_the_importance(churn):
    from tabular_mlops.core.explain import explained_examples
    from tabular_mlops.core.governance import GovernanceReport
    from tabular_mlops.core.model_card import example_sections

    frame, _ = churn
    model, _ = fit_model(frame, "churn", TrainingConfig())
    examples = explained_examples(model, frame.tail(40))
    assert 1 <= len(examples) <= 3 and all(e["reasons"] for e in examples)
    page = "".join(example_sections(GovernanceReport(explained_examples=examples)))
    assert "Explained examples" in page and "log-odds of &#x27;yes&#x27;" in page
    assert f"Test row {examples[0]['row']}: <b>{examples[0]['answer']}</b>" in page
    refused = "".join(example_sections(GovernanceReport(not_explained="SVC has none")))
    assert "None: SVC has none." in refused


@pytest.mark.parametrize(
    "estimator, params, unit",
    [
        ("sklearn.linear_model.GammaRegressor", {"max_iter": 1000}, "log of the predicted value"),
        ("sklearn.linear_model.TweedieRegressor", {"power": 1.5, "max_iter": 1000},
         "log of the predicted value"),
        ("sklearn.ensemble.HistGradientBoostingRegressor", {"loss": "poisson"},
         "log of the predicted value"),
        ("sklearn.ensemble.HistGradientBoostingRegressor", {}, "value"),
        ("sklearn.linear_model.Ridge", {}, "value"),
    ],
)  # fmt: skip
def test_a_regressors_unit_is_found_by_what_it_answers(estimator, params, unit):
    rng = np.random.default_rng(0)
    x = rng.normal(size=400)
    frame = pd.DataFrame({"x": x, "g": rng.choice(["a", "b"], 400),
                          "y": np.exp(1 + 0.3 * x) + rng.gamma(2.0, 0.5, 400)})  # fmt: skip
    model, _ = fit_model(frame, "y", TrainingConfig(estimator=estimator, params=params),
                         task="regression")  # fmt: skip
    explainer = Explainer(model)
    assert explainer.unit == unit
    features = frame.drop(columns="y").head(20)
    totals = [explained_total(e) for e in explainer.explain(features)]
    np.testing.assert_allclose(totals, explainer.raw_output(features), atol=1e-6)
    answers = np.exp(totals) if unit.startswith("log") else np.asarray(totals)
    np.testing.assert_allclose(answers, model.predict(features), rtol=1e-6)


def test_a_row_whose_explanation_is_not_finite_is_refused_not_answered(churn, tmp_path):
    frame, _ = churn
    rng = np.random.default_rng(1)
    frame = frame.assign(ratio=rng.normal(0, 0.1, len(frame)) + (frame["churn"] == "yes") * 0.2)
    model, _ = fit_model(frame, "churn", TrainingConfig())
    client = served(model, frame, "churn", tmp_path)
    row = frame.drop(columns="churn").head(1).to_dict("records")[0] | {"ratio": 1e308}
    answer = client.post("/predict", json={"rows": [row], "explain": True})
    assert answer.status_code == 422, answer.text
    assert answer.json()["error"] == "the model cannot explain these rows"
    assert any(p["field"] == "rows.0.ratio" for p in answer.json()["detail"])


def test_reason_codes_for_missing_values_other_scripts_and_dates():
    assert reason_code("tenure", None, 30.0) == "TENURE_IS_MISSING"
    assert reason_code("tenure", float("nan"), 30.0) == "TENURE_IS_MISSING"
    assert reason_code("city", "北京", None) == "CITY_IS_北京"
    assert reason_code("city", "東京", None) != reason_code("city", "北京", None)
    assert reason_code("order date", "2024-01-05", None, is_date=True) == "ORDER_DATE"
    assert reason_code("plan", "!!!", None) == "PLAN_IS_BLANK"
