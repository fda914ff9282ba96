"""How fast the packaged scoring path answers: the deployment gate's latency budget.

Measured in process on the scorer the service will run (numpy path or pipeline),
with the model's own decision rule, on rows of its test split: a single row at
a time (the online case, p50/p99 over ``calls``) and one large batch (rows/s).
It leaves out HTTP and the router, which ``bench/serving.py`` measures with wrk:
this is the model's share of the budget, the part a new version can change.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np
from pydantic import BaseModel

from tabular_mlops.core.config import ServingConfig
from tabular_mlops.core.scoring import Scorer

#: the fewest single-row calls a round measures, however slow the scorer
MIN_CALLS = 30


class LatencyBudgetError(RuntimeError):
    """The packaged scoring path is slower than ``serving``'s budget allows."""


class ScoringLatency(BaseModel):
    scoring_path: str
    single_row_p50_ms: float
    single_row_p99_ms: float
    rows_per_second: float
    batch_rows: int


def measure(
    scorer: Scorer,
    decide_labels: Callable[[np.ndarray], np.ndarray],
    rows: Sequence[Sequence[Any]],
    calls: int = 200,
    rounds: int = 3,
    batch_rows: int = 10_000,
    seconds_per_round: float = 0.3,
) -> ScoringLatency:
    """Single-row latency percentiles and batch throughput of ``scorer`` on ``rows``, with
    the labels decided as the service decides them (``ServingSpec.label_indexes``).

    Time is this thread's CPU time (``thread_time``), not wall-clock, with NumPy's and
    OpenMP's pools held to one thread as in each served worker (``serving/server.py``):
    a busy machine delays a call without adding to it, so the gate judges the model,
    never the neighbours (a wall-clock p99 refused deploys on a loaded machine; a pool's
    threads spin longer, and so spend more CPU, on a loaded one). The best of
    ``rounds`` rounds counts (the lowest p99, the fastest batch); p50 is over every
    call.

    A slow scorer is measured on fewer calls, down to ``MIN_CALLS`` a round: about
    ``seconds_per_round`` of CPU time each (a 200-tree forest, 15 ms a row, spent 9 s on
    600 calls), which still tells a model far over a budget of a few ms from one within."""
    if not rows:
        raise ValueError("no rows to measure the scoring path on")
    from threadpoolctl import threadpool_limits

    with threadpool_limits(limits=1):
        p99s, every, rates = [], [], []
        batch = [rows[i % len(rows)] for i in range(batch_rows)]
        started = time.thread_time()
        decide_labels(scorer.predict_proba([rows[0]]))  # warm-up, and the cost of a call
        first = time.thread_time() - started
        calls = min(calls, max(MIN_CALLS, int(seconds_per_round / max(first, 1e-6))))
        for _ in range(rounds):
            spent = []
            for i in range(calls):
                row = [rows[i % len(rows)]]
                started = time.thread_time()
                decide_labels(scorer.predict_proba(row))
                spent.append((time.thread_time() - started) * 1000)
            p99s.append(float(np.percentile(spent, 99)))
            every.extend(spent)
            started = time.thread_time()
            decide_labels(scorer.predict_proba(batch))
            rates.append(batch_rows / max(time.thread_time() - started, 1e-9))
        return ScoringLatency(
            scoring_path=type(scorer).__name__,
            single_row_p50_ms=float(np.percentile(every, 50)),
            single_row_p99_ms=min(p99s),
            rows_per_second=max(rates),
            batch_rows=batch_rows,
        )


def over_budget(latency: ScoringLatency, serving: ServingConfig) -> list[str]:
    """What breaks the budget, with both figures."""
    found = []
    if serving.max_single_row_p99_ms is not None and (
        latency.single_row_p99_ms > serving.max_single_row_p99_ms
    ):
        found.append(
            f"single-row p99 {latency.single_row_p99_ms:.2f} ms over the "
            f"{serving.max_single_row_p99_ms:g} ms budget (serving.max_single_row_p99_ms)"
        )
    if serving.min_rows_per_second is not None and (
        latency.rows_per_second < serving.min_rows_per_second
    ):
        found.append(
            f"{latency.rows_per_second:,.0f} rows/s under the {serving.min_rows_per_second:,.0f} "
            "rows/s budget (serving.min_rows_per_second)"
        )
    return found
