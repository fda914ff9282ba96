"""Build the scikit-learn Pipeline: preprocessing and estimator in one object.

Preprocessing lives inside the model, so training, batch scoring and the
online service all transform rows with the very same fitted code.
"""

from __future__ import annotations

import importlib
from collections.abc import Sequence
from typing import Any

import pandas as pd
from sklearn.base import ClassifierMixin, RegressorMixin, clone
from sklearn.compose import ColumnTransformer
from sklearn.impute import SimpleImputer
from sklearn.model_selection import GridSearchCV
from sklearn.pipeline import Pipeline
from sklearn.preprocessing import FunctionTransformer, OneHotEncoder, StandardScaler

from tabular_mlops.core.columns import column_kind
from tabular_mlops.core.config import CostConfig, IntervalConfig, Task, TrainingConfig
from tabular_mlops.core.explain import CENTER_ATTRIBUTE, center_of
from tabular_mlops.core.governance import decision_cost
from tabular_mlops.core.regression import ERRORS_ATTRIBUTE, PredictionErrors, prediction_errors
from tabular_mlops.core.transformers import date_part_names, date_parts, missing_as_nan

#: Our metric names -> scikit-learn scorer names, for the optional grid search.
SCORERS = {
    "accuracy": "accuracy",
    "balanced_accuracy": "balanced_accuracy",
    "f1_macro": "f1_macro",
    "precision_macro": "precision_macro",
    "recall_macro": "recall_macro",
    "roc_auc": "roc_auc_ovr",
    "mae": "neg_mean_absolute_error",
    "rmse": "neg_root_mean_squared_error",
    "r2": "r2",
    # within a fold, WAPE is MAE over a constant (the fold's total absolute target)
    "wape": "neg_mean_absolute_error",
    "mape": "neg_mean_absolute_percentage_error",
}
#: the name of the estimator's step in the fitted Pipeline, by task
ESTIMATOR_STEP = {"classification": "classifier", "regression": "regressor"}


class TrainingConfigError(ValueError):
    """The estimator or its parameters in ``training`` are not usable."""


def make_estimator(training: TrainingConfig, task: Task = "classification") -> Any:
    module_name, _, class_name = training.estimator.rpartition(".")
    try:
        estimator_class = getattr(importlib.import_module(module_name), class_name)
    except (ImportError, AttributeError):
        raise TrainingConfigError(
            f"training.estimator: cannot import '{training.estimator}'"
        ) from None
    kind = {"classification": ("classifier", ClassifierMixin),
            "regression": ("regressor", RegressorMixin)}[task]  # fmt: skip
    if not (isinstance(estimator_class, type) and issubclass(estimator_class, kind[1])):
        raise TrainingConfigError(
            f"training.estimator: '{training.estimator}' is not a scikit-learn {kind[0]} "
            f"(parameters.task is {task})"
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


def make_preprocessor(
    features: pd.DataFrame, date_columns: Sequence[str] = ()
) -> ColumnTransformer:
    """Numeric columns imputed (median) and scaled, categorical ones imputed (most frequent)
    and one-hot encoded, and date columns (``data.date_columns``) as their day of the week
    and month, one-hot encoded (``transformers.date_parts``)."""
    numeric = [c for c in features.columns
               if column_kind(features[c]) == "numeric" and c not in date_columns]  # fmt: skip
    categorical = [c for c in features.columns if c not in numeric and c not in date_columns]
    dates = [(
        "dates",
        Pipeline([
            ("parts", FunctionTransformer(date_parts, feature_names_out=date_part_names)),
            ("impute", SimpleImputer(strategy="most_frequent")),
            ("encode", OneHotEncoder(handle_unknown="ignore")),
        ]),
        list(date_columns),
    )] if date_columns else []  # fmt: skip
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
            *dates,
        ],
        # dense: a date's one-hot parts made the output sparse, which tree ensembles refuse
        **({"sparse_threshold": 0.0} if dates else {}),
    )


def fit_model(
    train_set: pd.DataFrame,
    target: str,
    training: TrainingConfig,
    cost: CostConfig | None = None,
    assessment_columns: Sequence[str] = (),
    task: Task = "classification",
    interval: IntervalConfig | None = None,
    date_columns: Sequence[str] = (),
) -> tuple[Pipeline, dict[str, Any]]:
    """Fit the pipeline (with a grid search when configured), then, as configured,
    calibrate its probabilities and tune its decision threshold to the cost matrix.

    A regressor records its prediction errors out of fold (``regression.PredictionErrors``:
    the conformal interval and the cost-optimal decision) on the fitted pipeline.
    Assessment-only columns (``data.assessment_columns``) are never model inputs.
    Returns the fitted pipeline and the hyperparameters of its estimator.
    """
    features = train_set.drop(columns=[target, *assessment_columns])
    labels = train_set[target]
    step = ESTIMATOR_STEP[task]
    model = Pipeline(
        [
            ("preprocess", make_preprocessor(features, date_columns)),
            (step, make_estimator(training, task)),
        ]
    )
    if training.search is not None:
        search = GridSearchCV(
            model,
            {f"{step}__{key}": values for key, values in training.search.param_grid.items()},
            cv=training.search.cv,
            scoring=SCORERS[training.search.scoring],
        )
        try:
            search.fit(features, labels)
        except ValueError as exc:
            check_target_range(exc, training, target, labels)
            raise TrainingConfigError(f"training.search.param_grid: {exc}") from exc
        model = clone(search.best_estimator_)
    estimator = model.named_steps[step]
    hyperparameters = estimator.get_params()
    if task == "regression":
        try:
            model.fit(features, labels)
        except ValueError as exc:
            check_target_range(exc, training, target, labels)
            raise
        errors = out_of_fold_errors(model, features, labels, interval or IntervalConfig(), cost)
        setattr(model, ERRORS_ATTRIBUTE, errors.model_dump())
        setattr(model, CENTER_ATTRIBUTE, center_of(model, features))  # explanations' base
        return model, hyperparameters
    if training.calibration is not None:
        from sklearn.calibration import CalibratedClassifierCV

        estimator = CalibratedClassifierCV(estimator, method=training.calibration, cv=5)
    model.steps[-1] = ("classifier", estimator)
    model.fit(features, labels)
    if cost is not None and cost.matrix and cost.tune_threshold:
        model.steps[-1] = ("classifier", cost_threshold(model, features, labels, cost))
    setattr(model, CENTER_ATTRIBUTE, center_of(model, features))  # explanations' base
    return model, hyperparameters


def check_target_range(
    error: ValueError, training: TrainingConfig, target: str, labels: pd.Series
) -> None:
    """Name the target and its range when the estimator refused it for its loss's domain
    (scikit-learn's "out of the valid range of the loss": a Poisson model's counts must not
    be negative, a Gamma model's amounts must be positive); otherwise return."""
    if "valid range of the loss" not in str(error):
        return
    lowest = labels.idxmin()
    raise TrainingConfigError(
        f"training.estimator: {training.estimator} cannot learn target '{target}': its "
        f"loss takes a narrower range than the target's {labels.min():g} (row {lowest}) to "
        f"{labels.max():g} (scikit-learn: {str(error).splitlines()[0]}); a Poisson model "
        "needs values >= 0, a Gamma model > 0: fix the target's values, or choose an "
        "estimator without this limit (e.g. sklearn.linear_model.Ridge)"
    ) from error


def out_of_fold_errors(
    model: Pipeline,
    features: pd.DataFrame,
    targets: pd.Series,
    interval: IntervalConfig,
    cost: CostConfig | None,
) -> PredictionErrors:
    """A regressor's errors on rows it was not fitted on: 5 seeded folds of the training
    split, each predicted by the pipeline fitted on the other four."""
    from sklearn.model_selection import KFold, cross_val_predict

    folds = KFold(n_splits=5, shuffle=True, random_state=0)
    out_of_fold = cross_val_predict(clone(model), features, targets, cv=folds)
    return prediction_errors(targets, out_of_fold, interval, cost or CostConfig())


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
