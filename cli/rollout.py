"""``run.py rollout``: decide the online experiment a ``deploy --strategy`` started."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

import click

from cli.audit import reason_option, require_reason
from cli.common import (
    activate_stack,
    config_option,
    env_flag,
    env_option,
    finish_cut_short,
    load_pipeline_config,
    overrides_option,
    run_pipeline,
)
from tabular_mlops.core.config import DeploymentRunConfig, ServingConfig

if TYPE_CHECKING:
    from tabular_mlops.adapters.deployment.target import Rollout, ServingTarget
    from tabular_mlops.core.rollout import Evidence, RolloutDecision


@click.command()
@env_option
@config_option("deployment")
@overrides_option
@click.option("--status", is_flag=True, help="Show both arms' figures and what the rules say now.")
@click.option("--promote", is_flag=True, help="Promote the candidate now, whatever the evidence.")
@click.option("--abort", is_flag=True, help="Roll the candidate back now; production stays.")
@reason_option
def rollout(
    env: str,
    config_path: Path,
    overrides: tuple[str, ...],
    status: bool = False,
    promote: bool = False,
    abort: bool = False,
    reason: str | None = None,
) -> None:
    """Run the rollout pipeline on the experiment in progress: gather both arms' evidence
    (answers, errors, latency, agreement, feedback), decide by the rules in
    configs/deployment.yaml (parameters.serving.rollout) or as told, and carry it out:
    promote (all traffic, production stage) or roll back (the champion keeps it all)."""
    if promote and abort:
        raise click.UsageError("--promote and --abort exclude each other")
    if promote or abort:
        reason = require_reason(reason, "rollout --promote" if promote else "rollout --abort")
    config = load_pipeline_config(DeploymentRunConfig, env, config_path, overrides)
    name, serving = config.model.name, config.parameters.serving
    from cli.common import serving_target

    target = serving_target(env, config, activate=False)
    current = target.rollout(name)
    # a decision whose command died half-way is carried out first: an abort killed after
    # its traffic moved back leaves the experiment's record, which it ends
    carried = [] if status else finish_cut_short(env, name, target)
    for done in carried:
        click.echo(f"Carried out: {done}.")
    if carried:
        current = target.rollout(name)
    if current is None:
        if status:
            for waiting in _cut_short(env, name):
                click.echo(waiting)
        nothing = f"No rollout of '{name}' is in progress (start one: deploy --strategy ...)"
        if promote or abort:  # what was asked was not done: not exit 0
            undo = (
                f"; to serve an earlier version N again: python run.py deploy{env_flag(env)} "
                f"--set model.name={name} --version N --reason '...'"
                if carried and abort
                else ""
            )
            raise click.ClickException(
                f"{nothing}; --{'promote' if promote else 'abort'} changed nothing{undo}"
            )
        click.echo(f"{nothing}.")
        return
    if status:
        from tabular_mlops.adapters.deployment.local import LocalProcessTarget

        # the store says what waits, exactly (a cluster's target keeps no note to look at)
        if target.noted_decision(name) is not None or not isinstance(target, LocalProcessTarget):
            for waiting in _cut_short(env, name):
                click.echo(waiting)
        view, evidence, decision = rules_now(target, current, serving)
        share = view.get("candidate_share")
        click.echo(
            f"Rollout {current.experiment} ({current.plan.strategy}) at {current.champion.url}: "
            f"champion version {current.champion.model_version}, candidate version "
            f"{current.candidate.model_version}"
            + (f", candidate share {share:.0%}" if isinstance(share, float) else "")
            + f"; router: {view.get('state', 'not answering')} {view.get('reason', '')}".rstrip()
        )
        for role, arm in (("champion", evidence.champion), ("candidate", evidence.candidate)):
            latency = (
                f"p50 {arm.p50_ms:.1f} / p99 {arm.p99_ms:.1f} ms" if arm.p99_ms else "no latency"
            )
            if arm.scoring_cpu_p99_ms is not None:
                latency += f" (scoring CPU p99 {arm.scoring_cpu_p99_ms:.2f} ms)"
            click.echo(
                f"  {role:<9} v{arm.version}: {arm.requests} requests, {arm.errors} errors, "
                f"{latency}, {arm.correct}/{arm.labelled} labelled rows right, "
                f"{arm.rewarded} rewards (sum {arm.reward_sum:.1f})"
            )
        if evidence.compared:
            click.echo(f"  shadow: {evidence.agreed} of {evidence.compared} answers agree")
        click.echo(f"The rules say now: {decision.action} ({'; '.join(decision.reasons)})")
        return
    activate_stack(env)
    from pipelines.rollout import rollout_pipeline

    by_hand = "promote" if promote else "rollback" if abort else None
    # the decision, and one by hand with who asked and why, is recorded once carried out:
    # one refused, or lost to another, records nothing
    run = run_pipeline("rollout", rollout_pipeline, model_name=name, serving=serving,
                       by_hand=by_hand, reason=reason)  # fmt: skip
    if run is not None:
        outcome = run.steps["apply_rollout_decision"].outputs["rollout_outcome"][0].load()
        _record_unless_recorded(env, run, current, reason, by_hand)
        click.echo(f"Rollout {current.experiment}: {outcome}")


def _record_unless_recorded(
    env: str, run: Any, current: Rollout, reason: str | None, by_hand: str | None
) -> None:
    """The decision's entries (and who asked, by hand) in this command's trail when its
    step recorded them elsewhere (a pod on the cluster)."""
    from tabular_mlops.adapters.audit import read_trail, record
    from tabular_mlops.core.audit import asked_action, recorded_for_run

    if recorded_for_run(read_trail(env)[0], run.name):  # as on dev: the step ran here
        return
    decision = run.steps["decide_rollout"].outputs["rollout_decision"][0].load()
    if decision.action == "continue":
        return
    name, version = current.champion.model_name, current.candidate.model_version
    record(env, "rollout-decision", name, version, "; ".join(decision.reasons),
           decision=decision.action, experiment=current.experiment, run=run.name)  # fmt: skip
    if by_hand:
        record(env, asked_action(by_hand), name, version, reason,
               experiment=current.experiment, run=run.name)  # fmt: skip


def _cut_short(env: str, model_name: str) -> list[str]:
    """The model's decisions whose commands died half-way, waiting to be carried out."""
    from zenml.client import Client

    from tabular_mlops.adapters.rollout_decisions import PENDING_KEY, pending

    activate_stack(env)
    said = []
    for version in pending(Client(), model_name):
        decision = version.run_metadata.get(PENDING_KEY)
        if isinstance(decision, dict):
            said.append(
                f"The {decision['decision']} of rollout {decision['experiment']} (version "
                f"{version.number}) is not carried out to its end (its command died, or is "
                "still at it): `python run.py "
                f"rollout{env_flag(env)} --set model.name={model_name}` (or a deploy) "
                "carries it out."
            )
    return said


def rules_now(
    target: ServingTarget, current: Rollout, serving: ServingConfig
) -> tuple[dict[str, Any], Evidence, RolloutDecision]:
    """What the router reports, both arms' evidence, and what the plan's rules decide now."""
    from tabular_mlops.adapters.rollout_evidence import gather
    from tabular_mlops.core.rollout import decide

    name = current.champion.model_name
    view = target.router_view(name) or {}
    evidence = gather(current, target.evidence_dir(name), target.inference_log_dir, view or None)
    return view, evidence, decide(evidence, evidence.plan or serving.rollout)
