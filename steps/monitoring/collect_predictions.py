from __future__ import annotations

import logging
from datetime import UTC, datetime, timedelta
from typing import Annotated

import pandas as pd
from zenml import get_step_context, log_metadata, step
from zenml.client import Client

from tabular_mlops.adapters.alerts import notify
from tabular_mlops.adapters.champion import load_staged_model
from tabular_mlops.adapters.monitoring_data import collect
from tabular_mlops.core.config import MonitoringConfig

logger = logging.getLogger(__name__)


# Never cached: the logs grow between runs.
@step(enable_cache=False)
def collect_predictions(
    monitoring: MonitoringConfig,
) -> Annotated[pd.DataFrame, "monitored_predictions"]:
    """The window's live requests (from the serving log) and batch predictions."""
    model = get_step_context().model
    staged = load_staged_model(model)
    end = datetime.now(UTC)
    start = end - timedelta(hours=monitoring.window_hours)
    current = collect(monitoring, staged.features, start, end, model.name)
    unreadable = int(current.attrs.get("unreadable_lines", 0))
    if unreadable:
        logger.warning(
            "%s line(s) of the serving log under %s did not parse and were left out",
            unreadable,
            monitoring.inference_log_dir,
        )
    duplicates = int(current.attrs.get("duplicate_rows", 0))
    if duplicates:
        logger.info(
            "%s repeated prediction(s) of the same id, row and inputs left out (a stream's "
            "redeliveries, a client's retries): each counts once",
            duplicates,
        )
    dropped = int(current.attrs.get("dropped_rows", 0))
    if dropped:
        # what monitoring decides on is a sample short of these rows: someone must know
        notify(
            Client().active_stack,
            f"the serving log under {monitoring.inference_log_dir} lost {dropped} "
            "prediction(s) in the monitoring window (its disk was full or its volume "
            "gone): drift and performance are judged without them; free space there, "
            "the servers log again by themselves",
        )
    log_metadata(
        metadata={
            "rows": len(current),
            "dropped_log_rows": dropped,
            "duplicate_rows_left_out": duplicates,
            "far_outside_rows_left_out": int(current["far_outside"].astype(bool).sum()),
            "online_rows": int((current["origin"] == "online").sum()),
            "streamed_rows": int((current["origin"] == "stream").sum()),
            "unreadable_log_lines": unreadable,
        }
    )
    return current
