"""Train and test rows: a seeded random split, or a split in time."""

from __future__ import annotations

import pandas as pd
from sklearn.model_selection import train_test_split

from tabular_mlops.core.config import SplitConfig, Task


class SplitError(ValueError):
    """The split cannot be made as configured; the message names the key and column."""


def split_rows(
    dataset: pd.DataFrame, split: SplitConfig, target: str, task: Task = "classification"
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """(train, test). With ``split.time_column`` the test rows are the latest
    ``test_size`` of the period, and rows sharing the cut-off's time all go to the test
    split, so no test row is older than a training row; otherwise a seeded random
    split, stratified by class for a classifier."""
    if split.time_column is None:
        stratify = dataset[target] if task == "classification" else None
        train, test = train_test_split(
            dataset, test_size=split.test_size, random_state=split.random_state,
            stratify=stratify,
        )  # fmt: skip
        return train, test
    times = parse_times(dataset, split.time_column)
    cut = times.sort_values(kind="stable").iloc[int(len(times) * (1 - split.test_size))]
    later = (times >= cut).to_numpy()
    if later.all() or not later.any():
        raise SplitError(
            f"split.time_column: '{split.time_column}' holds one time ({cut}) for "
            f"{later.sum()} of {len(times)} rows: there is no earlier period to train on"
        )
    return dataset[~later], dataset[later]


def parse_times(frame: pd.DataFrame, column: str) -> pd.Series:
    """``column`` as timestamps; an error names the column and a value that is not one."""
    if column not in frame.columns:
        raise SplitError(
            f"split.time_column: column '{column}' is not in the data; columns are "
            f"{list(frame.columns)}"
        )
    values = frame[column]
    # instants, for the order (mixed offsets compare by UTC)
    times = pd.to_datetime(values, errors="coerce", format="ISO8601", utc=True)
    bad = times.isna()
    if bad.any():
        first = values[bad].iloc[0]
        raise SplitError(
            f"split.time_column: column '{column}' has {int(bad.sum())} value(s) that are "
            f"not dates or times (e.g. {first!r}); write them as ISO dates (2024-03-01)"
        )
    return times
