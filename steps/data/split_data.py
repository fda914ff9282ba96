from __future__ import annotations

from typing import Annotated

import pandas as pd
from zenml import step

from materializers.dataframe_materializer import ContentHashedDataFrameMaterializer
from tabular_mlops.core.config import SplitConfig, as_task
from tabular_mlops.core.splits import split_rows


@step(output_materializers=ContentHashedDataFrameMaterializer)
def split_data(
    dataset: pd.DataFrame, split: SplitConfig, target: str, task: str = "classification"
) -> tuple[Annotated[pd.DataFrame, "train_set"], Annotated[pd.DataFrame, "test_set"]]:
    """Seeded split (stratified by class for a classifier), or the latest period as the
    test split; both halves are artifacts, so a model traces to its rows."""
    train_set, test_set = split_rows(dataset, split, target, as_task(task))
    return train_set, test_set  # a tuple ZenML sees in the source: two artifacts
