"""Functions the fitted model calls at prediction time.

Kept free of project imports: every place that unpickles a model (MLflow,
the BentoML service, batch scoring) must be able to import this module alone.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd


def missing_as_nan(values: Any) -> np.ndarray:
    """None and NaN both mean "missing"; scikit-learn's imputers only see NaN, and would
    otherwise learn None (what Parquet files and JSON nulls give) as a category."""
    array = np.asarray(values, dtype=object)
    return np.where(pd.isna(array), np.nan, array)
