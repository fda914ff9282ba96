"""Streaming: the consumer end to end through a real broker, against scoring the same rows
in process, in one run.

1. Sustained rate: ``--events`` events are published to the dev broker (a real
   nats-server with JetStream, on a free port, in a temporary store), then a
   consumer process drains them: validate, score, log (fsynced), publish the
   predictions and wait for the broker's confirmation, acknowledge. Timed from the
   end of its first micro-batch to the end of its last (start-up is not throughput);
   then the same with two consumer processes of one queue group. Beside it, on the
   same rows: the in-process ceiling of the same
   work without a broker (``EventScorer.score``: validation and scoring, micro-batches
   of the same size), and bare batch scoring of the rows as one frame (the numpy path,
   ``predict_proba_frame``).
2. Latency at a fixed rate: the consumer runs in a process of its own while this one
   publishes ``--rate`` events/s for ``--seconds``; each prediction's latency is the
   time from the broker storing its event to the consumer publishing its prediction.

The model is the default breast-cancer one (30 numeric features). Medians of ``--rounds``.

    .venv/bin/python bench/streaming.py [--events 200000] [--rate 1000] [--seconds 10]
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import multiprocessing
import shutil
import statistics
import tempfile
import time
from collections.abc import Iterator
from datetime import datetime
from pathlib import Path
from typing import Any

import click
import numpy as np
import uvloop

from tabular_mlops.adapters.net import free_port
from tabular_mlops.adapters.sources import load_dataset
from tabular_mlops.adapters.streaming import broker
from tabular_mlops.adapters.streaming.consumer import Consumer, prepare_process
from tabular_mlops.adapters.streaming.replay import publish
from tabular_mlops.core.config import (
    DataSourceConfig,
    LocalBrokerConfig,
    StreamingConfig,
    TrainingConfig,
)
from tabular_mlops.core.events import Event, EventScorer
from tabular_mlops.core.model_factory import fit_model
from tabular_mlops.core.scoring import FastModel, scorer_for
from tabular_mlops.core.spec import ServingSpec


def model() -> tuple[EventScorer, Any]:
    frame = load_dataset(DataSourceConfig())
    fitted, _ = fit_model(frame, "target", TrainingConfig())
    spec = ServingSpec.from_training_data("bench", "1", frame, "target", list(fitted.classes_))
    names = [feature.name for feature in spec.features]
    return EventScorer(spec, scorer_for(fitted, names, frame[names])), frame[names]


class Static:
    """The bench's model source: one version, loaded in process."""

    def __init__(self) -> None:
        self.scorer, _ = model()

    def current_version(self) -> str:
        return "1"

    def load(self, version: str) -> EventScorer:
        return self.scorer


def payloads(count: int) -> list[bytes]:
    _, features = model()
    sample = features.sample(count, replace=True, random_state=0)
    return [json.dumps(row).encode() for row in sample.to_dict("records")]


@contextlib.contextmanager
def fresh_broker() -> Iterator[StreamingConfig]:
    """A dev broker of its own (free port, empty store) for one measurement: a consumer
    reads a stream from its start, so nothing of another measurement may be in it."""
    root = Path(tempfile.mkdtemp(prefix="bench-streaming-"))
    config = StreamingConfig(
        servers=[f"nats://127.0.0.1:{free_port()}"],
        local_broker=LocalBrokerConfig(store_dir=root / "nats"),
        inference_log_dir=root / "log",
    )
    broker.start_local_broker(config)
    try:
        yield config
    finally:
        broker.stop_local_broker(config)
        shutil.rmtree(root, ignore_errors=True)


def drain(config_json: str, results: Any) -> None:
    """One consumer process: drain the stream, then report (first batch's end, events in
    it, last batch's end, events) so that start-up is not counted as throughput."""
    config = StreamingConfig.model_validate_json(config_json)
    consumer = Consumer(config, Static())
    marks: list[tuple[float, int]] = []

    def mark(_: Any, stats: Any) -> None:
        marks.append((time.perf_counter(), stats.events))

    consumer.on_batch = mark
    prepare_process()  # as `run.py stream` does
    stats = uvloop.run(consumer.run(idle_exit=2.0))
    if not marks:  # the other consumer drained it all first
        marks.append((float("inf"), 0))
    results.put((marks[0][0], marks[0][1], marks[-1][0], stats.events, stats.dead_letters))


def sustained(config: StreamingConfig, events: list[bytes], consumers: int) -> float:
    """Events/s of ``consumers`` consumer processes (one queue group) draining a backlog,
    from the end of each one's first micro-batch to the end of the last one."""
    asyncio.run(publish(config, events, id_prefix="sustained"))
    context = multiprocessing.get_context("spawn")
    results = context.Queue()
    processes = [context.Process(target=drain, args=(config.model_dump_json(), results))
                 for _ in range(consumers)]  # fmt: skip
    for process in processes:
        process.start()
    reports = [results.get(timeout=300) for _ in processes]
    for process in processes:
        process.join()
    if sum(r[3] for r in reports) != len(events) or any(r[4] for r in reports):
        raise RuntimeError(f"the consumers ended with {reports}")
    counted = len(events) - sum(r[1] for r in reports)
    ends = [r[2] for r in reports if r[2] != float("inf")]
    return counted / (max(ends) - min(r[0] for r in reports))


def in_process(events: list[bytes], batch: int) -> float:
    scorer, _ = model()
    wrapped = [Event(str(i), data, time.time()) for i, data in enumerate(events)]
    started = time.perf_counter()
    for offset in range(0, len(wrapped), batch):
        scorer.score(wrapped[offset : offset + batch], 5, time.time())
    return len(events) / (time.perf_counter() - started)


def batch_frame(count: int) -> float:
    scorer, features = model()
    frame = features.sample(count, replace=True, random_state=0)
    fast = scorer.scorer
    if not isinstance(fast, FastModel):
        raise RuntimeError("the numpy path does not serve this model")
    started = time.perf_counter()
    fast.predict_proba_frame(frame)
    return count / (time.perf_counter() - started)


def run_consumer(config_json: str, idle_exit: float) -> None:
    config = StreamingConfig.model_validate_json(config_json)
    consumer = Consumer(config, Static())
    prepare_process()  # as `run.py stream` does
    uvloop.run(consumer.run(idle_exit=idle_exit))


def at_rate(config: StreamingConfig, rate: float, seconds: float) -> tuple[float, float, int]:
    count = int(rate * seconds)
    events = payloads(count)
    process = multiprocessing.get_context("spawn").Process(
        target=run_consumer, args=(config.model_dump_json(), 5.0)
    )
    process.start()
    asyncio.run(publish(config, payloads(1), id_prefix="warm-up"))  # not timed: the consumer
    deadline = time.monotonic() + 120  # imports, subscribes and loads the model first
    while not asyncio.run(broker.read_stream(config, config.predictions)):
        if time.monotonic() > deadline or not process.is_alive():
            raise RuntimeError("the consumer did not start")
        time.sleep(0.2)
    asyncio.run(publish(config, events, id_prefix="rate", rate=rate))
    process.join(timeout=120)
    latencies = []
    for message in asyncio.run(broker.read_stream(config, config.predictions)):
        body = json.loads(message)
        predicted = datetime.fromisoformat(body["predicted_at"])
        for prediction in body["predictions"]:
            if prediction["event_id"].startswith("warm-up:"):
                continue
            published = datetime.fromisoformat(prediction["published_at"])
            latencies.append((predicted - published).total_seconds() * 1000)
    if len(latencies) != count:
        raise RuntimeError(f"{len(latencies)} predictions for {count} events")
    return float(np.percentile(latencies, 50)), float(np.percentile(latencies, 99)), count


@click.command()
@click.option("--events", default=200_000, show_default=True)
@click.option("--rate", default=1000.0, show_default=True, help="events/s for the latency run")
@click.option("--seconds", default=10.0, show_default=True)
@click.option("--rounds", default=3, show_default=True)
def main(events: int, rate: float, seconds: float, rounds: int) -> None:
    data = payloads(events)
    results: dict[str, list[float]] = {"stream": [], "two": [], "in_process": [], "frame": []}
    latency: list[tuple[float, float, int]] = []
    for round_number in range(rounds):
        with fresh_broker() as config:
            results["stream"].append(sustained(config, data, consumers=1))
        with fresh_broker() as config:
            results["two"].append(sustained(config, data, consumers=2))
        results["in_process"].append(in_process(data, StreamingConfig().max_batch_events))
        results["frame"].append(batch_frame(events))
        with fresh_broker() as config:
            latency.append(at_rate(config, rate, seconds))
        print(f"round {round_number + 1}: stream {results['stream'][-1]:,.0f} events/s (two "
              f"consumers {results['two'][-1]:,.0f}), "
              f"in process {results['in_process'][-1]:,.0f}/s, frame "
              f"{results['frame'][-1]:,.0f} rows/s; at {rate:,.0f}/s p50 "
              f"{latency[-1][0]:.1f} ms p99 {latency[-1][1]:.1f} ms")  # fmt: skip
    median = {name: statistics.median(values) for name, values in results.items()}
    p50 = statistics.median(point[0] for point in latency)
    p99 = statistics.median(point[1] for point in latency)
    print(f"\n{events:,} events, medians of {rounds} rounds:")
    print(f"  through the broker (validate, score, publish, confirm, ack): "
          f"{median['stream']:,.0f} events/s")  # fmt: skip
    print(f"  two consumers (one queue group, two processes): {median['two']:,.0f} events/s")
    print(f"  in process, no broker (validate + score, same micro-batches): "
          f"{median['in_process']:,.0f} events/s -> broker path at "
          f"{median['stream'] / median['in_process']:.2f}x of it")  # fmt: skip
    print(f"  batch ceiling (numpy path on one frame): {median['frame']:,.0f} rows/s -> "
          f"broker path at {median['stream'] / median['frame']:.3f}x of it")  # fmt: skip
    print(f"  at {rate:,.0f} events/s for {seconds:.0f} s: event to prediction p50 {p50:.1f} ms, "
          f"p99 {p99:.1f} ms")  # fmt: skip


if __name__ == "__main__":
    main()
