"""A rollout decision carried out to its end, also when the command that made it died.

A decision changes what no one transaction spans: the traffic (the serving target), the
ZenML stage, the MLflow registry, the version's metadata and the audit trail. It is
written down first, on the candidate's model version (the metadata
``rollout_decision_pending`` and the tag ``rollout-decision-pending``), and the tag goes
once all of it is done. A command killed in between (``kill -9``, a lost machine) leaves
the tag: the next command that decides, deploys or promotes the model carries the
decision out first (:func:`resume`), each part done once, whatever was done before.
"""

from __future__ import annotations

import contextlib
import json
import logging
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from tabular_mlops.adapters.alerts import notify
from tabular_mlops.adapters.audit import read_trail, record, who
from tabular_mlops.adapters.deployment.target import TrafficMovedError
from tabular_mlops.adapters.failpoints import failpoint
from tabular_mlops.adapters.interrupts import ctrl_c_held
from tabular_mlops.adapters.mlflow_models import drop_alias
from tabular_mlops.adapters.promotion_lock import promotion_lock

if TYPE_CHECKING:
    from zenml.client import Client
    from zenml.models import ModelVersionResponse

    from tabular_mlops.adapters.deployment.model_deployer import TabularModelDeployer
    from tabular_mlops.adapters.deployment.target import Rollout, RunningService, ServingTarget
    from tabular_mlops.core.rollout import RolloutDecision

logger = logging.getLogger(__name__)


class NothingLeftToDecideError(LookupError):
    """A decision by hand found only an earlier decision to carry out, and then nothing."""


#: the promotion lock's name for a model's rollout decisions: one at a time
DECISION_LOCK = "rollout-decision"
#: the candidate version's tag while its decision is not carried out to the end
PENDING_TAG = "rollout-decision-pending"
#: the candidate version's metadata key holding that decision
PENDING_KEY = "rollout_decision_pending"


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


def carry_out(
    deployer: TabularModelDeployer,
    target: ServingTarget,
    version: ModelVersionResponse,
    decision: dict[str, Any],
    stage: str,
) -> RunningService | None:
    """Write ``decision`` (a :func:`decision_record`, with ``asked``: the action and reason
    of a decision by hand) down on the candidate's ``version`` with who made it, then
    carry it out, moving it to ``stage``. The caller holds the model's decision lock;
    once the stage's lock is taken, a Ctrl-C waits for the end."""
    from zenml import get_step_context
    from zenml.client import Client

    client = Client()
    # the run names the entries: the command records them itself when they went elsewhere
    written = decision | {"stage": stage, "by": who(), "run": get_step_context().pipeline_run.name}
    name = version.model.name
    with promotion_lock(name, stage), ctrl_c_held():
        _log(version, {PENDING_KEY: written})
        client.update_model_version(version.model.id, version.id, add_tags=[PENDING_TAG])
        # where `deploy --status` reads it: after the tag (a note never names a decision
        # the store does not keep), dropped before it
        target.note_decision(name, written | {"candidate": str(version.number)})
        try:
            return _finish(client, deployer, target, version, written)
        except TrafficMovedError as exc:  # kept for the next command to finish, said so
            with contextlib.suppress(Exception):  # the store down too: it says "died"
                _log(version, {PENDING_KEY: written | {"failed": str(exc)}})
            raise
        except Exception:
            running = target.rollout(name)
            if running is not None and running.experiment == decision["experiment"]:
                # refused before the traffic moved (a deployment in progress, the cluster's
                # API): nothing changed, and nothing is left for a later command to do
                target.note_decision(name, None)
                client.update_model_version(version.model.id, version.id,
                                            remove_tags=[PENDING_TAG])  # fmt: skip
            raise


def cut_short(decision: dict[str, Any]) -> str:
    """Why a written-down decision was left for another command, in words."""
    if decision.get("failed"):
        return "its command failed after the traffic moved"
    return "its command died"


def pending(client: Client, model_name: str) -> list[ModelVersionResponse]:
    """The model's versions whose decision was written down and not carried out."""
    found = client.list_model_versions(model_name, tags=[PENDING_TAG], size=50)
    return [v for v in found.items if any(tag.name == PENDING_TAG for tag in v.tags)]


def resume_locked(
    deployer: TabularModelDeployer, target: ServingTarget, model_name: str
) -> list[str]:
    """Carry out every decision of the model a dead command left written down; the
    caller holds the decision lock. What was carried out, in words."""
    from zenml.client import Client

    client = Client()
    done = []
    for version in pending(client, model_name):
        decision = version.run_metadata.get(PENDING_KEY)
        if not isinstance(decision, dict):
            continue
        logger.warning(
            "the %s of rollout %s of '%s' version %s was cut short when %s: carrying it out "
            "now", decision["decision"], decision["experiment"], model_name, version.number,
            cut_short(decision),
        )  # fmt: skip
        try:
            with promotion_lock(model_name, decision["stage"]), ctrl_c_held():
                live = _finish(client, deployer, target, version, decision, late=True)
        except Exception as exc:  # the store or the registry down: this command goes on
            logger.error(
                "the %s of rollout %s could not be carried out now (%s); the next `rollout`, "
                "`deploy` or promoting `train` tries again", decision["decision"],
                decision["experiment"], exc,
            )  # fmt: skip
            continue
        said = (
            f"the {decision['decision']} of rollout {decision['experiment']} (version "
            f"{version.number} against version {decision['champion']}), cut short when "
            f"{cut_short(decision)}, was carried out"
            + (f": version {live.model_version} serves all traffic at {live.url}" if live else "")
        )
        notify(client.active_stack, f"model '{model_name}': {said}")
        done.append(said)
    return done


def resume(model_name: str, target: ServingTarget | None = None) -> list[str]:
    """:func:`resume_locked` under the model's decision lock, on the active stack's model
    deployer. When no decision waits (one query), nothing: no lock is taken and the
    stack is not built (its tracker alone imports MLflow); a note of one on ``target``
    (the store was replaced since) is dropped."""
    from zenml.client import Client

    from tabular_mlops.adapters.deployment.model_deployer import TabularModelDeployer
    from tabular_mlops.core.config import ServingConfig

    client = Client()
    if not pending(client, model_name):
        if target is not None:
            target.note_decision(model_name, None)
        return []
    deployer = client.active_stack.model_deployer
    if not isinstance(deployer, TabularModelDeployer):
        return []
    with promotion_lock(model_name, DECISION_LOCK):
        return resume_locked(deployer, deployer.serving_target(ServingConfig()), model_name)


def _finish(
    client: Client,
    deployer: TabularModelDeployer,
    target: ServingTarget,
    version: ModelVersionResponse,
    decision: dict[str, Any],
    late: bool = False,
) -> RunningService | None:
    """Each part of a written-down decision not yet done: the traffic first, since that
    is what another command (a deployment, a stop) can refuse; then the stage, the
    registry, the version's metadata and the audit trail (by whoever made the decision;
    ``late``: carried out by another command); the tag last."""
    from zenml.enums import ModelStages
    from zenml.model_registries.base_model_registry import (
        ModelRegistryModelMetadata,
        ModelVersionStage,
    )

    name, experiment = version.model.name, decision["experiment"]
    promote = decision["decision"] == "promote"
    running = target.rollout(name)
    if running is not None and running.experiment == experiment:
        live: RunningService | None = target.finish_rollout(name, promote=promote)
    else:  # moved before the command died
        live = target.live(name)
    if live is not None:
        deployer.record_live(live)
    failpoint("rollout-decision-moved")
    # every experiment the version entered, appended once: an earlier rollback stays
    earlier = version.run_metadata.get("rollout_history")
    history = [h for h in (earlier if isinstance(earlier, list) else [])
               if not (isinstance(h, dict) and h.get("experiment") == experiment)]  # fmt: skip
    history.append({k: v for k, v in decision.items() if k not in ("stage", "by", "run")})
    stage = ModelStages(decision["stage"])
    moved = (
        _production_moved(client, name, decision, str(version.number))
        if late and stage == ModelStages.PRODUCTION
        else None
    )
    if moved is None:
        client.get_model_version(name, version.id).set_stage(stage, force=True)
    else:  # carried out after production moved on: the newer version stays in production
        logger.warning("production moved to version %s since the decision; it stays", moved)
    registry = client.active_stack.model_registry
    registry_version = version.run_metadata.get("registry_version")
    if registry is not None and registry_version is not None and moved is None:
        # the decision on the registry version too, one tag per experiment
        tags = {
            f"rollout_{len(history)}": json.dumps(history[-1], sort_keys=True)[:5000],
            "rollout_decision": decision["decision"],
            "stage": stage.value,
        }
        registry.update_model_version(
            name=name,
            version=str(registry_version),
            metadata=ModelRegistryModelMetadata(**tags),
            stage=ModelVersionStage.PRODUCTION if promote else ModelVersionStage.ARCHIVED,
        )
        # models:/NAME@staging no longer loads the version, promoted or rolled back
        drop_alias(registry, name, "staging", str(registry_version))
    _log(
        version,
        {
            "rollout_experiment": experiment,
            "rollout_strategy": decision["strategy"],
            "rollout_decision": decision["decision"],
            "rollout_reasons": decision["reasons"],
            "rollout_figures": decision["figures"],
            "rollout_history": history,
        },
    )
    env = client.active_stack.name
    recorded = {(e.action, e.details.get("experiment")) for e in read_trail(env)[0]
                if e.model == name}  # fmt: skip
    by, said = decision.get("by"), {"recorded_late": cut_short(decision)} if late else {}
    if not late and decision.get("run"):
        said["run"] = decision["run"]
    if ("rollout-decision", experiment) not in recorded:
        record(env, "rollout-decision", name, str(version.number),
               "; ".join(decision["reasons"]), by=by, decision=decision["decision"],
               experiment=experiment, **said)  # fmt: skip
    asked = decision.get("asked")
    if isinstance(asked, dict) and (asked["action"], experiment) not in recorded:
        # who asked and why (a decision by hand): once it was carried out
        record(env, asked["action"], name, str(version.number), asked["reason"], by=by,
               experiment=experiment, **said)  # fmt: skip
    target.note_decision(name, None)
    client.update_model_version(version.model.id, version.id, remove_tags=[PENDING_TAG])
    return live


def _production_moved(
    client: Client, name: str, decision: dict[str, Any], candidate: str
) -> str | None:
    """The production version when it is neither the decision's champion nor its candidate
    (another command promoted one since the decision was written down), else None."""
    from zenml.enums import ModelStages

    try:
        now = str(client.get_model_version(name, ModelStages.PRODUCTION).number)
    except KeyError:
        return None
    return None if now in (str(decision["champion"]), candidate) else now


def _log(version: ModelVersionResponse, metadata: dict[str, Any]) -> None:
    from zenml import log_metadata

    log_metadata(metadata=metadata, model_version_id=version.id)
