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


@step(enable_cache=False)
def apply_rollout_decision(
    model_name: str, decision: RolloutDecision, serving: ServingConfig
) -> Annotated[str, "rollout_outcome"]:
    """Carry the decision out and record it, with its figures, on the candidate's model
    version. Promote: the candidate takes all traffic and becomes production (ZenML stage
    and MLflow registry); roll back: the champion takes all traffic back, production
    stays as it was and the candidate is archived; continue: nothing changes."""
    deployer = serving_deployer(Client().active_stack)
    target = deployer.serving_target(serving)
    rollout = target.rollout(model_name)
    if rollout is None:
        raise LookupError(f"no rollout of '{model_name}' is in progress")
    candidate = rollout.candidate.model_version
    client = Client()
    version = client.get_model_version(model_name, int(candidate))
    if decision.action == "continue":
        log_metadata(
            metadata={"rollout_last_look": decision_record(rollout, decision)},
            model_version_id=version.id,
        )
        return f"continue: {'; '.join(decision.reasons)}"
    # every experiment the version entered, appended: an earlier rollback stays on record
    earlier = version.run_metadata.get("rollout_history")
    history = [*(earlier if isinstance(earlier, list) else []), decision_record(rollout, decision)]
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
    promote = decision.action == "promote"
    record(client.active_stack.name, "rollout-decision", model_name, candidate,
           "; ".join(decision.reasons), decision=decision.action,
           experiment=rollout.experiment)  # fmt: skip
    stage = ModelStages.PRODUCTION if promote else ModelStages.ARCHIVED
    # a rolled-back candidate leaves staging, so no later deploy of staging serves it again
    # once the lock is taken (a Ctrl-C ends the wait for it), the stage, the registry, the
    # address and the records change together: a Ctrl-C waits for them
    with promotion_lock(model_name, stage.value), ctrl_c_held():
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
            if not promote:  # models:/NAME@staging no longer loads the rolled-back version
                drop_alias(registry, model_name, "staging", str(registry_version))
        live = target.finish_rollout(model_name, promote=promote)
        deployer.record_live(live)
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
