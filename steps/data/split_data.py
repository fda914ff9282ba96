from __future__ import annotations

from typing import Annotated

import pandas as pd
from sklearn.model_selection import train_test_split
from zenml import step

from materializers.dataframe_materializer import ContentHashedDataFrameMaterializer
from tabular_mlops.core.config import SplitConfig


@step(output_materializers=ContentHashedDataFrameMaterializer)
def split_data(
    dataset: pd.DataFrame, split: SplitConfig, target: str
) -> tuple[Annotated[pd.DataFrame, "train_set"], Annotated[pd.DataFrame, "test_set"]]:
    """Stratified, seeded split; both halves are artifacts, so a model traces to its rows."""
    train_set, test_set = train_test_split(
        dataset,
        test_size=split.test_size,
        random_state=split.random_state,
        stratify=dataset[target],
    )
    return train_set, test_set
