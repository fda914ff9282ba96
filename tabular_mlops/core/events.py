"""Score a micro-batch of stream events: each one validated against the model's serving
schema, the valid ones scored together, every event ending as a prediction or a dead
letter with the reason.

Kept free of the broker: the consumer (``adapters/streaming``) hands events in and
publishes what comes out, so this logic is tested without one.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

import numpy as np
from pydantic import TypeAdapter, ValidationError

from tabular_mlops.core.log_policy import LogPolicy
from tabular_mlops.core.problems import (
    DuplicateKeyError,
    Problem,
    describe_errors,
    out_of_range,
    unique_keys,
)
from tabular_mlops.core.spec import ServingSpec, read_row, row_model

if TYPE_CHECKING:
    from tabular_mlops.core.scoring import Scorer

#: a dead letter keeps at most this much of the event as it came
MAX_KEPT_PAYLOAD = 16_384


@dataclass(slots=True)
class Event:
    """One message as the consumer received it."""

    event_id: str
    data: bytes
    #: when the broker stored it (UTC seconds since the epoch)
    published_at: float
    #: 1 the first time; more after a consumer died before acknowledging it
    deliveries: int = 1


@dataclass
class ScoredBatch:
    """What a micro-batch came to: the predictions (one JSON-ready dict per scored event,
    in order, with the rows scored for the inference log) and a dead letter per event
    that could not be scored."""

    model_name: str
    model_version: str
    predicted_at: float
    predictions: list[dict[str, Any]] = field(default_factory=list)
    rows: list[list[Any]] = field(default_factory=list)
    dead_letters: list[tuple[Event, dict[str, Any]]] = field(default_factory=list)

    def message(self) -> dict[str, Any]:
        """The predictions message: one per micro-batch, each prediction naming its event.

        One message, not one per event: the broker's confirmation of each message is
        what a consumer waits for before acknowledging, and per event it was half of
        all the time spent (``bench/streaming.py``)."""
        return {
            "model_name": self.model_name,
            "model_version": self.model_version,
            "predicted_at": _iso(self.predicted_at),
            "predictions": self.predictions,
        }


class EventScorer:
    """The model's schema and verified scoring path, bound once per model version: the
    consumer swaps the whole object between micro-batches when the version changes."""

    def __init__(
        self, spec: ServingSpec, scorer: Scorer, log_columns: dict[str, LogPolicy] | None = None
    ) -> None:
        self.spec, self.scorer = spec, scorer
        #: what the inference log keeps of each input for this version (its service's)
        self.log_columns: dict[str, LogPolicy] = log_columns or {}
        adapter = TypeAdapter(row_model(spec))
        self._validate_json, self._validate_python = adapter.validate_json, adapter.validate_python
        self._classes = spec.classes
        self._categorical = [i for i, f in enumerate(spec.features) if f.kind == "categorical"]
        self._key_quotes = 2 * len(spec.features)

    @property
    def version(self) -> str:
        return self.spec.model_version

    def score(self, events: list[Event], max_deliveries: int, now: float) -> ScoredBatch:
        batch = ScoredBatch(self.spec.model_name, self.spec.model_version, now)
        accepted: list[Event] = []
        rows: list[list[Any]] = []
        for event in events:
            if event.deliveries > max_deliveries:
                problem = Problem(field="(event)", problem=f"delivered {event.deliveries} "
                                  "times without a prediction")  # fmt: skip
                batch.dead_letters.append((event, self._dead_letter(event, "poison", [problem])))
                continue
            try:
                rows.append(self.row(event.data))
            except InvalidEventError as invalid:
                batch.dead_letters.append(
                    (event, self._dead_letter(event, "invalid", invalid.problems))
                )
            else:
                accepted.append(event)
        if not accepted:
            return batch
        try:
            probabilities = self.scorer.predict_proba(rows)
        except Exception:  # one row the model chokes on must not sink the others
            accepted, rows, probabilities = self._one_by_one(accepted, rows, batch)
            if not accepted:
                return batch
        finite = np.isfinite(probabilities).all(axis=1)
        safe = np.where(finite[:, None], probabilities, 0.0)
        answers = (
            self.spec.value_answers(safe[:, 0].tolist())
            if self.spec.task == "regression"
            else self._labelled(safe)
        )
        for event, row, answer, ok in zip(accepted, rows, answers, finite.tolist(), strict=True):
            if not ok:
                problems = out_of_range(self.spec, row, "") or [
                    Problem(field="(event)", problem="the model's answer is not finite")
                ]
                batch.dead_letters.append((event, self._dead_letter(event, "unscorable", problems)))
                continue
            batch.rows.append(row)
            batch.predictions.append(
                {
                    "event_id": event.event_id,
                    **answer,
                    "published_at": _iso(event.published_at),
                    # above 1: this event may have been predicted before (at least once)
                    "deliveries": event.deliveries,
                }
            )
        return batch

    def _labelled(self, probabilities: np.ndarray) -> list[dict[str, Any]]:
        """A classifier's answer per row: its label, by the model's rule, and probabilities."""
        classes = self._classes
        return [
            {"label": classes[label], "probabilities": dict(zip(classes, row, strict=True))}
            for label, row in zip(
                self.spec.label_indexes(probabilities).tolist(), probabilities.tolist(),
                strict=True,
            )
        ]  # fmt: skip

    def _one_by_one(
        self, events: list[Event], rows: list[list[Any]], batch: ScoredBatch
    ) -> tuple[list[Event], list[list[Any]], np.ndarray]:
        """Score row by row after the micro-batch failed as a whole: the rows that fail
        alone are dead-lettered with the model's error, the others scored."""
        kept_events, kept_rows, scored = [], [], []
        for event, row in zip(events, rows, strict=True):
            try:
                scored.append(self.scorer.predict_proba([row])[0])
            except Exception as exc:
                problem = Problem(field="(event)", problem=f"the model failed on it: "
                                  f"{type(exc).__name__}: {exc}"[:500])  # fmt: skip
                batch.dead_letters.append(
                    (event, self._dead_letter(event, "unscorable", [problem]))
                )
            else:
                kept_events.append(event)
                kept_rows.append(row)
        # every row failing leaves nothing to reshape: no columns to infer
        answers = np.array(scored).reshape(len(scored), -1) if scored else np.empty((0, 1))
        return kept_events, kept_rows, answers

    def row(self, data: bytes) -> list[Any]:
        """The event's feature values in the model's order, read as the training data was,
        or :class:`InvalidEventError` naming each problem (the service's rules: strict
        types, finite numbers, null only where training had it, no key twice; missing
        markers and columns that are not model inputs as the data contract says)."""
        try:
            values = list(self._validate_json(data).__dict__.values())
        except ValidationError as error:
            # Validated again from the parsed record, as the service reads it: a missing
            # marker in a numeric field, a target or assessment-only column under
            # ``unknown_columns: refuse``, or a real problem to name.
            return self._read_slowly(data, error)
        # A key given twice is refused, as by the service; pydantic keeps the last. Exact
        # and cheap: every key and string value brings two quotes, escaped quotes more, so
        # only a count above this row's own needs the full parse to tell.
        strings = sum(values[i] is not None for i in self._categorical) if self._categorical else 0
        if data.count(b'"') != self._key_quotes + 2 * strings:
            return self._read_slowly(data)
        if self._categorical:
            markers = [i for i in self._categorical if self.spec.reading.missing(values[i])]
            if markers:
                return self._read_slowly(data)
        return values

    def _read_slowly(self, data: bytes, error: ValidationError | None = None) -> list[Any]:
        try:
            record = json.loads(data, object_pairs_hook=unique_keys)
        except DuplicateKeyError as exc:
            raise InvalidEventError([Problem(field="(event)", problem=str(exc))]) from None
        except (ValueError, RecursionError) as exc:
            problems = (
                describe_errors(error)
                if error is not None
                else [Problem(field="(event)", problem=f"Invalid JSON: {exc}"[:500])]
            )
            raise InvalidEventError(problems) from None
        try:
            return list(self._validate_python(read_row(record, self.spec)).__dict__.values())
        except ValidationError as error:
            raise InvalidEventError(describe_errors(error)) from None

    def _dead_letter(self, event: Event, reason: str, problems: list[Problem]) -> dict[str, Any]:
        return {
            "event_id": event.event_id,
            "reason": reason,
            "problems": [problem.model_dump() for problem in problems],
            "model_version": self.spec.model_version,
            "event": event.data[:MAX_KEPT_PAYLOAD].decode("utf-8", errors="replace"),
            "published_at": _iso(event.published_at),
            "deliveries": event.deliveries,
        }


class InvalidEventError(ValueError):
    def __init__(self, problems: list[Problem]) -> None:
        super().__init__("; ".join(f"{p.field}: {p.problem}" for p in problems))
        self.problems = problems


def _iso(seconds: float) -> str:
    return datetime.fromtimestamp(seconds, UTC).isoformat(timespec="microseconds")
