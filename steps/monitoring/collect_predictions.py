from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Annotated

import pandas as pd
from zenml import get_step_context, log_metadata, step

from tabular_mlops.adapters.champion import load_staged_model
from tabular_mlops.adapters.monitoring_data import collect
from tabular_mlops.core.config import MonitoringConfig


# Never cached: the logs grow between runs.
@step(enable_cache=False)
def collect_predictions(
    monitoring: MonitoringConfig,
) -> Annotated[pd.DataFrame, "monitored_predictions"]:
    """The window's live requests (from the serving log) and batch predictions."""
    staged = load_staged_model(get_step_context().model)
    end = datetime.now(UTC)
    current = collect(
        monitoring, staged.features, end - timedelta(hours=monitoring.window_hours), end
    )
    log_metadata(
        metadata={"rows": len(current), "online_rows": int((current["origin"] == "online").sum())}
    )
    return current
