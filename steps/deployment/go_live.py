from __future__ import annotations

from typing import Annotated

from zenml import log_metadata, step

from configs.schema import ServingConfig
from steps.deployment.local_server import RunningService, read_live, record_live, stop
from steps.deployment.smoke import SmokeReport


@step(enable_cache=False)
def go_live(
    candidate: RunningService, smoke: SmokeReport, serving: ServingConfig
) -> Annotated[RunningService, "live_service"]:
    """Make the smoke-tested candidate the live service, then stop the one it replaces."""
    previous = read_live(serving.state_dir, candidate.model_name)
    record_live(serving.state_dir, candidate)
    if previous is not None and previous.pid != candidate.pid:
        stop(previous)
    log_metadata(
        metadata={
            "serving_url": candidate.url,
            "served_model_version": candidate.model_version,
            "bento_tag": candidate.bento_tag,
            "smoke_test_rows": smoke.rows,
        },
        infer_model=True,
    )
    return candidate
