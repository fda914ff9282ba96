"""``run.py monitor`` and ``simulate``: the continuous-training loop, and a demonstration of it."""

from __future__ import annotations

import time
from datetime import UTC, datetime
from functools import partial
from pathlib import Path

import click

from cli.common import (
    activate_stack,
    config_option,
    env_option,
    finished_steps,
    load_pipeline_config,
    overrides_option,
    refuse_during_rollout,
    retraining_plan,
    run_pipeline,
    schedule_option,
    staged_pipeline,
    staged_version,
    step_output,
    zenml_schedule,
)
from cli.train import record_promotion, record_promotions
from tabular_mlops.adapters.paths import CONFIG_DIR, LOCAL_DIR
from tabular_mlops.adapters.retention import prune_old_logs
from tabular_mlops.core.config import (
    DeploymentRunConfig,
    MonitoringRunConfig,
    TrainingRunConfig,
)


@click.command()
@env_option
@config_option("monitoring")
@overrides_option
@click.option("--no-retrain", is_flag=True, help="Report the decision; do not act on it.")
@config_option("training", "--training-config", "The training config a retraining runs.")
@config_option("deployment", "--deployment-config", "The deployment config a redeployment runs.")
@schedule_option("the continuous-training loop")
def monitor(
    env: str,
    config_path: Path,
    overrides: tuple[str, ...],
    no_retrain: bool = False,
    training_config: Path = CONFIG_DIR / "training.yaml",
    deployment_config: Path = CONFIG_DIR / "deployment.yaml",
    schedule: str | None = None,
) -> None:
    """Run the continuous-training loop once: compare the window's served and batch
    predictions with the production model's training data (Evidently), decide (no action,
    alert, or retrain), and on `retrain` train, gate, promote and redeploy."""
    config = load_pipeline_config(MonitoringRunConfig, env, config_path, overrides)
    plan = retraining_plan(env, config, not no_retrain, training_config, deployment_config)
    if plan.enabled and schedule is None:
        refuse_during_rollout(env, config.model.name, "a retraining it decides on would "
                              "promote and deploy a version beside it (`monitor "
                              "--no-retrain` only looks)", deployment_config)  # fmt: skip
    activate_stack(env)
    from zenml.client import Client

    from pipelines.continuous_training import continuous_training_pipeline

    cron = zenml_schedule(schedule, env, "monitor")
    if cron is None:  # a schedule may be registered before there is a model
        staged_version(config)
    pipeline = staged_pipeline(continuous_training_pipeline, config).with_options(schedule=cron)
    run = run_pipeline(
        "continuous training", pipeline, after_failure=partial(record_promotions, env),
        monitoring=config.parameters.monitoring, plan=plan,
    )  # fmt: skip
    if run is None or schedule:
        return
    prune_old_logs([config.parameters.monitoring.inference_log_dir], plan.serving.retention_days)
    steps = finished_steps(run)
    decision = step_output(steps, "detect_drift", "monitoring_decision")
    collected = steps["collect_predictions"].run_metadata
    duplicates = int(str(collected.get("duplicate_rows_left_out", 0)))
    far = int(str(collected.get("far_outside_rows_left_out", 0)))
    left_out = f"; {duplicates} repeated predictions left out" if duplicates else ""
    if far:
        left_out += f"; {far} rows far outside the training range left out"
    click.echo(f"\nMonitoring decision: {decision.action.upper()} ({decision.rows} rows{left_out})")
    for reason in decision.reasons:
        click.echo(f"  - {reason}")
    if decision.drifted_columns:
        click.echo(f"  drifted: {', '.join(decision.drifted_columns)}")
    client = Client()
    for child in client.list_pipeline_runs(parent_run_id=run.id, sort_by="asc:created").items:
        if child.pipeline is None:
            continue
        if child.pipeline.name == "retraining_pipeline":
            retrained = finished_steps(child)
            record_promotion(env, child, retrained)
            outcome = step_output(retrained, "promote_model", "promotion")
            click.echo(f"Retrained: version {outcome.model_version} {outcome}")
        elif child.pipeline.name == "redeployment_pipeline":
            steps = finished_steps(child)
            live = step_output(steps, "go_live", "live_service")
            candidate = step_output(steps, "start_candidate", "candidate_service")
            if candidate.model_version == live.model_version:
                click.echo(f"Redeployed: version {live.model_version} at {live.url}")
            else:
                click.echo(
                    f"Version {candidate.model_version} entered a {plan.serving.rollout.strategy} "
                    f"experiment beside version {live.model_version} at {live.url}; "
                    "`python run.py rollout` decides it on the evidence (--status shows it)"
                )
    production = production_version(config.model.name)
    click.echo(f"Production version of '{config.model.name}': {production or 'none'}")


def staged_version_or_none(model_name: str, stage: str) -> str | None:
    from zenml.client import Client
    from zenml.enums import ModelStages

    try:
        return str(Client().get_model_version(model_name, ModelStages(stage)).name)
    except KeyError:
        return None


#: rounds of users the rollout scenario sends at most before the rules decide
MAX_ROLLOUT_ROUNDS = 5


def simulate_rollout(ctx: click.Context, env: str, rows: int) -> None:
    """A/B test of a deliberately weakened candidate against the live model: users send
    requests, labels come back, the rollout pipeline rolls the candidate back."""
    from cli.common import serving_target
    from cli.deploy import deploy
    from cli.rollout import rollout, rules_now
    from cli.train import train
    from tabular_mlops.adapters.simulation import drive_traffic

    deployment = load_pipeline_config(DeploymentRunConfig, env, CONFIG_DIR / "deployment.yaml")
    name = deployment.model.name
    refuse_during_rollout(env, name, "this scenario starts one of its own")
    before = serving_target(env, deployment, activate=False)
    live = before.live(name)
    if live is None:
        activate_stack(env)
        production = production_version(name)
        if production is None:
            click.echo("=== no model in production: training and deploying one first")
            ctx.invoke(train, env=env)
        else:  # the model in production is the champion: it is served, not trained again
            click.echo(f"=== no live service: deploying production version {production} first")
        ctx.invoke(deploy, env=env)
    # the candidate learns, and the users come from, the world production lives in (after
    # `simulate`, a drifted one): the production version's own labelled rows
    activate_stack(env)
    import pandas as pd
    from zenml import Model
    from zenml.enums import ModelStages

    from tabular_mlops.adapters.champion import load_staged_model

    staged = load_staged_model(Model(name=name, version=ModelStages.PRODUCTION))
    world = pd.concat([staged.train_set, staged.test_set], ignore_index=True)
    world_path = LOCAL_DIR / "simulation" / datetime.now(UTC).strftime("rollout-%Y%m%dT%H%M%S")
    world_path.mkdir(parents=True, exist_ok=True)
    world_path = world_path / "world.parquet"
    world.to_parquet(world_path)
    target_column = staged.spec.target
    click.echo(
        f"\n=== a candidate, weakened on purpose (C=0.0005), trained on production version "
        f"{staged.spec.model_version}'s {len(world)} labelled rows, gated offline into staging"
    )
    ctx.invoke(
        train,
        env=env,
        overrides=(
            "parameters.data.source=file",
            f"parameters.data.path={world_path}",
            f"parameters.data.target={target_column}",
            "parameters.training.params.C=0.0005",
            "parameters.promotion.stage=staging",
            "parameters.promotion.max_regression=1.0",
            "enable_cache=false",
        ),
    )
    click.echo("\n=== A/B test: half the users get the candidate")
    ctx.invoke(deploy, env=env, overrides=("stage=staging",), strategy="ab")
    target = serving_target(env, deployment, activate=False)
    live = target.live(name)
    if live is None:
        raise click.ClickException(f"no service of '{name}' is live after the deployment")
    url = live.url
    # users send the model's inputs: assessment-only columns stay behind
    frame = world[[*staged.features, target_column]]
    experiment = target.rollout(name)
    # users keep coming until the A/B sample the plan sized is complete (a few rounds)
    for round_number in range(1, MAX_ROLLOUT_ROUNDS + 1):
        users = frame.sample(rows, replace=True, random_state=round_number)
        report = drive_traffic(
            url, users, target_column, token=target.tokens(name).current["feedback"]
        )
        answered = ", ".join(
            f"version {v}: {n} ({report.correct_by.get(v, 0)} right)"
            for v, n in sorted(report.answered_by.items())
        )
        click.echo(
            f"round {round_number}: {report.requests} requests, {sum(report.failed.values())} "
            f"failed; answered by {answered}; {report.feedback_sent} labels fed back to "
            f"{url}/feedback"
        )
        time.sleep(0.5)  # the router's and the services' logs are written every 0.2 s
        if (
            experiment is None
            or rules_now(target, experiment, deployment.parameters.serving)[2].action != "continue"
        ):
            break
    ctx.invoke(rollout, env=env, status=True)
    click.echo("\n=== the rollout pipeline decides")
    ctx.invoke(rollout, env=env)
    left = target.live(name)
    click.echo(
        f"Left: version {production_version(name)} in production"
        + (f", serving alone at {left.url}" if left and target.rollout(name) is None else "")
        + f"; staging: {staged_version_or_none(name, 'staging') or 'none'}"
    )


def production_version(model_name: str) -> str | None:
    from zenml.client import Client
    from zenml.enums import ModelStages

    try:
        return str(Client().get_model_version(model_name, ModelStages.PRODUCTION).name)
    except KeyError:
        return None


@click.command()
@env_option
@click.option(
    "--scenario",
    type=click.Choice(["drift", "rollout"]),
    default="drift",
    show_default=True,
    help="drift: monitoring catches a drifting stream and retrains; rollout: a weakened "
    "candidate in an A/B test against the live model, decided on simulated feedback.",
)
@click.option("--rows", default=400, show_default=True, help="Requests per phase.")
@click.option(
    "--shift", default=1.5, show_default=True, help="Drift of the second phase, in std devs."
)
@click.pass_context
def simulate(ctx: click.Context, env: str, scenario: str, rows: int, shift: float) -> None:
    """Demonstrate the loop: a stable stream (no action), then a drifting one that
    monitoring catches, retraining on fresh data, and the new version gated against
    production, promoted to staging and started as a canary beside the live service
    (if one runs), which the simulation, having no users, then promotes by hand. Or,
    with ``--scenario rollout``, an online experiment from start to decision."""
    from cli.train import train

    if scenario == "rollout":
        simulate_rollout(ctx, env, rows)
        return

    config = load_pipeline_config(TrainingRunConfig, env, CONFIG_DIR / "training.yaml")
    name = config.model.name
    # up front: its drifting phase retrains, promotes and deploys
    refuse_during_rollout(env, name, "this scenario's retraining would promote and deploy "
                          "a version beside it")  # fmt: skip
    activate_stack(env)
    from zenml import Model
    from zenml.enums import ModelStages

    from tabular_mlops.adapters.champion import load_staged_model
    from tabular_mlops.adapters.simulation import log_requests, shifted

    production = Model(name=name, version=ModelStages.PRODUCTION)
    try:
        staged = load_staged_model(production)
    except (KeyError, RuntimeError):  # ZenML: no version at that stage
        click.echo("No production model yet: training one first.")
        ctx.invoke(train, env=env)
        staged = load_staged_model(production)
    target = staged.spec.target
    workdir = LOCAL_DIR / "simulation" / datetime.now(UTC).strftime("%Y%m%dT%H%M%S")
    for phase, drift in (("stable", 0.0), ("drifting", shift)):
        click.echo(f"\n=== phase '{phase}': {rows} requests, shift {drift} std devs")
        world = shifted(staged.train_set, staged.spec, drift, seed=len(phase))
        log_dir = workdir / phase / "inference_log"
        log_requests(
            world.sample(rows, replace=True, random_state=1), staged.model, staged.spec, log_dir
        )
        fresh = workdir / phase / "fresh_training_data.parquet"
        world.to_parquet(fresh)  # the labelled data a retraining would use
        before = production_version(name)
        ctx.invoke(
            monitor,
            env=env,
            overrides=(
                f"model.name={name}",
                f"parameters.monitoring.inference_log_dir={log_dir}",
                f"parameters.monitoring.batch_predictions_dir={workdir / phase / 'batches'}",
                f"retraining.data={{source: file, path: '{fresh}', target: '{target}'}}",
            ),
        )
        click.echo(
            f"=== phase '{phase}': production version {before} -> {production_version(name)}"
            f"; staging: {staged_version_or_none(name, 'staging') or 'none'}"
        )
    end_own_experiment(ctx, env)


def end_own_experiment(ctx: click.Context, env: str) -> None:
    """The retrained version entered the configured experiment beside the live service;
    a simulation has no users to decide it, so it is promoted by hand and recorded so,
    leaving one model at the address for the next command."""
    from cli.common import serving_target
    from cli.rollout import rollout

    deployment = load_pipeline_config(DeploymentRunConfig, env, CONFIG_DIR / "deployment.yaml")
    experiment = serving_target(env, deployment, activate=False).rollout(deployment.model.name)
    if experiment is None:
        return
    click.echo(
        f"\n=== version {experiment.candidate.model_version} runs as a "
        f"{experiment.plan.strategy} beside version {experiment.champion.model_version}. With "
        "real users, `python run.py rollout` decides it on their feedback; this simulation "
        "has none, so it promotes it by hand (`python run.py rollout --promote --reason ...`)"
    )
    ctx.invoke(rollout, env=env, promote=True, reason="the simulation has no users to decide")
    click.echo(
        f"Left: version {production_version(deployment.model.name)} in production, served alone"
    )
