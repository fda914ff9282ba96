"""``run.py stack`` and ``dashboard``: the environment's stack, its servers, and the UI."""

from __future__ import annotations

import click

from cli.common import activate_stack, env_option, load_env, zenml_client
from tabular_mlops.adapters.config_files import ConfigError


@click.group()
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
    from tabular_mlops.adapters import stacks

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
    from tabular_mlops.adapters import servers

    environment, _ = load_env(env)
    if environment.services is None:
        raise click.ClickException(f"environment '{env}' declares no services to start")
    try:
        urls = servers.up(environment.services)
    except servers.ServerError as exc:
        raise click.ClickException(str(exc)) from None
    # after the servers: the client talks to the one just started, never to a dead one
    servers.create_local_secrets(zenml_client(), environment.services)
    for name, url in urls.items():
        click.echo(f"{name} server: {url}")
    activate_stack(env)


@stack.command("down")
@env_option
def stack_down(env: str) -> None:
    """Stop the servers `stack up` started; the stores on disk stay."""
    from tabular_mlops.adapters import servers

    environment, _ = load_env(env)
    if environment.services is None:
        raise click.ClickException(f"environment '{env}' declares no services to stop")
    stopped = servers.down(environment.services)
    click.echo(f"Stopped: {', '.join(stopped) or 'nothing was running'}")


@stack.command("register")
@env_option
def stack_register(env: str) -> None:
    """Register or update the environment's stack and make it the active one."""
    activate_stack(env)


#: what a first visit looks like, and where this project's reports are
DASHBOARD_GUIDE = """\
  First visit: its account survey is already answered (no e-mail, no newsletter).
  A run: Pipelines > training_pipeline > a run shows the DAG; click an artifact
    (data_report, evaluation_report, model_card; monitoring_report, monitoring_trend
    in continuous_training_pipeline) > Visualization > Load Preview.
  Its Models and Artifacts tabs are ZenML Pro pages: versions, stages and what is
    served are listed by `python run.py models`."""


@click.command()
@click.option(
    "--port", type=click.IntRange(1, 65535), help="Port on 127.0.0.1 (ZenML's default: 8237)."
)
@click.option("--stop", is_flag=True, help="Stop the local ZenML server instead.")
def dashboard(port: int | None, stop: bool) -> None:
    """Start the local ZenML server with its dashboard and print its URL.

    The server serves the same local store the pipelines write to, so every
    run so far is there; `--stop` switches the client back to the embedded store.
    """
    from tabular_mlops.adapters import servers

    zenml_client()
    try:
        if stop:
            servers.stop_zenml()
            click.echo("Stopped the local ZenML server; the client uses the embedded store again.")
        else:
            click.echo(f"Dashboard: {servers.start_zenml(port)}")
            click.echo(DASHBOARD_GUIDE)
    except servers.ServerError as exc:
        raise click.ClickException(str(exc)) from None
