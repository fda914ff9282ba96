"""Score rows without scikit-learn's per-call overhead.

A fitted ``Pipeline.predict_proba`` costs about 1.2 ms per call on a DataFrame,
whatever the number of rows: building the frame, column dispatch and input
validation. For single-row requests that is the whole budget. Here the
preprocessing the training step builds (median/most-frequent imputation,
scaling, one-hot encoding) is replayed with the fitted statistics in numpy, and
only the estimator itself is called, with validation switched off. The result
is checked against the pipeline on real rows before it is used.

Every scorer answers a matrix per batch of rows: a classifier's class probabilities
(``predict_proba``), or a regressor's predicted values as one column, so the
checks for non-finite answers and the row bookkeeping are the same for both.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import Any

import numpy as np
import pandas as pd
import sklearn
from scipy.special import expit
from sklearn.base import is_regressor
from sklearn.pipeline import Pipeline

from tabular_mlops.core.transformers import (
    DATE_FORMAT,
    DATE_PARTS,
    FIRST_DAY,
    LAST_DAY,
    date_parts,
)


class UnsupportedPipelineError(ValueError):
    """The pipeline is not the shape the training step builds; use it as it is."""


class FastModel:
    def __init__(self, model: Pipeline, feature_names: Sequence[str]) -> None:
        self.model, self.columns = model, list(feature_names)
        try:
            preprocess = model.named_steps["preprocess"]
            self.classifier = model.steps[-1][1]
            (_, numeric, numeric_cols), (_, categorical, categorical_cols), *others = (
                preprocess.transformers_
            )
        except (KeyError, AttributeError, ValueError) as exc:
            raise UnsupportedPipelineError(str(exc)) from exc
        dates = [(step, columns) for name, step, columns in others if name == "dates"]
        if any(len(c) and step != "drop" for name, step, c in others if name != "dates"):
            raise UnsupportedPipelineError("columns beyond the numeric, categorical and dates")
        position = {name: i for i, name in enumerate(feature_names)}
        self.numeric_names, self.categorical_names = list(numeric_cols), list(categorical_cols)
        self.regressor = is_regressor(model)
        self.linear = linear_regression(self.classifier) if self.regressor else (
            binary_logistic(self.classifier)
        )  # fmt: skip
        #: a generalised linear model with a log link answers exp(x . w + b)
        self.log_link = self.regressor and type(self.classifier).__name__ in LOG_LINK
        self.numeric_index = [position[c] for c in numeric_cols]
        self.categorical_index = [position[c] for c in categorical_cols]
        if numeric_cols:
            self.medians = numeric.named_steps["impute"].statistics_.astype(float)
            scaler = numeric.named_steps["scale"]
            self.mean, self.scale = scaler.mean_, scaler.scale_
        self.categorical: list[tuple[str, dict[str, int]]] = []
        if categorical_cols:
            self.categorical = encodings(categorical)
        #: each date column's parts (weekday, month), encoded as categoricals are
        self.date_names: list[str] = []
        for step, columns in dates:
            self.date_names = list(columns)
            self.categorical += encodings(step)
        self.date_index = [position[c] for c in self.date_names]
        self.width = len(numeric_cols) + sum(len(m) for _, m in self.categorical)
        if self.linear is not None and not self._linear_agrees():
            self.linear = None  # every process that builds one checks, not only packaging

    def transform(self, rows: Sequence[Sequence[Any]]) -> np.ndarray:
        out = np.zeros((len(rows), self.width))
        n_numeric = len(self.numeric_index)
        if n_numeric:
            numeric = np.array(
                [[np.nan if r[i] is None else r[i] for i in self.numeric_index] for r in rows],
                dtype=float,
            )
            numeric = np.where(np.isnan(numeric), self.medians, numeric)
            out[:, :n_numeric] = (numeric - self.mean) / self.scale
        offset = n_numeric
        columns = [(lambda row, i=i: row[i]) for i in self.categorical_index] + [
            (lambda row, i=i, part=part: one_date_part(row[i], part))
            for i in self.date_index for part in range(len(DATE_PARTS))
        ]  # fmt: skip
        for (fill, mapping), read in zip(self.categorical, columns, strict=True):
            for row_number, row in enumerate(rows):
                value = read(row)
                hit = mapping.get(fill if value is None else str(value))
                if hit is not None:  # unknown categories encode as all zeros, as sklearn's
                    out[row_number, offset + hit] = 1.0
            offset += len(mapping)
        return out

    def transform_frame(self, frame: pd.DataFrame) -> np.ndarray:
        """``transform`` for a whole DataFrame at once (batch scoring).

        One column-major array, filled column by column and scaled in place: each
        column is one contiguous copy and no temporaries of the chunk's size are
        made. ``bench/batch_levers.py``, 1M rows of 30 features: 0.07 s, against
        0.19-0.80 s for ``to_numpy`` followed by out-of-place arithmetic.
        """
        out = np.empty((len(frame), self.width), order="F")
        n_numeric = len(self.numeric_names)
        out[:, n_numeric:] = 0.0
        if n_numeric:
            numeric = out[:, :n_numeric]
            for j, name in enumerate(self.numeric_names):
                numeric[:, j] = frame[name].to_numpy(dtype=float, na_value=np.nan)
            missing = np.isnan(numeric)
            if missing.any():
                np.copyto(numeric, np.broadcast_to(self.medians, numeric.shape), where=missing)
            numeric -= self.mean
            numeric /= self.scale
        offset = n_numeric
        rows = np.arange(len(frame))
        parts = [pd.Series(column) for column in date_parts(frame[self.date_names]).T] if (
            self.date_names) else []  # fmt: skip
        sources = [frame[name] for name in self.categorical_names] + parts
        for (fill, mapping), source in zip(self.categorical, sources, strict=True):
            values = source.astype(object).where(source.notna(), fill).astype(str)
            codes = pd.Categorical(values, categories=list(mapping)).codes
            known = codes >= 0  # unknown categories encode as all zeros, as sklearn's
            out[rows[known], offset + codes[known]] = 1.0
            offset += len(mapping)
        return out

    def predict_proba(self, rows: Sequence[Sequence[Any]]) -> np.ndarray:
        return self._classify(self.transform(rows))

    def predict_proba_frame(self, frame: pd.DataFrame) -> np.ndarray:
        return self._classify(self.transform_frame(frame))

    def _classify(self, features: np.ndarray) -> np.ndarray:
        if self.linear is not None:
            weights, intercept = self.linear
            if self.regressor:
                linear = features @ weights + intercept
                return (np.exp(linear) if self.log_link else linear).reshape(-1, 1)
            positive = expit(features @ weights + intercept)
            return np.column_stack([1.0 - positive, positive])
        with sklearn.config_context(assume_finite=True, skip_parameter_validation=True):
            return answers(self.classifier, features)

    def _linear_agrees(self) -> bool:
        """Whether the dot product gives the estimator's own probabilities on a fixed
        set of transformed rows (no data needed: it is checked wherever it is built)."""
        probe = np.random.default_rng(0).normal(size=(16, self.width))
        with sklearn.config_context(assume_finite=True, skip_parameter_validation=True):
            expected = answers(self.classifier, probe)
        return bool(np.allclose(self._classify(probe), expected, rtol=1e-9, atol=1e-12))

    def verify(self, sample: pd.DataFrame) -> None:
        """Fail unless this path gives the pipeline's probabilities on ``sample`` (with the
        estimator's own call when the one dot product does not)."""
        rows = rows_of_frame(sample)
        expected = answers(self.model, sample)

        def agrees() -> bool:
            served = (self.predict_proba(rows), self.predict_proba_frame(sample))
            return all(np.allclose(s, expected, atol=1e-9) for s in served)

        if not agrees() and self.linear is not None:
            self.linear = None
        if not agrees():
            raise UnsupportedPipelineError("numpy path disagrees with the pipeline on real rows")


def known_categories(model: Pipeline) -> dict[str, frozenset[str]]:
    """Per categorical column of a pipeline the training step built, the categories its
    encoder learned (a value outside them is encoded as none of them: a block of zeros);
    empty for any other pipeline."""
    try:
        _, categorical, columns = model.named_steps["preprocess"].transformers_[1]
        learned = categorical.named_steps["encode"].categories_
    except (KeyError, AttributeError, IndexError, ValueError, TypeError):
        return {}
    return {
        str(column): frozenset(str(value) for value in values)
        for column, values in zip(columns, learned, strict=True)
    }


def unseen_in_frame(frame: pd.DataFrame, known: dict[str, frozenset[str]]) -> dict[str, int]:
    """Per categorical column, how many rows of ``frame`` hold a value training never saw
    (missing values are the imputer's, not unseen)."""
    counts = {}
    for name, categories in known.items():
        if name in frame.columns:
            values = frame[name]
            unseen = int((values.notna() & ~values.astype(str).isin(categories)).sum())
            if unseen:
                counts[name] = unseen
    return counts


def encodings(step: Pipeline) -> list[tuple[str, dict[str, int]]]:
    """Per encoded column of a fitted impute-then-one-hot pipeline: the value a missing one
    is filled with, and each category's position in its one-hot block."""
    fill = step.named_steps["impute"].statistics_
    return [
        (str(fill[i]), {str(v): j for j, v in enumerate(cats)})
        for i, cats in enumerate(step.named_steps["encode"].categories_)
    ]


def one_date_part(value: Any, part: int) -> str | None:
    """One raw date's part as the pipeline's ``date_parts`` gives it (weekday, month): the
    same reading (``transformers.DATE_FORMAT`` on the first ten characters), the same
    missing."""
    if value is None:
        return None
    try:
        when = datetime.strptime(str(value)[:10], DATE_FORMAT).date()
    except ValueError:
        return None
    if not FIRST_DAY <= when <= LAST_DAY:
        return None
    return str(when.weekday() if part == 0 else when.month)


def date_columns_of(model: Any) -> list[str]:
    """The columns a fitted pipeline reads as dates (``data.date_columns``)."""
    preprocess = getattr(model, "named_steps", {}).get("preprocess")
    return [
        str(column)
        for name, _, columns in getattr(preprocess, "transformers_", [])
        if name == "dates"
        for column in columns
    ]


def answers(model: Any, features: Any) -> np.ndarray:
    """The model's answers as a scorer gives them: class probabilities, or a regressor's
    predictions as one column."""
    if is_regressor(model):
        return np.asarray(model.predict(features), dtype=float).reshape(-1, 1)
    return np.asarray(model.predict_proba(features))


#: scikit-learn's generalised linear models whose link is the log: exp(x . w + b)
LOG_LINK = frozenset({"PoissonRegressor", "GammaRegressor"})


def linear_regression(estimator: Any) -> tuple[np.ndarray, float] | None:
    """(weights, intercept) of a single-output linear regressor (``LinearRegression``,
    ``Ridge``, ``Lasso``, ``ElasticNet``: ``x . w + b``; ``PoissonRegressor`` and
    ``GammaRegressor``: ``exp(x . w + b)``)."""
    from sklearn.linear_model import ElasticNet, Lasso, LinearRegression, Ridge

    if type(estimator) not in (LinearRegression, Ridge, Lasso, ElasticNet) and not (
        type(estimator).__name__ in LOG_LINK and type(estimator).__module__.startswith("sklearn.")
    ):
        return None
    weights = np.asarray(estimator.coef_, dtype=float)
    if weights.ndim != 1:
        return None
    return weights, float(np.asarray(estimator.intercept_).reshape(-1)[0])


def binary_logistic(estimator: Any) -> tuple[np.ndarray, float] | None:
    """(weights, intercept) of a two-class ``LogisticRegression``, whose probability of the
    second class is ``expit(x . w + b)`` (scikit-learn's own formula for two classes): one
    dot product instead of its validated call, a fifth of a worker's time per request."""
    from sklearn.linear_model import LogisticRegression

    if type(estimator) is not LogisticRegression or len(estimator.classes_) != 2:
        return None
    return np.asarray(estimator.coef_[0], dtype=float), float(estimator.intercept_[0])


class PipelineScorer:
    """The plain pipeline behind the same interface, for pipelines FastModel cannot replay."""

    def __init__(self, model: Pipeline, feature_names: Sequence[str]) -> None:
        self.model, self.columns = model, list(feature_names)

    def predict_proba(self, rows: Sequence[Sequence[Any]]) -> np.ndarray:
        return self.predict_proba_frame(pd.DataFrame(rows, columns=self.columns))

    def predict_proba_frame(self, frame: pd.DataFrame) -> np.ndarray:
        return answers(self.model, frame[self.columns])


Scorer = FastModel | PipelineScorer


def rows_of_frame(frame: pd.DataFrame) -> list[list[Any]]:
    """A frame's rows as a request gives them: lists of values, None where missing."""
    return frame.astype(object).where(frame.notna(), None).to_numpy().tolist()


def scorer_for(model: Pipeline, feature_names: Sequence[str], sample: pd.DataFrame) -> Scorer:
    """The fast path when it reproduces the pipeline on ``sample``, else the pipeline."""
    try:
        fast = FastModel(model, feature_names)
        fast.verify(sample)
    except UnsupportedPipelineError:
        return PipelineScorer(model, feature_names)
    return fast
