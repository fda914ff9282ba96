"""Read training data from scikit-learn's bundled datasets or the user's file."""

from __future__ import annotations

import logging
from pathlib import Path

import pandas as pd
from sklearn import datasets

from tabular_mlops.adapters.table_files import (
    csv_header,
    refuse_ragged,
    repeated_header,
    unreadable,
)
from tabular_mlops.core.config import DataSourceConfig
from tabular_mlops.core.problems import columns_hint, some

logger = logging.getLogger(__name__)


class DataSourceError(ValueError):
    """The configured data cannot be read; the message names the file and column."""


def load_dataset(source: DataSourceConfig) -> pd.DataFrame:
    """Return features and the target column ``source.target`` in one frame."""
    frame = _load_sklearn(source) if source.source == "sklearn" else _load_file(source)
    for key, named in (("drop_columns", source.drop_columns),
                       ("assessment_columns", source.assessment_columns),
                       ("date_columns", source.date_columns)):  # fmt: skip
        unknown = [c for c in named if c not in frame.columns]
        if unknown:
            raise DataSourceError(
                f"{source.path or source.dataset}: data.{key} names {unknown}, "
                f"which the data does not have; columns are {list(frame.columns)}"
            )
    if source.target in source.assessment_columns:
        raise DataSourceError(
            f"{source.path or source.dataset}: data.assessment_columns names the target "
            f"'{source.target}'"
        )
    frame = frame.drop(columns=source.drop_columns)
    if source.target not in frame.columns:
        columns = list(frame.columns)
        raise DataSourceError(
            f"{source.path or source.dataset}: target column '{source.target}' not found; "
            f"columns are {some(columns, 10)}{columns_hint([source.target], columns)}"
        )
    return frame


def _load_sklearn(source: DataSourceConfig) -> pd.DataFrame:
    if source.dataset == "demand":
        from tabular_mlops.core.demand import demand_frame

        return demand_frame().rename(columns={"units_sold": source.target})
    if source.dataset == "diabetes":
        # in the study's own units (age in years, BMI, blood pressure in mmHg), not
        # scikit-learn's default of centred and scaled columns; the target is a number
        bunch = datasets.load_diabetes(as_frame=True, scaled=False)
        return bunch.frame.rename(columns={"target": source.target})
    bunch = getattr(datasets, f"load_{source.dataset}")(as_frame=True)
    frame: pd.DataFrame = bunch.frame.copy()
    # Named string labels ("malignant", "benign") rather than 0/1 make the
    # served answers readable and keep string labels exercised end to end.
    names = dict(enumerate(bunch.target_names))
    labels = frame.pop("target").map(names).astype(str)
    frame[source.target] = labels
    return frame


def _load_file(source: DataSourceConfig) -> pd.DataFrame:
    path = source.path
    if path is None or not path.is_file():
        raise DataSourceError(f"{path}: no such data file")
    if path.stat().st_size == 0:
        raise DataSourceError(f"{path}: the file is empty (0 bytes); expected a header and rows")
    try:
        if path.suffix.lower() == ".csv":
            _refuse_repeated(path, csv_header(path))
            frame = pd.read_csv(path, na_values=source.na_values, keep_default_na=False)
            refuse_ragged(path, frame, DataSourceError)  # a short line is read without a word
            return _without_blank_columns(frame, path)
        frame = pd.read_parquet(path)
    except DataSourceError:  # said with the file already
        raise
    except (ValueError, OSError, pd.errors.ParserError) as exc:
        csv_file = path.suffix.lower() == ".csv"
        raise DataSourceError(unreadable(path, exc, path.suffix[1:], csv_file)) from exc
    _refuse_repeated(path, list(frame.columns))
    # A Parquet file's text is read as a CSV's is while parsing (one reading): its missing
    # markers are missing, and a column of numbers written as text is numbers (as text,
    # every value would be a category of its own, and each new one unseen), unless a
    # value has a leading zero: codes stored as text on purpose ("02134")
    for name in frame.columns:
        column = frame[name]
        if pd.api.types.infer_dtype(column, skipna=True) == "string":
            column = column.mask(column.isin(source.na_values))
            numbers = pd.to_numeric(column, errors="coerce")
            if (
                column.notna().any()
                and numbers.notna().sum() == column.notna().sum()
                and not column.str.match(LEADING_ZERO).any()
            ):
                column = numbers
            frame[name] = column
    return frame


#: a code whose leading zero a number would lose: 02134, 007
LEADING_ZERO = r"^\s*[-+]?0\d"


def _refuse_repeated(path: Path, columns: list[str]) -> None:
    repeated = repeated_header(path, columns)
    if repeated:
        raise DataSourceError(repeated)


def _without_blank_columns(frame: pd.DataFrame, path: Path) -> pd.DataFrame:
    """A column with no name and no value (a trailing comma on every line, as some exports
    write) is no data: dropped, as the batch reader ignores it, and said once."""
    blank = [
        name
        for name in frame.columns
        if str(name).startswith("Unnamed: ") and frame[name].isna().all()
    ]
    if blank:
        logger.warning(
            "%s: %d column(s) with no name and no value left out (a trailing comma on every line?)",
            path,
            len(blank),
        )
    return frame.drop(columns=blank)
