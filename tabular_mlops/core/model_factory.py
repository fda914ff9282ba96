"""Build the scikit-learn Pipeline: preprocessing and estimator in one object.

Preprocessing lives inside the model, so training, batch scoring and the
online service all transform rows with the very same fitted code.
"""

from __future__ import annotations

import importlib
from typing import Any

import pandas as pd
from sklearn.base import ClassifierMixin, clone
from sklearn.compose import ColumnTransformer
from sklearn.impute import SimpleImputer
from sklearn.model_selection import GridSearchCV
from sklearn.pipeline import Pipeline
from sklearn.preprocessing import FunctionTransformer, OneHotEncoder, StandardScaler

from tabular_mlops.core.columns import column_kind
from tabular_mlops.core.config import TrainingConfig
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
    train_set: pd.DataFrame, target: str, training: TrainingConfig
) -> tuple[Pipeline, dict[str, Any]]:
    """Fit the pipeline (with a grid search when configured).

    Returns the fitted pipeline and the hyperparameters it was fitted with.
    """
    features, labels = train_set.drop(columns=[target]), train_set[target]
    model = Pipeline(
        [("preprocess", make_preprocessor(features)), ("classifier", make_estimator(training))]
    )
    if training.search is None:
        model.fit(features, labels)
        return model, model.named_steps["classifier"].get_params()

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
    best: Pipeline = clone(search.best_estimator_).fit(features, labels)
    return best, best.named_steps["classifier"].get_params()
