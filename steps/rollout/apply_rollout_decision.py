from __future__ import annotations

import logging
from typing import Annotated, Literal

from zenml import log_metadata, step
from zenml.client import Client
from zenml.enums import ModelStages

from tabular_mlops.adapters.alerts import notify
from tabular_mlops.adapters.deployment.model_deployer import serving_deployer
from tabular_mlops.adapters.promotion_lock import promotion_lock
from tabular_mlops.adapters.rollout_decisions import (
    DECISION_LOCK,
    NothingLeftToDecideError,
    carry_out,
    decision_record,
    resume_locked,
)
from tabular_mlops.core.audit import asked_action
from tabular_mlops.core.config import ServingConfig
from tabular_mlops.core.rollout import RolloutDecision

logger = logging.getLogger(__name__)


@step(enable_cache=False)
def apply_rollout_decision(
    model_name: str,
    decision: RolloutDecision,
    serving: ServingConfig,
    by_hand: Literal["promote", "rollback"] | None = None,
    reason: str | None = None,
) -> Annotated[str, "rollout_outcome"]:
    """Carry the decision out and record it, with its figures, on the candidate's model
    version. Promote: the candidate takes all traffic and becomes production (ZenML stage
    and MLflow registry); roll back: the champion takes all traffic back, production
    stays as it was and the candidate is archived; continue: nothing changes.

    One decision of a model at a time (its decision lock): a promote and an abort sent
    together are carried out one after the other, and the second finds no rollout left
    and changes nothing. A decision is written down before the traffic moves
    (``adapters/rollout_decisions.py``): one whose command died half-way is carried out
    first, by this one or by the next command that deploys or promotes the model. A
    decision ``by_hand`` is recorded with who asked and the ``reason`` given."""
    deployer = serving_deployer(Client().active_stack)
    target = deployer.serving_target(serving)
    with promotion_lock(model_name, DECISION_LOCK):
        resumed = resume_locked(deployer, target, model_name)
        rollout = target.rollout(model_name)  # again, under the lock: one may have just ended
        if rollout is None and resumed and by_hand is None:
            return "; ".join(resumed)
        if rollout is None and resumed:  # what was asked was not done: said, not exit 0
            raise NothingLeftToDecideError(
                f"{'; '.join(resumed)}; then no rollout of '{model_name}' was left, so this "
                f"{by_hand} changed nothing"
            )
        if rollout is None:
            raise LookupError(
                f"no rollout of '{model_name}' is in progress (another decision may have "
                "ended it a moment ago: `rollout --status` and `deploy --status` say what "
                "serves); this decision changed nothing"
            )
        candidate = rollout.candidate.model_version
        client = Client()
        version = client.get_model_version(model_name, int(candidate))
        if decision.action == "continue":
            log_metadata(
                metadata={"rollout_last_look": decision_record(rollout, decision)},
                model_version_id=version.id,
            )
            return f"continue: {'; '.join(decision.reasons)}"
        promote = decision.action == "promote"
        # a rolled-back candidate leaves staging, so no later deploy of staging serves it
        # again; the production version itself (a canary of it beside a version a rollback
        # serves) stays in production: an abort never leaves the model without one.
        at = getattr(version.stage, "value", version.stage)
        kept = not promote and at == ModelStages.PRODUCTION.value
        stage = ModelStages.PRODUCTION if promote or kept else ModelStages.ARCHIVED
        asked = {"asked": {"action": asked_action(by_hand), "reason": reason}} if by_hand else {}
        live = carry_out(deployer, target, version, decision_record(rollout, decision) | asked,
                         stage.value)  # fmt: skip
    served = (
        f"version {live.model_version} serves all traffic at {live.url}"
        if live
        else "no version is served"
    )
    outcome = f"{decision.action}: {served} ({'; '.join(decision.reasons)})"
    logger.info("rollout %s: %s", rollout.experiment, outcome)
    notify(client.active_stack, f"model '{model_name}' rollout of version {candidate}: {outcome}")
    return outcome
