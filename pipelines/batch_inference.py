from __future__ import annotations

from pipelines import lifecycle_pipeline
from steps.inference.read_batch_sample import read_batch_sample
from steps.inference.report_batch_drift import report_batch_drift
from steps.inference.score_batch import score_batch
from tabular_mlops.core.config import BatchConfig


@lifecycle_pipeline()
def batch_inference_pipeline(batch: BatchConfig) -> None:
    """schema gate + sample -> drift report -> score in chunks, file to file."""
    sample = read_batch_sample(batch)
    drift, _, _ = report_batch_drift(sample)
    score_batch(batch, drift)
