from __future__ import annotations

from typing import Annotated

from zenml import get_step_context, log_metadata, step
from zenml.client import Client
from zenml.metadata.metadata_types import MetadataType
from zenml.types import HTMLString

from tabular_mlops.core.signals import MonitoringDecision
from tabular_mlops.core.trend import TrendPoint, render_trend

#: monitoring runs the trend covers, this one included
TREND_RUNS = 20


@step(enable_cache=False)  # it reads the runs before it
def chart_monitoring_trend(
    decision: MonitoringDecision,
) -> Annotated[HTMLString, "monitoring_trend"]:
    """Record this run's decision figures as *run* metadata (the run's Metadata tab shows
    them) and chart them with those of the monitoring runs before it: drift share, and
    accuracy (a regressor: MAE) where labels came, decision by decision."""
    context = get_step_context()
    run = context.pipeline_run
    figures: dict[str, MetadataType] = {
        "action": decision.action,
        "drift_share": decision.drift_share,
        "drifted_columns": len(decision.drifted_columns),
        "prediction_drift": decision.prediction_drift,
        "rows": decision.rows,
        # with labels: a classifier's accuracy, a regressor's MAE
        **{
            name: value
            for name, value in (decision.performance or {}).items()
            if name in ("accuracy", "mae")
        },
    }
    log_metadata(metadata=figures, run_id_name_or_prefix=run.id)
    earlier = Client().list_pipeline_runs(
        pipeline_id=run.pipeline.id if run.pipeline else None,
        sort_by="desc:created",
        size=TREND_RUNS,
        hydrate=True,
    )
    points = [
        TrendPoint.model_validate({**past.run_metadata, "run": past.name, "created": past.created})
        for past in earlier.items
        if past.id != run.id and "action" in past.run_metadata
    ][: TREND_RUNS - 1]
    points.append(TrendPoint.model_validate({**figures, "run": run.name, "created": run.created}))
    return HTMLString(render_trend(points))
