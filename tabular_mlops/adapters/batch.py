"""Score a file of rows with a model, chunk by chunk, file to file.

Memory holds one chunk at a time, so a file larger than RAM scores as well
as a small one. Rows the model cannot take (a number that is not one, a value
missing where training data never had one) are written aside with the reason;
they do not sink the batch. A batch without the model's columns stops at once.
"""

from __future__ import annotations

import contextlib
import dataclasses
import logging
import math
import queue
import threading
import time
from collections.abc import Iterator
from datetime import datetime
from pathlib import Path
from typing import Any, TypeVar

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.csv as pa_csv
import pyarrow.parquet as pq
from pydantic import BaseModel
from sklearn.pipeline import Pipeline

from tabular_mlops.adapters.table_files import repeated_header, unreadable
from tabular_mlops.core.problems import columns_hint, out_of_range, some
from tabular_mlops.core.scoring import Scorer, known_categories, scorer_for, unseen_in_frame
from tabular_mlops.core.spec import ServingSpec

logger = logging.getLogger(__name__)
#: (file, columns) whose case-only likeness to scoring's own columns this process has told
_CASE_WARNED: set[tuple[str, str]] = set()
REASON = "rejection_reason"
#: the file name prefix of the per-batch feature sample that monitoring reads
MONITORING_SAMPLE_PREFIX = "monitoring-sample-"
T = TypeVar("T")
ROW_NUMBER = "row_number"
PARQUET_READ_BUFFER = 1 << 20
#: a CSV's read size: Arrow reads up to 32 blocks ahead, so this bounds that memory
CSV_BLOCK_BYTES = 1 << 20


class BatchSchemaError(ValueError):
    """The batch as a whole does not fit the model; the message names file and columns."""


class BatchFileError(ValueError):
    """The batch file cannot be read as a table; the message names file and line."""


class BatchResult(BaseModel):
    batch_id: str
    model_version: str
    rows_read: int
    rows_scored: int
    rows_rejected: int
    #: None when no row was scored (every one rejected): no file is written
    predictions_path: str | None
    rejected_path: str | None
    seconds: float
    #: per categorical feature, the scored rows holding a category training never saw
    unseen_categories: dict[str, int] = {}


def file_columns(path: Path) -> list[str]:
    if not path.is_file():
        raise BatchSchemaError(f"{path}: no such batch file")
    if path.stat().st_size == 0:
        raise BatchSchemaError(f"{path}: the file is empty (0 bytes); expected a header and rows")
    if path.suffix.lower() == ".parquet":
        columns = list(pq.ParquetFile(path).schema_arrow.names)
    else:
        with _csv_errors_named(path), pa_csv.open_csv(path) as reader:
            columns = list(reader.schema.names)
    repeated = repeated_header(path, columns)
    if repeated:
        raise BatchSchemaError(repeated)
    if path.suffix.lower() != ".parquet" and not _has_rows(path):
        raise BatchSchemaError(f"{path}: a header and no rows: nothing to score")
    return columns


def _has_rows(path: Path) -> bool:
    with path.open("rb") as handle:
        handle.readline()  # the header (a quoted name holding a line break is not one)
        return any(line.strip() for line in handle)


@contextlib.contextmanager
def _csv_errors_named(path: Path) -> Iterator[None]:
    """Arrow's CSV errors (a row with more fields than the header, text that is not
    UTF-8) said with the file and the line, and what to do."""
    try:
        yield
    except pa.ArrowInvalid as exc:
        raise BatchFileError(unreadable(path, exc, "CSV", csv_file=True)) from None


def _csv_batches(path: Path, **options: Any) -> Iterator[pa.RecordBatch]:
    with _csv_errors_named(path):
        yield from pa_csv.open_csv(path, **options)


#: what scoring writes beside a row's features: in the rejected rows, in the monitoring sample
SAMPLE_AND_REJECTED_COLUMNS = (ROW_NUMBER, REASON, "prediction", "scored_at", "model_name")


def output_names(spec: ServingSpec, explain: bool) -> list[str]:
    """The columns scoring adds to the ones a batch file carries through (its ids), and
    the rejected rows' reason: a carried column of one of these names would be two."""
    if spec.task == "regression":
        answers = list(value_columns(spec, np.zeros(0)))
    else:
        answers = ["prediction", *(f"probability_{c}" for c in spec.classes)]
    explained = ["explanation"] if explain else []
    if explain and spec.task == "classification" and len(spec.classes) == 2:
        explained.append("reasons")  # as explanation_columns writes them
    return [ROW_NUMBER, *answers, *explained, "model_version", "batch_id", "scored_at", REASON]


def check_columns(path: Path, spec: ServingSpec, explain: bool = False) -> None:
    """The file has every feature of the model, no column the model refuses, and no
    column of a name the predictions file gives its own answers."""
    columns = file_columns(path)
    missing = [f.name for f in spec.features if f.name not in columns]
    if missing:
        raise BatchSchemaError(
            f"{path}: missing column(s) {some(missing)} that model '{spec.model_name}' "
            f"version {spec.model_version} was trained on{columns_hint(missing, columns)}"
        )
    if spec.reading.unknown_columns == "refuse":
        known = {f.name for f in spec.features} | set(spec.reading.other_columns)
        unknown = [c for c in columns if c not in known]
        if unknown:
            raise BatchSchemaError(
                f"{path}: column(s) {unknown} are not features of model '{spec.model_name}' "
                f"version {spec.model_version} (data.unknown_columns: refuse); leave them "
                "out of the file, or train with data.unknown_columns: ignore"
            )
    features = {f.name for f in spec.features}  # not carried, save in the rejected rows
    # the row number and rejection go beside the features (rejected rows); the answer,
    # time and model name beside them in the sample monitoring reads
    reserved = [c for c in SAMPLE_AND_REJECTED_COLUMNS if c in features]
    if reserved:
        raise BatchSchemaError(
            f"{path}: model '{spec.model_name}' version {spec.model_version} has a feature "
            f"named {reserved[0]!r}, the name batch scoring gives a column of its own "
            f"({', '.join(SAMPLE_AND_REJECTED_COLUMNS)}); rename that column in the training "
            "data and train again"
        )
    taken = [c for c in output_names(spec, explain) if c in columns and c not in features]
    if taken:
        raise BatchSchemaError(
            f"{path}: column(s) {some(taken)} would be carried into the predictions file "
            f"beside scoring's own column(s) of that name ({', '.join(output_names(spec, explain))}"
            "): rename or drop them in the file (e.g. a predictions file scored again)"
        )
    answers = {name.casefold(): name for name in output_names(spec, explain)}
    near = [
        f"{c!r} beside {answers[c.casefold()]!r}"
        for c in columns
        if c not in features and answers.get(c.casefold(), c) != c
    ]
    said = (str(path), ", ".join(near))
    if near and said not in _CASE_WARNED:  # once: the sample step and scoring both check
        _CASE_WARNED.add(said)  # distinct for pandas and Parquet, one for a case-blind reader
        logger.warning(
            "%s: carried column(s) %s differ from scoring's own only by case: a spreadsheet "
            "or SQL table that ignores case sees two columns of one name; rename them in "
            "the file if the predictions go there",
            *said,
        )


NUMBER = r"^\s*[-+]?(\d+\.?\d*|\.\d+)([eE][-+]?\d+)?\s*$"


def read_chunks(
    path: Path, spec: ServingSpec, chunk_rows: int
) -> Iterator[tuple[pd.DataFrame, Misread | None]]:
    """Frames of at most about ``chunk_rows`` rows, read as the training data was (the
    model's data contract: text equal to a missing marker is missing), numeric features
    as numbers, and per row the values that could not be read as numbers (None: every
    value could). CSV features arrive as text, so that a bad value is its row's problem,
    not a parse error for the whole file."""
    if path.suffix.lower() == ".parquet":
        # Page by page through a small buffer, not whole column chunks pre-buffered:
        # memory then follows ``chunk_rows`` whatever the file's row groups
        # (bench/batch_levers.py, 3M rows in one row group: 152 MB of Arrow memory at
        # most against 816 MB pre-buffered, and faster).
        parquet = pq.ParquetFile(path, pre_buffer=False, buffer_size=PARQUET_READ_BUFFER)
        batches: Iterator[pa.RecordBatch] = parquet.iter_batches(batch_size=chunk_rows)
    else:
        as_text = {f.name: pa.string() for f in spec.features}
        batches = _rows_together(_csv_batches(
            path,
            # Arrow's streaming CSV reader reads up to 32 blocks ahead of its consumer:
            # small blocks bound that (64 MB blocks let a 2M-row file's peak grow to
            # 1.2 GB against 0.5 GB for 200k rows; bench/batch_inference.py), and
            # their batches are put back together into chunks of ``chunk_rows``
            read_options=pa_csv.ReadOptions(block_size=CSV_BLOCK_BYTES),
            convert_options=pa_csv.ConvertOptions(
                column_types=as_text,
                # exactly the training reader's markers (pandas' na_values), not Arrow's list
                null_values=spec.reading.na_values,
                strings_can_be_null=True,
            ),
        ), chunk_rows)  # fmt: skip
    numeric = [f.name for f in spec.features if f.kind == "numeric"]
    # Parquet's text has no markers applied yet (a CSV's had, while parsing)
    markers = (
        pa.array(spec.reading.na_values, pa.string()) if path.suffix.lower() == ".parquet" else None
    )
    for batch in batches:
        yield _numbers_from_text(batch, numeric, markers)


def _rows_together(batches: Iterator[pa.RecordBatch], rows: int) -> Iterator[pa.RecordBatch]:
    """Small record batches gathered into batches of about ``rows`` rows."""
    held: list[pa.RecordBatch] = []
    count = 0
    for batch in batches:
        held.append(batch)
        count += batch.num_rows
        if count >= rows:
            yield pa.Table.from_batches(held).combine_chunks().to_batches()[0]
            held, count = [], 0
    if count:
        yield pa.Table.from_batches(held).combine_chunks().to_batches()[0]


@dataclasses.dataclass(frozen=True)
class Misread:
    """Per row of a chunk, the values that could not be read as numbers (None: every one
    could), and each such cell's text as the file has it (for the rejected rows)."""

    reasons: pd.Series
    text: dict[str, pd.Series]


def _numbers_from_text(
    batch: pa.RecordBatch, numeric: list[str], markers: pa.Array | None = None
) -> tuple[pd.DataFrame, Misread | None]:
    """Missing markers in text columns as missing (a Parquet file's text); then cast text
    columns that should be numeric, in Arrow (vectorised); note the misfits."""
    columns = dict(zip(batch.schema.names, batch.columns, strict=True))
    if markers is not None and len(markers):
        for name, values in columns.items():
            if pa.types.is_string(values.type) or pa.types.is_large_string(values.type):
                marked = pc.is_in(values, value_set=markers.cast(values.type))
                if pc.any(marked).as_py():
                    columns[name] = pc.if_else(marked, None, values)
    problems: list[tuple[str, pa.Array, pa.Array, str]] = []
    for name in numeric:
        text = columns[name]
        if pa.types.is_string(text.type) or pa.types.is_large_string(text.type):
            try:  # the common case: every value is a number, and one cast does it
                columns[name] = pc.cast(text, pa.float64())
            except pa.ArrowInvalid:
                is_number = pc.match_substring_regex(text, NUMBER)
                bad = pc.and_(pc.is_valid(text), pc.invert(pc.fill_null(is_number, False)))
                # " 12 " is 12, as training's reader (pandas) and the stream's read it
                number = pc.utf8_trim_whitespace(pc.if_else(is_number, text, None))
                columns[name] = pc.cast(number, pa.float64())
                if pc.any(bad).as_py():
                    problems.append((name, bad, text, "is not a number"))
        elif not pa.types.is_floating(text.type):
            continue
        # inf, -Infinity, 1e400: the scaler would fail the whole chunk (the stream and the
        # embedded file refuse the row alone, naming it). The column's sum first: one
        # pass without an array of flags (0.8 against 1.8 ms for 65k rows of 30 columns)
        total = pc.sum(columns[name]).as_py()
        if total is None or math.isfinite(total):
            continue
        infinite = pc.fill_null(pc.is_inf(columns[name]), False)
        if pc.any(infinite).as_py():
            shown = text if not pa.types.is_floating(text.type) else pc.cast(text, pa.string())
            problems.append((name, infinite, shown, "is not a finite number"))
    frame = pa.RecordBatch.from_arrays(list(columns.values()), names=list(columns)).to_pandas()
    if not problems:
        return frame, None
    reasons = pd.Series(None, index=frame.index, dtype=object)  # None: nothing wrong
    written: dict[str, pd.Series] = {}
    for name, bad, text, problem in problems:
        mask = bad.to_numpy(zero_copy_only=False)
        values = pd.Series(text.to_pylist(), index=frame.index)[mask]
        reasons[mask] = reasons[mask].fillna("") + (
            f"column '{name}': " + values.map(repr) + f" {problem}; "
        )
        written[name] = pd.concat([written[name], values]) if name in written else values
    return frame, Misread(reasons, written)


def split_bad_rows(
    chunk: pd.DataFrame, misread: Misread | None, spec: ServingSpec
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """(rows the model can score; rejected rows with the reason for each, and a value
    that is not a number as the file has it)."""
    reasons = None if misread is None else misread.reasons
    required = [f.name for f in spec.features if not f.nullable]
    missing_required = any(chunk[name].isna().any() for name in required)  # no copy
    if reasons is None and not missing_required:  # the common case: no copy
        return chunk, chunk.iloc[:0].assign(**{REASON: pd.Series(dtype=object)})
    if reasons is None:
        reasons = pd.Series(None, index=chunk.index, dtype=object)
    if missing_required:
        for name in required:
            missing = chunk[name].isna()
            if misread is not None and name in misread.text:  # said as what it was
                missing[misread.text[name].index] = False
            if missing.any():
                reasons[missing] = reasons[missing].fillna("") + (
                    f"column '{name}': missing, never missing in training; "
                )
    rejected = reasons.notna()
    bad_rows = chunk[rejected].assign(**{REASON: reasons[rejected].str.rstrip("; ")})
    for name, text in (misread.text if misread else {}).items():
        bad_rows[name] = bad_rows[name].astype(object)
        bad_rows.loc[text.index, name] = text
    return chunk[~rejected], bad_rows


def overflow_reason(spec: ServingSpec, row: list[Any]) -> str:
    """Why a row's answer is not a number, as the service says it: the features outside
    the range training covered, each with its value."""
    far = out_of_range(spec, row, "")
    if not far:
        return "the model's answer is not finite"
    return "; ".join(f"column '{p.field}': {p.problem}" for p in far)


def value_columns(spec: ServingSpec, values: np.ndarray) -> dict[str, Any]:
    """A regressor's output columns: ``prediction``, ``interval_low`` and ``interval_high``,
    and ``decision`` (as ``ServingSpec.value_answers`` answers each row)."""
    columns: dict[str, Any] = {"prediction": values}
    floor = -np.inf if spec.answer_floor is None else spec.answer_floor
    if spec.interval_half_width is not None:
        columns["interval_low"] = np.maximum(values - spec.interval_half_width, floor)
        columns["interval_high"] = values + spec.interval_half_width
    if spec.decision_offset is not None:
        columns["decision"] = np.maximum(values + spec.decision_offset, floor)
    return columns


class BatchExplainError(ValueError):
    """``--explain`` for a model without an exact explanation; the message says why."""


def explainer_of(model: Pipeline, spec: ServingSpec) -> Any:
    from tabular_mlops.core.explain import Explainer, NotExplainableError

    try:
        return Explainer(model)
    except NotExplainableError as exc:
        raise BatchExplainError(
            f"model '{spec.model_name}' version {spec.model_version} cannot explain its "
            f"answers: {exc}; nothing was scored"
        ) from None


def explanation_columns(
    explainer: Any, features: pd.DataFrame, labels: np.ndarray, spec: ServingSpec
) -> dict[str, Any]:
    """``explanation`` (JSON: base, unit, contributions, rest, as the service answers it)
    per row, and a binary classifier's ``reasons`` (codes, comma-separated)."""
    import json

    from tabular_mlops.core.explain import UnexplainableRowsError, reasons

    try:
        explained: list[dict[str, Any] | None] = list(explainer.explain(features))
    except UnexplainableRowsError as exc:  # those rows' explanations are left empty
        unexplained = set(exc.rows)
        keep = [i for i in range(len(features)) if i not in unexplained]
        found = iter(explainer.explain(features.iloc[keep]))
        explained = [None if i in unexplained else next(found) for i in range(len(features))]
    columns: dict[str, Any] = {
        "explanation": np.asarray([json.dumps(e) if e else None for e in explained], dtype=object)
    }
    if len(spec.classes) == 2:
        rows = features.to_dict("records")
        columns["reasons"] = np.asarray([
            ",".join(reasons(e, row, 1.0 if str(label) == spec.classes[1] else -1.0,
                             explainer.averages, dates=explainer.dates)) if e else None
            for e, row, label in zip(explained, rows, labels, strict=True)
        ], dtype=object)  # fmt: skip
    return columns


def score_file(
    path: Path,
    model: Pipeline,
    spec: ServingSpec,
    output_dir: Path,
    batch_id: str,
    chunk_rows: int,
    now: datetime,
    monitoring_sample_rows: int = 5_000,
    explain: bool = False,
) -> BatchResult:
    """Predictions carry the row number, the input's non-feature columns (ids), the label
    and the class probabilities (a regressor: the value, its interval and the decision, as
    the service answers them), model version, batch id and time. The features of the first
    ``monitoring_sample_rows`` scored rows go to a sample file that monitoring reads:
    rewriting every feature of every row would cost more than scoring them. With
    ``explain``, each row's explanation (JSON) and a binary classifier's reason codes
    follow its answer; a model without an exact explanation is refused before any row
    is scored."""
    started = time.perf_counter()
    check_columns(path, spec, explain)
    explainer = explainer_of(model, spec) if explain else None
    output_dir.mkdir(parents=True, exist_ok=True)
    predictions_path = output_dir / f"predictions-{batch_id}.parquet"
    rejected_path = output_dir / f"rejected-{batch_id}.csv"
    features = [f.name for f in spec.features]
    classes = np.asarray(spec.classes, dtype=object)
    writer: pq.ParquetWriter | None = None
    scorer: Scorer | None = None
    sample: list[pd.DataFrame] = []
    rows_read = rows_scored = rows_rejected = sampled = 0
    known, unseen = known_categories(model), dict[str, int]()
    try:
        for chunk, misread in prefetched(read_chunks(path, spec, chunk_rows)):
            chunk.insert(0, ROW_NUMBER, np.arange(rows_read, rows_read + len(chunk)))
            rows_read += len(chunk)
            good, bad = split_bad_rows(chunk, misread, spec)
            if len(bad):
                bad.to_csv(rejected_path, mode="a", header=rows_rejected == 0, index=False)
                rows_rejected += len(bad)
            if good.empty:
                continue
            if scorer is None:
                scorer = scorer_for(model, features, good.head(1000)[features])
            probabilities = scorer.predict_proba_frame(good)
            finite = np.isfinite(probabilities).all(axis=1)
            if not finite.all():  # far outside training: the service refuses them too (422)
                overflowed = good[~finite].assign(**{REASON: [
                    overflow_reason(spec, list(row))
                    for row in good.loc[~finite, features].itertuples(index=False)
                ]})  # fmt: skip
                overflowed.to_csv(rejected_path, mode="a", header=rows_rejected == 0, index=False)
                rows_rejected += len(overflowed)
                good, probabilities = good[finite], probabilities[finite]
                if good.empty:
                    continue
            for name, count in unseen_in_frame(good, known).items():
                unseen[name] = unseen.get(name, 0) + count
            keys = good[[c for c in good.columns if c not in features]]
            table = pa.Table.from_pandas(keys, preserve_index=False)
            # Repeated strings as dictionaries: encoding a million copies costs more
            # than the scoring.
            constant = pa.array(np.zeros(len(good), dtype=np.int32))
            if spec.task == "regression":
                labels = probabilities[:, 0]
                answers: dict[str, Any] = value_columns(spec, labels)
            else:
                predicted = spec.label_indexes(probabilities)
                labels = classes[predicted]
                answers = {
                    "prediction": pa.DictionaryArray.from_arrays(
                        pa.array(predicted.astype(np.int32)), pa.array(spec.classes)
                    ),
                    **{f"probability_{c}": probabilities[:, i]
                       for i, c in enumerate(spec.classes)},
                }  # fmt: skip
            if explainer is not None:
                answers |= explanation_columns(explainer, good[features], labels, spec)
            outputs = {
                **answers,
                "model_version": pa.DictionaryArray.from_arrays(
                    constant, pa.array([spec.model_version])
                ),
                "batch_id": pa.DictionaryArray.from_arrays(constant, pa.array([batch_id])),
                "scored_at": pa.array(
                    np.full(len(good), np.datetime64(now.replace(tzinfo=None), "us")),
                    pa.timestamp("us", tz="UTC"),
                ),
            }
            for name, column in outputs.items():
                table = table.append_column(
                    name, pa.array(column) if isinstance(column, np.ndarray) else column
                )
            if writer is None:
                # Dictionary pages only where values repeat: trying them on every
                # probability column made the write three times slower
                # (bench/batch_levers.py).
                repeating = [f.name for f in table.schema if pa.types.is_dictionary(f.type)]
                writer = pq.ParquetWriter(predictions_path, table.schema, use_dictionary=repeating)
            writer.write_table(table.cast(writer.schema))
            if sampled < monitoring_sample_rows:
                take = good.head(monitoring_sample_rows - sampled)[features]
                sample.append(take.assign(prediction=labels[: len(take)]))
                sampled += len(take)
            rows_scored += len(good)
    finally:
        if writer is not None:
            writer.close()
    if sample:
        pd.concat(sample, ignore_index=True).assign(
            scored_at=pd.Timestamp(now), model_name=spec.model_name
        ).to_parquet(output_dir / f"{MONITORING_SAMPLE_PREFIX}{batch_id}.parquet", index=False)
    return BatchResult(
        batch_id=batch_id,
        model_version=spec.model_version,
        rows_read=rows_read,
        rows_scored=rows_scored,
        rows_rejected=rows_rejected,
        predictions_path=str(predictions_path) if writer is not None else None,
        rejected_path=str(rejected_path) if rows_rejected else None,
        seconds=time.perf_counter() - started,
        unseen_categories=unseen,
    )


def prefetched(items: Iterator[T], depth: int = 1) -> Iterator[T]:
    """Produce the next item on a thread while the caller works on this one: reading
    and parsing (Arrow releases the GIL) overlap with scoring and writing."""
    buffer: queue.Queue[tuple[bool, Any]] = queue.Queue(maxsize=depth)

    def produce() -> None:
        try:
            for item in items:
                buffer.put((True, item))
            buffer.put((False, None))
        except BaseException as exc:  # re-raised in the consumer
            buffer.put((False, exc))

    threading.Thread(target=produce, daemon=True).start()
    while True:
        more, item = buffer.get()
        if not more:
            if item is not None:
                raise item
            return
        yield item


def read_sample(path: Path, spec: ServingSpec, rows: int) -> pd.DataFrame:
    """The first ``rows`` scorable rows of the file, for the drift report."""
    parts: list[pd.DataFrame] = []
    taken = 0
    for chunk, misread in read_chunks(path, spec, rows):
        good, _ = split_bad_rows(chunk, misread, spec)
        parts.append(good.head(rows - taken))
        taken += len(parts[-1])
        if taken >= rows:
            break
    if not parts:
        return pd.DataFrame(columns=[f.name for f in spec.features])
    return pd.concat(parts, ignore_index=True)
