#!/usr/bin/env python
"""Command line of the project: one entry point for every pipeline and environment.

python run.py train --env dev
python run.py stack diff --env staging
python run.py dashboard
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
import time
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

import click

from configs.loader import CONFIG_DIR, ConfigError, available_environments, load_environment
from configs.schema import EnvironmentConfig, StagedRunConfig

if TYPE_CHECKING:
    from pydantic import BaseModel
    from zenml.client import Client
    from zenml.models import PipelineRunResponse

    from configs.schema import DeploymentRunConfig, ServingConfig
    from steps.deployment.serving_target import ServingTarget

REPO_ROOT = Path(__file__).resolve().parent
ConfigT = TypeVar("ConfigT", bound="BaseModel")


def env_option(function: Callable[..., Any]) -> Callable[..., Any]:
    return click.option(
        "--env",
        "env",
        default="dev",
        show_default=True,
        metavar="NAME",
        help="Environment: a file in configs/environments/ "
        f"({', '.join(available_environments())}).",
    )(function)


def config_option(name: str) -> Callable[..., Any]:
    """``--config``, defaulting to ``configs/<name>.yaml``."""
    return click.option(
        "--config",
        "config_path",
        type=click.Path(dir_okay=False, path_type=Path),
        default=CONFIG_DIR / f"{name}.yaml",
        show_default=f"configs/{name}.yaml",
        help="Pipeline config file.",
    )


overrides_option = click.option(
    "--set",
    "overrides",
    multiple=True,
    metavar="KEY=VALUE",
    help="Override one config key, e.g. --set parameters.split.test_size=0.3 (repeatable).",
)


def load_env(env: str) -> tuple[EnvironmentConfig, str]:
    try:
        environment = load_environment(env)
    except ConfigError as exc:
        raise click.ClickException(str(exc)) from None
    from configs.loader import environment_path

    return environment, str(environment_path(env))


def zenml_client() -> Client:
    """The ZenML client, with this checkout (or $ZENML_REPOSITORY_PATH) a ZenML repository."""
    from zenml.client import Client

    if Client.find_repository() is None:
        Client.initialize(root=Path(os.environ.get("ZENML_REPOSITORY_PATH", REPO_ROOT)))
    return Client()


def activate_stack(env: str) -> EnvironmentConfig:
    """Validate the environment, then register (idempotently) and activate its stack."""
    from infra import stacks

    environment, source = load_env(env)
    try:
        stack_plan = stacks.activate(zenml_client(), environment, source)
    except ConfigError as exc:
        raise click.ClickException(str(exc)) from None
    if not stack_plan.is_current:
        click.echo(stack_plan.describe())
    click.echo(f"Active stack: '{stack_plan.name}' (environment {env})")
    return environment


@click.group(context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 100})
def cli() -> None:
    """Train, gate and promote a tabular model with ZenML, on the stack of the environment
    you name. Every environment is a YAML file under configs/environments/; switching from
    a laptop to a cluster is `--env`, never a code edit."""
    import logging

    # ZenML's handler prints every request httpx makes (health checks included)
    logging.getLogger("httpx").setLevel(logging.WARNING)


@cli.command()
@env_option
@config_option("training")
@overrides_option
@click.option("--no-cache", is_flag=True, help="Run every step, ignoring cached results.")
@click.option(
    "--schedule",
    metavar="CRON",
    help="Register a ZenML schedule instead of running now (orchestrators that support it).",
)
@click.option(
    "--every",
    type=click.IntRange(min=60),
    metavar="SECONDS",
    help="Keep running: train again every SECONDS (for the local orchestrator; Ctrl-C stops).",
)
@click.option(
    "--dry-run",
    is_flag=True,
    help="Compile for the environment's stack and print the plan (steps, settings, image "
    "requirements); run nothing.",
)
def train(
    env: str,
    config_path: Path,
    overrides: tuple[str, ...],
    no_cache: bool = False,
    schedule: str | None = None,
    every: int | None = None,
    dry_run: bool = False,
) -> None:
    """Run the training pipeline: ingest, validate data, split, train, evaluate,
    validate the model against the production champion, register, promote."""
    from configs.schema import TrainingRunConfig

    config = load_pipeline_config(TrainingRunConfig, env, config_path, overrides)
    activate_stack(env)

    from zenml import Model
    from zenml.client import Client
    from zenml.config.schedule import Schedule

    from pipelines.training import training_pipeline

    if schedule and not Client().active_stack.orchestrator.config.is_schedulable:
        raise click.ClickException(
            f"the '{env}' stack's orchestrator cannot run schedules; use --every SECONDS, "
            f"or cron: `0 3 * * * cd {REPO_ROOT} && .venv/bin/python run.py train --env {env}`"
        )
    pipeline = training_pipeline.with_options(
        model=Model(**config.model.model_dump()),
        enable_cache=config.enable_cache and not no_cache,
        config_path=zenml_run_config(config.settings, config.steps),
        schedule=Schedule(cron_expression=schedule) if schedule else None,
    )
    if dry_run:
        _print_plans(env, pipeline, dict(config.parameters))
        return
    while True:
        started = time.perf_counter()
        run = run_pipeline("training", pipeline, **dict(config.parameters))
        if run is not None and not schedule:
            _report_training(run, time.perf_counter() - started)
        if every is None:
            return
        click.echo(f"Next training run in {every} s (Ctrl-C to stop).")
        time.sleep(every)


def _print_plans(env: str, training: Any, parameters: dict[str, Any]) -> None:
    """Compile every pipeline for the environment's stack and print what would run."""
    import yaml
    from zenml.client import Client

    from configs.schema import BatchRunConfig, DeploymentRunConfig, MonitoringRunConfig
    from infra.plan import dry_run_plan
    from pipelines.batch_inference import batch_inference_pipeline
    from pipelines.deployment import deployment_pipeline
    from pipelines.monitoring import monitoring_pipeline
    from steps.deployment.serving_target import target_for

    plans = {"training_pipeline": dry_run_plan(training, **parameters)}
    for file, model, pipeline in (
        ("deployment.yaml", DeploymentRunConfig, deployment_pipeline),
        ("batch_inference.yaml", BatchRunConfig, batch_inference_pipeline),
        ("monitoring.yaml", MonitoringRunConfig, monitoring_pipeline),
    ):
        config: Any = load_pipeline_config(model, env, CONFIG_DIR / file, ())
        plans[pipeline.name] = dry_run_plan(
            staged_pipeline(pipeline, config), **dict(config.parameters)
        )
        if isinstance(config, DeploymentRunConfig):
            target = target_for(Client().active_stack, config.parameters.serving)
            plans[pipeline.name]["serving"] = target.plan(config.model.name)
    click.echo(yaml.safe_dump(plans, sort_keys=False, width=100))


def zenml_run_config(settings: dict[str, Any], steps: dict[str, Any]) -> str | None:
    """Pipeline settings and per-step configuration as a ZenML run-config file.

    ZenML 0.98 drops per-step configuration given to `with_options(steps=...)`
    when it compiles (it stores it as `step_configurations`, which compiling
    does not read); a config file takes the documented path and is applied.
    """
    if not settings and not steps:
        return None
    import tempfile

    import yaml

    handle, path = tempfile.mkstemp(prefix="zenml-run-config-", suffix=".yaml")
    with os.fdopen(handle, "w") as file:
        yaml.safe_dump({"settings": settings, "steps": steps}, file)
    return path


def run_staged(
    env: str, label: str, pipeline: Any, config: StagedRunConfig, **parameters: Any
) -> PipelineRunResponse | None:
    """Run ``pipeline`` on the environment's stack, on the model version at the config's stage."""
    activate_stack(env)
    return run_pipeline(label, staged_pipeline(pipeline, config), **parameters)


def staged_pipeline(pipeline: Any, config: StagedRunConfig) -> Any:
    """``pipeline`` configured to run on the model version at ``config.stage``."""
    from zenml import Model

    return pipeline.with_options(
        model=Model(name=config.model.name, version=config.stage),
        config_path=zenml_run_config(config.settings, config.steps),
    )


def load_pipeline_config(
    model: type[ConfigT], env: str, config_path: Path, overrides: tuple[str, ...]
) -> ConfigT:
    """A pipeline config with the environment's overlay and ``--set`` flags, validated."""
    from configs.loader import load_run_config

    environment, _ = load_env(env)
    try:
        return load_run_config(model, config_path, environment, overrides)
    except ConfigError as exc:
        raise click.ClickException(str(exc)) from None


def run_pipeline(label: str, pipeline: Any, **parameters: Any) -> PipelineRunResponse | None:
    """Run ``pipeline``; a failed step becomes a CLI error carrying the step's own exception."""
    try:
        run = pipeline(**parameters)
    except RuntimeError as exc:
        raise click.ClickException(f"{label} pipeline failed: {failure_reason(exc)}") from None
    except KeyError as exc:  # e.g. no model version at the requested stage
        raise click.ClickException(f"{label} pipeline could not start: {exc}") from None
    if run is None:  # an orchestrator that runs asynchronously
        click.echo("Pipeline submitted; follow it in the dashboard.")
    return run


def failure_reason(error: Exception) -> str:
    """The exception a failed step raised, from the last run, instead of ZenML's summary."""
    from zenml.client import Client

    run = Client().list_pipeline_runs(sort_by="desc:created", size=1).items[0]
    reasons = []
    for name, step_run in run.steps.items():
        info = step_run.exception_info
        if step_run.status.value == "failed" and info is not None:
            raised = list(re.finditer(r"^[\w.]+(?:Error|Exception)\b.*?: ", info.traceback, re.M))
            text = info.traceback[raised[-1].start() :] if raised else info.traceback
            reasons.append(f"step '{name}': {text.strip()}")
    return "\n".join(reasons) or str(error)


def _report_training(run: PipelineRunResponse, seconds: float) -> None:
    from zenml.client import Client

    run = Client().get_pipeline_run(run.id)
    cached = sum(step.status.value == "cached" for step in run.steps.values())
    click.echo(
        f"\nRun '{run.name}': {run.status.value} in {seconds:.1f} s "
        f"({cached} of {len(run.steps)} steps cached)"
    )
    version = run.model_version
    if version is not None:
        outcome = run.steps["promote_model"].outputs["promotion"][0].load()
        report = run.steps["evaluate_model"].outputs["evaluation_report"][0].load()
        metrics = "  ".join(f"{k}={v:.4f}" for k, v in report.metrics.items())
        click.echo(f"Model '{version.model.name}' version {version.name}: {outcome}")
        click.echo(f"  test metrics: {metrics}")
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


@cli.command()
@env_option
@config_option("deployment")
@overrides_option
@click.option("--status", is_flag=True, help="Show what is served where, and change nothing.")
@click.option("--stop", "stop_service", is_flag=True, help="Stop the live service.")
def deploy(
    env: str, config_path: Path, overrides: tuple[str, ...], status: bool, stop_service: bool
) -> None:
    """Package the model at the configured stage as a Bento, start it beside the live
    service, smoke-test it with rows of its own test split, and only then switch."""
    from configs.schema import DeploymentRunConfig

    config = load_pipeline_config(DeploymentRunConfig, env, config_path, overrides)
    serving, target = _serving_target(env, config)
    live = target.live(config.model.name)
    if status or stop_service:
        if live is None:
            click.echo(f"No live service for model '{config.model.name}'.")
            return
        if stop_service:
            target.stop(live)
            target.forget(config.model.name)
            click.echo(
                f"Stopped {live.url} (model '{live.model_name}' version {live.model_version})."
            )
            return
        answering = "answering" if target.is_answering(live) else "NOT answering"
        click.echo(
            f"Model '{live.model_name}' version {live.model_version} at {live.url} ({answering})\n"
            f"  {live.describe()}, since {live.started_at:%Y-%m-%d %H:%M:%S} UTC"
        )
        return

    from pipelines.deployment import deployment_pipeline

    pipeline = staged_pipeline(deployment_pipeline, config)  # the stack is active already
    if run_pipeline("deployment", pipeline, serving=serving) is None:
        return
    live = target.live(config.model.name)
    assert live is not None, "go_live records the service it switched to"
    click.echo(
        f"\nServing '{live.model_name}' version {live.model_version} at {live.url}\n"
        f"  curl -X POST {live.url}/predict -H 'content-type: application/json' "
        f"-d '{{\"rows\": [{{...}}]}}'\n"
        f"  API docs: {live.url}/docs   metrics: {live.url}/metrics\n"
        f"  requests are logged to {serving.inference_log_dir}"
    )


@cli.command()
@env_option
@config_option("batch_inference")
@click.option(
    "--input",
    "input_path",
    type=click.Path(dir_okay=False, path_type=Path),
    help="The batch: a .csv or .parquet file (overrides parameters.batch.input_path).",
)
@overrides_option
def infer(env: str, config_path: Path, input_path: Path | None, overrides: tuple[str, ...]) -> None:
    """Score a batch file with the model at the configured stage: schema gate, Evidently
    drift report, then chunked scoring to Parquet, with unusable rows written aside."""
    from configs.schema import BatchRunConfig

    if input_path is not None:
        overrides = (*overrides, f"parameters.batch.input_path={input_path.resolve()}")
    config = load_pipeline_config(BatchRunConfig, env, config_path, overrides)
    batch = config.parameters.batch
    batch = batch.model_copy(update={"output_dir": REPO_ROOT / batch.output_dir})
    if batch.input_path is None or not batch.input_path.is_file():
        raise click.ClickException(
            f"parameters.batch.input_path: {batch.input_path or 'not set'}: no such batch file"
        )
    from pipelines.batch_inference import batch_inference_pipeline

    run = run_staged(env, "batch inference", batch_inference_pipeline, config, batch=batch)
    if run is None:
        return
    result = _output(run, "score_batch", "batch_result")
    click.echo(
        f"\nBatch {result.batch_id}: {result.rows_scored} of {result.rows_read} rows scored "
        f"by version {result.model_version} in {result.seconds:.1f} s\n"
        f"  predictions: {result.predictions_path}"
    )
    if result.rejected_path:
        click.echo(f"  {result.rows_rejected} rows rejected, with reasons: {result.rejected_path}")


def _output(run: PipelineRunResponse, step_name: str, artifact: str) -> Any:
    from zenml.client import Client

    run = Client().get_pipeline_run(run.id)
    return run.steps[step_name].outputs[artifact][0].load()


@cli.command()
@env_option
@config_option("monitoring")
@overrides_option
@click.option("--no-retrain", is_flag=True, help="Report the decision; do not act on it.")
@click.pass_context
def monitor(
    ctx: click.Context, env: str, config_path: Path, overrides: tuple[str, ...], no_retrain: bool
) -> None:
    """Compare the window's served and batch predictions with the production model's
    training data (Evidently), decide: no action, alert, or retrain; and retrain if so."""
    from configs.schema import MonitoringRunConfig

    config = load_pipeline_config(MonitoringRunConfig, env, config_path, overrides)
    monitoring = config.parameters.monitoring
    monitoring = monitoring.model_copy(
        update={
            "inference_log_dir": REPO_ROOT / monitoring.inference_log_dir,
            "batch_predictions_dir": REPO_ROOT / monitoring.batch_predictions_dir,
        }
    )
    from pipelines.monitoring import monitoring_pipeline

    run = run_staged(env, "monitoring", monitoring_pipeline, config, monitoring=monitoring)
    if run is None:
        return
    decision = _output(run, "detect_drift", "monitoring_decision")
    click.echo(f"\nMonitoring decision: {decision.action.upper()} ({decision.rows} rows)")
    for reason in decision.reasons:
        click.echo(f"  - {reason}")
    if decision.drifted_columns:
        click.echo(f"  drifted: {', '.join(decision.drifted_columns)}")
    if decision.action != "retrain" or no_retrain or not config.retraining.enabled:
        return
    click.echo("\nRetraining on fresh data; the gates decide what is promoted.")
    retrain = [f"model.name={config.model.name}"]
    if config.retraining.data is not None:
        retrain.append(f"parameters.data={config.retraining.data.model_dump_json()}")
    before = _production_version(config.model.name)
    ctx.invoke(train, env=env, config_path=CONFIG_DIR / "training.yaml", overrides=retrain)
    after = _production_version(config.model.name)
    if after == before:
        click.echo("The retrained model was not promoted; production and serving are unchanged.")
    elif config.retraining.redeploy and _is_served(env, config.model.name):
        ctx.invoke(deploy, env=env, overrides=(f"model.name={config.model.name}",))


def _production_version(model_name: str) -> str | None:
    from zenml.client import Client
    from zenml.enums import ModelStages

    try:
        return Client().get_model_version(model_name, ModelStages.PRODUCTION).name
    except KeyError:
        return None


def _is_served(env: str, model_name: str) -> bool:
    from configs.schema import DeploymentRunConfig

    config = load_pipeline_config(
        DeploymentRunConfig, env, CONFIG_DIR / "deployment.yaml", (f"model.name={model_name}",)
    )
    _, target = _serving_target(env, config)
    return target.live(model_name) is not None


def _serving_target(env: str, config: DeploymentRunConfig) -> tuple[ServingConfig, ServingTarget]:
    """The deployment's serving config with paths under the repository, and the
    target the environment's stack serves through."""
    from zenml.client import Client

    from steps.deployment.serving_target import UnsupportedStackError, target_for

    serving = config.parameters.serving.model_copy(
        update={
            "state_dir": REPO_ROOT / config.parameters.serving.state_dir,
            "inference_log_dir": REPO_ROOT / config.parameters.serving.inference_log_dir,
        }
    )
    activate_stack(env)
    try:
        return serving, target_for(Client().active_stack, serving)
    except UnsupportedStackError as exc:
        raise click.ClickException(str(exc)) from None


@cli.command()
@env_option
@click.option("--rows", default=400, show_default=True, help="Requests per phase.")
@click.option(
    "--shift", default=1.5, show_default=True, help="Drift of the second phase, in std devs."
)
@click.pass_context
def simulate(ctx: click.Context, env: str, rows: int, shift: float) -> None:
    """Demonstrate the loop: a stable stream (no action), then a drifting one that
    monitoring catches, retraining on fresh data, and the new model promoted and served."""
    from configs.schema import TrainingRunConfig
    from steps.monitoring.simulation import log_requests, shifted
    from steps.promotion.champion import load_staged_model

    config = load_pipeline_config(TrainingRunConfig, env, CONFIG_DIR / "training.yaml", ())
    name = config.model.name
    if _production_version(name) is None:
        click.echo("No production model yet: training one first.")
        ctx.invoke(train, env=env)
    activate_stack(env)
    from zenml import Model
    from zenml.enums import ModelStages

    staged = load_staged_model(Model(name=name, version=ModelStages.PRODUCTION))
    target = staged.spec.target
    workdir = REPO_ROOT / ".local" / "simulation" / datetime.now(UTC).strftime("%Y%m%dT%H%M%S")
    for phase, drift in (("stable", 0.0), ("drifting", shift)):
        click.echo(f"\n=== phase '{phase}': {rows} requests, shift {drift} std devs")
        world = shifted(staged.train_set, staged.spec, drift, seed=len(phase))
        log_dir = workdir / phase / "inference_log"
        log_requests(
            world.sample(rows, replace=True, random_state=1), staged.model, staged.spec, log_dir
        )
        fresh = workdir / phase / "fresh_training_data.parquet"
        world.to_parquet(fresh)  # the labelled data a retraining would use
        before = _production_version(name)
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
        after = _production_version(name)
        click.echo(f"=== phase '{phase}': production version {before} -> {after}")


@cli.group()
def stack() -> None:
    """Show, diff or register the ZenML stack an environment declares."""


@stack.command("show")
@env_option
def stack_show(env: str) -> None:
    """Print the stack the environment's YAML declares."""
    environment, source = load_env(env)
    click.echo(f"{source}: stack '{environment.stack.name}'")
    for kind, spec in environment.stack.components.declared().items():
        click.echo(f"  {kind:<20} {spec.name} ({spec.flavor})")
        for key, value in spec.configuration.items():
            click.echo(f"  {'':<20}   {key}: {value}")


@stack.command("diff")
@env_option
def stack_diff(env: str) -> None:
    """Compare the YAML with what the ZenML store has registered; change nothing."""
    from infra import stacks

    environment, source = load_env(env)
    try:
        click.echo(stacks.plan(zenml_client(), environment, source).describe())
    except ConfigError as exc:
        raise click.ClickException(str(exc)) from None


@stack.command("up")
@env_option
def stack_up(env: str) -> None:
    """Start the servers the environment's stack talks to (staging: MLflow and ZenML on
    127.0.0.1), create its local secrets, then register and activate its stack."""
    from infra import servers

    environment, _ = load_env(env)
    if environment.services is None:
        raise click.ClickException(f"environment '{env}' declares no services to start")
    client = zenml_client()
    for name, values in environment.services.local_secrets.items():
        try:
            client.get_secret(name)
        except KeyError:
            client.create_secret(name, values)
    try:
        urls = servers.up(environment.services, REPO_ROOT)
    except servers.ServerError as exc:
        raise click.ClickException(str(exc)) from None
    for name, url in urls.items():
        click.echo(f"{name} server: {url}")
    activate_stack(env)


@stack.command("down")
@env_option
def stack_down(env: str) -> None:
    """Stop the servers `stack up` started; the stores on disk stay."""
    from infra import servers

    environment, _ = load_env(env)
    if environment.services is None:
        raise click.ClickException(f"environment '{env}' declares no services to stop")
    stopped = servers.down(environment.services, REPO_ROOT)
    click.echo(f"Stopped: {', '.join(stopped) or 'nothing was running'}")


@stack.command("register")
@env_option
def stack_register(env: str) -> None:
    """Register or update the environment's stack and make it the active one."""
    activate_stack(env)


@cli.command()
@click.option(
    "--port", type=click.IntRange(1, 65535), help="Port on 127.0.0.1 (ZenML's default: 8237)."
)
@click.option("--stop", is_flag=True, help="Stop the local ZenML server instead.")
def dashboard(port: int | None, stop: bool) -> None:
    """Start the local ZenML server with its dashboard and print its URL.

    The server serves the same local store the pipelines write to, so every
    run so far is there; `--stop` switches the client back to the embedded store.
    """
    zenml_client()
    zenml = str(Path(sys.executable).parent / "zenml")
    if stop:
        command = [zenml, "logout", "--local"]
    else:
        command = [zenml, "login", "--local", "--ip-address", "127.0.0.1"]
        command += ["--port", str(port)] if port else []
    result = subprocess.run(command, env={**os.environ, "ZENML_AUTO_OPEN_DASHBOARD": "false"})
    if result.returncode:
        raise click.ClickException(f"`{' '.join(command)}` exited with {result.returncode}")


if __name__ == "__main__":
    cli()
