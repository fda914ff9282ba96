"""What the service needs to know about a model, derived from the model and its training data.

The request schema is built from it, so a request is validated against the very
features (names, kinds, nullability) the model was trained on.
"""

from __future__ import annotations

import functools
import math
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, create_model

from tabular_mlops.core.log_policy import LogPolicy

if TYPE_CHECKING:
    import numpy as np
    import pandas as pd


class FeatureSpec(BaseModel):
    name: str
    kind: Literal["numeric", "categorical"]
    #: whether training data had missing values here, so null is a value the model knows
    nullable: bool
    #: the range training data covered (numeric features): named when a value far
    #: outside it makes the model's answer overflow
    minimum: float | None = None
    maximum: float | None = None


#: what a CSV cell read as "missing" when nothing else says (``data.na_values``' default)
DEFAULT_NA_VALUES = ["", "NA", "N/A", "n/a", "na", "NaN", "nan", "null", "NULL", "?"]


class DataContract(BaseModel):
    """How the model's training data was read, recorded on the model version and shipped
    with the model: every reader (batch, service, stream, embedded) applies it, so the
    same raw value means the same thing everywhere.

    - a text value equal to one of ``na_values`` is missing, in any column;
    - ``other_columns`` (the target, dropped and assessment-only columns) are never
      model inputs: a record that carries them is read without them;
    - any other column the model does not know is ignored or refused, by ``unknown_columns``.
    """

    na_values: list[str] = Field(default_factory=lambda: list(DEFAULT_NA_VALUES))
    other_columns: list[str] = Field(default_factory=list)
    unknown_columns: Literal["ignore", "refuse"] = "ignore"

    @functools.cached_property
    def _markers(self) -> frozenset[str]:
        return frozenset(self.na_values)

    @functools.cached_property
    def not_inputs(self) -> frozenset[str]:
        """``other_columns`` as a set: looked up for every key of every served row."""
        return frozenset(self.other_columns)

    def missing(self, value: object) -> bool:
        """Whether a raw value is a missing marker (a text value in ``na_values``)."""
        return isinstance(value, str) and value in self._markers


class ServingSpec(BaseModel):
    model_name: str
    model_version: str
    target: str
    features: list[FeatureSpec]
    classes: list[str]
    #: a binary model's decision rule when its threshold was tuned (to a cost matrix):
    #: ``positive_label`` is said when its probability is at least ``decision_threshold``;
    #: None: the most probable class
    positive_label: str | None = None
    decision_threshold: float | None = None
    #: how the training data was read: every reader of this model reads the same way
    reading: DataContract = Field(default_factory=DataContract)
    #: a classifier answers a label and probabilities; a regressor a value, its interval
    #: and, when the gate was given unit costs, the cost-optimal decision
    task: Literal["classification", "regression"] = "classification"
    #: regression: the prediction interval's level and half-width (split-conformal), and
    #: what the decision adds to the prediction (the newsvendor quantile of the errors)
    interval_level: float | None = None
    interval_half_width: float | None = None
    decision_offset: float | None = None
    #: regression: the lowest an interval or a decision reaches (0 when training never saw
    #: a negative target: a count, an amount); the prediction is the model's, as it is
    answer_floor: float | None = None

    def value_answers(self, values: Sequence[float]) -> list[dict[str, Any]]:
        """A regressor's answer per predicted value: the value, its interval, and the
        decision when there is one; every reader (service, batch, stream) answers so."""
        width, offset = self.interval_half_width, self.decision_offset
        floor = -math.inf if self.answer_floor is None else self.answer_floor
        answers = []
        for value in values:
            answer: dict[str, Any] = {"prediction": float(value)}
            if width is not None:
                answer["interval"] = [max(float(value) - width, floor), float(value) + width]
            if offset is not None:
                answer["decision"] = max(float(value) + offset, floor)
            answers.append(answer)
        return answers

    def decide(self, answers: np.ndarray) -> np.ndarray:
        """What the service makes of a scorer's answers: each row's class index, or a
        regressor's values."""
        return answers[:, 0] if self.task == "regression" else self.label_indexes(answers)

    def label_indexes(self, probabilities: np.ndarray) -> np.ndarray:
        """The class each row of probabilities is answered with, by the model's own rule:
        serving and batch scoring decide through here."""
        return label_indexes(
            probabilities, self.classes, self.positive_label, self.decision_threshold
        )

    @classmethod
    def from_training_data(
        cls,
        model_name: str,
        model_version: str,
        train_set: pd.DataFrame,
        target: str,
        classes: list[Any],
        positive_label: str | None = None,
        decision_threshold: float | None = None,
        reading: DataContract | None = None,
        **regression: Any,
    ) -> ServingSpec:
        # here, not at the top: the service imports this module without pandas
        from tabular_mlops.core.columns import column_kind

        features = []
        for column in train_set.columns:
            if column == target:
                continue
            values = train_set[column]
            numeric = column_kind(values) == "numeric"
            features.append(
                FeatureSpec(
                    name=str(column),
                    kind="numeric" if numeric else "categorical",
                    nullable=bool(values.isna().any()),
                    minimum=float(values.min()) if numeric and values.notna().any() else None,
                    maximum=float(values.max()) if numeric and values.notna().any() else None,
                )
            )
        return cls(
            model_name=model_name,
            model_version=model_version,
            target=target,
            features=features,
            classes=[str(c) for c in classes],
            positive_label=positive_label,
            decision_threshold=decision_threshold,
            reading=reading or DataContract(other_columns=[target]),
            **regression,
        )


def label_indexes(
    probabilities: np.ndarray,
    classes: list[str],
    positive_label: str | None,
    threshold: float | None,
) -> np.ndarray:
    """The most probable class, or for a tuned binary model ``positive_label`` wherever its
    probability is at least ``threshold`` (as scikit-learn's tuned classifier decides)."""
    if threshold is None or positive_label is None:
        return probabilities.argmax(axis=1)
    positive = classes.index(positive_label)
    import numpy as np  # here: a command that never scores (``run.py --help``) skips it

    return np.where(probabilities[:, positive] >= threshold, positive, 1 - positive)


class _Strict(BaseModel):
    #: strict: a number is a JSON number, not "17.99" or true; text is a JSON string
    model_config = ConfigDict(extra="forbid", strict=True)


class _StrictIgnoringUnknown(_Strict):
    model_config = ConfigDict(extra="ignore", strict=True)


def row_model(spec: ServingSpec) -> type[BaseModel]:
    """The pydantic model of one row, ``{feature: value, ...}``: what a request's rows and a
    stream's events are validated against (after :func:`read_row`).

    Fields carry the feature names as aliases (names like "mean radius" are not
    identifiers); numbers must be finite; null only where training data had it. Columns
    that are not features are ignored or refused as the data contract says.
    """
    base = _StrictIgnoringUnknown if spec.reading.unknown_columns == "ignore" else _Strict
    fields: dict[str, Any] = {}
    for index, feature in enumerate(spec.features):
        python_type: Any = float if feature.kind == "numeric" else str
        if feature.nullable:
            python_type = python_type | None
        fields[f"f{index}"] = (
            python_type,
            Field(..., alias=feature.name, allow_inf_nan=False)
            if feature.kind == "numeric"
            else Field(..., alias=feature.name),
        )
    return create_model("Row", __base__=base, **fields)


def read_row(row: Any, spec: ServingSpec) -> Any:
    """A raw record as the training data was read: missing markers as None, and the
    target, dropped and assessment-only columns left out. Anything but a dict is
    returned as it is, for validation to name."""
    if not isinstance(row, dict):
        return row
    contract = spec.reading
    other = contract.not_inputs
    return {
        key: None if contract.missing(value) else value
        for key, value in row.items()
        if key not in other
    }


def request_model(spec: ServingSpec, max_rows: int) -> type[BaseModel]:
    """The pydantic model of a request body: ``{"rows": [{feature: value, ...}, ...]}``,
    and ``"explain": true`` for each answer's explanation."""
    row = row_model(spec)
    return create_model(
        "PredictRequest",
        __base__=_Strict,
        rows=(list[row], Field(..., min_length=1, max_length=max_rows)),  # type: ignore[valid-type]
        explain=(bool, Field(default=False, description="add each answer's explanation")),
    )


SETTINGS_ENV = "TABULAR_SERVING_SETTINGS"
#: requests that carry this header are logged with its value as their source...
SOURCE_HEADER = "x-request-source"
#: ...when this one carries the deployment's source token (``serving/credentials.py``)
SOURCE_TOKEN_HEADER = "x-source-token"
#: where a shadow candidate takes the router's batches of mirrored live requests
SHADOW_PATH = "/-/shadow"
#: the CPU time (ms) a version's worker spent reading and scoring one request: what the
#: rollout's latency guardrail compares, since it does not grow with the machine's load
#: as the time to answer does (docs/decisions.md)
SCORING_CPU_HEADER = "x-scoring-cpu-ms"


class ServingSettings(BaseModel):
    """How one deployment runs; passed to every worker as JSON in ``$TABULAR_SERVING_SETTINGS``
    (baked into the bento's environment too, for container builds)."""

    model_tag: str
    #: the SHA-256 of the served copy of the model (model.pkl), checked before it is
    #: loaded (``serving/app.py``); None for a bento packaged before it was recorded
    model_sha256: str | None = None
    #: ``/predict`` answers only a request with a client's API key (``x-api-key``)
    require_api_key: bool = False
    #: what the inference log keeps of each input (``core/log_policy.py``)
    log_columns: dict[str, LogPolicy] = {}
    workers: int = 2
    max_batch_rows: int = 1000
    inference_log_dir: str | None = None
    #: False when the numpy path could not reproduce the pipeline's answers
    fast_path: bool = True
    #: where the model's files are (its directory in BentoML's model store); set when
    #: the bento is served without BentoML's server, which would otherwise look it up
    model_dir: str | None = None
    #: the deployment's tokens file (``serving/credentials.py``), set when it is started:
    #: the token for ``/feedback``, and the one its own checks send with
    #: ``x-request-source`` (any other client that sets the header is refused, so
    #: nobody outside can hide its traffic from monitoring). None: both are refused.
    tokens_file: str | None = None
