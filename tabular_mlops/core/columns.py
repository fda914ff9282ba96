"""The one distinction between columns that preprocessing, validation and serving share."""

from __future__ import annotations

from typing import Literal

import pandas as pd
from pandas.api.types import is_numeric_dtype

ColumnKind = Literal["numeric", "categorical"]


def column_kind(series: pd.Series) -> ColumnKind:
    """``numeric`` or ``categorical``: booleans are categories, not numbers."""
    return "numeric" if is_numeric_dtype(series) and series.dtype != bool else "categorical"
