"""The embedded scorer: the manifest says what the file takes and how to decide."""

from __future__ import annotations

import hashlib
import itertools
import json
import math
from collections.abc import Mapping, Sequence
from datetime import date, datetime
from pathlib import Path
from typing import Any

import numpy as np
import onnxruntime


class InvalidRowError(ValueError):
    """A row the model cannot take; the message names the row and the feature."""


class EmbeddedModel:
    """One exported model: ``predict_proba`` and ``predict`` over rows given as dicts of
    feature name -> value (numbers for numeric features, text for categorical ones and
    dates, None where the manifest says the feature may be missing).

    Rows are read as the training data was (the manifest's data contract): text equal
    to one of ``na_values`` is a missing value in any feature, and keys that are not
    features are ignored, or refused when ``unknown_columns`` is ``refuse``."""

    def __init__(self, session: onnxruntime.InferenceSession, manifest: Mapping[str, Any]):
        self.session, self.manifest = session, manifest
        self.features: list[dict[str, Any]] = list(manifest["features"])
        self.classes: list[str] = list(manifest["classes"])
        #: a regressor answers a value, its interval (± ``half_width``) and the decision
        self.task: str = manifest.get("task") or "classification"
        self.half_width: float | None = manifest.get("interval_half_width")
        self.decision_offset: float | None = manifest.get("decision_offset")
        #: the lowest an interval or a decision reaches (0 for a count), if any
        floor = manifest.get("answer_floor")
        self.floor: float = -math.inf if floor is None else float(floor)
        self.positive_label: str | None = manifest.get("positive_label")
        self.threshold: float | None = manifest.get("decision_threshold")
        self._numerics = [f for f in self.features if f["kind"] == "numeric"]
        self._categoricals = [f for f in self.features if f["kind"] == "categorical"]
        #: a date reaches the file as its parts (weekday, month), read as the pipeline does
        self._dates = [f for f in self.features if f["kind"] == "date"]
        self._numeric_names = [f["name"] for f in self._numerics]
        self._numeric_nullable = np.array([bool(f["nullable"]) for f in self._numerics])
        self.na_values = frozenset(manifest.get("na_values", ()))
        self._refuse_unknown = manifest.get("unknown_columns") == "refuse"
        self._known = {f["name"] for f in self.features} | set(manifest.get("other_columns", ()))
        outputs = [output.name for output in session.get_outputs()]
        if self.task == "regression":
            self._probabilities = outputs[0]  # skl2onnx's "variable": one value per row
        else:
            self._probabilities = "probabilities" if "probabilities" in outputs else outputs[-1]

    @classmethod
    def load(cls, directory: str | Path) -> EmbeddedModel:
        """``model.onnx`` and ``manifest.json`` from ``directory``; a file whose checksum is
        not the manifest's is refused."""
        directory = Path(directory)
        manifest = json.loads((directory / "manifest.json").read_text())
        return cls.from_bytes((directory / "model.onnx").read_bytes(), manifest)

    @classmethod
    def from_bytes(cls, onnx: bytes, manifest: Mapping[str, Any]) -> EmbeddedModel:
        digest = hashlib.sha256(onnx).hexdigest()
        if digest != manifest["sha256"]:
            raise ValueError(
                f"model.onnx has checksum {digest}, the manifest says {manifest['sha256']}: "
                "the file is not the one exported with this manifest"
            )
        options = onnxruntime.SessionOptions()
        options.intra_op_num_threads = 1  # one row at a time: threads cost more than they save
        session = onnxruntime.InferenceSession(onnx, options, providers=["CPUExecutionProvider"])
        return cls(session, manifest)

    def predict_proba(self, rows: Sequence[Mapping[str, Any]]) -> np.ndarray:
        """One row of probabilities (in ``classes`` order) per row."""
        if self.task == "regression":
            raise TypeError("a regressor has no probabilities: use predict or answers")
        return self._scores(rows)

    def _scores(self, rows: Sequence[Mapping[str, Any]]) -> np.ndarray:
        """The file's output per row: class probabilities, or a regressor's value."""
        if not rows:
            return np.empty((0, len(self.classes) or 1), dtype=np.float32)
        if self._refuse_unknown:
            for number, row in enumerate(rows):
                unknown = sorted(set(row) - self._known)
                if unknown:
                    raise InvalidRowError(
                        f"row {number}: {unknown} are not features of this model "
                        "(unknown_columns: refuse)"
                    )
        if len(rows) <= FEW_ROWS:
            feeds = {**self._numeric_columns(rows), **self._columns(self._categoricals, rows)}
        else:
            feeds = self._columns(self._numerics + self._categoricals, rows)
        feeds |= self._date_parts(rows)
        probabilities = np.asarray(self.session.run([self._probabilities], feeds)[0], np.float64)
        finite = np.isfinite(probabilities).all(axis=1)
        if not finite.all():  # as the service: no answer rather than a made-up one
            raise InvalidRowError(
                f"row {int(np.flatnonzero(~finite)[0])}: the model's answer is not finite "
                "(values far outside the range training covered?)"
            )
        return probabilities

    def predict(self, rows: Sequence[Mapping[str, Any]]) -> list[Any]:
        """Each row's label, or a regressor's predicted value."""
        if self.task == "regression":
            return self._scores(rows)[:, 0].tolist()
        return self.labels(self.predict_proba(rows))

    def answers(self, rows: Sequence[Mapping[str, Any]]) -> list[dict[str, Any]]:
        """Each row's answer as the service gives it: label and probabilities, or a
        regressor's value with its interval and, where the model has one, the decision."""
        if self.task != "regression":
            probabilities = self.predict_proba(rows)
            return [
                {"label": label, "probabilities": dict(zip(self.classes, p.tolist(), strict=True))}
                for label, p in zip(self.labels(probabilities), probabilities, strict=True)
            ]
        answers = []
        for value in self.predict(rows):
            answer: dict[str, Any] = {"prediction": value}
            if self.half_width is not None:
                answer["interval"] = [max(value - self.half_width, self.floor),
                                      value + self.half_width]  # fmt: skip
            if self.decision_offset is not None:
                answer["decision"] = max(value + self.decision_offset, self.floor)
            answers.append(answer)
        return answers

    def labels(self, probabilities: np.ndarray) -> list[str]:
        """The model's rule: the most probable class, or for a threshold tuned to a cost
        matrix the positive label wherever its probability reaches the threshold."""
        if self.threshold is None or self.positive_label is None:
            indexes = probabilities.argmax(axis=1)
        else:
            positive = self.classes.index(self.positive_label)
            indexes = np.where(probabilities[:, positive] >= self.threshold, positive, 1 - positive)
        return [self.classes[int(i)] for i in indexes]

    def _numeric_columns(self, rows: Sequence[Mapping[str, Any]]) -> dict[str, np.ndarray]:
        """Every numeric input of a few rows at once: one matrix, checked and cast in a few
        NumPy calls (per feature, for one row, the calls cost more than onnxruntime's run;
        for many rows, building the matrix costs more than the calls); a value
        that is not a finite number (or missing where training never was) is named by
        the per-feature check."""
        if not self._numerics:
            return {}
        try:
            table = [[row[name] for name in self._numeric_names] for row in rows]
        except KeyError:
            return self._columns(self._numerics, rows)  # names the row and feature
        if set(map(type, itertools.chain.from_iterable(table))) <= NUMBERS:
            wide = np.array(table, dtype=np.float64)  # None -> NaN
            missing = np.isnan(wide) & ~self._numeric_nullable
            if not (np.isinf(wide).any() or missing.any()):
                narrow = np.asfortranarray(wide, dtype=np.float32)
                if not np.isinf(narrow).any():
                    return {f["input"]: narrow[:, j : j + 1] for j, f in enumerate(self._numerics)}
        return self._columns(self._numerics, rows)  # the slow path names the row at fault

    def _date_parts(self, rows: Sequence[Mapping[str, Any]]) -> dict[str, np.ndarray]:
        """Each date feature's part inputs; a missing or unreadable date takes each part's
        fill (the training data's most frequent), as the pipeline's imputer does."""
        feeds = {}
        for feature in self._dates:
            days = [read_date(value) for value in self._column(feature, rows)[:, 0]]
            for part in feature["parts"]:
                values = [part["fill"] if day is None else DATE_PARTS[part["part"]](day)
                          for day in days]  # fmt: skip
                feeds[part["input"]] = np.array(values, dtype=object).reshape(-1, 1)
        return feeds

    def _columns(
        self, features: Sequence[Mapping[str, Any]], rows: Sequence[Mapping[str, Any]]
    ) -> dict[str, np.ndarray]:
        return {feature["input"]: self._column(feature, rows) for feature in features}

    def _column(self, feature: Mapping[str, Any], rows: Sequence[Mapping[str, Any]]) -> np.ndarray:
        """One input column, checked. The common case, every value of the right type, is
        checked and converted at C speed; otherwise the row at fault is named."""
        name, numeric = feature["name"], feature["kind"] == "numeric"
        try:
            values = [row[name] for row in rows]
        except KeyError:
            number = next(i for i, row in enumerate(rows) if name not in row)
            raise InvalidRowError(f"row {number}: feature '{name}' is missing") from None
        kinds = set(map(type, values))
        if str in kinds and self.na_values:  # missing markers, read as the training data was
            marker = self.na_values.__contains__
            values = [None if isinstance(v, str) and marker(v) else v for v in values]
            kinds = set(map(type, values))
        if not kinds <= (NUMBERS if numeric else TEXT):
            values = self._checked(feature, values)
            kinds = set(map(type, values))
        if numeric:
            wide = np.array(values, dtype=np.float64)  # None -> NaN
            if np.isinf(wide).any() or (not feature["nullable"] and np.isnan(wide).any()):
                self._checked(feature, values)  # names the row
            column = wide.astype(np.float32).reshape(-1, 1)
            if np.isinf(column).any():  # finite, but beyond float32
                number = int(np.flatnonzero(np.isinf(column))[0])
                raise InvalidRowError(f"row {number}: feature '{name}': {values[number]!r} "
                                      "is too large")  # fmt: skip
            return column
        if type(None) in kinds:
            if not feature["nullable"]:
                self._checked(feature, values)
            # a missing category is the training data's most frequent, as the imputer did
            fill = feature.get("fill")  # a date's parts are filled one by one
            values = [fill if value is None else value for value in values]
        return np.array(values, dtype=object).reshape(-1, 1)

    @staticmethod
    def _checked(feature: Mapping[str, Any], values: list[Any]) -> list[Any]:
        """The values as plain Python (NumPy numbers accepted; NaN a missing value), or
        InvalidRowError naming the first row at fault."""
        name, numeric = feature["name"], feature["kind"] == "numeric"
        checked = []
        for number, value in enumerate(values):
            if isinstance(value, np.generic):
                value = value.item()
            if value is None or (isinstance(value, float) and math.isnan(value)):
                if not feature["nullable"]:
                    raise InvalidRowError(
                        f"row {number}: feature '{name}' is missing a value; training never did"
                    )
                value = None
            elif numeric and (isinstance(value, bool) or not isinstance(value, (int, float))):
                raise InvalidRowError(f"row {number}: feature '{name}': {value!r} is not a number")
            elif numeric and math.isinf(value):
                raise InvalidRowError(f"row {number}: feature '{name}': {value!r} is not finite")
            elif not numeric and not isinstance(value, str):
                raise InvalidRowError(f"row {number}: feature '{name}': {value!r} is not text")
            checked.append(value)
        return checked


#: up to this many rows, numeric inputs are checked as one matrix, beyond it per feature
#: (``bench/embedded_scoring.py``: one row 0.21 -> 0.06 ms; 100,000 rows 2.2x slower)
FEW_ROWS = 64
#: the value types a numeric / categorical feature takes (bool is not a number here)
NUMBERS = frozenset({float, int, type(None)})
TEXT = frozenset({str, type(None)})


#: what a date is (``tabular_mlops.core.transformers``): its first ten characters written
#: YYYY-MM-DD, a day from FIRST_DAY to LAST_DAY; anything else is missing
DATE_FORMAT = "%Y-%m-%d"
FIRST_DAY, LAST_DAY = date(1900, 1, 1), date(2199, 12, 31)
#: a date's parts as the pipeline encodes them: text categories
DATE_PARTS = {"day_of_week": lambda day: str(day.weekday()), "month": lambda day: str(day.month)}


def read_date(value: str | None) -> date | None:
    """``value`` as a date, the pipeline's reading; None where it is missing or not one."""
    if value is None:
        return None
    try:
        day = datetime.strptime(value[:10], DATE_FORMAT).date()
    except ValueError:
        return None
    return day if FIRST_DAY <= day <= LAST_DAY else None
