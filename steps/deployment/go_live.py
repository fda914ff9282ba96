from __future__ import annotations

import logging
from typing import Annotated

from zenml import get_step_context, log_metadata, step
from zenml.client import Client

from tabular_mlops.adapters.audit import read_trail, record
from tabular_mlops.adapters.champion import recorded_test_metrics
from tabular_mlops.adapters.deployment.model_deployer import serving_deployer
from tabular_mlops.adapters.deployment.packaging import prune_bentos
from tabular_mlops.adapters.deployment.smoke import SmokeReport
from tabular_mlops.adapters.deployment.target import BentoPackage, RunningService
from tabular_mlops.adapters.failpoints import failpoint
from tabular_mlops.adapters.interrupts import ctrl_c_held
from tabular_mlops.core.audit import ReleaseNote, last_served, release_entry
from tabular_mlops.core.config import ServingConfig
from tabular_mlops.core.rollout import error_spread, planned

logger = logging.getLogger(__name__)


@step(enable_cache=False)
def go_live(
    package: BentoPackage,
    candidate: RunningService,
    smoke: SmokeReport,
    serving: ServingConfig,
    note: ReleaseNote | None = None,
) -> Annotated[RunningService, "live_service"]:
    """Hand the model's address to the smoke-tested candidate.

    ``replace`` (or no live service yet): the candidate takes all traffic and the
    old version is stopped. Any other strategy starts an online experiment: the
    live version stays the champion, the candidate gets the share the plan gives
    it, and the rollout pipeline (``run.py rollout``) decides on the evidence.
    Bentos beyond ``serving.keep_bentos`` are pruned (never a served one). The live
    version is recorded as the model deployer's service in ZenML, and the release in the
    audit trail with the ``note`` of the command that asked, the moment it is done."""
    deployer = serving_deployer(Client().active_stack)
    target = deployer.serving_target(serving)
    previous = target.live(candidate.model_name)
    strategy = serving.rollout.strategy
    experiment = None
    plan = None
    try:
        if strategy != "replace" and previous is not None:
            # the experiment's sample is fixed now, on the champion's recorded accuracy (a
            # regressor's: the spread of its errors)
            recorded = recorded_test_metrics(previous.model_name, previous.model_version)
            plan = planned(serving.rollout, recorded.get("accuracy"), error_spread(recorded))
    except Exception:
        target.stop(candidate)
        raise
    with ctrl_c_held():  # the address and the records change together, or not at all
        try:
            if plan is None or previous is None:
                live = target.switch(candidate)
            else:
                _say_if_champion_is_not_production(previous)
                rollout = target.begin_rollout(previous, candidate, plan)
                live, experiment = previous, rollout.experiment
        except Exception:
            target.stop(candidate)  # the address was not handed over: nothing else changed
            raise
        # the moment it is done (stopping the old version drains it, seconds)
        record_release(live, candidate, previous, experiment and strategy, experiment,
                       note or ReleaseNote())  # fmt: skip
        if experiment is None and previous is not None and previous.instance != candidate.instance:
            target.stop(previous)
        deployer.record_live(live)  # `zenml model-deployer models list`, the model version's
    failpoint("deploy-switched")
    served = {live.bento_tag, candidate.bento_tag}
    try:  # a Ctrl-C waits for the deletes: one cut short leaves a directory BentoML refuses
        with ctrl_c_held():
            pruned = prune_bentos(live.model_name, serving.keep_bentos, served)
    except Exception as exc:  # the release is done: a store not pruned now is pruned next time
        logger.warning("BentoML's store was not pruned (%s); the next deploy prunes it", exc)
        pruned = []
    if pruned:
        logger.info("pruned from BentoML's store: %s", ", ".join(pruned))
    log_metadata(
        metadata={
            "serving_url": live.url,
            "served_model_version": live.model_version,
            "bento_tag": candidate.bento_tag,
            "smoke_test_rows": smoke.rows,
            "rollout_strategy": strategy if experiment else "replace",
            "rollout_experiment": experiment or "none",
        },
        infer_model=True,
    )
    if experiment:
        logger.info(
            "rollout %s: version %s beside version %s at %s (%s)",
            experiment, candidate.model_version, live.model_version, live.url, strategy,
        )  # fmt: skip
    else:
        logger.info("live: %s version %s at %s", live.model_name, live.model_version, live.url)
    return live


def _say_if_champion_is_not_production(champion: RunningService) -> None:
    """An experiment's champion is the version that serves: said when production is
    another (promoted since this deploy began, or a rollback serves)."""
    from zenml.enums import ModelStages

    try:
        production = str(
            Client().get_model_version(champion.model_name, ModelStages.PRODUCTION).number
        )
    except KeyError:
        return
    if production != champion.model_version:
        logger.warning(
            "version %s serves and is the experiment's champion, but version %s is in "
            "production (promoted since this deploy began, or a rollback serves): a promote "
            "replaces it in production, an abort leaves it there, for the next deploy",
            champion.model_version, production,
        )  # fmt: skip


def record_release(
    live: RunningService,
    candidate: RunningService,
    previous: RunningService | None,
    strategy: str | None,
    experiment: str | None,
    note: ReleaseNote,
) -> None:
    """The release's audit entry, naming this run (the command records it in its own
    trail when the step ran elsewhere: a pod)."""
    env, name, version = Client().active_stack.name, candidate.model_name, candidate.model_version
    action, details = release_entry(
        version, previous.model_version if previous else None, experiment, strategy, note,
        last_served(read_trail(env)[0], name) if note.by_hand and previous is None else None,
    )  # fmt: skip
    record(env, action, name, version, note.reason, url=live.url,
           run=get_step_context().pipeline_run.name, **details)  # fmt: skip
