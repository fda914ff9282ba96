from __future__ import annotations

import logging
from typing import Annotated

from zenml import get_step_context, log_metadata, step
from zenml.client import Client
from zenml.enums import ModelStages
from zenml.model_registries.base_model_registry import ModelVersionStage

from tabular_mlops.adapters.champion import Champion
from tabular_mlops.core.config import PromotionConfig
from tabular_mlops.core.gate import PromotionDecision, PromotionOutcome

REGISTRY_STAGES = {
    "staging": ModelVersionStage.STAGING,
    "production": ModelVersionStage.PRODUCTION,
}

logger = logging.getLogger(__name__)


# Never cached: it changes which model is in production.
@step(enable_cache=False)
def promote_model(
    decision: PromotionDecision,
    champion: Champion,
    registry_version: str,
    promotion: PromotionConfig,
) -> Annotated[PromotionOutcome, "promotion"]:
    """Move the candidate to the configured stage if, and only if, the gate approved it.

    A candidate whose model artifact *is* the champion's (a fully cached rerun
    on unchanged data) is not promoted again: production stays as it is.
    """
    context = get_step_context()
    candidate_artifact = context.model.get_artifact("model")
    version = str(context.model.number)
    reason = ""
    if not decision.approved:
        reason = "; ".join(decision.reasons)
    elif candidate_artifact is not None and candidate_artifact.id == champion.model_artifact_id:
        reason = f"identical to {promotion.stage} version {champion.version}"
    else:
        context.model.set_stage(ModelStages(promotion.stage), force=True)
        registry = Client().active_stack.model_registry
        if registry is not None:
            registry.update_model_version(
                name=context.model.name,
                version=registry_version,
                stage=REGISTRY_STAGES[promotion.stage],
            )
    outcome = PromotionOutcome(
        promoted=not reason, stage=promotion.stage, model_version=version, reason=reason
    )
    log_metadata(metadata={"promotion": str(outcome)}, infer_model=True)
    logger.info("model version %s: %s", version, outcome)
    return outcome
