"""Test metrics, overall and per slice, of any fitted classifier or regressor."""

from __future__ import annotations

import itertools
import math
from collections.abc import Callable

import numpy as np
import pandas as pd
from sklearn import metrics
from sklearn.base import ClassifierMixin, is_regressor
from sklearn.preprocessing import label_binarize

from tabular_mlops.core.columns import column_kind
from tabular_mlops.core.regression import regression_scores
from tabular_mlops.core.report import EvaluationReport, SliceMetrics

#: (true, predicted) pairs of a regressor's test rows kept for the report's plots
PLOTTED_ROWS = 500


def score(
    y_true: pd.Series, y_pred: np.ndarray, proba: np.ndarray, classes: list
) -> dict[str, float]:
    """Every metric of ``tabular_mlops.core.config.METRIC_NAMES`` that is defined on these rows."""
    scores = {
        "accuracy": metrics.accuracy_score(y_true, y_pred),
        # Macro recall over the classes present: balanced accuracy, without the
        # warning scikit-learn's own raises on a slice holding a single class.
        "balanced_accuracy": metrics.recall_score(
            y_true, y_pred, labels=sorted(set(y_true)), average="macro", zero_division=0
        ),
        "f1_macro": metrics.f1_score(
            y_true, y_pred, labels=classes, average="macro", zero_division=0
        ),
        "precision_macro": metrics.precision_score(
            y_true, y_pred, labels=classes, average="macro", zero_division=0
        ),
        "recall_macro": metrics.recall_score(
            y_true, y_pred, labels=classes, average="macro", zero_division=0
        ),
    }
    # ROC AUC needs every class present: undefined on a slice that lacks one.
    if y_true.nunique() == len(classes):
        if len(classes) == 2:
            scores["roc_auc"] = metrics.roc_auc_score(y_true == classes[1], proba[:, 1])
        else:
            scores["roc_auc"] = metrics.roc_auc_score(
                y_true, proba, multi_class="ovr", labels=classes
            )
    return {name: float(value) for name, value in scores.items() if not math.isnan(value)}


def evaluate(
    model: ClassifierMixin,
    test_set: pd.DataFrame,
    target: str,
    slice_column: str | None = None,
    slice_bins: int = 4,
) -> EvaluationReport:
    # the model's inputs only: the test set may keep assessment-only columns beside them
    features, labels = test_set[list(model.feature_names_in_)], test_set[target]
    if is_regressor(model):
        return _evaluate_regressor(model, test_set, target, slice_column, slice_bins)
    classes = list(model.classes_)
    y_pred = model.predict(features)
    proba = model.predict_proba(features)
    positives = label_binarize(labels, classes=classes)
    if len(classes) == 2:
        positives = np.hstack([1 - positives, positives])
    roc_curves = {}
    for index, cls in enumerate(classes):
        if positives[:, index].min() != positives[:, index].max():
            fpr, tpr, _ = metrics.roc_curve(positives[:, index], proba[:, index])
            roc_curves[str(cls)] = (fpr.round(4).tolist(), tpr.round(4).tolist())
    return EvaluationReport(
        metrics=score(labels, y_pred, proba, classes),
        rows=len(test_set),
        classes=[str(c) for c in classes],
        confusion_matrix=metrics.confusion_matrix(labels, y_pred, labels=classes).tolist(),
        roc_curves=roc_curves,
        slice_column=slice_column,
        slices=_slices(
            test_set,
            lambda mask: score(labels[mask], y_pred[mask], proba[mask], classes),
            slice_column,
            slice_bins,
        ),
    )


def _evaluate_regressor(
    model: ClassifierMixin,
    test_set: pd.DataFrame,
    target: str,
    slice_column: str | None,
    slice_bins: int,
) -> EvaluationReport:
    truth = test_set[target].to_numpy(dtype=float)
    predicted = np.asarray(model.predict(test_set[list(model.feature_names_in_)]), dtype=float)
    shown = np.random.default_rng(0).permutation(len(truth))[:PLOTTED_ROWS]
    return EvaluationReport(
        task="regression",
        metrics=regression_scores(truth, predicted),
        rows=len(test_set),
        classes=[],
        confusion_matrix=[],
        roc_curves={},
        predicted_vs_actual=[
            (round(float(truth[i]), 6), round(float(predicted[i]), 6)) for i in sorted(shown)
        ],
        slice_column=slice_column,
        slices=_slices(
            test_set,
            lambda mask: regression_scores(truth[mask], predicted[mask]),
            slice_column,
            slice_bins,
        ),
    )


def _slices(
    test_set: pd.DataFrame,
    score_rows: Callable[[np.ndarray], dict[str, float]],
    column: str | None,
    bins: int,
) -> list[SliceMetrics]:
    if column is None:
        return []
    if column not in test_set.columns:
        raise ValueError(
            f"evaluation.slice_column: column '{column}' is not in the test set; "
            f"columns are {list(test_set.columns)}"
        )
    values = test_set[column]
    if column_kind(values) == "numeric" and values.nunique() > bins:
        keys, order = quantile_bins(values, bins)
    else:
        keys = values.astype(str).where(values.notna(), "<missing>").to_numpy()
        order = sorted(set(keys))
    result = []
    for key in order:
        mask = keys == key
        result.append(SliceMetrics(value=key, rows=int(mask.sum()), metrics=score_rows(mask)))
    return result


def quantile_bins(values: pd.Series, bins: int) -> tuple[np.ndarray, list[str]]:
    """Each value's quantile bin as a readable label (``(7.759, 11.67]``: edges to 4
    significant digits, not ``(7.7589999999999995, 11.665]``), and the labels in order."""
    codes, edges = pd.qcut(values, q=bins, labels=False, retbins=True, duplicates="drop")
    labels = [
        f"{'[' if i == 0 else '('}{low:.4g}, {high:.4g}]"
        for i, (low, high) in enumerate(itertools.pairwise(edges))
    ]
    keys = np.array([labels[int(c)] if c == c else "<missing>" for c in codes], dtype=object)
    present = set(keys)
    return keys, [label for label in [*labels, "<missing>"] if label in present]
