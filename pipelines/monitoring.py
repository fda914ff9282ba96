from __future__ import annotations

from zenml import pipeline

from configs.schema import MonitoringConfig
from steps.monitoring.collect_predictions import collect_predictions
from steps.monitoring.detect_drift import detect_drift


@pipeline
def monitoring_pipeline(monitoring: MonitoringConfig) -> None:
    """serving log + batch predictions of the window -> drift, performance -> decision."""
    current = collect_predictions(monitoring)
    detect_drift(current, monitoring)
