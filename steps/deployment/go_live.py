from __future__ import annotations

import logging
from typing import Annotated

from zenml import log_metadata, step
from zenml.client import Client

from tabular_mlops.adapters.deployment.packaging import prune_bentos
from tabular_mlops.adapters.deployment.select import target_for
from tabular_mlops.adapters.deployment.smoke import SmokeReport
from tabular_mlops.adapters.deployment.target import RunningService
from tabular_mlops.core.config import ServingConfig

logger = logging.getLogger(__name__)


@step(enable_cache=False)
def go_live(
    candidate: RunningService, smoke: SmokeReport, serving: ServingConfig
) -> Annotated[RunningService, "live_service"]:
    """Make the smoke-tested candidate the live service, stop the one it replaces, and
    prune bentos beyond the last ``serving.keep_bentos`` (never the served one)."""
    target = target_for(Client().active_stack, serving)
    previous = target.live(candidate.model_name)
    live = target.switch(candidate)
    if previous is not None and previous.instance != candidate.instance:
        target.stop(previous)
    pruned = prune_bentos(live.model_name, serving.keep_bentos, {live.bento_tag})
    if pruned:
        logger.info("pruned from BentoML's store: %s", ", ".join(pruned))
    log_metadata(
        metadata={
            "serving_url": live.url,
            "served_model_version": live.model_version,
            "bento_tag": live.bento_tag,
            "smoke_test_rows": smoke.rows,
        },
        infer_model=True,
    )
    logger.info("live: %s version %s at %s", live.model_name, live.model_version, live.url)
    return live
