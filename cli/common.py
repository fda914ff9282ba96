"""What every command shares: options, config loading, the stack, running a pipeline."""

from __future__ import annotations

import contextlib
import errno
import logging
import os
import re
import tempfile
from collections.abc import Callable, Iterator, Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

import click

from tabular_mlops.adapters.config_files import (
    ConfigError,
    available_environments,
    deep_merge,
    environment_name,
    environment_path,
    load_environment,
    load_run_config,
)
from tabular_mlops.adapters.paths import CONFIG_DIR, LOCAL_DIR, PROJECT_ROOT
from tabular_mlops.core.config import (
    DeploymentRunConfig,
    EnvironmentConfig,
    MonitoringRunConfig,
    RetrainingPlan,
    RunConfig,
    StagedRunConfig,
    TrainingRunConfig,
)

if TYPE_CHECKING:
    from zenml.client import Client
    from zenml.config.schedule import Schedule
    from zenml.models import PipelineRunResponse, StepRunResponse

    from tabular_mlops.adapters.deployment.target import ServingTarget

ConfigT = TypeVar("ConfigT", bound=RunConfig)


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


def config_option(
    name: str, flag: str = "--config", help: str = "Pipeline config file."
) -> Callable[..., Any]:
    """``--config`` (or ``flag``), defaulting to ``configs/<name>.yaml``."""
    return click.option(
        flag,
        "config_path" if flag == "--config" else flag.lstrip("-").replace("-", "_"),
        type=click.Path(dir_okay=False, path_type=Path),
        default=CONFIG_DIR / f"{name}.yaml",
        show_default=f"configs/{name}.yaml",
        help=help,
    )


overrides_option = click.option(
    "--set",
    "overrides",
    multiple=True,
    metavar="KEY=VALUE",
    help="Override one config key, e.g. --set parameters.split.test_size=0.3 (repeatable).",
)


def load_env(env: str) -> tuple[EnvironmentConfig, str]:
    """The environment's config and file, with this process's ZenML client switched to
    the environment's own client state."""
    try:
        environment, source = load_environment(env), str(environment_path(env))
    except ConfigError as exc:
        raise click.ClickException(str(exc)) from None
    use_client_state(env, environment)
    return environment, source


#: ZenML's global config as this process started: dev's, and every environment's that
#: has no ZenML server of its own
_BASE_ZENML_CONFIG: list[str] = []
#: where a process started by this one finds that base
BASE_ZENML_CONFIG_VARIABLE = "TABULAR_MLOPS_ZENML_BASE_CONFIG"
#: the key of the environment whose client state is in use
_CURRENT_ENV: list[str] = ["dev"]


def use_client_state(env: str, environment: EnvironmentConfig) -> None:
    """Give an environment that runs a ZenML server of its own (staging) its own ZenML
    client state (server URL, active project and stack), under the global config's
    ``environments/<env>``: `zenml login` to its server, or that server dying, then
    changes nothing for dev or any other environment."""
    from tabular_mlops.adapters.compat import default_global_config, use_global_config

    if not _BASE_ZENML_CONFIG:
        # kept in the environment: a child process (a step, `zenml login`) starts with
        # ZENML_CONFIG_PATH already pointing at an environment's own state
        _BASE_ZENML_CONFIG.append(
            os.environ.get(BASE_ZENML_CONFIG_VARIABLE)
            or os.environ.get("ZENML_CONFIG_PATH")
            or default_global_config()
        )
        os.environ[BASE_ZENML_CONFIG_VARIABLE] = _BASE_ZENML_CONFIG[0]
    base = _BASE_ZENML_CONFIG[0]
    own = environment.services is not None and environment.services.zenml is not None
    directory = str(Path(base) / "environments" / environment_name(env)) if own else base
    Path(directory).mkdir(parents=True, exist_ok=True)
    if use_global_config(directory):
        _ACTIVATED.clear()
    _CURRENT_ENV[0] = environment_name(env)


def runs_dir() -> Path:
    """Where commands of the current environment leave their in-flight records: a run
    lives in its environment's store, and only a command of that environment can mark it
    failed."""
    return LOCAL_DIR / "runs" / _CURRENT_ENV[0]


def load_pipeline_config(
    model: type[ConfigT], env: str, config_path: Path, overrides: tuple[str, ...] = ()
) -> ConfigT:
    """A pipeline config with the environment's overlay and ``--set`` flags, validated."""
    environment, _ = load_env(env)
    try:
        return load_run_config(model, config_path, environment, overrides)
    except ConfigError as exc:
        raise click.ClickException(str(exc)) from None


def zenml_client() -> Client:
    """The ZenML client, with this checkout (or $ZENML_REPOSITORY_PATH) a ZenML repository,
    whose config files are written atomically (two commands may start together)."""
    from zenml.client import Client

    from tabular_mlops.adapters import blank_stores
    from tabular_mlops.adapters.compat import (
        activate_integrations_once,
        ctrl_c_without_the_store,
        skip_bentoml_integration,
        write_yaml_atomically,
    )

    write_yaml_atomically()
    skip_bentoml_integration()
    activate_integrations_once()
    ctrl_c_without_the_store()

    with blank_stores.new_zenml_store() as locked:
        if Client.find_repository() is None:
            Client.initialize(root=Path(os.environ.get("ZENML_REPOSITORY_PATH", PROJECT_ROOT)))
        client = Client()
        if locked:  # a store this command makes gets its defaults while any other waits,
            _ = client.zen_store  # and one whose maker died half-way is finished by one
    return client


#: stack name -> the environment (YAML) this process last registered and activated it from
_ACTIVATED: dict[str, EnvironmentConfig] = {}


#: the environment this process activated last (a command activates one)
_ACTIVE_ENV: list[str] = []


def activate_stack(env: str, preflight: bool = True) -> EnvironmentConfig:
    """Validate the environment, check that its servers answer (``preflight``), mark
    failed the runs of commands that died, then register (idempotently) and activate
    its stack; registered once per process (`run.py all` runs three pipelines)."""
    from tabular_mlops.adapters import blank_stores, stacks
    from tabular_mlops.adapters.compat import write_yaml_atomically
    from tabular_mlops.adapters.servers import unreachable

    write_yaml_atomically()  # before any ZenML client starts, and rewrites, its config
    environment, source = load_env(env)
    problems = unreachable(environment, env) if preflight else []
    if problems:
        raise click.ClickException("; ".join(problems))
    # applied again when the stack's YAML is not what this process applied last (another
    # file of the same stack, e.g. a copy with the model deployer on another port)
    stack_name = environment.stack.name
    if _ACTIVATED.get(stack_name) != environment or (
        zenml_client().active_stack_model.name != stack_name
    ):
        try:
            stack_plan = stacks.activate(zenml_client(), environment, source)
        except ConfigError as exc:
            raise click.ClickException(str(exc)) from None
        if not stack_plan.is_current:
            click.echo(stack_plan.describe())
            # a stack just made (or changed) has a new tracking store; building the stack
            # imports every component's library, which a command on a current one skips
            blank_stores.seed_tracking_store(zenml_client().active_stack)
        click.echo(f"Active stack: '{stack_plan.name}' (environment {env})")
        _ACTIVATED[stack_name] = environment
    _ACTIVE_ENV[:] = [env]  # the fix of a failure names it
    reap_dead_runs()  # in the environment's project, now active
    return environment


def reap_dead_runs() -> None:
    """Mark failed the runs of commands that died mid-run (``kill -9``, a lost terminal)."""
    from tabular_mlops.adapters.runs_in_flight import dead_calls, mark_failed

    for path, record in dead_calls(runs_dir()):
        reason = f"its process ({record.pid}) died before it finished"
        for name in mark_failed(record, reason):
            click.echo(f"Run '{name}' marked failed: {reason}.")
        path.unlink(missing_ok=True)


def zenml_run_config(settings: dict[str, Any], steps: dict[str, Any]) -> str | None:
    """Pipeline settings and per-step configuration as a ZenML run-config file.

    ZenML 0.98 drops per-step configuration given to `with_options(steps=...)`
    when it compiles (it stores it as `step_configurations`, which compiling
    does not read); a config file takes the documented path and is applied.
    """
    if not settings and not steps:
        return None
    import yaml

    handle, path = tempfile.mkstemp(prefix="zenml-run-config-", suffix=".yaml")
    with os.fdopen(handle, "w") as file:
        yaml.safe_dump({"settings": settings, "steps": steps}, file)
    return path


def staged_version(config: StagedRunConfig) -> str:
    """The number of the model version at ``config.stage``, or an error naming the model
    and the stage (ZenML's own names the model by its id)."""
    from zenml.client import Client
    from zenml.enums import ModelStages

    try:
        version = Client().get_model_version(config.model.name, ModelStages(config.stage))
    except KeyError:
        raise click.ClickException(
            f"model '{config.model.name}' has no version in {config.stage} yet: "
            f"train one first (python run.py train --set model.name={config.model.name})"
        ) from None
    return str(version.number)


def staged_pipeline(pipeline: Any, config: StagedRunConfig, version: int | None = None) -> Any:
    """``pipeline`` configured to run on the model version at ``config.stage`` (or on
    ``version``, a number)."""
    from zenml import Model

    return pipeline.with_options(
        model=Model(name=config.model.name, version=version or config.stage),
        config_path=zenml_run_config(config.settings, config.steps),
    )


def schedule_option(what: str) -> Callable[..., Any]:
    """``--schedule CRON``: register ``what`` as a ZenML schedule instead of running it."""
    return click.option(
        "--schedule",
        metavar="CRON",
        help=f"Register {what} as a ZenML schedule instead of running it now (orchestrators "
        "that support schedules; on the local one, use cron).",
    )


def zenml_schedule(cron: str | None, env: str, command: str) -> Schedule | None:
    """The ZenML schedule for ``cron``, or an error naming the cron line to use instead."""
    if cron is None:
        return None
    from zenml.client import Client
    from zenml.config.schedule import Schedule

    if not Client().active_stack.orchestrator.config.is_schedulable:
        raise click.ClickException(
            f"the '{env}' stack's orchestrator cannot run schedules; use cron: "
            f"`{cron} cd {PROJECT_ROOT} && .venv/bin/python run.py {command} --env {env}`"
        )
    return Schedule(cron_expression=cron)


@contextlib.contextmanager
def logged_errors() -> Iterator[list[BaseException]]:
    """The exceptions ZenML logs while the block runs (with their traceback), newest last:
    a step that fails before its run records an exception (a read-only artifact store
    fails on the step's own log file) is otherwise known only from its traceback."""
    raised: list[BaseException] = []

    class Keep(logging.Handler):
        def emit(self, record: logging.LogRecord) -> None:
            keep_logged_error(record)

    handler = Keep(level=logging.ERROR)
    logger = logging.getLogger("zenml")
    logger.addHandler(handler)
    _LOGGED_ERRORS.append(raised)
    try:
        yield raised
    finally:
        _LOGGED_ERRORS.remove(raised)
        logger.removeHandler(handler)


#: the lists ``logged_errors`` blocks collect into
_LOGGED_ERRORS: list[list[BaseException]] = []


def keep_logged_error(record: logging.LogRecord) -> None:
    """Keep the exception a ZenML log record carries (also those the CLI's quiet mode
    filters out before any handler sees them) for the command's last line."""
    if record.exc_info and isinstance(record.exc_info[1], BaseException):
        for raised in _LOGGED_ERRORS:
            if record.exc_info[1] not in raised:
                raised.append(record.exc_info[1])


def run_pipeline(
    label: str,
    pipeline: Any,
    after_failure: Callable[[list[PipelineRunResponse]], None] | None = None,
    **parameters: Any,
) -> PipelineRunResponse | None:
    """Run ``pipeline``; a failed step becomes a CLI error carrying the step's own
    exception, and ending with one line: the step, the check and the fix.
    ``after_failure`` is given the failed run (and its child runs) first: what its steps
    did before one failed (a promotion) may still need the command's bookkeeping."""
    from tabular_mlops.adapters.mlflow_models import end_leaked_runs
    from tabular_mlops.adapters.runs_in_flight import in_flight, runs_of

    with in_flight(runs_dir(), pipeline.name) as tag, logged_errors() as raised:
        # ZenML names a run by the time to the microsecond: two started together by two
        # processes collided here (EntityExistsError), so the process joins the name
        unique = f"{pipeline.name}-{{date}}-{{time}}-{os.getpid()}"
        try:
            run = pipeline.with_options(tags=[tag], run_name=unique)(**parameters)
        except KeyError as exc:  # e.g. no model version at the requested stage
            end_leaked_runs()
            raise click.ClickException(f"{label} pipeline could not start: {exc}") from None
        except Exception as exc:
            # a static run raises RuntimeError; a dynamic one (the loop's child runs) the
            # failed step's own exception
            end_leaked_runs()  # the next pipeline of this process must not inherit it
            if after_failure is not None:
                try:
                    after_failure(runs_of(tag))
                except Exception as missed:  # the step's own failure is what to report
                    click.echo(f"After the failed {label} run: {missed}", err=True)
            failures = failed_steps(tag)
            if not failures and not isinstance(exc, RuntimeError):
                raise
            if not failures:  # a step that failed before ZenML recorded why (its log file)
                cause = f"\n{cause_and_fix(raised[-1])}" if raised else ""
                raise click.ClickException(f"{label} pipeline failed: {exc}{cause}") from None
            details = "\n".join(f"step '{step}': {text}" for step, text in failures)
            raise click.ClickException(
                f"{label} pipeline failed: {details}\n{one_line(*failures[0])}"
            ) from None
    if run is None:  # an orchestrator that runs asynchronously
        click.echo("Pipeline submitted; follow it in the dashboard.")
    return run


#: exception class -> what to do about it, for the last line of a failure
FIXES = {
    "DataValidationError": "fix the data, or the thresholds under parameters.validation in "
    "configs/training.yaml; if the data drifted because the world changed, "
    "--accept-drift --reason '...'",
    "DataSourceError": "check parameters.data (path, target, drop_columns, na_values)",
    "TrainingConfigError": "check parameters.training (and evaluation.cost) in "
    "configs/training.yaml",
    "BaselineError": "check parameters.promotion.baseline in configs/training.yaml",
    "GovernanceConfigError": "check parameters.evaluation (fairness, robustness) in "
    "configs/training.yaml: it names a column or label the data does not have",
    "LatencyBudgetError": "the live service is unchanged; a faster model, or the budget "
    "under parameters.serving in configs/deployment.yaml",
    "BatchSchemaError": "give a batch with the production model's columns",
    "BatchFileError": "correct the file where the message says, and run the command again",
    "BatchExplainError": "score it without --explain, or train a linear model or a tree "
    "ensemble (training.estimator)",
    "SmokeTestError": "the live service is unchanged; see the candidate's log under "
    "the serving state directory's logs/",
    "ServiceStartError": "the live service is unchanged; the message names the log to read "
    "(under the serving state directory's logs/)",
    "LabelsError": "check parameters.monitoring.labels_path",
    "TaskMismatchError": "give the model a name of its own (--set model.name=...; a "
    "regressor's default is tabular_regressor, from the tasks block in configs/training.yaml)",
    "DeploymentInProgressError": "this command changed nothing; run it again once the other "
    "deployment (or stop) has finished",
    "TrafficMovedError": "the decision stands and the traffic has moved; the next `python "
    "run.py rollout` (or deploy) records the rest (the stage, the registry, the audit trail); "
    "the message says what may still run and how to remove it",
    "PromotionLockTimeoutError": "this command changed nothing; a lock whose command was "
    "killed on this machine is taken over at once, one held from another machine 10 minutes "
    "after it was taken: if no command there is changing this model, delete the tag it names",
    "NothingLeftToDecideError": "the earlier decision was carried out, and this one was not: "
    "`python run.py rollout --status` and `deploy --status` say what serves now",
    "LookupError": "this command changed nothing; `python run.py rollout --status` shows what "
    "runs now (another command may have decided the rollout)",
    "AddressMovedError": "the live service is unchanged; move it explicitly (`deploy --stop`, "
    "then deploy) or keep its port",
    "AddressTakenError": "stop the process on that port, or give the model deployer another "
    "`port` in configs/environments/<env>.yaml",
    "ArrowInvalid": "the file is empty or not a table: give a CSV with a header row and rows, "
    "or a Parquet file",
    "EmptyDataError": "the file is empty: give a CSV with a header row and rows",
    "OperationalError": "a SQLite store (ZenML's or MLflow's) cannot be written: check that "
    "its directory is writable and the disk has room",
    "ConnectionError": "a server this command talks to does not answer: `python run.py stack "
    "up --env ENV` starts an environment's servers, `python run.py deploy` the model's",
}

#: what an operating-system error number means for the user, and the fix
OS_FIXES = {
    errno.EROFS: "the file system is read-only: point the state (.local, ZENML_CONFIG_PATH, "
    "the artifact store's path) at a writable directory, or remount it read-write",
    errno.ENOSPC: "the disk is full: free space (old bentos in .local/bentoml, logs, "
    "predictions) and run the command again",
    errno.EACCES: "no permission: run as the user who owns the checkout's state, or fix "
    "the directory's permissions",
    errno.ENOENT: "no such file or directory: check the path",
}


def cause_and_fix(exc: BaseException) -> str:
    """One line for an error no command expected: what it was and what to do."""
    text = str(exc).strip().splitlines()
    first = text[0] if text else type(exc).__name__
    kind = type(exc).__name__
    if isinstance(exc, OSError) and exc.errno in OS_FIXES:
        where = f" ({exc.filename})" if exc.filename else ""
        return f"→ failed ({kind}){where}: {exc.strerror}. Fix: {OS_FIXES[exc.errno]}."
    if "Error connecting to" in first or "Connection refused" in first:
        kind = "ConnectionError"
    fix = FIXES.get(kind, "rerun with --verbose for the traceback")
    if _ACTIVE_ENV:  # the environment this command activated, not a placeholder
        fix = fix.replace("--env ENV", f"--env {_ACTIVE_ENV[0]}")
    return f"→ failed ({kind}): {first}. Fix: {fix}."


def one_line(step: str, text: str) -> str:
    """``→ step 'X' failed the check: first line of the reason. Fix: …``"""
    check, _, reason = text.partition(": ")
    kind = check.rsplit(".", 1)[-1]
    lines = [line.strip(" -") for line in reason.splitlines() if line.strip()] or [""]
    summary = lines[0]
    if summary.endswith(":") and len(lines) > 1:  # a list of problems: name the first
        more = f" (and {len(lines) - 2} more)" if len(lines) > 2 else ""
        summary = f"{summary[:-1]}, first {lines[1]}{more}"
    os_error = re.search(r"\[Errno (\d+)\]", summary)
    fix = (
        FIXES.get(kind)
        or (OS_FIXES.get(int(os_error.group(1)), "") if os_error else "")
        or "rerun with --verbose for ZenML's traceback of the step"
    )
    return f"→ step '{step}' failed ({kind}): {summary}. Fix: {fix}."


def failed_steps(tag: str) -> list[tuple[str, str]]:
    """(step, the exception it raised) for the failed steps of the runs carrying ``tag``
    (this command's) and of their child runs (the continuous-training loop's)."""
    import re

    from tabular_mlops.adapters.runs_in_flight import runs_of

    failures = []
    for run in runs_of(tag):
        for name, step_run in run.steps.items():
            info = step_run.exception_info
            if step_run.status.value == "failed" and info is not None:
                raised = list(
                    re.finditer(r"^[\w.]+(?:Error|Exception)\b.*?: ", info.traceback, re.M)
                )
                text = info.traceback[raised[-1].start() :] if raised else info.traceback
                failures.append((name, text.strip()))
    return failures


def finished_steps(run: PipelineRunResponse) -> dict[str, StepRunResponse]:
    """The steps of ``run`` as the store has them now, by name: read once (each read of
    ``run.steps`` lists them all from the store again, by the run's id)."""
    return dict(run.steps)


def step_output(steps: Mapping[str, StepRunResponse], step_name: str, artifact: str) -> Any:
    """The loaded output ``artifact`` of the step ``step_name`` in ``steps``."""
    return steps[step_name].outputs[artifact][0].load()


def retraining_plan(
    env: str,
    config: MonitoringRunConfig,
    retrain: bool,
    training_path: Path = CONFIG_DIR / "training.yaml",
    deployment_path: Path = CONFIG_DIR / "deployment.yaml",
) -> RetrainingPlan:
    """What a ``retrain`` decision runs: training.yaml with the fresh data swapped in, and
    deployment.yaml's serving, both with the environment's overlays."""
    model = f"model.name={config.model.name}"
    training = load_pipeline_config(TrainingRunConfig, env, training_path, (model,))
    serving = load_pipeline_config(DeploymentRunConfig, env, deployment_path, (model,))
    # the decision to retrain was drift: the gate is told to accept it, and records that
    validation = training.parameters.validation.model_copy(update={"accept_drift": True})
    parameters = training.parameters.model_copy(update={"validation": validation})
    if config.retraining.data is not None:
        parameters = parameters.model_copy(update={"data": config.retraining.data})
    serving_config, stage = serving.parameters.serving, serving.stage
    if config.retraining.strategy != "replace":
        # a retrained model is a candidate: staging offline, production only if it wins
        promotion = parameters.promotion.model_copy(update={"stage": "staging"})
        parameters = parameters.model_copy(update={"promotion": promotion})
        rollout = serving_config.rollout.model_copy(update={"strategy": config.retraining.strategy})
        serving_config = serving_config.model_copy(update={"rollout": rollout})
        stage = "staging"
    return RetrainingPlan(
        enabled=retrain and config.retraining.enabled,
        model=training.model,
        parameters=parameters,
        redeploy=config.retraining.redeploy,
        serving=serving_config,
        stage=stage,
        training_settings=training.settings,
        deployment_settings=serving.settings,
        step_options=deep_merge(deep_merge(training.steps, serving.steps), config.steps),
    )


def decide_first(env: str, model_name: str) -> str:
    """The hint of a command refused under a running rollout: the command that decides it."""
    return (
        f"decide it first (`python run.py rollout{env_flag(env)} --set model.name={model_name}`"
        ", by the rules, or with --promote or --abort and a --reason)"
    )


def env_flag(env: str) -> str:
    """`` --env ENV`` for a command a hint names, nothing for dev (the default)."""
    return f" --env {env}" if env != "dev" else ""


def per_environment(folder: Path, env: str) -> Path:
    """``folder`` for dev, ``folder/NAME`` for another environment (named, or given as
    its YAML file): one environment's files never overwrite another's."""

    name = environment_name(env)
    return folder if name == "dev" else folder / name


def refuse_during_rollout(
    env: str, model_name: str, what: str, deployment_path: Path = CONFIG_DIR / "deployment.yaml"
) -> None:
    """Stop, before anything runs, a command that would change production (or start an
    experiment) under a running experiment of ``model_name``: one line naming the
    rollout and how to end it. Local processes only: their state is a file, read at once
    (a cluster's deployer refuses in the deployment step, as `deploy` does)."""
    environment, _ = load_env(env)
    if environment.stack.components.model_deployer.flavor != "tabular_local":
        return
    deployment = load_pipeline_config(
        DeploymentRunConfig, env, deployment_path, (f"model.name={model_name}",)
    )
    running = serving_target(env, deployment, activate=False).rollout(model_name)
    if running is not None:
        raise click.ClickException(
            f"rollout {running.experiment} of version {running.candidate.model_version} "
            f"against version {running.champion.model_version} of '{model_name}' is in "
            f"progress, and {what}: {decide_first(env, model_name)}; nothing was changed"
        )


def serving_target(env: str, config: DeploymentRunConfig, activate: bool) -> ServingTarget:
    """The target of the environment's model deployer.

    A ``tabular_local`` deployer serves local processes, whose state is a file:
    reading it needs neither ZenML nor its store, so ``--status`` and ``--stop``
    answer at once, from the deployer's configuration in the environment's YAML
    (which ``activate`` has just made the stack's: a deploy with nothing to do
    never builds the whole stack, whose tracker alone imports MLflow, about 1 s).
    Any other stack is activated and its model deployer asked.
    """
    environment, source = load_env(env)
    serving = config.parameters.serving
    deployer = environment.stack.components.model_deployer
    if deployer.flavor == "tabular_local":
        if activate:
            activate_stack(env)
        from tabular_mlops.adapters.config_files import local_serving
        from tabular_mlops.adapters.deployment.local import LocalProcessTarget

        try:
            return LocalProcessTarget(serving, local_serving(deployer.configuration, source))
        except ConfigError as exc:
            raise click.ClickException(str(exc)) from None
    activate_stack(env)
    from zenml.client import Client

    from tabular_mlops.adapters.deployment.model_deployer import serving_target as of_stack
    from tabular_mlops.adapters.deployment.target import UnsupportedStackError

    try:
        return of_stack(Client().active_stack, serving)
    except UnsupportedStackError as exc:
        raise click.ClickException(str(exc)) from None


def finish_cut_short(env: str, model_name: str, target: ServingTarget) -> list[str]:
    """Carry out the model's rollout decisions whose commands died half-way, in words
    (``adapters/rollout_decisions.py``); ``target`` keeps a note of them for ``deploy
    --status``."""
    from tabular_mlops.adapters.rollout_decisions import resume

    activate_stack(env)
    return resume(model_name, target)
