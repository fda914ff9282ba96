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

import math
import re
from collections.abc import Collection, Sequence
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


def classifier_unit(model: Any) -> str:
    """What a classifier's explained output is, in words."""
    estimator = _estimator(model)
    classes = list(model.classes_)
    if not hasattr(estimator, "decision_function"):  # a forest averages probabilities
        return f"probability of '{classes[1]}'" if len(classes) == 2 else (
            "the predicted class's probability")  # fmt: skip
    if len(classes) == 2:
        return f"log-odds of '{classes[1]}'"
    return "the predicted class's raw score"


class UnexplainableRowsError(ValueError):
    """Rows whose explanation is not finite (values far outside what training saw)."""

    def __init__(self, rows: list[int]) -> None:
        super().__init__(f"rows {rows}: the explanation is not finite")
        self.rows = rows


class Explainer:
    """Explains rows of one fitted pipeline (see the module's docstring)."""

    def __init__(self, model: Any) -> None:
        self.model = model
        self.preprocess = model[:-1]
        self.owners = feature_of_each_column(model.named_steps["preprocess"])
        self.features = list(dict.fromkeys(self.owners))
        #: each numeric feature's training mean: what a reason code's HIGH / LOW is against
        self.averages = numeric_averages(model, self.features)
        #: date columns: their reason code is their name (a day is no stable code)
        self.dates = date_columns(model.named_steps["preprocess"])
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
                reason = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
                raise NotExplainableError(
                    f"{type(estimator).__name__} cannot be explained exactly here (linear "
                    f"models and shap's TreeExplainer's tree ensembles can; shap: {reason})"
                ) from None
        if self.kind == "linear" and len(self.owners) != self.weights.shape[1]:
            raise NotExplainableError("the preprocessing's columns could not be named")
        #: where each feature's columns start (a feature's columns are adjacent): summed
        #: by ``np.add.reduceat``, so a column far out of range stays its feature's alone
        self.starts = [i for i, o in enumerate(self.owners) if i == 0 or o != self.owners[i - 1]]
        if len(self.starts) != len(self.features):
            raise NotExplainableError("the preprocessing's columns of a feature are not adjacent")
        #: a regressor's explained output: its value, or the log of it (a log link)
        self.log_link = False
        if self.classes:
            self.unit = classifier_unit(model)
        else:
            self.log_link = self._log_link(estimator)
            self.unit = "log of the predicted value" if self.log_link else "value"

    def _log_link(self, estimator: Any) -> bool:
        """Whether the regressor answers the exponential of its explained sum (Poisson,
        Gamma, Tweedie, a histogram gradient boosting with a Poisson loss), probed on one
        transformed row; a model answering neither is refused."""
        probe = np.zeros((1, len(self.owners)))
        base, grouped = self.contributions(None, probe)
        total = float(base[0] + grouped[0].sum())
        answer = float(np.asarray(estimator.predict(probe), dtype=float)[0])
        if np.isclose(total, answer, rtol=1e-6, atol=1e-9):
            return False
        if answer > 0 and np.isclose(total, np.log(answer), rtol=1e-6, atol=1e-9):
            return True
        raise NotExplainableError(
            f"{type(estimator).__name__}'s answer is neither its explained sum nor the "
            "exponential of it"
        )

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
        grouped = np.add.reduceat(columns, self.starts, axis=1) if len(x) else np.zeros(
            (0, len(self.features)))  # fmt: skip
        return np.broadcast_to(base, (len(x),)).astype(float), grouped

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
        if not self.classes:
            answer = np.asarray(estimator.predict(x), dtype=float)
            return np.log(answer) if self.log_link else answer
        index = self._explained_class(features, len(features))
        if hasattr(estimator, "decision_function"):
            raw = np.asarray(estimator.decision_function(x), dtype=float)
            return raw[np.arange(len(raw)), index] if raw.ndim == 2 else raw
        # a forest: the explained class's probability
        return np.asarray(estimator.predict_proba(x), dtype=float)[np.arange(len(index)), index]

    def explain(
        self,
        features: pd.DataFrame | None,
        top_k: int = TOP_K,
        transformed: np.ndarray | None = None,
    ) -> list[dict[str, Any]]:
        """Per row: the base, the ``top_k`` largest contributions by size, the ``rest``, and
        what the output is (``unit``): base + contributions + rest = the raw output. A row
        whose explanation is not finite raises :class:`UnexplainableRowsError`."""
        base, grouped = self.contributions(features, transformed)
        finite = np.isfinite(grouped).all(axis=1) & np.isfinite(base)
        if not finite.all():
            raise UnexplainableRowsError(np.flatnonzero(~finite).tolist())
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


def _code(text: str) -> str:
    """Capitals, anything not a letter or digit (in any script) as ``_``."""
    return re.sub(r"[\W_]+", "_", text.upper()).strip("_")


def reason_code(
    feature: str, value: Any, center: float | None, is_date: bool = False
) -> str:  # fmt: skip
    """A stable code a product can show: the feature's name in capitals and how the row
    stands: ``_HIGH`` / ``_LOW`` against the training average for a number,
    ``_IS_<VALUE>`` for a category, ``_IS_MISSING`` for no value; a date's is its name."""
    name = _code(feature)
    if is_date:
        return name
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return f"{name}_IS_MISSING"
    if isinstance(value, (int, float, np.number)) and not isinstance(value, bool):
        return f"{name}_{'HIGH' if center is None or value >= center else 'LOW'}"
    return f"{name}_IS_{_code(str(value)) or 'BLANK'}"


def reasons(
    explanation: dict[str, Any], row: dict[str, Any], toward: float, averages: dict[str, float],
    limit: int = 3, dates: Collection[str] = (),
) -> list[str]:  # fmt: skip
    """The codes of the contributions that pushed the raw output toward the answer's side
    (``toward``: +1 for the positive class, -1 against it), largest first."""
    pushing = [c for c in explanation["contributions"] if c["contribution"] * toward > 0]
    return [
        reason_code(c["feature"], row.get(c["feature"]), averages.get(c["feature"]),
                    c["feature"] in dates)
        for c in pushing[:limit]
    ]  # fmt: skip


def date_columns(preprocess: Any) -> list[str]:
    return [
        str(c) for name, _, columns in preprocess.transformers_ if name == "dates"
        for c in columns
    ]  # fmt: skip


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
            example["reasons"] = reasons(
                explanation, row, toward, explainer.averages, dates=explainer.dates
            )
        examples.append(example)
    return json_safe(examples)


def json_safe(value: Any) -> Any:
    """NumPy scalars as plain Python, for a pydantic artifact."""
    if isinstance(value, dict):
        return {k: json_safe(v) for k, v in value.items()}
    if isinstance(value, list):
        return [json_safe(v) for v in value]
    return value.item() if isinstance(value, np.generic) else value
