from __future__ import annotations

import logging
from typing import Annotated

import pandas as pd
from zenml import get_step_context, log_metadata, step
from zenml.client import Client
from zenml.enums import ModelStages
from zenml.model_registries.base_model_registry import ModelVersionStage

from tabular_mlops.adapters.alerts import notify
from tabular_mlops.adapters.audit import record
from tabular_mlops.adapters.champion import Champion, find_champion, load_artifact
from tabular_mlops.adapters.deployment.model_deployer import rollout_in_progress
from tabular_mlops.adapters.interrupts import ctrl_c_held
from tabular_mlops.adapters.promotion_lock import promotion_lock
from tabular_mlops.adapters.rollout_decisions import resume
from tabular_mlops.core.audit import promotion_details
from tabular_mlops.core.config import EvaluationConfig, PromotionConfig
from tabular_mlops.core.gate import PromotionDecision, PromotionOutcome, judge

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
    evaluation: EvaluationConfig,
    test_set: pd.DataFrame,
    target: str,
) -> Annotated[PromotionOutcome, "promotion"]:
    """Move the candidate to the configured stage if, and only if, the gate approved it
    against the version that is there when it moves: a compare-and-swap.

    Under the model's promotion lock, the version at the stage is read again. If
    another run promoted since this one was gated, the candidate is gated again,
    against that version on the same test rows, and promoted or refused on that.
    A candidate whose model artifact *is* the champion's (a fully cached rerun on
    unchanged data) is not promoted again: production stays as it is.
    """
    context = get_step_context()
    name = context.model.name
    candidate_artifact = context.model.get_artifact("model")
    version = str(context.model.number)
    first_gated_against = champion.version
    # a rollout decision whose command died half-way decides the champion: carried out first
    resume(name)
    # once the lock is taken (a Ctrl-C ends the wait for it), the stage, the registry and
    # the outcome on the version change together: a Ctrl-C waits for them (cut half-way, a
    # production version could be left with no promotion on record, refused as a rollback)
    with promotion_lock(name, promotion.stage), ctrl_c_held():
        current = find_champion(name, promotion.champion_stage)
        if decision.approved and current.model_version_id != champion.model_version_id:
            logger.info(
                "%s moved from version %s to %s since this run was gated: gating again",
                promotion.champion_stage,
                champion.version,
                current.version,
            )
            decision = regate(decision, current, test_set, target, promotion, evaluation)
            champion = current
        # a training run by a schedule is not refused by the command that registered it
        rollout = (
            rollout_in_progress(Client().active_stack, name)
            if promotion.stage == "production"
            else None
        )
        reason = ""
        if rollout is not None:
            reason = (
                f"rollout {rollout.experiment} of version {rollout.candidate.model_version} "
                f"against version {rollout.champion.model_version} is in progress, so "
                "production stays as it is; decide the rollout first (python run.py rollout, "
                "--promote or --abort), then train again"
            )
        elif not decision.approved:
            reason = "; ".join(decision.reasons)
        elif candidate_artifact is not None and candidate_artifact.id == champion.model_artifact_id:
            reason = f"identical to {promotion.champion_stage} version {champion.version}"
        else:
            context.model.set_stage(ModelStages(promotion.stage), force=True)
            registry = Client().active_stack.model_registry
            if registry is not None:
                registry.update_model_version(
                    name=name, version=registry_version, stage=REGISTRY_STAGES[promotion.stage]
                )
        outcome = PromotionOutcome(
            promoted=not reason,
            stage=promotion.stage,
            model_version=version,
            reason=reason,
            gated_against=champion.version,
        )
        log_metadata(
            metadata={
                "promotion": str(outcome),
                "gated_against": champion.version or "none",
                # differs from gated_against when another run promoted in between
                "first_gated_against": first_gated_against or "none",
            },
            infer_model=True,
        )
        if outcome.promoted:  # by the gates: the audit trail of the stack's environment
            record(Client().active_stack.name, "promote", name, version, **promotion_details(
                outcome, context.pipeline_run.name))  # fmt: skip
    logger.info("model version %s: %s", version, outcome)
    if not decision.approved or rollout is not None:
        notify(Client().active_stack, f"model '{name}' version {version} {outcome}")
    return outcome


def regate(
    decision: PromotionDecision,
    champion: Champion,
    test_set: pd.DataFrame,
    target: str,
    promotion: PromotionConfig,
    evaluation: EvaluationConfig,
) -> PromotionDecision:
    """The model gate again, against ``champion`` scored on the candidate's test rows."""
    champion_model = (
        load_artifact(champion.model_artifact_id) if champion.model_artifact_id else None
    )
    return judge(
        decision.candidate_metrics, decision.governance, champion_model, champion.version,
        test_set, target, promotion, evaluation, decision.task,
    )  # fmt: skip
