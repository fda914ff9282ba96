"""What monitoring reads: the serving log, batch feature samples, and late labels."""

from __future__ import annotations

from datetime import datetime
from pathlib import Path

import pandas as pd
import pyarrow.parquet as pq
from sklearn.metrics import accuracy_score, f1_score

from tabular_mlops.adapters.batch import MONITORING_SAMPLE_PREFIX
from tabular_mlops.adapters.streaming.consumer import SOURCE as STREAM_SOURCE
from tabular_mlops.core.config import MonitoringConfig
from tabular_mlops.core.log_policy import HASHED_PREFIX
from tabular_mlops.core.regression import regression_scores
from tabular_mlops.core.signals import PREDICTION
from tabular_mlops.serving.inference_log import read_records


class LabelsError(ValueError):
    """The labels file cannot be used; the message names the file and column."""


def collect(
    config: MonitoringConfig,
    features: list[str],
    start: datetime,
    end: datetime,
    model_name: str | None = None,
) -> pd.DataFrame:
    """Live requests and streamed events from the inference log and the feature samples of
    batches scored in [start, end); ``attrs["unreadable_lines"]`` counts log lines that
    did not parse, ``attrs["duplicate_rows"]`` the repeated predictions left out,
    ``attrs["dropped_rows"]`` the predictions a server could not log (a full disk).

    A stream delivers at least once: after a crash an event is predicted again under its
    id, and a client may retry a request under its id. The first prediction of a
    (source, id, row) with the same inputs is what monitoring reads, once.

    The log and the batch samples may hold other models' rows (one machine, one log
    directory): with ``model_name``, only that model's are read."""
    frames = []
    logged = read_records(config.inference_log_dir, start, end)
    if model_name is not None and not logged.empty and "model_name" in logged.columns:
        logged = logged[logged["model_name"] == model_name]
    unreadable = int(logged.attrs.get("unreadable_lines", 0))
    duplicates = 0
    # inputs the log hashes or drops (core/log_policy.py) cannot be compared: left out
    masked = masked_columns(logged, features)
    features = [f for f in features if f not in masked]
    if not logged.empty:
        logged = logged.sort_values("timestamp", kind="stable")
        first = ~logged.duplicated(subset=["source", "request_id", "row", *features])
        duplicates = int((~first).sum())
        logged = logged[first]
        for source, origin in (("live", "online"), (STREAM_SOURCE, "stream")):
            traffic = logged[logged["source"] == source]
            if not traffic.empty:
                columns = [*features, PREDICTION, "request_id", "row"]
                flagged = (
                    traffic["far_outside"].fillna(False).astype(bool)
                    if "far_outside" in traffic.columns
                    else False
                )
                frames.append(traffic[columns].assign(origin=origin, far_outside=flagged))
    for path in sorted(Path(config.batch_predictions_dir).glob(f"{MONITORING_SAMPLE_PREFIX}*")):
        held = set(pq.read_schema(path).names)
        if not {*features, PREDICTION, "scored_at"} <= held:
            continue  # another model's batch: other features
        extra = ["model_name"] if "model_name" in held else []
        batch = pq.read_table(path, columns=[*features, PREDICTION, "scored_at", *extra])
        batch = batch.to_pandas()
        if extra and model_name is not None:
            batch = batch[batch["model_name"] == model_name]
        scored_at = pd.to_datetime(batch["scored_at"], utc=True)
        in_window = (scored_at >= pd.Timestamp(start)) & (scored_at < pd.Timestamp(end))
        if in_window.any():
            frames.append(
                batch.loc[in_window, [*features, PREDICTION]].assign(
                    origin="batch", far_outside=False
                )
            )
    if not frames:
        collected = pd.DataFrame(
            columns=[*features, PREDICTION, "request_id", "row", "origin", "far_outside"]
        )
    else:
        collected = pd.concat(frames, ignore_index=True)
    collected.attrs["unreadable_lines"] = unreadable
    collected.attrs["duplicate_rows"] = duplicates
    collected.attrs["dropped_rows"] = int(logged.attrs.get("dropped_rows", 0))
    collected.attrs["masked_columns"] = masked
    return collected


def masked_columns(logged: pd.DataFrame, features: list[str]) -> list[str]:
    """The features the inference log does not hold as they were: dropped (absent) or
    hashed (every value a hash)."""
    if logged.empty:
        return []
    masked = []
    for feature in features:
        if feature not in logged.columns:
            masked.append(feature)
            continue
        values = logged[feature].dropna()
        if len(values) and values.astype(str).str.startswith(HASHED_PREFIX).all():
            masked.append(feature)
    return masked


def performance(
    current: pd.DataFrame, labels_path: Path | None, task: str = "classification"
) -> dict[str, float] | None:
    """How many labels the file holds and how many match a logged prediction (by
    ``request_id`` and ``row``), with accuracy and macro F1 on those (a regressor's:
    MAE, RMSE, R², WAPE)."""
    if labels_path is None:
        return None
    if not labels_path.is_file():
        raise LabelsError(f"{labels_path}: no such labels file")
    labels = pd.read_csv(labels_path, dtype={"request_id": str})
    missing = {"request_id", "row", "label"} - set(labels.columns)
    if missing:
        raise LabelsError(f"{labels_path}: missing column(s) {sorted(missing)}")
    online = current.dropna(subset=["request_id"])
    joined = online.merge(labels, on=["request_id", "row"], how="inner")
    counts = {"labels": float(len(labels)), "labelled_rows": float(len(joined))}
    if joined.empty:
        return counts
    if task == "regression":  # the model's task: a classifier's labels may be numbers too
        values = pd.to_numeric(joined[PREDICTION], errors="coerce")
        truth_values = pd.to_numeric(joined["label"], errors="coerce")
        if truth_values.isna().any():
            first = joined["label"][truth_values.isna()].iloc[0]
            raise LabelsError(
                f"{labels_path}: column 'label' holds {first!r}, not a number: the model "
                "predicts numbers"
            )
        return {**counts, **regression_scores(truth_values, values)}
    truth, predicted = joined["label"].astype(str), joined[PREDICTION].astype(str)
    return {
        **counts,
        "accuracy": float(accuracy_score(truth, predicted)),
        "f1_macro": float(f1_score(truth, predicted, average="macro")),
    }
