from __future__ import annotations

import logging
from typing import Annotated

import pandas as pd
from zenml import log_metadata, step

from materializers.dataframe_materializer import ContentHashedDataFrameMaterializer
from tabular_mlops.adapters.sources import load_dataset
from tabular_mlops.core.config import DataSourceConfig

logger = logging.getLogger(__name__)


# Never cached: the file behind a path can change between runs. The output is
# content-hashed instead, so every step downstream is cached on the data itself.
@step(enable_cache=False, output_materializers=ContentHashedDataFrameMaterializer)
def ingest_data(source: DataSourceConfig) -> Annotated[pd.DataFrame, "raw_dataset"]:
    """Read the configured dataset: a scikit-learn dataset or the user's CSV/Parquet file.

    How it was read (the data contract: missing markers, columns that are not model
    inputs) is recorded on the model version; every reader of the model applies it."""
    frame = load_dataset(source)
    log_metadata(metadata={"data_contract": source.contract().model_dump()}, infer_model=True)
    log_metadata(
        metadata={"rows": len(frame), "columns": len(frame.columns), "source": source.source},
        artifact_name="raw_dataset",
        infer_artifact=True,
    )
    logger.info("read %d rows, %d columns from %s", len(frame), len(frame.columns), source.source)
    return frame
