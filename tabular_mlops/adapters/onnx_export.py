"""Export a fitted pipeline to ONNX for embedding, and refuse any file that does not
answer as the pipeline does.

skl2onnx converts the preprocessing and the estimator into one graph with one
input per feature (numbers as float32, categories as strings). What it cannot
take is rewritten to what it can, with the same fitted numbers:

- the categorical branch's ``FunctionTransformer(missing_as_nan)`` and its
  most-frequent imputer have no ONNX converter for text: the graph takes the
  one-hot encoder alone, and the manifest names each categorical's fill value,
  which the embedded scorer puts in for a missing one (what the imputer does);
- a date column's parts (``transformers.date_parts``: weekday, month) are Python, not
  ONNX: the graph takes each part as a text input and the manifest names them, with
  each part's fill; the embedded scorer reads the date as the pipeline does;
- a threshold tuned to a cost matrix (``FixedThresholdClassifier``) is not an
  ONNX operator: the graph gives the probabilities of the estimator inside, and
  the manifest carries the positive label and threshold the scorer decides by.

Then the file is run with onnxruntime on the model's test split through the
embedded scorer's own code, and refused unless every label is the pipeline's and
every probability within ``PROBABILITY_TOLERANCE`` of it.
"""

from __future__ import annotations

import copy
import hashlib
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from sklearn.pipeline import Pipeline

from tabular_mlops.adapters.paths import PROJECT_ROOT
from tabular_mlops.core.governance import decision_rule
from tabular_mlops.core.spec import ServingSpec
from tabular_mlops.core.transformers import DATE_PARTS, date_part_names

PROBABILITY_TOLERANCE = 1e-5
#: a regressor's values in the file (float32 arithmetic) may differ from the pipeline's by
#: this share of their size (at least 1)
VALUE_TOLERANCE = 1e-4
#: the ONNX opset the file targets (onnxruntime 1.22+ runs it)
TARGET_OPSET = 18


class OnnxExportError(ValueError):
    """The model cannot be exported, or the file does not answer as the pipeline does;
    the message says which and why."""


@dataclass(frozen=True)
class OnnxModel:
    """A checked ONNX file and the manifest an application embeds it with; or, for a
    model the check refused, no file and the reason (``skipped``)."""

    onnx: bytes
    manifest: dict[str, Any]

    @property
    def skipped(self) -> str | None:
        return self.manifest.get("skipped")

    @classmethod
    def not_exported(cls, spec: ServingSpec, reason: str) -> OnnxModel:
        return cls(
            b"",
            {"format": "onnx", "model_name": spec.model_name,
             "model_version": spec.model_version, "skipped": reason},
        )  # fmt: skip


def export_onnx(model: Pipeline, spec: ServingSpec, test_rows: pd.DataFrame) -> OnnxModel:
    """The pipeline as ONNX, checked on ``test_rows`` (the model's test split)."""
    from skl2onnx import convert_sklearn
    from skl2onnx.common.data_types import FloatTensorType, StringTensorType

    from tabular_mlops.adapters.compat import skl2onnx_tree_missing_as_ints

    skl2onnx_tree_missing_as_ints()
    graph_model, fills, parts = convertible(model)
    # named by feature, as the column transformer selects them (a date by its parts);
    # onnxruntime may rename an input (spaces), so the manifest names each as the file has it
    inputs_of = {f.name: parts.get(f.name, [f.name]) for f in spec.features}
    check_distinct_inputs(spec, parts)
    initial_types = [
        (name, FloatTensorType([None, 1]) if f.kind == "numeric" and f.name not in parts
         else StringTensorType([None, 1]))
        for f in spec.features for name in inputs_of[f.name]
    ]  # fmt: skip
    estimator = graph_model.steps[-1][1]
    regressor = spec.task == "regression"
    try:
        onnx_model = convert_sklearn(
            graph_model,
            initial_types=initial_types,
            target_opset=TARGET_OPSET,
            # a classifier's probabilities as a matrix; a regressor has no such option
            options={} if regressor else {id(estimator): {"zipmap": False}},
        )
    except Exception as exc:  # skl2onnx raises many kinds; the first line names the part
        reason = str(exc).strip().splitlines()[0][:300] if str(exc).strip() else ""
        raise OnnxExportError(
            f"model '{spec.model_name}' version {spec.model_version} cannot be converted to "
            f"ONNX: {type(exc).__name__}: {reason}"
        ) from None
    onnx = onnx_model.SerializeToString()
    inputs = iter(graph_input.name for graph_input in onnx_model.graph.input)
    positive, threshold = decision_rule(model)
    manifest: dict[str, Any] = {
        "format": "onnx",
        "model_name": spec.model_name,
        "model_version": spec.model_version,
        "target": spec.target,
        "features": described_inputs(spec, inputs, fills, parts),
        "classes": spec.classes,
        #: how the training data was read (the data contract): text equal to one of
        #: these is missing, in any feature; other columns are ignored or refused
        "na_values": spec.reading.na_values,
        "unknown_columns": spec.reading.unknown_columns,
        "other_columns": spec.reading.other_columns,
        "positive_label": positive if threshold is not None else None,
        "decision_threshold": threshold,
        #: a regressor answers its value, the interval (± half-width) and the decision
        "task": spec.task,
        "interval_level": spec.interval_level,
        "interval_half_width": spec.interval_half_width,
        "decision_offset": spec.decision_offset,
        "answer_floor": spec.answer_floor,
        "opset": TARGET_OPSET,
        "sha256": hashlib.sha256(onnx).hexdigest(),
        "bytes": len(onnx),
        "exported_at": datetime.now(UTC).isoformat(timespec="seconds"),
    }
    manifest["check"] = check(model, onnx, manifest, test_rows)
    return OnnxModel(onnx, manifest)


def described_inputs(
    spec: ServingSpec, inputs: Iterator[str], fills: dict[str, str], parts: dict[str, list[str]]
) -> list[dict[str, Any]]:
    """The manifest's features in input order: each one's input (a date's, one per part)
    as the file names it, its kind, nullability and fill."""
    described: list[dict[str, Any]] = []
    for f in spec.features:
        if f.name in parts:
            steps = zip(DATE_PARTS, parts[f.name], strict=True)
            described.append({"name": f.name, "kind": "date", "nullable": f.nullable, "parts": [
                {"part": part, "input": next(inputs), "fill": fills[name]} for part, name in steps
            ]})  # fmt: skip
            continue
        fill = {"fill": fills[f.name]} if f.kind == "categorical" else {}
        described.append(
            {"name": f.name, "kind": f.kind, "input": next(inputs), "nullable": f.nullable, **fill}
        )
    return described


def check_distinct_inputs(spec: ServingSpec, parts: dict[str, list[str]]) -> None:
    """A date column enters the file as its parts (``<date>_month``, ...): refused,
    named, when a part has the name of another feature, since a graph's inputs need
    distinct names (the converter would otherwise build a file that misreads one)."""
    features = {f.name for f in spec.features}
    for date, names in parts.items():
        for part in names:
            if part in features:
                raise OnnxExportError(
                    f"model '{spec.model_name}' version {spec.model_version}: the date "
                    f"column '{date}' enters the ONNX file as its part '{part}', which is also "
                    f"a feature's name; not exported (rename the column '{part}' in the data "
                    "and train again)"
                )


def convertible(model: Pipeline) -> tuple[Pipeline, dict[str, str], dict[str, list[str]]]:
    """A copy of the fitted pipeline skl2onnx converts, each categorical input's fill value
    and each date column's part inputs (see the module's docstring); anything else goes to
    skl2onnx as it is."""
    from sklearn.model_selection import FixedThresholdClassifier

    preprocess = copy.deepcopy(model.named_steps["preprocess"])
    step, classifier = model.steps[-1]
    fills: dict[str, str] = {}
    parts: dict[str, list[str]] = {}
    for index, (name, transformer, columns) in enumerate(preprocess.transformers_):
        if name in ("categorical", "dates") and isinstance(transformer, Pipeline) and len(columns):
            inputs = [str(c) for c in columns]
            if name == "dates":  # each date's parts, in date_parts' order
                inputs = [str(n) for n in date_part_names(None, columns)]
                parts = {str(c): inputs[i * len(DATE_PARTS):(i + 1) * len(DATE_PARTS)]
                         for i, c in enumerate(columns)}  # fmt: skip
            imputer = transformer.named_steps["impute"]
            fills |= {c: str(v) for c, v in zip(inputs, imputer.statistics_, strict=True)}
            preprocess.transformers_[index] = (name, transformer.named_steps["encode"], inputs)
    if isinstance(classifier, FixedThresholdClassifier):
        classifier = classifier.estimator_
        classifier = getattr(classifier, "estimator", classifier)  # inside FrozenEstimator
    return Pipeline([("preprocess", preprocess), (step, classifier)]), fills, parts


def check(model: Pipeline, onnx: bytes, manifest: dict[str, Any], rows: pd.DataFrame) -> dict:
    """Score ``rows`` with the file through the embedded scorer; refuse it unless labels
    are identical and probabilities within ``PROBABILITY_TOLERANCE`` of the pipeline's."""
    name = f"model '{manifest['model_name']}' version {manifest['model_version']}"
    if rows.empty:
        raise OnnxExportError(f"{name}: no test rows to check the ONNX file on; not exported")
    embedded = embedded_scorer()
    scorer = embedded.EmbeddedModel.from_bytes(onnx, manifest)
    records = rows.astype(object).where(rows.notna(), None).to_dict("records")
    if manifest["task"] == "regression":
        return check_values(name, scorer, records, np.asarray(model.predict(rows), float))
    try:
        probabilities = scorer.predict_proba(records)
    except ValueError as exc:  # the scorer refused a test row, or onnxruntime failed
        raise OnnxExportError(f"{name}: the ONNX file cannot score the test rows: {exc}") from None
    expected = np.asarray(model.predict_proba(rows))
    difference = float(np.abs(probabilities - expected).max())
    labels = scorer.labels(probabilities)
    disagree = int(sum(a != str(b) for a, b in zip(labels, model.predict(rows), strict=True)))
    if disagree:
        raise OnnxExportError(
            f"{name}: the ONNX file gives a different label than the pipeline on {disagree} of "
            f"{len(rows)} test rows; not exported"
        )
    if not difference <= PROBABILITY_TOLERANCE:  # NaN too
        raise OnnxExportError(
            f"{name}: the ONNX file's probabilities differ from the pipeline's by up to "
            f"{difference:.2e} on the test rows (tolerance {PROBABILITY_TOLERANCE:g}); "
            "not exported"
        )
    return {"rows": len(rows), "labels_identical": True, "max_probability_difference": difference}


def check_values(name: str, scorer: Any, records: list, expected: np.ndarray) -> dict:
    """A regressor's file: its values within ``VALUE_TOLERANCE`` of the pipeline's (as a
    share of each value's size, at least 1)."""
    try:
        values = np.asarray(scorer.predict(records), dtype=float)
    except ValueError as exc:
        raise OnnxExportError(f"{name}: the ONNX file cannot score the test rows: {exc}") from None
    difference = float(np.max(np.abs(values - expected) / np.maximum(np.abs(expected), 1.0)))
    if not difference <= VALUE_TOLERANCE:  # NaN too
        raise OnnxExportError(
            f"{name}: the ONNX file's values differ from the pipeline's by up to "
            f"{difference:.2e} of their size on the test rows (tolerance {VALUE_TOLERANCE:g}); "
            "not exported"
        )
    return {"rows": len(records), "max_relative_value_difference": difference}


def embedded_scorer() -> Any:
    """The standalone scorer (``embedded/`` at the top of the checkout): the check runs the
    very code an application embeds."""
    if str(PROJECT_ROOT) not in sys.path:
        sys.path.insert(0, str(PROJECT_ROOT))
    import embedded

    return embedded


def write(exported: OnnxModel, directory: Path) -> tuple[Path, Path]:
    """``model.onnx`` and ``manifest.json`` in ``directory``."""
    import json

    directory.mkdir(parents=True, exist_ok=True)
    onnx_path, manifest_path = directory / "model.onnx", directory / "manifest.json"
    onnx_path.write_bytes(exported.onnx)
    manifest_path.write_text(json.dumps(exported.manifest, indent=2) + "\n")
    return onnx_path, manifest_path
