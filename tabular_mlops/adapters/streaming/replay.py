"""Publish a file's rows as events: for demos, tests and benchmarks.

Each row becomes one event, ``{column: value}`` as JSON (a value that reads as a
number a number, any other cell its text as the file has it, "?" and empty cells
included: the consumer reads them by the model's data contract, as training read
them; a Parquet file's nulls null),
named ``<prefix>:<row number>`` in the ``Nats-Msg-Id`` header, so the broker keeps
one copy of an event published twice within its duplicate window. Values go as
the file has them: a malformed row is the consumer's to dead-letter, with the
reason, as it would be from any producer.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import time
from collections.abc import Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pandas as pd
from pydantic import BaseModel

from tabular_mlops.adapters.streaming.broker import BrokerError, connect, ensure_streams
from tabular_mlops.adapters.streaming.consumer import EVENT_ID
from tabular_mlops.adapters.table_files import (
    csv_header,
    refuse_ragged,
    repeated_header,
    unreadable,
)
from tabular_mlops.core.config import StreamingConfig

#: publishes in flight before waiting for the broker's confirmations
WINDOW = 2000


class ReplayResult(BaseModel):
    published: int
    #: events the broker already held under the same id
    duplicates: int
    seconds: float
    first_id: str | None


def read_events(path: Path, drop: Sequence[str] = ()) -> list[bytes]:
    """The file's rows as event payloads; ``drop`` names columns left out (e.g. the target)."""
    if not path.is_file():
        raise BrokerError(f"{path}: no such file to replay")
    csv = path.suffix.lower() != ".parquet"
    try:
        frame = (
            pd.read_csv(path, keep_default_na=False, na_values=[]) if csv else pd.read_parquet(path)
        )
    except (ValueError, OSError) as exc:  # pandas' parser errors are ValueErrors
        raise BrokerError(unreadable(path, exc, "a table", csv)) from None
    repeated = repeated_header(path, csv_header(path) if csv else list(frame.columns))
    if repeated:
        raise BrokerError(repeated)
    if csv:
        refuse_ragged(path, frame, BrokerError)
    unknown = [column for column in drop if column not in frame.columns]
    if unknown:
        raise BrokerError(f"{path}: no column(s) {unknown} to drop; it has {list(frame.columns)}")
    frame = frame.drop(columns=list(drop))
    for column in frame.select_dtypes(include=[object]).columns:
        # one bad cell makes pandas read a whole column as text: numbers go as numbers
        numbers = pd.to_numeric(frame[column], errors="coerce")
        frame[column] = numbers.astype(object).where(numbers.notna(), frame[column])
    rows: list[dict[str, Any]] = frame.astype(object).where(frame.notna(), None).to_dict("records")
    # dates and times go as ISO text: a producer's JSON has no other way to say them
    return [json.dumps(row, default=str).encode() for row in rows]


def default_prefix(payloads: Sequence[bytes], now: datetime | None = None) -> str:
    """``replay-<UTC second>-<digest of the payloads>``."""
    digest = hashlib.sha256()
    for payload in payloads:
        digest.update(len(payload).to_bytes(8, "big"))
        digest.update(payload)
    return f"{(now or datetime.now(UTC)):replay-%Y%m%dT%H%M%S}-{digest.hexdigest()[:8]}"


async def publish(
    config: StreamingConfig,
    payloads: Sequence[bytes],
    id_prefix: str | None = None,
    rate: float | None = None,
) -> ReplayResult:
    """Publish ``payloads`` to the events stream, at ``rate`` events/s or as fast as the
    broker confirms them; ids are ``<id_prefix>:<index>`` (default: the time now and a
    digest of the payloads, so that two files replayed within a second keep their events
    apart, and only the same rows sent twice are one)."""
    prefix = id_prefix or default_prefix(payloads)
    client = await connect(config, name="tabular-replay")
    started = time.perf_counter()
    duplicates = 0
    try:
        js = client.jetstream(publish_async_max_pending=WINDOW + 16)
        await ensure_streams(js, config)
        pending: list[asyncio.Future[Any]] = []
        for index, payload in enumerate(payloads):
            if rate is not None:
                delay = started + index / rate - time.perf_counter()
                if delay > 0:
                    await asyncio.sleep(delay)
            pending.append(
                await js.publish_async(
                    config.events.subject, payload, headers={EVENT_ID: f"{prefix}:{index}"}
                )
            )
            if len(pending) >= WINDOW:
                duplicates += sum(bool(ack.duplicate) for ack in await asyncio.gather(*pending))
                pending = []
        duplicates += sum(bool(ack.duplicate) for ack in await asyncio.gather(*pending))
    finally:
        await client.drain()
    return ReplayResult(
        published=len(payloads),
        duplicates=duplicates,
        seconds=time.perf_counter() - started,
        first_id=f"{prefix}:0" if payloads else None,
    )
