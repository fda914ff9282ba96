from __future__ import annotations

from typing import Annotated

import pandas as pd
from zenml import get_step_context, step

from tabular_mlops.adapters.batch import check_columns, read_sample
from tabular_mlops.adapters.champion import load_staged_model
from tabular_mlops.core.config import BatchConfig


@step(enable_cache=False)
def read_batch_sample(batch: BatchConfig) -> Annotated[pd.DataFrame, "batch_sample"]:
    """The batch's schema gate: stop at once if it lacks the model's columns; else a
    bounded sample of scorable rows for the drift report."""
    if batch.input_path is None:
        raise ValueError("parameters.batch.input_path: no batch file given (or pass --input)")
    staged = load_staged_model(get_step_context().model)
    check_columns(batch.input_path, staged.spec, batch.explain)
    return read_sample(batch.input_path, staged.spec, batch.drift_sample_rows)
