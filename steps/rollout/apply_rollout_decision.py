from __future__ import annotations

import json
import logging
from datetime import UTC, datetime
from typing import Annotated, Any

from zenml import log_metadata, step
from zenml.client import Client
from zenml.enums import ModelStages
from zenml.model_registries.base_model_registry import (
    ModelRegistryModelMetadata,
    ModelVersionStage,
)

from tabular_mlops.adapters.alerts import notify
from tabular_mlops.adapters.audit import record
from tabular_mlops.adapters.deployment.model_deployer import serving_deployer
from tabular_mlops.adapters.deployment.target import Rollout
from tabular_mlops.adapters.interrupts import ctrl_c_held
from tabular_mlops.adapters.mlflow_models import drop_alias
from tabular_mlops.adapters.promotion_lock import promotion_lock
from tabular_mlops.core.config import ServingConfig
from tabular_mlops.core.rollout import RolloutDecision

logger = logging.getLogger(__name__)
#: the promotion lock's name for a model's rollout decisions: one at a time
DECISION_LOCK = "rollout-decision"


@step(enable_cache=False)
def apply_rollout_decision(
    model_name: str, decision: RolloutDecision, serving: ServingConfig
) -> Annotated[str, "rollout_outcome"]:
    """Carry the decision out and record it, with its figures, on the candidate's model
    version. Promote: the candidate takes all traffic and becomes production (ZenML stage
    and MLflow registry); roll back: the champion takes all traffic back, production
    stays as it was and the candidate is archived; continue: nothing changes.

    One decision of a model at a time (its decision lock): a promote and an abort sent
    together are carried out one after the other, and the second finds no rollout left
    and changes nothing. The traffic moves first, since that is what another command
    (a deployment, a stop) can refuse; the stages, the registry, the version's metadata
    and the audit trail follow, so a refused decision records nothing."""
    deployer = serving_deployer(Client().active_stack)
    target = deployer.serving_target(serving)
    with promotion_lock(model_name, DECISION_LOCK):
        rollout = target.rollout(model_name)  # again, under the lock: one may have just ended
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
        # Once the lock is taken (a Ctrl-C ends the wait for it), the address, the
        # stage, the registry and the records change together: a Ctrl-C waits for them
        with promotion_lock(model_name, stage.value), ctrl_c_held():
            live = target.finish_rollout(model_name, promote=promote)
            deployer.record_live(live)
            # every experiment the version entered, appended: an earlier rollback stays
            earlier = version.run_metadata.get("rollout_history")
            history = [*(earlier if isinstance(earlier, list) else []),
                       decision_record(rollout, decision)]  # fmt: skip
            version.set_stage(stage, force=True)
            registry = client.active_stack.model_registry
            registry_version = version.run_metadata.get("registry_version")
            if registry is not None and registry_version is not None:
                # the decision on the registry version too, one tag per experiment
                tags = {
                    f"rollout_{len(history)}": json.dumps(history[-1], sort_keys=True)[:5000],
                    "rollout_decision": decision.action,
                    "stage": stage.value,
                }
                registry.update_model_version(
                    name=model_name,
                    version=str(registry_version),
                    metadata=ModelRegistryModelMetadata(**tags),
                    stage=ModelVersionStage.PRODUCTION if promote else ModelVersionStage.ARCHIVED,
                )
                # models:/NAME@staging no longer loads the version, promoted or rolled back
                drop_alias(registry, model_name, "staging", str(registry_version))
            log_metadata(
                metadata={
                    "rollout_experiment": rollout.experiment,
                    "rollout_strategy": rollout.plan.strategy,
                    "rollout_decision": decision.action,
                    "rollout_reasons": decision.reasons,
                    "rollout_figures": decision.figures,
                    "rollout_history": history,
                },
                model_version_id=version.id,
            )
            record(client.active_stack.name, "rollout-decision", model_name, candidate,
                   "; ".join(decision.reasons), decision=decision.action,
                   experiment=rollout.experiment)  # fmt: skip
    outcome = (
        f"{decision.action}: version {live.model_version} serves all traffic at {live.url} "
        f"({'; '.join(decision.reasons)})"
    )
    logger.info("rollout %s: %s", rollout.experiment, outcome)
    notify(client.active_stack, f"model '{model_name}' rollout of version {candidate}: {outcome}")
    return outcome


def decision_record(rollout: Rollout, decision: RolloutDecision) -> dict[str, Any]:
    """One experiment's decision with its figures, as the version's history keeps it."""
    return {
        "experiment": rollout.experiment,
        "strategy": rollout.plan.strategy,
        "champion": rollout.champion.model_version,
        "decision": decision.action,
        "reasons": decision.reasons,
        "figures": decision.figures,
        "sample_size_per_arm": rollout.plan.sample_size_per_arm,
        "decided_at": datetime.now(UTC).isoformat(timespec="seconds"),
    }
