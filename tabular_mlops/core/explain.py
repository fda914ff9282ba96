"""Why this row got this answer: each feature's contribution to the model's raw output.

Two exact methods, chosen by the estimator, each giving ``base + sum(contributions) =
the raw output`` (the log-odds of the positive class, a regressor's value, or the log
of a Poisson/Gamma model's value):

- **linear models** (logistic regression, Ridge, Poisson, ...): ``w_j (x_j - mean_j)`` on
  the transformed features, the base ``b + w . mean`` over the training split. This is
  SHAP's linear explainer with the training data as background (interventional), in a
  few numpy operations: no import on the fast path, and about 0.1 ms a row. The means
  are recorded on the fitted pipeline at training (``explanation_center_``), so every
  reader explains with the model file alone.
- **tree ensembles** (random forests, extra trees, gradient boosting, histogram gradient
  boosting): TreeSHAP (``shap.TreeExplainer``, path-dependent), exact for trees.

Anything else (an SVM, k-nearest neighbours, a calibrated classifier whose output
averages several models) has no exact, fast explanation: asking is refused with the
reason, never answered with an approximation.

Contributions are in the original features' names: a categorical column's one-hot
columns, and a date's weekday and month, are summed back to the column.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from typing import Any

import numpy as np
import pandas as pd

from tabular_mlops.core.transformers import DATE_PARTS

#: the fitted pipeline's attribute holding the training split's mean transformed row
CENTER_ATTRIBUTE = "explanation_center_"
#: contributions shown per row, by size; the rest are summed into ``rest``
TOP_K = 5
#: |base + contributions + rest - raw output| stays below this (float arithmetic)
SUM_TOLERANCE = 1e-6


class NotExplainableError(ValueError):
    """The model has no exact explanation; the message says why."""


def feature_of_each_column(preprocess: Any) -> list[str]:
    """The input feature behind each column the preprocessing outputs: one per numeric
    column, one per category of a one-hot encoded column, one per part of a date."""
    owners: list[str] = []
    for name, transformer, columns in preprocess.transformers_:
        if isinstance(transformer, str) or not len(columns):  # "drop", "passthrough"
            continue
        if name == "numeric":
            owners += [str(c) for c in columns]
            continue
        encoder = transformer.named_steps["encode"]
        inputs = [str(c) for c in columns for _ in (DATE_PARTS if name == "dates" else (0,))]
        for column, categories in zip(inputs, encoder.categories_, strict=True):
            owners += [column] * len(categories)
    return owners


def center_of(model: Any, features: pd.DataFrame) -> list[float]:
    """The training split's mean transformed row: the linear explanation's background."""
    transformed = model[:-1].transform(features)
    return np.asarray(np.mean(_dense(transformed), axis=0), dtype=float).ravel().tolist()


def _dense(matrix: Any) -> np.ndarray:
    return np.asarray(matrix.toarray() if hasattr(matrix, "toarray") else matrix, dtype=float)


def _estimator(model: Any) -> Any:
    """The fitted estimator whose raw output is explained (a cost-tuned threshold's
    estimator inside)."""
    from sklearn.model_selection import FixedThresholdClassifier

    estimator = model.steps[-1][1]
    if isinstance(estimator, FixedThresholdClassifier):
        estimator = estimator.estimator_
        estimator = getattr(estimator, "estimator", estimator)  # inside FrozenEstimator
    return estimator


def raw_unit(model: Any) -> str:
    """What the explained output is, in words."""
    estimator = _estimator(model)
    classes = list(getattr(model, "classes_", []))
    if classes:
        if not hasattr(estimator, "decision_function"):  # a forest averages probabilities
            return f"probability of '{classes[1]}'" if len(classes) == 2 else (
                "the predicted class's probability")  # fmt: skip
        if len(classes) == 2:
            return f"log-odds of '{classes[1]}'"
        return "the predicted class's raw score"
    link = type(getattr(estimator, "_base_loss", None)).__name__
    return "log of the predicted value" if "Log" in link or "Poisson" in link else "value"


class Explainer:
    """Explains rows of one fitted pipeline (see the module's docstring)."""

    def __init__(self, model: Any) -> None:
        self.model = model
        self.preprocess = model[:-1]
        self.owners = feature_of_each_column(model.named_steps["preprocess"])
        self.features = list(dict.fromkeys(self.owners))
        #: each numeric feature's training mean: what a reason code's HIGH / LOW is against
        self.averages = numeric_averages(model, self.features)
        self.unit = raw_unit(model)
        estimator = _estimator(model)
        self.classes = list(getattr(model, "classes_", []))
        if hasattr(estimator, "coef_") and not hasattr(estimator, "calibrated_classifiers_"):
            center = getattr(model, CENTER_ATTRIBUTE, None)
            if center is None:
                raise NotExplainableError(
                    "the model was trained before explanations were recorded: retrain it"
                )
            self.kind = "linear"
            self.center = np.asarray(center, dtype=float)
            self.weights = np.atleast_2d(np.asarray(estimator.coef_, dtype=float))
            self.intercepts = np.atleast_1d(np.asarray(estimator.intercept_, dtype=float))
        else:
            self.kind = "tree"
            try:
                import shap

                self.tree = shap.TreeExplainer(estimator)
            except Exception as exc:  # shap raises many kinds for a model it cannot take
                raise NotExplainableError(
                    f"{type(estimator).__name__} has no exact explanation (linear models "
                    f"and tree ensembles have): {str(exc).splitlines()[0] if str(exc) else ''}"
                ) from None
        if self.kind == "linear" and len(self.owners) != self.weights.shape[1]:
            raise NotExplainableError("the preprocessing's columns could not be named")
        #: sums each output column into its feature: (columns x features), ones and zeros
        self.grouping = np.zeros((len(self.owners), len(self.features)))
        position = {name: i for i, name in enumerate(self.features)}
        self.grouping[np.arange(len(self.owners)), [position[o] for o in self.owners]] = 1.0

    @property
    def needs_frame(self) -> bool:
        """Whether rows must come as a DataFrame: a tree's or a multiclass model's; a
        binary or regression linear model explains the numpy path's transformed rows."""
        return self.kind != "linear" or len(self.classes) > 2

    def contributions(
        self, features: pd.DataFrame | None, transformed: np.ndarray | None = None
    ) -> tuple[np.ndarray, np.ndarray]:
        """(base per row, contributions per row and feature, in ``self.features`` order).
        ``transformed``: the rows as the preprocessing outputs them, when the caller has
        them already (the service's numpy path), so a linear model needs no pandas."""
        x = _dense(self.preprocess.transform(features)) if transformed is None else transformed
        index = self._explained_class(features, len(x))
        if self.kind == "linear":
            weights = self.weights[index]
            columns = weights * (x - self.center)
            base = self.intercepts[index] + weights @ self.center
        else:
            values = np.asarray(self.tree.shap_values(x, check_additivity=False), dtype=float)
            expected = np.atleast_1d(np.asarray(self.tree.expected_value, dtype=float))
            if values.ndim == 3:  # (rows, columns, classes)
                values = values[np.arange(len(x)), :, index]
                base = expected[index]
            else:
                base = np.full(len(x), expected[-1] if len(expected) else 0.0)
            columns = values
        return np.broadcast_to(base, (len(x),)).astype(float), columns @ self.grouping

    def _explained_class(self, features: pd.DataFrame | None, rows: int) -> np.ndarray:
        """Per row, which class's output is explained: the positive class of a binary
        model (its log-odds), the predicted class of a multiclass one, 0 for a regressor."""
        if len(self.classes) > 2:
            predicted = self.model.predict(features)
            return np.asarray([self.classes.index(p) for p in predicted])
        if len(self.classes) == 2 and self.kind == "tree":
            return np.ones(rows, dtype=int)
        return np.zeros(rows, dtype=int)

    def raw_output(self, features: pd.DataFrame) -> np.ndarray:
        """The model's own raw output per row, to check explanations against."""
        estimator = _estimator(self.model)
        x = self.preprocess.transform(features)
        if self.classes and hasattr(estimator, "decision_function"):
            raw = np.asarray(estimator.decision_function(x), dtype=float)
            if raw.ndim == 2:
                return raw[np.arange(len(raw)), self._explained_class(features, len(raw))]
            return raw
        if self.classes:  # a forest: the positive class's probability
            return np.asarray(estimator.predict_proba(x), dtype=float)[:, 1]
        if self.kind == "linear":
            return _dense(x) @ self.weights[0] + self.intercepts[0]
        return np.asarray(estimator.predict(x), dtype=float)

    def explain(
        self,
        features: pd.DataFrame | None,
        top_k: int = TOP_K,
        transformed: np.ndarray | None = None,
    ) -> list[dict[str, Any]]:
        """Per row: the base, the ``top_k`` largest contributions by size, the ``rest``, and
        what the output is (``unit``): base + contributions + rest = the raw output."""
        base, grouped = self.contributions(features, transformed)
        explained = []
        for row_base, row in zip(base, grouped, strict=True):
            order = np.argsort(-np.abs(row), kind="stable")
            top = order[:top_k]
            explained.append({
                "base": float(row_base),
                "unit": self.unit,
                "contributions": [
                    {"feature": self.features[i], "contribution": float(row[i])} for i in top
                ],
                "rest": float(row[order[top_k:]].sum()),
            })  # fmt: skip
        return explained


def reason_code(feature: str, value: Any, center: float | None) -> str:
    """A stable code a product can show: the feature's name in capitals (anything not a
    letter or digit as ``_``) and how the row stands: ``_HIGH`` / ``_LOW`` against the
    training average for a number, ``_IS_<VALUE>`` for a category."""
    name = re.sub(r"[^A-Z0-9]+", "_", feature.upper()).strip("_")
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        return f"{name}_{'HIGH' if center is None or value >= center else 'LOW'}"
    text = re.sub(r"[^A-Z0-9]+", "_", str(value).upper()).strip("_")
    return f"{name}_IS_{text or 'MISSING'}"


def reasons(
    explanation: dict[str, Any], row: dict[str, Any], toward: float, averages: dict[str, float],
    limit: int = 3,
) -> list[str]:  # fmt: skip
    """The codes of the contributions that pushed the raw output toward the answer's side
    (``toward``: +1 for the positive class, -1 against it), largest first."""
    pushing = [c for c in explanation["contributions"] if c["contribution"] * toward > 0]
    return [
        reason_code(c["feature"], row.get(c["feature"]), averages.get(c["feature"]))
        for c in pushing[:limit]
    ]


def numeric_averages(model: Any, names: Sequence[str]) -> dict[str, float]:
    """Each numeric feature's training mean, as the preprocessing learnt it (before it was
    scaled): what ``_HIGH`` and ``_LOW`` are against."""
    preprocess = model.named_steps["preprocess"]
    for name, transformer, columns in preprocess.transformers_:
        if name == "numeric" and not isinstance(transformer, str) and len(columns):
            scaler = transformer.named_steps["scale"]
            return {
                str(c): float(m) for c, m in zip(columns, scaler.mean_, strict=True) if c in names
            }
    return {}


#: test rows the evaluation report and the model card explain
EXAMPLE_ROWS = 3


def explained_examples(model: Any, test_set: pd.DataFrame) -> list[dict[str, Any]]:
    """A few test rows explained for the card: the first, and the ones with the highest
    and lowest raw output, each with its answer (and a binary classifier's reasons)."""
    features = test_set[list(model.feature_names_in_)]
    if features.empty:
        return []
    explainer = Explainer(model)
    raw = explainer.raw_output(features)
    picked = list(dict.fromkeys([0, int(np.argmax(raw)), int(np.argmin(raw))]))[:EXAMPLE_ROWS]
    rows = features.iloc[picked]
    answers = model.predict(rows)
    examples = []
    for position, answer, explanation, row in zip(
        picked, answers, explainer.explain(rows), rows.to_dict("records"), strict=True
    ):
        example: dict[str, Any] = {"row": int(position), "answer": answer, **explanation}
        if len(explainer.classes) == 2:
            toward = 1.0 if answer == explainer.classes[1] else -1.0
            example["reasons"] = reasons(explanation, row, toward, explainer.averages)
        examples.append(example)
    return json_safe(examples)


def json_safe(value: Any) -> Any:
    """NumPy scalars as plain Python, for a pydantic artifact."""
    if isinstance(value, dict):
        return {k: json_safe(v) for k, v in value.items()}
    if isinstance(value, list):
        return [json_safe(v) for v in value]
    return value.item() if isinstance(value, np.generic) else value
