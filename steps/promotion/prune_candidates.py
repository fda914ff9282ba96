from __future__ import annotations

import logging
from typing import Annotated

from zenml import get_step_context, step
from zenml.client import Client

from tabular_mlops.core.config import PromotionConfig
from tabular_mlops.core.gate import PromotionOutcome

logger = logging.getLogger(__name__)


@step(enable_cache=False)  # the versions change between runs
def prune_candidates(
    outcome: PromotionOutcome, promotion: PromotionConfig
) -> Annotated[list[str], "pruned_versions"]:
    """Delete the oldest model versions that were never promoted, keeping the newest
    ``promotion.keep_unpromoted_versions`` and this run's own; a version ever staged
    (production, staging, archived) is never touched.

    ``outcome`` is taken so that pruning runs after the promotion decision. The
    runs of pruned versions stay, with their gate decisions and reports, and so do
    their MLflow runs: the evidence of a rejected candidate remains findable."""
    context = get_step_context()
    client = Client()
    this_run = context.model.id
    never_staged = [
        version
        for version in client.list_model_versions(
            context.model.name, sort_by="desc:number", size=1000
        ).items
        if version.stage is None and version.id != this_run
    ]
    stale = never_staged[promotion.keep_unpromoted_versions :]
    registry = client.active_stack.model_registry
    pruned = []
    for version in stale:
        registry_version = version.run_metadata.get("registry_version")
        client.delete_model_version(version.id)
        if registry is not None and registry_version is not None:
            try:
                registry.delete_model_version(context.model.name, str(registry_version))
            except (KeyError, RuntimeError) as exc:  # already gone from MLflow
                logger.warning("registry version %s: %s", registry_version, exc)
        pruned.append(str(version.number))
    if pruned:
        logger.info("pruned never-promoted versions %s of %s", pruned, context.model.name)
    return pruned
