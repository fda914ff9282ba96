"""The scoring consumer: events in, predictions and dead letters out, nothing lost.

Events arrive from a durable JetStream consumer into a buffer; each turn of the
loop takes what has arrived (up to ``max_batch_events``), scores it as one
micro-batch (``core.events``), publishes the batch's predictions as one message
and a dead letter per refused event, waits for the broker to confirm each, and
only then acknowledges the events. A consumer killed anywhere in between leaves
its events unacknowledged (their log lines may be on disk already: a redelivered event
can be logged twice, under its one id): the broker delivers them again after
``ack_wait_seconds``, to this consumer restarted or to another one of the same
durable name (consumers of one name share the events: a queue group), and
they are predicted again under the same event id (the
consumer counts them as redelivered; a reader keeps the first prediction of an
id). The broker holds at most ``max_ack_pending`` unacknowledged events per
durable consumer, which is the back-pressure.

The model is the version at the configured stage. A background task asks which
version that is every ``model_check_seconds`` and loads a new one beside the
current; the loop switches between micro-batches, so no event waits on a load
and no micro-batch is scored by two versions.
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import hashlib
import json
import logging
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

import nats.js.errors
from nats.aio.msg import Msg
from nats.js import JetStreamContext
from nats.js.api import AckPolicy, ConsumerConfig, DeliverPolicy
from pydantic_core import to_json

from tabular_mlops.adapters.streaming.broker import BrokerError, connect, ensure_streams
from tabular_mlops.core.config import StreamingConfig
from tabular_mlops.core.events import Event, EventScorer, ScoredBatch
from tabular_mlops.core.log_policy import masker
from tabular_mlops.core.problems import far_outside_check, unseen_category_check
from tabular_mlops.serving.inference_log import FlushedLog, logged, row_lines

logger = logging.getLogger(__name__)
#: the header a publisher names its event with (the broker dedups by it, too)
EVENT_ID = "Nats-Msg-Id"
#: how often an idle consumer looks at the clock (events wake it at once)
IDLE_CHECK_SECONDS = 0.5
#: how long the broker has to confirm a micro-batch's messages before its events are
#: handed back (a confirmation lost with a connection never comes)
CONFIRMATION_TIMEOUT_SECONDS = 10
#: what streamed predictions are logged as; monitoring reads them beside live requests
SOURCE = "stream"


class ModelSource(Protocol):
    """Which model version is at the stage, and its scorer."""

    def current_version(self) -> str | None: ...

    def load(self, version: str) -> EventScorer: ...


@dataclass
class ConsumerStats:
    events: int = 0
    predictions: int = 0
    dead_letters: int = 0
    #: events delivered more than once (a consumer died before acknowledging them)
    redelivered: int = 0
    batches: int = 0
    #: versions in the order they scored
    versions: list[str] = field(default_factory=list)
    #: per categorical feature, the predicted rows holding a category training never saw
    unseen_categories: dict[str, int] = field(default_factory=dict)

    def summary(self) -> str:
        unseen = ", ".join(f"{n}: {c}" for n, c in sorted(self.unseen_categories.items()))
        return (
            f"{self.events} events in {self.batches} micro-batches: {self.predictions} "
            f"predictions, {self.dead_letters} dead letters, {self.redelivered} redelivered; "
            f"model version(s) {', '.join(self.versions) or '-'}"
            + (f"; rows holding a category training never saw: {unseen}" if unseen else "")
        )


def prediction_messages(batch: ScoredBatch, max_payload: int) -> list[tuple[str, bytes]]:
    """The batch's predictions as (id, message) of at most ``max_payload`` bytes each (the
    broker's limit, 1 MB by default): one message when it fits, else the predictions
    halved until each part does.

    The id is a hash of the version and the events: a micro-batch published again after
    a crash (same events, same version) is stored once; any other set of events is
    another message, never mistaken for a copy."""
    if not batch.predictions:
        return []
    body = to_json(batch.message())
    if len(body) > max_payload and len(batch.predictions) > 1:
        half = len(batch.predictions) // 2
        parts = []
        for predictions in (batch.predictions[:half], batch.predictions[half:]):
            part = ScoredBatch(batch.model_name, batch.model_version, batch.predicted_at)
            part.predictions = predictions
            parts.extend(prediction_messages(part, max_payload))
        return parts
    digest = hashlib.sha256(batch.model_version.encode())
    for prediction in batch.predictions:
        digest.update(b"\0" + prediction["event_id"].encode())
    return [(digest.hexdigest(), body)]


def prepare_process() -> None:
    """Garbage collection tuned for a consumer process: what is loaded by now (ZenML,
    scikit-learn, the model) is frozen out of the collector's scans, and the youngest
    generation is collected every 10,000 allocations instead of 700. A micro-batch
    allocates a few objects per event; with the defaults, collections that scanned
    the whole heap took up to a quarter of the consumer's time (``bench/streaming.py``,
    docs/benchmarks.md). Nothing here makes cycles that must go at once."""
    gc.collect()
    gc.freeze()
    gc.set_threshold(10_000, 20, 100)


def event_of(message: Msg, stream: str) -> Event:
    metadata = message.metadata
    headers = message.headers
    event_id = headers.get(EVENT_ID) if headers else None
    return Event(
        event_id=event_id or f"{stream}:{metadata.sequence.stream}",
        data=message.data,
        published_at=metadata.timestamp.timestamp(),
        deliveries=metadata.num_delivered,
    )


class Consumer:
    def __init__(
        self,
        config: StreamingConfig,
        models: ModelSource,
        on_batch: Callable[[ScoredBatch, ConsumerStats], None] | None = None,
    ) -> None:
        self.config, self.models, self.on_batch = config, models, on_batch
        self.stats = ConsumerStats()
        self.stop = asyncio.Event()
        self._arrived: list[Msg] = []
        #: when the events waiting in :attr:`_arrived` were last told to the broker as in
        #: progress (``_keep_in_progress``)
        self._touched = time.monotonic()
        self._wake = asyncio.Event()
        self._max_payload = 1 << 20
        self._current: EventScorer | None = None
        self._next: EventScorer | None = None
        self._logged_version: str | None = None
        self._log_rules: tuple[Any, Any, Any] = (None, None, None)
        #: until the store has been asked once (and a model found there loaded): time
        #: spent here is starting, not idleness (``--idle-exit``)
        self._loading = True

    async def run(self, idle_exit: float | None = None) -> ConsumerStats:
        """Consume until :attr:`stop` is set, or ``idle_exit`` seconds pass without events.

        Nothing is taken from the broker before a model is loaded: until a version is at
        the stage, events wait in the stream, not in this process."""
        config = self.config
        client = await connect(config, name=f"tabular-consumer-{config.consumer}")
        log = FlushedLog(config.inference_log_dir) if config.inference_log_dir else None
        watcher = asyncio.create_task(self._watch_model())
        self._max_payload = client.max_payload
        try:
            js = client.jetstream()
            await ensure_streams(js, config)
            # idle time counts once the store has been asked and no model is loading: a
            # slow start (a busy machine, a cold store) is not idleness
            idle_since = time.monotonic()
            while self._next is None and not self.stop.is_set():
                await self._sleep(IDLE_CHECK_SECONDS)
                if self._loading:
                    idle_since = time.monotonic()
                elif idle_exit is not None and time.monotonic() - idle_since >= idle_exit:
                    return self.stats
            await self._subscribe(js)
            idle_since = time.monotonic()
            while not self.stop.is_set():
                if self._next is not None:
                    self._switch()
                if self._current is None or not self._arrived:
                    await self._sleep(IDLE_CHECK_SECONDS)
                    if idle_exit is not None and time.monotonic() - idle_since >= idle_exit:
                        break
                    continue
                messages = self._arrived[: config.max_batch_events]
                del self._arrived[: len(messages)]
                await self._keep_in_progress()
                await self._handle(js, messages, self._current, log)
                idle_since = time.monotonic()
        finally:
            watcher.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await watcher
            if log is not None:
                log.close()
            with contextlib.suppress(Exception):
                await client.flush(timeout=5)  # the last acknowledgements
            await client.close()
        return self.stats

    async def _subscribe(self, js: JetStreamContext) -> None:
        config = self.config
        try:
            await js.subscribe(  # a queue group: consumers of one name share the events
                config.events.subject,
                queue=config.consumer,
                durable=config.consumer,
                stream=config.events.stream,
                cb=self._arrive,
                manual_ack=True,
                pending_msgs_limit=40 * config.max_batch_events,
                config=ConsumerConfig(
                    ack_policy=AckPolicy.EXPLICIT,
                    deliver_policy=DeliverPolicy.ALL,
                    ack_wait=config.ack_wait_seconds,
                    max_ack_pending=20 * config.max_batch_events,
                ),
            )
        except nats.js.errors.Error as exc:  # e.g. a durable of that name made otherwise
            raise BrokerError(
                f"cannot consume '{config.events.stream}' as '{config.consumer}': {exc}; "
                "choose another parameters.streaming.consumer, or delete that consumer"
            ) from None

    async def _keep_in_progress(self, now: float | None = None) -> None:
        """Tell the broker that the events still waiting here are being worked on, a
        third of ``ack_wait_seconds`` after it was last told: a consumer behind on a busy
        machine (up to ``max_ack_pending`` events wait here) would otherwise see them
        delivered again after ``ack_wait_seconds``, and dead-lettered after
        ``max_deliveries`` such waits, though nothing failed to score them."""
        now = time.monotonic() if now is None else now
        if not self._arrived or now - self._touched < self.config.ack_wait_seconds / 3:
            return
        self._touched = now
        for message in self._arrived:
            with contextlib.suppress(Exception):  # the broker gone: redelivery is the fallback
                await message.in_progress()

    async def _arrive(self, message: Msg) -> None:
        self._arrived.append(message)
        self._wake.set()

    async def _sleep(self, seconds: float) -> None:
        """Until an event arrives, :attr:`stop` is set, or ``seconds`` pass."""
        self._wake.clear()
        if self._arrived and self._current is not None:
            return
        stop = asyncio.ensure_future(self.stop.wait())
        wake = asyncio.ensure_future(self._wake.wait())
        await asyncio.wait({stop, wake}, timeout=seconds, return_when=asyncio.FIRST_COMPLETED)
        stop.cancel()
        wake.cancel()

    async def _handle(
        self, js: JetStreamContext, messages: list[Msg], scorer: EventScorer,
        log: FlushedLog | None,
    ) -> None:  # fmt: skip
        """One micro-batch. Whatever fails on the way (the broker, the disk, a confirmation
        that never comes) leaves its events unacknowledged and asked again in a second:
        the consumer carries on with the next micro-batch."""
        config = self.config
        max_payload = self._max_payload
        try:
            events = [event_of(message, config.events.stream) for message in messages]
            batch = scorer.score(events, config.max_deliveries, time.time())
            pending = [
                await js.publish_async(
                    config.dead_letters.subject,
                    json.dumps(letter).encode(),
                    headers={EVENT_ID: event.event_id},
                )
                for event, letter in batch.dead_letters
            ]
            for message_id, body in prediction_messages(batch, max_payload):
                pending.append(
                    await js.publish_async(
                        config.predictions.subject, body, headers={EVENT_ID: message_id}
                    )
                )
            await asyncio.wait_for(asyncio.gather(*pending), CONFIRMATION_TIMEOUT_SECONDS)
            inputs_of, outside_of, unseen_of = self._rules(scorer)
            if log is not None:  # written through before any event is acknowledged
                lines = row_lines(
                    scorer.spec.model_name, scorer.version, SOURCE,
                    [feature.name for feature in scorer.spec.features],
                    ((p["event_id"], row, *logged(p))
                     for p, row in zip(batch.predictions, batch.rows, strict=True)),
                    inputs_of, [outside_of(row) for row in batch.rows],
                )  # fmt: skip
                log.write(lines)
            for message in messages:  # only now: every event has its prediction or dead letter
                await message.ack()
            self._count_unseen(unseen_of, batch.rows)
        except Exception as exc:  # whatever it was, the events come again
            logger.warning("a micro-batch of %s events failed (%s: %s); they will be "
                           "delivered again", len(messages), type(exc).__name__, exc)  # fmt: skip
            for message in messages:
                with contextlib.suppress(Exception):
                    await message.nak(delay=1)
            return
        self._count(events, batch, scorer.version)

    def _rules(self, scorer: EventScorer) -> tuple[Any, Any, Any]:
        """What the log keeps of a row (``log_columns``), which rows lie far outside
        training and which hold a category it never saw, for the version scoring now
        (made once per version)."""
        if self._logged_version != scorer.version:
            from tabular_mlops.core.scoring import known_categories

            names = [feature.name for feature in scorer.spec.features]
            self._log_rules = (
                masker(
                    names,
                    scorer.log_columns
                    if self.config.log_columns is None
                    else self.config.log_columns,
                    scorer.spec.model_name,
                ),
                far_outside_check(scorer.spec),
                unseen_category_check(
                    known_categories(getattr(scorer.scorer, "model", None)), names
                ),
            )
            self._logged_version = scorer.version
        return self._log_rules

    def _count_unseen(
        self, unseen_of: Callable[[Sequence[Any]], list[str] | None], rows: list[list[Any]]
    ) -> None:
        """Rows scored with a category training never saw (as none of the known ones)."""
        counts = self.stats.unseen_categories
        for row in rows:
            for name in unseen_of(row) or ():
                counts[name] = counts.get(name, 0) + 1

    def _count(self, events: list[Event], batch: ScoredBatch, version: str) -> None:
        stats = self.stats
        stats.batches += 1
        stats.events += len(events)
        stats.predictions += len(batch.predictions)
        stats.dead_letters += len(batch.dead_letters)
        stats.redelivered += sum(event.deliveries > 1 for event in events)
        if not stats.versions or stats.versions[-1] != version:
            stats.versions.append(version)
        if self.on_batch is not None:
            self.on_batch(batch, stats)

    def _switch(self) -> None:
        previous = self._current.version if self._current else None
        self._current, self._next = self._next, None
        if previous is not None and self._current is not None:
            logger.info("model version %s -> %s, between micro-batches",
                        previous, self._current.version)  # fmt: skip

    async def _watch_model(self) -> None:
        """Every ``model_check_seconds``: which version is at the stage; a new one is
        loaded here, off the loop's path, and handed over for the next micro-batch."""
        warned = False
        while True:
            try:
                version = await asyncio.to_thread(self.models.current_version)
                held = self._next or self._current
                if version is not None and (held is None or held.version != version):
                    self._next = await asyncio.to_thread(self.models.load, version)
                    self._wake.set()
                elif version is None and held is None and not warned:
                    logger.warning("no model version at the stage yet; events wait in the "
                                   "stream")  # fmt: skip
                    warned = True
                self._loading = False
            except Exception:  # a store hiccup must not stop scoring with the current model
                self._loading = False
                logger.exception("checking the model version failed; scoring carries on")
            await asyncio.sleep(self.config.model_check_seconds)
