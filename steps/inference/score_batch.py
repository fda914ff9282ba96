from __future__ import annotations

import logging
import uuid
from datetime import UTC, datetime
from typing import Annotated

from zenml import get_step_context, log_metadata, step

from tabular_mlops.adapters.batch import BatchResult, score_file
from tabular_mlops.adapters.champion import load_staged_model
from tabular_mlops.core.config import BatchConfig
from tabular_mlops.core.drift import DriftSummary

logger = logging.getLogger(__name__)


@step(enable_cache=False)
def score_batch(batch: BatchConfig, drift: DriftSummary) -> Annotated[BatchResult, "batch_result"]:
    """Score the whole file in chunks; predictions to Parquet, rejected rows aside.

    ``drift`` is taken so the report is made (and visible) before scoring starts.
    """
    if batch.input_path is None:  # read_batch_sample stops the run before this
        raise ValueError("parameters.batch.input_path: no batch file given (or pass --input)")
    staged = load_staged_model(get_step_context().model)
    now = datetime.now(UTC)
    result = score_file(
        batch.input_path,
        staged.model,
        staged.spec,
        batch.output_dir,
        f"{now:%Y%m%dT%H%M%S}-{uuid.uuid4().hex[:8]}",
        batch.chunk_rows,
        now,
        batch.monitoring_sample_rows,
        batch.explain,
    )
    log_metadata(
        metadata={**result.model_dump(exclude_none=True), "drift_share": drift.drift_share},
    )
    logger.info(
        "scored %d of %d rows in %.1f s; %d rejected",
        result.rows_scored,
        result.rows_read,
        result.seconds,
        result.rows_rejected,
    )
    return result
