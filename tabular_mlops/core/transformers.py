"""Functions the fitted model calls at prediction time.

Kept free of project imports: every place that unpickles a model (MLflow,
the BentoML service, batch scoring) must be able to import this module alone.
"""

from __future__ import annotations

from datetime import date
from typing import Any

import numpy as np
import pandas as pd


def missing_as_nan(values: Any) -> np.ndarray:
    """None and NaN both mean "missing"; scikit-learn's imputers only see NaN, and would
    otherwise learn None (what Parquet files and JSON nulls give) as a category."""
    array = np.asarray(values, dtype=object)
    return np.where(pd.isna(array), np.nan, array)


#: what a date column becomes inside the model: its day of the week (Monday = 0) and its
#: month (1-12), each then one-hot encoded; never the raw text, which a model would learn
#: day by day as a category and know nothing of tomorrow
DATE_PARTS = ("day_of_week", "month")


#: what a date is, read the same way by every reader: its first ten characters, written
#: YYYY-MM-DD (a time and an offset after them do not move the day: the date as written)
DATE_FORMAT = "%Y-%m-%d"
#: the days a date may be; one outside is read as missing (a typo such as 0224-01-05, and
#: the same answer from every reader: pandas' timestamps end in 1677 and 2262, Python's not)
FIRST_DAY, LAST_DAY = date(1900, 1, 1), date(2199, 12, 31)


def read_dates(values: pd.Series) -> pd.Series:
    """``values`` as dates by :data:`DATE_FORMAT` on their first ten characters; NaT where
    a value is missing or not one, or outside :data:`FIRST_DAY`-:data:`LAST_DAY`: the one
    reading of a date, in training and serving."""
    text = values.astype("string").str.slice(0, 10)
    when = pd.to_datetime(text, errors="coerce", format=DATE_FORMAT)
    return when.where(when.between(pd.Timestamp(FIRST_DAY), pd.Timestamp(LAST_DAY)))


def date_parts(values: Any) -> np.ndarray:
    """Each date column's day of the week and month, as text categories (a missing or
    unreadable date gives missing parts, which the imputer fills)."""
    frame = pd.DataFrame(values)
    parts = []
    for column in frame.columns:
        when = read_dates(frame[column])
        for part in (when.dt.weekday, when.dt.month):
            parts.append(np.where(part.isna(), np.nan, part.astype("Int64").astype(str)))
    return np.column_stack(parts).astype(object) if parts else np.empty((len(frame), 0))


def date_part_names(transformer: Any, names: Any) -> np.ndarray:
    """The output names of :func:`date_parts`: ``<column>_day_of_week``, ``<column>_month``."""
    return np.asarray([f"{name}_{part}" for name in names for part in DATE_PARTS], dtype=object)
