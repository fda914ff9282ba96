from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from tabular_mlops.core.config import TASK_METRICS, PromotionConfig, SearchConfig, TrainingConfig
from tabular_mlops.core.gate import decide
from tabular_mlops.core.metrics import evaluate
from tabular_mlops.core.model_factory import TrainingConfigError, fit_model, make_estimator
from tests.helpers import customer_churn_frame


def test_pipeline_handles_categoricals_missing_values_and_string_labels():
    frame = customer_churn_frame()
    model, params = fit_model(frame, "churn", TrainingConfig(params={"max_iter": 500}))
    assert set(model.classes_) == {"yes", "no"}
    assert params["max_iter"] == 500
    unseen = frame.head(3).drop(columns=["churn"]).assign(contract="lifetime", region=None)
    assert set(model.predict(unseen)) <= {"yes", "no"}  # unknown category: ignored, not fatal


def test_grid_search_refits_the_best_parameters():
    frame = customer_churn_frame()
    search = SearchConfig(param_grid={"C": [0.01, 1.0]}, cv=2, scoring="accuracy")
    _, params = fit_model(frame, "churn", TrainingConfig(search=search))
    assert params["C"] in (0.01, 1.0)


@pytest.mark.parametrize(
    ("training", "message"),
    [
        (
            TrainingConfig(estimator="sklearn.linear_model.Nope"),
            "cannot import 'sklearn.linear_model.Nope'",
        ),
        (
            TrainingConfig(estimator="sklearn.linear_model.LinearRegression"),
            "is not a scikit-learn classifier",
        ),
        (
            TrainingConfig(params={"gamma": 1}),
            r"training.params.gamma: not a parameter of LogisticRegression",
        ),
    ],
)
def test_unusable_estimator_config_names_the_key(training, message):
    with pytest.raises(TrainingConfigError, match=message):
        make_estimator(training)


def test_evaluation_binary_with_slices():
    frame = customer_churn_frame(rows=600)
    model, _ = fit_model(frame.iloc[:400], "churn", TrainingConfig())
    report = evaluate(model, frame.iloc[400:], "churn", slice_column="contract")
    assert report.rows == 200
    assert set(report.metrics) == set(TASK_METRICS["classification"])
    assert 0.5 < report.metrics["roc_auc"] <= 1.0
    assert sum(map(sum, report.confusion_matrix)) == 200
    assert [s.value for s in report.slices] == ["month-to-month", "one-year", "two-year"]
    assert sum(s.rows for s in report.slices) == 200


def test_evaluation_multiclass_with_numeric_slices():
    from sklearn.datasets import load_iris

    frame = load_iris(as_frame=True).frame
    model, _ = fit_model(frame, "target", TrainingConfig(params={"max_iter": 500}))
    report = evaluate(model, frame, "target", slice_column="sepal length (cm)", slice_bins=3)
    assert len(report.classes) == 3 and len(report.roc_curves) == 3
    assert len(report.slices) == 3


def test_unknown_slice_column_is_named():
    frame = customer_churn_frame()
    model, _ = fit_model(frame, "churn", TrainingConfig())
    with pytest.raises(ValueError, match=r"evaluation\.slice_column: column 'plan'"):
        evaluate(model, frame, "churn", slice_column="plan")


GATE = PromotionConfig(primary_metric="roc_auc", min_metrics={"accuracy": 0.8}, max_regression=0.01)


def test_gate_approves_a_good_first_model():
    decision = decide({"accuracy": 0.9, "roc_auc": 0.95}, None, GATE)
    assert decision.approved and decision.reasons == ["all gates passed"]


def test_gate_rejects_below_floor_and_regression():
    decision = decide(
        {"accuracy": 0.7, "roc_auc": 0.90}, {"accuracy": 0.9, "roc_auc": 0.95}, GATE, "3"
    )
    assert not decision.approved
    assert decision.reasons == [
        "accuracy = 0.7000 is below the floor 0.8",
        "roc_auc = 0.9000 regresses against champion version 3 (0.9500) by more than 0.01",
    ]


def test_gate_tolerates_regression_within_the_margin():
    decision = decide({"accuracy": 0.9, "roc_auc": 0.945}, {"roc_auc": 0.95}, GATE, "3")
    assert decision.approved


def test_gate_rejects_a_metric_it_cannot_compute():
    gate = PromotionConfig(min_metrics={"roc_auc": 0.5})
    assert not decide({"accuracy": np.float64(1.0)}, None, gate).approved


def test_a_too_good_to_be_true_score_stops_the_gate_unless_a_reason_is_given():
    perfect = {"accuracy": 1.0, "roc_auc": 1.0}
    decision = decide(perfect, None, GATE, test_rows=285)
    assert not decision.approved
    assert decision.reasons[0] == (
        "accuracy = 1.0000 on 285 test rows is at or above the plausibility ceiling 1.0: a "
        "leak (a column that carries the label) is likelier than a perfect model; if the "
        "score is real, say why in promotion.accept_implausible"
    )
    assert decide(perfect, None, GATE, test_rows=36).approved  # 36 rows: luck, not a leak
    honest = {"accuracy": 0.972, "roc_auc": 0.9993}  # extra trees on breast cancer
    assert decide(honest, None, GATE, test_rows=285).approved
    accepting = GATE.model_copy(update={"accept_implausible": "synthetic data, exact by design"})
    accepted = decide(perfect, None, accepting, test_rows=285)
    assert accepted.approved
    assert accepted.accepted_implausible[1].endswith("accepted: synthetic data, exact by design")


def test_materialized_dataframe_hash_follows_content(tmp_path):
    from materializers.dataframe_materializer import ContentHashedDataFrameMaterializer

    materializer = ContentHashedDataFrameMaterializer(uri=str(tmp_path))
    frame = customer_churn_frame(rows=50)
    same = materializer.compute_content_hash(frame.copy())
    assert materializer.compute_content_hash(frame) == same
    changed = frame.copy()
    changed.loc[0, "tenure_months"] += 1
    assert materializer.compute_content_hash(changed) != same
    assert materializer.compute_content_hash(frame.astype({"tenure_months": "float32"})) != same


def test_evaluation_report_renders_metrics_and_plots():
    from materializers.evaluation_report_materializer import render_html

    frame = customer_churn_frame()
    model, _ = fit_model(frame, "churn", TrainingConfig())
    html = render_html(evaluate(model, frame, "churn", slice_column="region"))
    assert "roc_auc" in html and "By region" in html
    assert "data:image/png;base64," in html


def test_sklearn_source_has_named_string_labels():
    from tabular_mlops.adapters.sources import load_dataset
    from tabular_mlops.core.config import DataSourceConfig

    frame = load_dataset(DataSourceConfig(dataset="breast_cancer", target="diagnosis"))
    assert set(frame["diagnosis"]) == {"malignant", "benign"}
    assert len(frame) == 569


def test_a_trailing_comma_on_every_line_adds_no_column(tmp_path, caplog):
    """Some exports end every line with a comma: a column with no name and no value, which
    training leaves out (and says so) as the batch reader does."""
    from tabular_mlops.adapters.sources import load_dataset
    from tabular_mlops.core.config import DataSourceConfig

    path = tmp_path / "export.csv"
    path.write_text("a,b,target,\n1,x,yes,\n2,y,no,\n")
    frame = load_dataset(DataSourceConfig(source="file", path=path))
    assert list(frame.columns) == ["a", "b", "target"]
    assert "1 column(s) with no name and no value left out" in caplog.text


def test_file_source_errors_name_the_file_and_column(tmp_path):
    from tabular_mlops.adapters.sources import DataSourceError, load_dataset
    from tabular_mlops.core.config import DataSourceConfig

    missing = tmp_path / "nope.csv"
    with pytest.raises(DataSourceError, match=f"{missing}: no such data file"):
        load_dataset(DataSourceConfig(source="file", path=missing))
    path = tmp_path / "data.parquet"
    pd.DataFrame({"a": [1, 2]}).to_parquet(path)
    with pytest.raises(
        DataSourceError, match=r"data.parquet: target column 'y' not found; columns are \['a'\]"
    ):
        load_dataset(DataSourceConfig(source="file", path=path, target="y"))
    garbage = tmp_path / "garbage.parquet"
    garbage.write_text("not parquet")
    with pytest.raises(DataSourceError, match=r"garbage\.parquet: cannot be read as parquet"):
        load_dataset(DataSourceConfig(source="file", path=garbage))


def test_a_tree_model_is_saved_with_the_types_skops_must_trust_to_load_it():
    """The README's estimator example (a random forest): MLflow 3 saves it with skops,
    which refused `sklearn.tree._tree.Tree`; the types are listed from the model's own
    dump, and it loads back with them."""
    import skops.io
    from sklearn.datasets import load_breast_cancer
    from sklearn.ensemble import RandomForestClassifier
    from sklearn.pipeline import Pipeline
    from sklearn.preprocessing import FunctionTransformer

    from tabular_mlops.adapters.mlflow_models import trusted_types

    x, y = load_breast_cancer(return_X_y=True)
    forest = Pipeline([("model", RandomForestClassifier(n_estimators=3, random_state=0))])
    forest.fit(x, y)
    trusted = trusted_types(forest)
    assert "sklearn.tree._tree.Tree" in trusted
    loaded = skops.io.loads(skops.io.dumps(forest), trusted=trusted)
    assert (loaded.predict(x[:20]) == forest.predict(x[:20])).all()
    foreign = Pipeline([("f", FunctionTransformer(print)), ("model", forest)])
    with pytest.raises(TypeError, match=r"builtins\.print"):
        trusted_types(foreign)


def test_integer_columns_are_doubles_in_the_mlflow_signature():
    """A value missing at inference arrives as a float: MLflow's own serving refuses it for
    an integer column, so the signature declares integer features as doubles."""
    from mlflow.models import infer_signature

    from tabular_mlops.adapters.mlflow_models import signature_sample

    features = pd.DataFrame({"age": [30, 41, 52], "plan": ["a", "b", "a"], "fee": [1.5, 2, 3]})
    sample = signature_sample(features)
    types = {c.name: c.type.name for c in infer_signature(sample).inputs.inputs}
    assert types == {"age": "double", "plan": "string", "fee": "double"}
    assert features["age"].dtype == "int64"  # the caller's frame is left as it was
