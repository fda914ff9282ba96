"""``run.py train``: the training pipeline, now, on a schedule, or compiled as a plan."""

from __future__ import annotations

import sys
from functools import partial
from pathlib import Path
from typing import TYPE_CHECKING, Any

import click

from cli.audit import reason_option, require_reason
from cli.common import (
    activate_stack,
    config_option,
    env_option,
    finished_steps,
    load_pipeline_config,
    overrides_option,
    refuse_during_rollout,
    run_pipeline,
    schedule_option,
    staged_pipeline,
    step_output,
    zenml_run_config,
    zenml_schedule,
)
from tabular_mlops.adapters.audit import record
from tabular_mlops.adapters.paths import CONFIG_DIR
from tabular_mlops.core.config import TrainingRunConfig

if TYPE_CHECKING:
    from collections.abc import Mapping

    from zenml.models import PipelineRunResponse, StepRunResponse


@click.command()
@env_option
@config_option("training")
@overrides_option
@click.option("--no-cache", is_flag=True, help="Run every step, ignoring cached results.")
@click.option(
    "--accept-drift",
    is_flag=True,
    help="Let the data gate pass data that drifted from the production model's training data "
    "(the world changed and the data is right); recorded on the model version.",
)
@schedule_option("the training pipeline")
@click.option(
    "--dry-run",
    is_flag=True,
    help="Compile for the environment's stack and print the plan (steps, settings, image "
    "requirements); run nothing.",
)
@reason_option
def train(
    env: str,
    config_path: Path,
    overrides: tuple[str, ...],
    no_cache: bool = False,
    accept_drift: bool = False,
    schedule: str | None = None,
    dry_run: bool = False,
    reason: str | None = None,
) -> PipelineRunResponse | None:
    """Run the training pipeline: ingest, validate data, split, train, evaluate,
    validate the model against the production champion, register, promote."""
    if accept_drift:
        reason = require_reason(reason, "train --accept-drift")
        overrides = (*overrides, "parameters.validation.accept_drift=true")
    config = load_pipeline_config(TrainingRunConfig, env, config_path, overrides)
    _check_estimator(config, config_path)
    # a schedule registered now trains later: its promotion step refuses then, if a
    # rollout is in progress at that time
    if config.parameters.promotion.stage == "production" and not dry_run and not schedule:
        refuse_during_rollout(env, config.model.name, "this training would promote a new "
                              "production version under it")  # fmt: skip
    if accept_drift and not dry_run:
        record(env, "accept-drift", config.model.name, reason=reason)
    activate_stack(env, preflight=not dry_run)  # a plan needs no server

    from zenml import Model

    from pipelines.training import training_pipeline

    pipeline = training_pipeline.with_options(
        model=Model(**config.model.model_dump()),
        enable_cache=config.enable_cache and not no_cache,
        config_path=zenml_run_config(config.settings, config.steps),
        schedule=zenml_schedule(schedule, env, "train"),
    )
    if dry_run:
        _print_plans(env, pipeline, dict(config.parameters))
        return None
    run = run_pipeline(
        "training", pipeline, after_failure=partial(record_promotions, env),
        **dict(config.parameters),
    )  # fmt: skip
    if run is not None and not schedule:
        from zenml.client import Client

        run = Client().get_pipeline_run(run.id)  # as the store has it now, read once
        steps = finished_steps(run)
        record_promotion(env, run, steps)
        report_training(run, steps)
    return run


def record_promotions(env: str, runs: list[PipelineRunResponse]) -> None:
    """The promotions of ``runs`` (a training, the continuous-training loop's retraining)
    in this command's trail when their steps recorded them elsewhere; a failed run's too,
    when a step after the promotion failed (the model card, the pruning): it stands."""
    for run in runs:
        record_promotion(env, run, finished_steps(run))


def record_promotion(
    env: str, run: PipelineRunResponse, steps: Mapping[str, StepRunResponse]
) -> None:
    """A promotion by the gates in this command's trail when its step recorded it
    elsewhere (a pod on the cluster, whose trail goes with it)."""
    from tabular_mlops.adapters.audit import read_trail
    from tabular_mlops.core.audit import promotion_details, recorded_for_run

    promoted = steps.get("promote_model")
    if promoted is None or promoted.status.value != "completed" or run.model_version is None:
        return
    if recorded_for_run(read_trail(env)[0], run.name):
        return
    outcome = step_output(steps, "promote_model", "promotion")
    if outcome.promoted:
        record(env, "promote", run.model_version.model.name, outcome.model_version,
               **promotion_details(outcome, run.name))  # fmt: skip


def _check_estimator(config: TrainingRunConfig, source: Path) -> None:
    """The estimator (and every model-selection candidate) must exist, fit the task and
    take its parameters: said before anything runs (a plan too), not when the training
    step reaches it."""
    from tabular_mlops.core.model_factory import TrainingConfigError, make_estimator
    from tabular_mlops.core.selection import checked_estimators, planned_trials

    training = config.parameters.training
    try:
        make_estimator(training, config.parameters.task)
        checked_estimators(planned_trials(training.candidates), training.candidates,
                           config.parameters.task)  # fmt: skip
    except TrainingConfigError as exc:
        raise click.ClickException(f"{source}: parameters.{exc}") from None


def report_training(run: PipelineRunResponse, steps: Mapping[str, StepRunResponse]) -> None:
    """What the run did to the model (``steps``: its steps as the store has them), its
    test metrics beside the trivial baselines', and where to look."""
    from zenml.client import Client

    from tabular_mlops.core.baselines import lift

    cached = sum(step.status.value == "cached" for step in steps.values())
    ended, started = run.end_time, run.start_time
    seconds = (ended - started).total_seconds() if ended and started else 0.0
    click.echo(
        f"\nRun '{run.name}': {run.status.value} in {seconds:.1f} s "
        f"({cached} of {len(steps)} steps cached)"
    )
    version = run.model_version
    if version is not None:
        outcome = step_output(steps, "promote_model", "promotion")
        report = step_output(steps, "evaluate_model", "evaluation_report")
        metrics = "  ".join(f"{k}={v:.4f}" for k, v in report.metrics.items())
        click.echo(f"Model '{version.model.name}' version {version.name}: {outcome}")
        click.echo(f"  test metrics: {metrics}")
        board = step_output(steps, "select_model", "leaderboard")
        if board.trials:  # model selection: which candidate won, of how many
            best = board.winner
            stopped = f"; stopped by {board.stopped_by}" if board.stopped_by else ""
            click.echo(f"  selected {best.estimator} {best.params} from {len(board.trials)} "
                       f"trials (cv {board.metric} {best.mean:.4f} ± {best.std:.4f}; "
                       f"leaderboard artifact){stopped}")  # fmt: skip
        for baseline in report.baselines:  # is ML worth it, on the gate's metric
            name = baseline.primary_metric
            theirs, ours = baseline.metrics.get(name), report.metrics.get(name)
            if theirs is not None and ours is not None:
                click.echo(f"  {baseline.name} baseline: {name}={theirs:.4f} "
                           f"(lift {lift(ours, theirs, name):+.4f})")  # fmt: skip
    tracker = Client().active_stack.experiment_tracker
    click.echo("\nWhere to look:")
    click.echo("  ZenML dashboard: python run.py dashboard")
    if tracker is not None:
        uri = tracker.get_tracking_uri()  # type: ignore[attr-defined]
        if uri.startswith(("http://", "https://")):
            click.echo(f"  MLflow UI:       {uri}")
        else:
            mlflow_bin = Path(sys.executable).parent / "mlflow"
            click.echo(f"  MLflow UI:       {mlflow_bin} ui --backend-store-uri {uri}")


def _print_plans(env: str, training: Any, parameters: dict[str, Any]) -> None:
    """Compile every pipeline for the environment's stack and print what would run."""
    import yaml
    from zenml.client import Client

    from cli.common import retraining_plan
    from pipelines.batch_inference import batch_inference_pipeline
    from pipelines.continuous_training import continuous_training_pipeline
    from pipelines.deployment import deployment_pipeline
    from tabular_mlops.adapters.deployment.model_deployer import serving_target
    from tabular_mlops.adapters.plan import dry_run_plan
    from tabular_mlops.core.config import BatchRunConfig, DeploymentRunConfig, MonitoringRunConfig

    plans = {"training_pipeline": dry_run_plan(training, **parameters)}
    for file, model, pipeline in (
        ("deployment.yaml", DeploymentRunConfig, deployment_pipeline),
        ("batch_inference.yaml", BatchRunConfig, batch_inference_pipeline),
        ("monitoring.yaml", MonitoringRunConfig, continuous_training_pipeline),
    ):
        config: Any = load_pipeline_config(model, env, CONFIG_DIR / file)
        arguments = dict(config.parameters)
        if isinstance(config, MonitoringRunConfig):
            arguments["plan"] = retraining_plan(env, config, retrain=True)
        plans[pipeline.name] = dry_run_plan(staged_pipeline(pipeline, config), **arguments)
        if isinstance(config, MonitoringRunConfig):
            # a dynamic pipeline configures its steps as it runs them
            plans[pipeline.name]["step_options"] = arguments["plan"].step_options
        if isinstance(config, DeploymentRunConfig):
            target = serving_target(Client().active_stack, config.parameters.serving)
            plans[pipeline.name]["serving"] = target.plan(config.model.name)
    click.echo(yaml.safe_dump(plans, sort_keys=False, width=100))
