"""Build the scikit-learn Pipeline: preprocessing and estimator in one object.

Preprocessing lives inside the model, so training, batch scoring and the
online service all transform rows with the very same fitted code.
"""

from __future__ import annotations

import importlib
from collections.abc import Sequence
from typing import Any

import pandas as pd
from sklearn.base import ClassifierMixin, clone
from sklearn.compose import ColumnTransformer
from sklearn.impute import SimpleImputer
from sklearn.model_selection import GridSearchCV
from sklearn.pipeline import Pipeline
from sklearn.preprocessing import FunctionTransformer, OneHotEncoder, StandardScaler

from tabular_mlops.core.columns import column_kind
from tabular_mlops.core.config import CostConfig, TrainingConfig
from tabular_mlops.core.governance import decision_cost
from tabular_mlops.core.transformers import missing_as_nan

#: Our metric names -> scikit-learn scorer names, for the optional grid search.
SCORERS = {
    "accuracy": "accuracy",
    "balanced_accuracy": "balanced_accuracy",
    "f1_macro": "f1_macro",
    "precision_macro": "precision_macro",
    "recall_macro": "recall_macro",
    "roc_auc": "roc_auc_ovr",
}


class TrainingConfigError(ValueError):
    """The estimator or its parameters in ``training`` are not usable."""


def make_estimator(training: TrainingConfig) -> ClassifierMixin:
    module_name, _, class_name = training.estimator.rpartition(".")
    try:
        estimator_class = getattr(importlib.import_module(module_name), class_name)
    except (ImportError, AttributeError):
        raise TrainingConfigError(
            f"training.estimator: cannot import '{training.estimator}'"
        ) from None
    if not (isinstance(estimator_class, type) and issubclass(estimator_class, ClassifierMixin)):
        raise TrainingConfigError(
            f"training.estimator: '{training.estimator}' is not a scikit-learn classifier"
        )
    estimator = estimator_class()
    valid = estimator.get_params()
    for key in training.params:
        if key not in valid:
            raise TrainingConfigError(
                f"training.params.{key}: not a parameter of {class_name}; "
                f"valid: {', '.join(sorted(valid))}"
            )
    return estimator.set_params(**training.params)


def make_preprocessor(features: pd.DataFrame) -> ColumnTransformer:
    numeric = [c for c in features.columns if column_kind(features[c]) == "numeric"]
    categorical = [c for c in features.columns if c not in numeric]
    return ColumnTransformer(
        [
            (
                "numeric",
                Pipeline(
                    [("impute", SimpleImputer(strategy="median")), ("scale", StandardScaler())]
                ),
                numeric,
            ),
            (
                "categorical",
                Pipeline(
                    [
                        (
                            "missing",
                            FunctionTransformer(missing_as_nan, feature_names_out="one-to-one"),
                        ),
                        ("impute", SimpleImputer(strategy="most_frequent")),
                        ("encode", OneHotEncoder(handle_unknown="ignore")),
                    ]
                ),
                categorical,
            ),
        ]
    )


def fit_model(
    train_set: pd.DataFrame,
    target: str,
    training: TrainingConfig,
    cost: CostConfig | None = None,
    assessment_columns: Sequence[str] = (),
) -> tuple[Pipeline, dict[str, Any]]:
    """Fit the pipeline (with a grid search when configured), then, as configured,
    calibrate its probabilities and tune its decision threshold to the cost matrix.

    Assessment-only columns (``data.assessment_columns``) are never model inputs.
    Returns the fitted pipeline and the hyperparameters of its estimator.
    """
    features = train_set.drop(columns=[target, *assessment_columns])
    labels = train_set[target]
    model = Pipeline(
        [("preprocess", make_preprocessor(features)), ("classifier", make_estimator(training))]
    )
    if training.search is not None:
        search = GridSearchCV(
            model,
            {f"classifier__{key}": values for key, values in training.search.param_grid.items()},
            cv=training.search.cv,
            scoring=SCORERS[training.search.scoring],
        )
        try:
            search.fit(features, labels)
        except ValueError as exc:
            raise TrainingConfigError(f"training.search.param_grid: {exc}") from exc
        model = clone(search.best_estimator_)
    estimator = model.named_steps["classifier"]
    hyperparameters = estimator.get_params()
    if training.calibration is not None:
        from sklearn.calibration import CalibratedClassifierCV

        estimator = CalibratedClassifierCV(estimator, method=training.calibration, cv=5)
    model.steps[-1] = ("classifier", estimator)
    model.fit(features, labels)
    if cost is not None and cost.matrix and cost.tune_threshold:
        model.steps[-1] = ("classifier", cost_threshold(model, features, labels, cost))
    return model, hyperparameters


def cost_threshold(
    model: Pipeline, features: pd.DataFrame, labels: pd.Series, cost: CostConfig
) -> ClassifierMixin:
    """The fitted classifier behind the decision threshold that minimises the expected cost
    (scikit-learn's TunedThresholdClassifierCV, 5 folds of the training split), frozen
    as a FixedThresholdClassifier: the model then carries only scikit-learn types (MLflow
    stores it with skops, which refuses a tuned classifier's scorer) and its threshold."""
    from sklearn.frozen import FrozenEstimator
    from sklearn.metrics import make_scorer
    from sklearn.model_selection import FixedThresholdClassifier, TunedThresholdClassifierCV

    classes = sorted(map(str, labels.unique()))
    if len(classes) != 2:
        raise TrainingConfigError(
            f"evaluation.cost.matrix: a decision threshold is tuned for two classes; the data "
            f"has {len(classes)} ({classes[:5]}): set evaluation.cost.tune_threshold: false"
        )
    unknown = sorted(
        {*cost.matrix, *(p for row in cost.matrix.values() for p in row)} - set(classes)
    )
    if unknown:
        raise TrainingConfigError(
            f"evaluation.cost.matrix: labels {unknown} are not classes of the data {classes}"
        )
    preprocess, classifier = model.named_steps["preprocess"], model.named_steps["classifier"]
    inputs = preprocess.transform(features)
    # the positive class is the second of the sorted two: scikit-learn's default, and
    # governance.decision_rule's
    tuned = TunedThresholdClassifierCV(
        clone(classifier),
        scoring=make_scorer(decision_cost, greater_is_better=False, matrix=cost.matrix),
        cv=5,
        random_state=0,
    ).fit(inputs, labels)
    frozen = FixedThresholdClassifier(
        FrozenEstimator(classifier), threshold=float(tuned.best_threshold_),
        response_method="predict_proba",
    )  # fmt: skip
    return frozen.fit(inputs, labels)


def base_estimator(classifier: ClassifierMixin) -> ClassifierMixin:
    """The configured estimator inside the calibration and threshold wrappers."""
    from sklearn.calibration import CalibratedClassifierCV
    from sklearn.frozen import FrozenEstimator
    from sklearn.model_selection import FixedThresholdClassifier

    wrappers = (CalibratedClassifierCV, FixedThresholdClassifier, FrozenEstimator)
    while isinstance(classifier, wrappers):
        classifier = classifier.estimator
    return classifier
