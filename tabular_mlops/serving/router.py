"""The model's router: a small front process that routes to the live versions.

Why a front process: a release starts the new version beside the old one, on a
port of its own, and smoke-tests it there; clients must not follow that port.
The router keeps the address (the Service's on a cluster; locally it hands the
address to the one live version itself whenever no experiment runs, and takes
it back for a rollout or when that version is not there: ``serving/stable.py``),
and a release only changes where it forwards:

- the routes live in a JSON file (:class:`Routes`); ``SIGHUP`` makes the router
  read it again (so does a change to the file, within 2 s: on Kubernetes it is a
  ConfigMap), and the switch is one assignment in its event loop, so every
  request goes wholly to the old or wholly to the new upstream;
- requests already sent to an upstream that left the routes finish there: its
  connection pool is closed once its last request has answered, and
  ``GET /-/routes`` shows what is still draining, so the deployment stops the
  old service only then;
- a request that could not reach its upstream at all (refused, or the
  connection closed before anything came back) is tried once more on the
  champion, which is what a switch in flight, or a candidate that died, needs.

With a champion and a candidate in the routes, the router runs the rollout
plan (``core/rollout.py``) request by request: ``shadow`` answers from the
champion and mirrors a copy of a share of the answered requests to the
candidate, in batches the candidate scores as one matrix (both answers logged
under one request id, only the champion's returned); ``canary`` sends the candidate a
weight that steps up after ``hold_requests`` healthy answers (up to the last
step before all traffic, which is the promotion) and drops to zero when a
guardrail (error rate; the p99 of the CPU time a version spends scoring a request,
against the champion's over the same step and a budget) breaks; ``ab``
assigns by a hash of a sticky header; ``bandit`` by Thompson sampling on the
feedback. Each answer's arm, status, latency and labels go to a routing log
and ``POST /feedback`` (true label or reward per request id and row) to a
feedback log, both JSON lines under the evidence directory, which the rollout
pipeline reads to decide.

Measured on 2 cores (docs/benchmarks.md): the hop costs about 6 ms at p99 at
16 connections; one asyncio process with keep-alive pools forwards about
12,000 requests a second to a no-op upstream, more than a model answers.
"""

from __future__ import annotations

import asyncio
import collections
import json
import logging
import os
import random
import signal
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, NamedTuple
from urllib.parse import urlsplit

from pydantic import BaseModel, Field

from tabular_mlops.core.rollout import (
    AbsoluteErrors,
    RolloutPlan,
    absolute_error,
    answers_agree,
    percentile,
    sticky_bucket,
    thompson_choice,
    thompson_error_choice,
    too_slow,
)
from tabular_mlops.core.spec import (
    SCORING_CPU_HEADER,
    SHADOW_PATH,
    SOURCE_HEADER,
    SOURCE_TOKEN_HEADER,
)
from tabular_mlops.serving.credentials import Role, TokenFile
from tabular_mlops.serving.feedback import (
    FEEDBACK_PATH,
    Feedback,
    FeedbackRefusedError,
    parse_feedback,
    read_feedback,
)
from tabular_mlops.serving.stable import (
    STABLE_DIR_ENV,
    Owner,
    StableListener,
    describe,
    read_owner,
    router_owner,
    write_owner,
)

logger = logging.getLogger(__name__)

#: the router's own endpoints; everything else is forwarded. Routes and metrics are
#: read with the deployment's admin token (``serving/credentials.py``)...
ROUTES_PATH = "/-/routes"
#: the router's own Prometheus metrics (``/metrics`` is the live version's)
METRICS_PATH = "/-/metrics"
#: ...whether it has routes is open to anyone (the cluster's readiness probe)
READY_PATH = "/-/ready"
#: request headers passed upstream (the rest stay at the edge)
FORWARDED = frozenset(
    {"content-type", "content-length", "accept", "x-request-id", "x-request-source",
     "x-source-token", "x-api-key"}
)  # fmt: skip
#: response headers the router sets itself or that belong to one connection
HOP_BY_HOP = frozenset(
    {"connection", "keep-alive", "transfer-encoding", "content-length", "date", "server",
     "upgrade", "proxy-authenticate", "trailer", "te"}
)  # fmt: skip
#: all request headers together may take at most this many bytes (431 otherwise)
MAX_HEADER_BYTES = 8192
#: a seed for the router's draws: the same traffic then takes the same routes (tests)
ROUTER_SEED_ENV = "TABULAR_MLOPS_ROUTER_SEED"
#: a request body larger than this is refused before it is read (the service's own
#: limit is lower and names the row count; this one protects the router)
MAX_BODY_BYTES = 64 * 1024 * 1024
#: answered requests remembered for feedback (request id -> arm and labels)
REMEMBERED = 200_000
#: mirrored requests wait at most this long to go to the shadow as one batch...
SHADOW_BATCH_SECONDS = 0.05
#: ...or until this many wait (the service takes at most MAX_SHADOW_REQUESTS at once)
SHADOW_BATCH_REQUESTS = 128
#: shadow batches in flight at once; beyond, a batch is skipped (and counted)
MAX_SHADOW_BATCHES = 2
#: a guardrail needs this many candidate answers before it may pull a canary back
MIN_GUARDRAIL_REQUESTS = 20

Receive = Callable[[], Awaitable[dict[str, Any]]]
Send = Callable[[dict[str, Any]], Awaitable[None]]
Answer = tuple[int, list[tuple[bytes, bytes]], bytes]


class Upstream(BaseModel):
    url: str
    model_version: str


class Routes(BaseModel):
    """What the router forwards to; written atomically by the deployment, read on SIGHUP.

    ``upstreams[0]`` is the champion; a second upstream is the candidate of a rollout."""

    model_name: str
    generation: int = 0
    upstreams: list[Upstream] = Field(min_length=1, max_length=2)
    plan: RolloutPlan = RolloutPlan()
    #: names the experiment: salts sticky buckets, tags the evidence
    experiment: str = ""
    #: where the routing and feedback logs go (JSON lines)
    evidence_dir: str | None = None


def write_routes(path: Path, routes: Routes) -> None:
    temporary = path.with_suffix(".tmp")
    temporary.write_text(routes.model_dump_json(indent=2))
    temporary.replace(path)


class _Pool:
    """One upstream's keep-alive connections and the requests in flight on them."""

    def __init__(self, upstream: Upstream) -> None:
        import aiohttp

        self.upstream = upstream
        self.session = aiohttp.ClientSession(
            base_url=upstream.url,
            connector=aiohttp.TCPConnector(limit=256, keepalive_timeout=30),
            timeout=aiohttp.ClientTimeout(total=60, connect=2),
            auto_decompress=False,
            skip_auto_headers=("User-Agent", "Accept-Encoding", "Accept"),
        )
        self.in_flight = 0


class Sent(NamedTuple):
    """What forwarding one request came to."""

    answer: Answer
    #: whose answer it is (None: nobody answered)
    pool: _Pool | None
    #: the answering attempt's own time
    ms: float
    #: pools that refused or reset the request before it (their time: ``failed_ms``)
    failed: list[_Pool]
    failed_ms: float


class _Arm:
    """One version in the routes, and what its answers showed since it entered them."""

    def __init__(self, pool: _Pool) -> None:
        self.pool = pool
        self.requests = 0
        self.errors = 0
        self.latencies_ms: collections.deque[float] = collections.deque(maxlen=5000)
        #: the CPU time its workers spent on each request since the canary's step began
        #: (:data:`SCORING_CPU_HEADER`): what the latency guardrail compares
        self.cpu_ms: collections.deque[float] = collections.deque(maxlen=5000)
        self.labelled = 0
        self.correct = 0
        self.rewarded = 0
        self.reward_sum = 0.0
        #: a regressor's answers fed back with their true values: the bandit's evidence
        self.absolute_errors = AbsoluteErrors()

    @property
    def version(self) -> str:
        return self.pool.upstream.model_version

    def percentile(self, q: float) -> float | None:
        return percentile(self.latencies_ms, q)

    def cpu_percentile(self, q: float) -> float | None:
        return percentile(self.cpu_ms, q)

    def successes(self) -> tuple[float, float]:
        if self.rewarded:
            return self.reward_sum, self.rewarded - self.reward_sum
        return float(self.correct), float(self.labelled - self.correct)

    def count_label(self, answered: list[Any] | None, row: int, label: str) -> None:
        """A true label fed back for one of this arm's answers: right or wrong for a
        classifier, its absolute error for a regressor's value."""
        if answered is None or row >= len(answered):
            return
        if isinstance(answered[row], float):
            error = absolute_error(answered[row], label)
            if error is not None:
                self.absolute_errors.add(error)
            return
        self.labelled += 1
        self.correct += int(answered[row] == label)

    def status(self) -> dict[str, Any]:
        return {
            "version": self.version,
            "url": self.pool.upstream.url,
            "requests": self.requests,
            "errors": self.errors,
            "p50_ms": self.percentile(50),
            "p99_ms": self.percentile(99),
            "scoring_cpu_p99_ms": self.cpu_percentile(99),
            "labelled": self.labelled,
            "correct": self.correct,
            "rewarded": self.rewarded,
            "reward_sum": self.reward_sum,
            "valued": self.absolute_errors.rows,
            "mae": self.absolute_errors.mean if self.absolute_errors.rows else None,
        }


def _json(status: int, payload: dict[str, Any]) -> Answer:
    return status, [(b"content-type", b"application/json")], json.dumps(payload).encode()


def _labels(answer: bytes) -> list[Any] | None:
    """Each row's answer as a shadow is compared on: a classifier's label, a regressor's
    value."""
    try:
        return [p["label"] if "label" in p else p["prediction"]
                for p in json.loads(answer)["predictions"]]  # fmt: skip
    except (ValueError, KeyError, TypeError):
        return None


class Router:
    """The ASGI application of the front process."""

    def __init__(self, routes_file: Path, tokens: TokenFile | None = None) -> None:
        self.routes_file = routes_file
        self.tokens = tokens if tokens is not None else TokenFile.from_environment()
        self.routes: Routes | None = None
        self.arms: list[_Arm] = []
        self.draining: list[_Pool] = []
        self.forwarded = 0
        # the rollout's state: canary step, and the router's own verdict
        self.step = 0
        self.at_step = 0
        self.state = "running"
        self.reason = ""
        self.compared = 0
        self.agreed = 0
        self.mirrors_skipped = 0
        #: mirrored requests not yet sent (request id, body, the champion's labels)
        self.shadow_waiting: list[tuple[str, bytes, list[str] | None]] = []
        self.shadow_timer: asyncio.TimerHandle | None = None
        self.shadow_batches_in_flight = 0
        self.remembered: collections.OrderedDict[str, tuple[int, list[str] | None]] = (
            collections.OrderedDict()
        )
        #: (request id, row) pairs fed back already: a second item for one is not evidence
        self.fed: collections.OrderedDict[tuple[str, int], None] = collections.OrderedDict()
        #: feedback items refused as evidence (unknown request ids, repeats)
        self.feedback_refused = 0
        #: the experiment's draws (canary share, exploration, Thompson sampling); seeded
        #: from $TABULAR_MLOPS_ROUTER_SEED when set (a reproducible run), else the OS's
        self.random = random.Random(os.environ.get(ROUTER_SEED_ENV) or None)
        self.routing_log: Any = None
        self.feedback_log: Any = None
        self._watch: asyncio.Task[None] | None = None
        #: what is passed upstream: FORWARDED, and the A/B plan's sticky header
        self.forwarded_headers: frozenset[str] = FORWARDED
        #: the model's stable address, when this router hands it out (``serving/stable.py``)
        self.stable: StableListener | None = None

    # --- routes -----------------------------------------------------------------
    def reload(self) -> None:
        """Read the routes file and switch to it; a bad file keeps the current routes."""
        try:
            routes = Routes.model_validate_json(self.routes_file.read_text())
        except (OSError, ValueError) as exc:
            logger.error("kept the current routes: %s is unreadable (%s)", self.routes_file, exc)
            return
        same_experiment = self.routes is not None and routes.experiment == self.routes.experiment
        known = {arm.pool.upstream.url: arm for arm in self.arms}
        pools = {url: arm.pool for url, arm in known.items()}
        arms = []
        for upstream in routes.upstreams:
            pool = pools.pop(upstream.url, None) or _Pool(upstream)
            pool.upstream = upstream
            kept = known.get(upstream.url) if same_experiment else None
            arms.append(kept if kept is not None else _Arm(pool))
        self.routes, self.arms = routes, arms
        self.forwarded_headers = FORWARDED | {routes.plan.sticky_header}
        if not same_experiment:
            self.step, self.at_step, self.state, self.reason = 0, 0, "running", ""
            self.compared = self.agreed = self.mirrors_skipped = 0
            self.remembered.clear()
            self.fed.clear()
            self.shadow_waiting.clear()
            if routes.experiment and routes.evidence_dir and len(arms) > 1:
                self._resume(Path(routes.evidence_dir), routes.experiment)
        self._open_logs(routes)
        for pool in pools.values():
            self.draining.append(pool)
            self._close_if_idle(pool)
        self._hand_over_address(routes)
        logger.info(
            "generation %s (%s): %s",
            routes.generation,
            routes.plan.strategy if len(arms) > 1 else "one version",
            ", ".join(f"version {a.version} at {a.pool.upstream.url}" for a in arms),
        )

    def _hand_over_address(self, routes: Routes) -> None:
        """Name who accepts on the stable address: the one version itself when no
        experiment runs (no hop), this router while one does."""
        if self.stable is None:
            return
        port = self.stable.own_port
        if len(self.arms) == 1 and not routes.experiment:
            port = urlsplit(self.arms[0].pool.upstream.url).port or port
        owner = Owner(generation=routes.generation, port=port)
        if read_owner(self.stable.directory) != owner:
            try:
                write_owner(self.stable.directory, owner)
            except OSError as exc:  # a full disk: the address stays where it is
                logger.error("could not hand the stable address to port %s: %s", port, exc)

    async def _watch_routes(self, interval: float = 2.0) -> None:
        """Reload when the routes file changes without a signal: on Kubernetes it is a
        ConfigMap the kubelet updates in place (a symlink swap), and nobody sends SIGHUP."""
        seen = _identity(self.routes_file)
        while True:
            await asyncio.sleep(interval)
            current = _identity(self.routes_file)
            if current != seen:
                seen = current
                self.reload()

    def _resume(self, evidence_dir: Path, experiment: str) -> None:
        """Rebuild the experiment's state from its durable evidence: a router started again
        (killed, rescheduled, another replica) resumes at the canary step, with the
        counters, latencies, shadow agreement, feedback and guardrail verdict the logs
        hold, in their order. What the last ``flush_interval`` had not written is lost."""
        from tabular_mlops.serving.inference_log import read_evidence

        lines = read_evidence(evidence_dir, "routing", experiment)
        feedback = read_evidence(evidence_dir, "feedback", experiment)
        by_version = {arm.version: (index, arm) for index, arm in enumerate(self.arms)}
        answered: dict[str, list[str] | None] = {}  # the champion's labels, for the shadow
        for line in lines:
            if "event" in line:
                if line["event"] == "step":
                    self._step_to(int(line.get("canary_step", self.step)))
                elif line["event"] in ("awaiting_decision", "rolled_back"):
                    self.state = line["event"]
                    self.reason = line.get("detail", "") if self.state == "rolled_back" else ""
                continue
            found = by_version.get(str(line.get("version")))
            if found is None:
                continue
            index, arm = found
            status, labels = int(line.get("status", 0)), line.get("labels")
            arm.requests += 1
            arm.errors += status >= 500 or line.get("role") == "failed"
            if isinstance(line.get("cpu_ms"), (int, float)):
                arm.cpu_ms.append(float(line["cpu_ms"]))
            if line.get("role") == "answered":
                arm.latencies_ms.append(float(line.get("latency_ms", 0.0)))
                self.at_step += index == 1
                self.remembered[line["request_id"]] = (index, labels)
                answered[line["request_id"]] = labels
            elif line.get("role") == "shadow":
                if "service_ms" in line:
                    arm.latencies_ms.append(float(line["service_ms"]))
                champion = answered.get(line["request_id"])
                if labels is not None and champion is not None:
                    self.compared += 1
                    self.agreed += answers_agree(labels, champion, self.tolerance)
        while len(self.remembered) > REMEMBERED:
            self.remembered.popitem(last=False)
        for item in feedback:
            found = by_version.get(str(item.get("version")))
            if found is None:
                continue
            self._first_feedback(str(item.get("request_id")), int(item.get("row", 0)))
            arm = found[1]
            if item.get("reward") is not None:
                arm.rewarded += 1
                arm.reward_sum += float(item["reward"])
            elif item.get("label") is not None:
                labels = (self.remembered.get(item["request_id"]) or (0, None))[1]
                arm.count_label(labels, int(item.get("row", 0)), str(item["label"]))
        if lines or feedback:
            logger.info(
                "resumed experiment %s from %s evidence lines: step %s, %s",
                experiment, len(lines) + len(feedback), self.step, self.state,
            )  # fmt: skip

    def _open_logs(self, routes: Routes) -> None:
        from tabular_mlops.serving.inference_log import JsonLinesLog

        directory = Path(routes.evidence_dir) if routes.evidence_dir else None
        current = self.feedback_log.directory if self.feedback_log else None
        if directory is not None and directory != current:
            self.routing_log = JsonLinesLog(directory, prefix="routing")
            self.feedback_log = JsonLinesLog(directory, prefix="feedback")

    def _close_if_idle(self, pool: _Pool) -> None:
        if pool in self.draining and pool.in_flight == 0:
            self.draining.remove(pool)
            asyncio.get_running_loop().create_task(pool.session.close())

    @property
    def strategy(self) -> str:
        if self.routes is None or len(self.arms) < 2:
            return "replace"
        return self.routes.plan.strategy

    @property
    def tolerance(self) -> float:
        """How close a regressor's shadow values must be to agree (the plan's)."""
        return self.routes.plan.agreement_tolerance if self.routes is not None else 0.0

    def candidate_share(self) -> float:
        """The candidate's current share of answered traffic (shadow: none)."""
        if self.routes is None or len(self.arms) < 2 or self.state == "rolled_back":
            return 0.0
        plan = self.routes.plan
        return {
            "canary": plan.canary_steps[self.step],
            "ab": plan.ab_split,
            "bandit": float("nan"),
        }.get(plan.strategy, 0.0)

    def status(self) -> dict[str, Any]:
        live = self.arms[0] if self.arms else None
        return {
            "model_name": self.routes.model_name if self.routes else None,
            "generation": self.routes.generation if self.routes else None,
            "strategy": self.strategy,
            "experiment": self.routes.experiment if self.routes else "",
            "live": {"url": live.pool.upstream.url, "model_version": live.version}
            if live
            else None,
            "arms": [arm.status() for arm in self.arms],
            "candidate_share": None if self.strategy == "bandit" else self.candidate_share(),
            "canary_step": self.step,
            "state": self.state,
            "reason": self.reason,
            "shadow": {
                "compared": self.compared,
                "agreed": self.agreed,
                "skipped": self.mirrors_skipped,
            },
            "draining": [pool.upstream.url for pool in self.draining],
            "in_flight": sum(arm.pool.in_flight for arm in self.arms),
            "forwarded": self.forwarded,
            "evidence_logs": {
                name: log.health() if log else "off"
                for name, log in (("routing", self.routing_log), ("feedback", self.feedback_log))
            },
            "pid": os.getpid(),
            "stable": describe(self.stable.directory) if self.stable is not None else None,
        }

    def metrics(self) -> str:
        """Prometheus text: requests forwarded, and the evidence logs' lines by outcome."""
        lines = [
            "# HELP tabular_router_forwarded_total Requests forwarded to a version.",
            "# TYPE tabular_router_forwarded_total counter",
            f"tabular_router_forwarded_total {self.forwarded}",
            "# HELP tabular_router_log_lines_total Evidence lines written, or dropped "
            "(a full disk, a lost volume).",
            "# TYPE tabular_router_log_lines_total counter",
        ]
        for name, log in (("routing", self.routing_log), ("feedback", self.feedback_log)):
            for outcome in ("written", "dropped"):
                count = getattr(log, outcome) if log else 0
                lines.append(
                    f'tabular_router_log_lines_total{{log="{name}",outcome="{outcome}"}} {count}'
                )
        lines += [
            "# HELP tabular_router_feedback_refused_total Feedback items kept out of the "
            "evidence: request ids this router never answered, a row fed back twice.",
            "# TYPE tabular_router_feedback_refused_total counter",
            f"tabular_router_feedback_refused_total {self.feedback_refused}",
        ]
        return "\n".join(lines) + "\n"

    # --- the plan, request by request -----------------------------------------------
    def _choose(self, headers: dict[str, str], request_id: str) -> tuple[int, int | None, bool]:
        """(the arm that answers, the arm that shadows it, whether the arm was drawn
        uniformly at random: the bandit's exploration, the only traffic its test reads)."""
        strategy = self.strategy
        if strategy == "replace":
            return 0, None, False
        if strategy == "shadow":
            share = self.routes.plan.shadow_share  # type: ignore[union-attr]
            return 0, (1 if self.random.random() < share else None), False
        if self.state == "rolled_back":
            return 0, None, False
        plan = self.routes.plan  # type: ignore[union-attr]
        if strategy == "canary":
            return (1 if self.random.random() < plan.canary_steps[self.step] else 0), None, False
        if strategy == "ab":
            key = headers.get(plan.sticky_header) or request_id
            experiment = self.routes.experiment  # type: ignore[union-attr]
            return (1 if sticky_bucket(key, experiment) < plan.ab_split else 0), None, False
        if self.random.random() < plan.explore_share:
            return self.random.randrange(len(self.arms)), None, True
        if any(arm.absolute_errors.rows for arm in self.arms) and not any(
            arm.rewarded for arm in self.arms
        ):  # a regressor's: negative error is the reward
            errors = [arm.absolute_errors for arm in self.arms]
            return thompson_error_choice(errors, self.random), None, False
        successes, failures = zip(*(arm.successes() for arm in self.arms), strict=True)
        return thompson_choice(successes, failures, self.random), None, False

    def _guard(self) -> None:
        """Pull the candidate back when it errs or is slow; step a healthy canary up."""
        if self.state == "rolled_back" or len(self.arms) < 2 or self.strategy == "replace":
            return
        plan = self.routes.plan  # type: ignore[union-attr]
        champion, candidate = self.arms
        error_rate = candidate.errors / max(candidate.requests, 1)
        if candidate.requests >= MIN_GUARDRAIL_REQUESTS and error_rate > plan.max_error_rate:
            self._roll_back(
                f"error rate {error_rate:.1%} over {plan.max_error_rate:.1%} after "
                f"{candidate.requests} requests"
            )
            return
        if (
            self.strategy != "canary"
            or self.state != "running"
            or self.at_step < plan.hold_requests
        ):
            return
        # CPU time per request, both arms over the same step: the time to answer grows
        # with whatever else the machine runs, and would pull back a sound candidate
        p99_candidate, p99_champion = candidate.cpu_percentile(99), champion.cpu_percentile(99)
        if p99_candidate and p99_champion and too_slow(p99_candidate, p99_champion, plan):
            self._roll_back(
                f"scoring CPU p99 {p99_candidate:.1f} ms over {plan.max_latency_ratio}x the "
                f"champion's {p99_champion:.1f} ms and the {plan.latency_budget_ms:g} ms budget"
            )
            return
        # the last step, all traffic, is the promotion itself: the rollout pipeline's
        # to take on the evidence, while the champion still answers enough to compare
        if self.step + 2 < len(plan.canary_steps):
            self._step_to(self.step + 1)
            self._event("step", f"candidate share {plan.canary_steps[self.step]:.0%}")
        else:
            self.state = "awaiting_decision"
            self._event("awaiting_decision", f"held at {plan.canary_steps[self.step]:.0%}")

    def _step_to(self, step: int) -> None:
        """The canary's next step: its hold and the arms' CPU windows start again."""
        self.step, self.at_step = step, 0
        for arm in self.arms:
            arm.cpu_ms.clear()

    def _roll_back(self, reason: str) -> None:
        self.state, self.reason = "rolled_back", reason
        logger.warning("rollout of version %s pulled back: %s", self.arms[1].version, reason)
        self._event("rolled_back", reason)

    def _event(self, kind: str, detail: str) -> None:
        if self.routing_log is not None:
            self.routing_log.append(
                json.dumps({"timestamp": datetime.now(UTC).isoformat(), "event": kind,
                            "detail": detail, "experiment": self.routes.experiment,  # type: ignore[union-attr]
                            "canary_step": self.step})
            )  # fmt: skip

    def _record(self, role: str, arm: _Arm, request_id: str, status: int, latency_ms: float,
                labels: list[str] | None, **marks: Any) -> None:  # fmt: skip
        """One line of evidence. ``role``: ``answered`` (this version's answer went back),
        ``failed`` (the version chosen did not answer: refused or reset; the champion's
        retry answered, marked ``retry_of``), or ``shadow``."""
        if self.routing_log is not None:
            self.routing_log.append(
                json.dumps({"timestamp": datetime.now(UTC).isoformat(), "role": role,
                            "request_id": request_id, "version": arm.version, "status": status,
                            "latency_ms": round(latency_ms, 3), "labels": labels,
                            "experiment": self.routes.experiment,  # type: ignore[union-attr]
                            "strategy": self.strategy, **marks})
            )  # fmt: skip

    def _arm_of(self, pool: _Pool | None) -> tuple[int, _Arm] | None:
        for index, arm in enumerate(self.arms):
            if arm.pool is pool:
                return index, arm
        return None

    # --- ASGI ---------------------------------------------------------------------
    async def __call__(self, scope: dict[str, Any], receive: Receive, send: Send) -> None:
        if scope["type"] == "lifespan":
            await self._lifespan(receive, send)
            return
        if scope["type"] != "http":
            return
        path = scope["path"]
        if path in (ROUTES_PATH, METRICS_PATH, READY_PATH) and scope["method"] != "GET":
            status, headers, body = _json(405, {"error": "method not allowed; use GET"})
            headers.append((b"allow", b"GET"))
        elif path == READY_PATH:
            status, headers, body = _json(200 if self.arms else 503, {"ready": bool(self.arms)})
        elif path in (ROUTES_PATH, METRICS_PATH):
            status, headers, body = self._refusal(scope, "admin") or (
                _json(200, self.status())
                if path == ROUTES_PATH
                else (200, [(b"content-type", b"text/plain; version=0.0.4")],
                      self.metrics().encode())
            )  # fmt: skip
        elif path == FEEDBACK_PATH and scope["method"] == "POST":
            status, headers, body = self._refusal(scope, "feedback") or (
                await self._take_feedback(scope, receive)
            )
        else:
            status, headers, body = await self._forward(scope, receive)
        await send({"type": "http.response.start", "status": status, "headers": headers})
        await send({"type": "http.response.body", "body": body})

    def _refusal(self, scope: dict[str, Any], role: Role) -> Answer | None:
        """401/403 unless the request carries ``role``'s token (never logged)."""
        authorization = next((v.decode("latin-1") for k, v in scope["headers"]
                              if k == b"authorization"), None)  # fmt: skip
        refused = self.tokens.refusal(role, authorization)
        if refused is None:
            return None
        status, headers, body = _json(*refused)
        return status, [*headers, (b"www-authenticate", b"Bearer")], body

    async def _lifespan(self, receive: Receive, send: Send) -> None:
        while True:
            message = await receive()
            if message["type"] == "lifespan.startup":
                if self.stable is not None:
                    try:
                        self.stable.obtain()
                    except OSError as exc:
                        address = "{}:{}".format(*(self.stable.bind_to or ("?", "?")))
                        problem = (
                            f"the stable address {address} is taken ({exc}) by a process "
                            "that is not this model's: choose a free port"
                        )
                        logger.error("%s", problem)
                        await send({"type": "lifespan.startup.failed", "message": problem})
                        return
                self.reload()
                loop = asyncio.get_running_loop()
                loop.add_signal_handler(signal.SIGHUP, self.reload)
                self._watch = loop.create_task(self._watch_routes())
                if self.stable is not None:
                    await self.stable.start()
                await send({"type": "lifespan.startup.complete"})
            elif message["type"] == "lifespan.shutdown":
                if self.stable is not None:
                    await self.stable.stop()
                for pool in [*self.draining, *(arm.pool for arm in self.arms)]:
                    await pool.session.close()
                for log in (self.routing_log, self.feedback_log):
                    if log is not None:
                        log.close()
                await send({"type": "lifespan.shutdown.complete"})
                return

    async def _take_feedback(self, scope: dict[str, Any], receive: Receive) -> Answer:
        """``POST /feedback``: JSON only, its size counted on the bytes read."""
        content_type = next((v.decode("latin-1") for k, v in scope["headers"]
                             if k == b"content-type"), None)  # fmt: skip
        try:
            items = await read_feedback(content_type, _chunks(receive))
        except FeedbackRefusedError as refused:
            return _json(refused.status, refused.answer)
        return self._store_feedback(items)

    def _feedback(self, body: bytes) -> Answer:
        """A feedback body's items, stored (:meth:`_store_feedback`), or the refusal."""
        try:
            items = parse_feedback(body)
        except FeedbackRefusedError as refused:
            return _json(refused.status, refused.answer)
        return self._store_feedback(items)

    def _store_feedback(self, items: list[Feedback]) -> Answer:
        """Store each item durably and count it for the arm that answered it. Only
        answers this router gave are evidence, each (request id, row) once: an item
        for an id it never answered, or a second one for the same row, is counted apart
        and never written (nobody can flip an experiment by relabelling its answers)."""
        if self.feedback_log is None:
            return _json(503, {"error": "feedback is not stored: no evidence directory"})
        matched = unknown = repeated = 0
        now = datetime.now(UTC).isoformat()
        for item in items:
            answered = self.remembered.get(item.request_id)
            if answered is None or answered[0] >= len(self.arms):
                unknown += 1
                continue
            if not self._first_feedback(item.request_id, item.row):
                repeated += 1
                continue
            matched += 1
            arm = self.arms[answered[0]]
            if item.reward is not None:
                arm.rewarded += 1
                arm.reward_sum += item.reward
            elif item.label is not None:
                arm.count_label(answered[1], item.row, item.label)
            self.feedback_log.append(
                json.dumps({"timestamp": now, **item.model_dump(), "version": arm.version,
                            "experiment": self.routes.experiment if self.routes else ""})
            )  # fmt: skip
        self.feedback_refused += unknown + repeated
        return _json(202, {"accepted": matched, "matched": matched, "unknown": unknown,
                           "repeated": repeated})  # fmt: skip

    def _first_feedback(self, request_id: str, row: int) -> bool:
        """Whether no feedback was taken yet for this answer's row (and note it)."""
        key = (request_id, row)
        if key in self.fed:
            return False
        self.fed[key] = None
        while len(self.fed) > REMEMBERED:
            self.fed.popitem(last=False)
        return True

    async def _forward(self, scope: dict[str, Any], receive: Receive) -> Answer:
        headers: dict[str, str] = {}
        size = 0
        forwarded = self.forwarded_headers
        for name, value in scope["headers"]:
            size += len(name) + len(value)
            key = name.decode("latin-1")
            if key in forwarded:
                headers[key] = value.decode("latin-1")
        if size > MAX_HEADER_BYTES:
            return _json(431, {"error": "request headers too large", "detail": [
                {"field": "(headers)", "problem": f"over {MAX_HEADER_BYTES} bytes"}]})  # fmt: skip
        declared = headers.get("content-length", "")
        if declared.isdigit() and int(declared) > MAX_BODY_BYTES:
            return _json(413, {"error": "request too large", "detail": [
                {"field": "(body)", "problem": f"over {MAX_BODY_BYTES} bytes"}]})  # fmt: skip
        try:
            body = await _read_body(receive, MAX_BODY_BYTES)
        except BodyTooLargeError as exc:
            return _json(413, {"error": "request too large", "detail": [
                {"field": "(body)", "problem": str(exc)}]})  # fmt: skip
        path = scope["raw_path"].decode("latin-1") or scope["path"]
        if scope["query_string"]:
            path += "?" + scope["query_string"].decode("latin-1")
        if not self.arms:
            return _json(503, {"error": "the model service is not answering; try again shortly"})
        if self.strategy == "replace" or scope["path"] != "/predict":
            return (await self._send(self.arms[0], scope["method"], path, body, headers)).answer
        chosen, mirror, explore = self._choose(
            headers, headers.get("x-request-id") or uuid.uuid4().hex
        )
        sent = await self._send(self.arms[chosen], scope["method"], path, body, headers)
        answer = sent.answer
        # the id the answering version gave (unique: a client's x-request-id is only its
        # correlation id), which feedback names
        request_id = _answer_id(answer[1]) or uuid.uuid4().hex
        # Every attempt is booked to the version that made it: a chosen version that
        # refused or reset the request erred, even when the champion's retry saved the
        # client, and the retry's answer is the champion's (its latency, its labels).
        for failed in sent.failed:
            found = self._arm_of(failed) if failed is not sent.pool else None
            if found is not None:
                found[1].requests += 1
                found[1].errors += 1
                self._record("failed", found[1], request_id, 503, sent.failed_ms, None)
        found = self._arm_of(sent.pool)
        if found is None:  # nobody answered, or the routes changed meanwhile
            self._guard()
            return answer
        index, arm = found
        # labels only where something reads them: the bandit's rewards by label, and a
        # shadow's agreement (the analysis joins feedback to the inference logs instead)
        wanted = mirror is not None or self.strategy == "bandit"
        labels = _labels(answer[2]) if wanted and answer[0] == 200 else None
        arm.requests += 1
        arm.errors += answer[0] >= 500
        marks: dict[str, Any] = {}
        arm.latencies_ms.append(sent.ms)
        cpu_ms = _scoring_cpu_ms(answer[1])
        if cpu_ms is not None:
            arm.cpu_ms.append(cpu_ms)
            marks["cpu_ms"] = cpu_ms
        if index == 1:
            self.at_step += 1
        self.remembered[request_id] = (index, labels)
        if len(self.remembered) > REMEMBERED:
            self.remembered.popitem(last=False)
        if sent.pool is not self.arms[chosen].pool:
            marks["retry_of"] = self.arms[chosen].version
        elif explore:
            marks["explore"] = True
        self._record("answered", arm, request_id, answer[0], sent.ms, labels, **marks)
        if mirror is not None and answer[0] == 200:
            self._mirror(request_id, body, labels)
        self._guard()
        return answer

    def _mirror(self, request_id: str, body: bytes, answered: list[str] | None) -> None:
        """Queue a copy of an answered request for the shadow, sent in batches.

        Why batches: a mirrored request sent on its own costs the router a second
        forward and the shadow a whole request; on 2 cores that took 34-41% of the
        answered path's throughput at a 10% share. One call per batch of up to
        ``SHADOW_BATCH_REQUESTS`` (or ``SHADOW_BATCH_SECONDS``) is scored as one
        matrix, and each request is still logged under its own id."""
        self.shadow_waiting.append((request_id, body, answered))
        if len(self.shadow_waiting) >= SHADOW_BATCH_REQUESTS:
            self._flush_shadow()
        elif self.shadow_timer is None:
            loop = asyncio.get_running_loop()
            self.shadow_timer = loop.call_later(SHADOW_BATCH_SECONDS, self._flush_shadow)

    def _flush_shadow(self) -> None:
        if self.shadow_timer is not None:
            self.shadow_timer.cancel()
            self.shadow_timer = None
        batch, self.shadow_waiting = self.shadow_waiting, []
        if not batch or len(self.arms) < 2:
            return
        if self.shadow_batches_in_flight >= MAX_SHADOW_BATCHES:
            self.mirrors_skipped += len(batch)
            return
        self.shadow_batches_in_flight += 1
        asyncio.get_running_loop().create_task(self._shadow(self.arms[1], batch))

    async def _shadow(self, arm: _Arm, batch: list[tuple[str, bytes, list[str] | None]]) -> None:
        """The candidate scores a batch of copies, tagged as shadow traffic; its answers
        are only logged and compared with the champion's."""
        body = b'{"requests":[%s]}' % b",".join(
            b'{"request_id":%s,"body":%s}'
            % (json.dumps(request_id).encode(), json.dumps(raw.decode("utf-8", "replace")).encode())
            for request_id, raw, _ in batch
        )
        headers = {"content-type": "application/json", SOURCE_HEADER: "shadow",
                   SOURCE_TOKEN_HEADER: self.tokens.token("source") or ""}  # fmt: skip
        experiment = self.routes.experiment if self.routes else ""
        started = time.perf_counter()
        try:
            status, _, answer = (
                await self._send(arm, "POST", SHADOW_PATH, body, headers, retry=False)
            ).answer
        finally:
            self.shadow_batches_in_flight -= 1
        latency = (time.perf_counter() - started) * 1000
        if self.routes is None or self.routes.experiment != experiment:
            return  # the experiment changed meanwhile: these answers are not its evidence
        results: list[dict[str, Any]] = [{}] * len(batch)
        if status == 200:
            try:  # one answer per request, in the batch's order (request ids may repeat)
                results = list(json.loads(answer)["answers"])
                if len(results) != len(batch):
                    raise ValueError("answers and requests differ in number")
            except (ValueError, KeyError, TypeError):
                results, status = [{}] * len(batch), 502
        for (request_id, _, answered), result in zip(batch, results, strict=True):
            item_status = int(result.get("status", status if status != 200 else 502))
            labels = result.get("labels") if item_status == 200 else None
            arm.requests += 1
            arm.errors += item_status >= 500
            if labels is not None and answered is not None:
                self.compared += 1
                self.agreed += answers_agree(labels, answered, self.tolerance)
            # the service's own time for this request (validated and scored alone): the
            # shadow's latency evidence; the batch's round trip is logged beside it
            own, cpu = result.get("ms"), result.get("cpu_ms")
            marks: dict[str, Any] = {}
            if isinstance(own, (int, float)):
                arm.latencies_ms.append(float(own))
                marks["service_ms"] = round(float(own), 3)
            if isinstance(cpu, (int, float)):
                arm.cpu_ms.append(float(cpu))
                marks["cpu_ms"] = round(float(cpu), 3)
            self._record("shadow", arm, request_id, item_status, latency, labels, **marks)

    async def _send(self, arm: _Arm, method: str, path: str, body: bytes,
                    headers: dict[str, str], retry: bool = True) -> Sent:  # fmt: skip
        """The answer, the pool that gave it (a 502 for a timeout or a broken answer is
        that pool's too) and the pools that did not answer at all before it."""
        import aiohttp

        pool = arm.pool
        failed: list[_Pool] = []
        failed_ms = 0.0
        again = fell_back = False
        while True:
            pool.in_flight += 1
            started = time.perf_counter()
            try:
                async with pool.session.request(
                    method, path, data=body or None, headers=headers
                ) as response:
                    answer = await response.read()
                    self.forwarded += 1
                    kept = [
                        (k.encode("latin-1"), v.encode("latin-1"))
                        for k, v in response.headers.items()
                        if k.lower() not in HOP_BY_HOP
                    ]
                    ms = (time.perf_counter() - started) * 1000
                    return Sent((response.status, kept, answer), pool, ms, failed, failed_ms)
            except (
                aiohttp.ClientOSError,
                aiohttp.ConnectionTimeoutError,
                aiohttp.ServerDisconnectedError,
                aiohttp.ClientPayloadError,
                aiohttp.ClientResponseError,
            ) as exc:
                # refused, reset, disconnected or cut off mid-answer: no whole answer came
                # back, so the client gets the champion's (a version that died mid-request
                # may have logged its own; the evidence books that attempt to it as a
                # failure); no connection within the connect timeout (a busy machine, or
                # every pooled connection taken): nothing was sent, the champion answers
                logger.warning("%s did not answer: %s", pool.upstream.url, exc)
                if pool not in failed:
                    failed.append(pool)
                failed_ms = (time.perf_counter() - started) * 1000
                disconnected = isinstance(exc, aiohttp.ServerDisconnectedError)
            except (aiohttp.ClientError, TimeoutError) as exc:
                logger.warning("%s failed to answer: %r", pool.upstream.url, exc)
                ms = (time.perf_counter() - started) * 1000
                broken = _json(
                    502, {"error": "the model service failed to answer", "detail": str(exc)}
                )
                return Sent(broken, pool, ms, failed, failed_ms)
            finally:
                pool.in_flight -= 1
                self._close_if_idle(pool)
            if disconnected and not again:  # a keep-alive connection the server had closed
                again = True
                continue
            if not retry or not self.arms or fell_back:
                break
            # the champion the routes name now (after a release, the new version)
            pool, fell_back = self.arms[0].pool, True
        unanswered = _json(503, {"error": "the model service is not answering; try again shortly"})
        return Sent(unanswered, None, 0.0, failed, failed_ms)


def _header(headers: list[tuple[bytes, bytes]], wanted: bytes) -> str | None:
    """The value of the answer's header ``wanted`` (lower case), if it has one."""
    for name, value in headers:
        if name.lower() == wanted:
            return value.decode("latin-1")
    return None


def _scoring_cpu_ms(headers: list[tuple[bytes, bytes]]) -> float | None:
    """The CPU time the version's worker spent on the request, from its answer's header
    (None from a version that does not send it)."""
    value = _header(headers, SCORING_CPU_HEADER.encode())
    try:
        return None if value is None else float(value)
    except ValueError:
        return None


def _answer_id(headers: list[tuple[bytes, bytes]]) -> str | None:
    return _header(headers, b"x-request-id")


def _identity(path: Path) -> tuple[int, int] | None:
    """What changes when the file is replaced or rewritten (a ConfigMap swaps a symlink)."""
    try:
        stat = path.resolve().stat()
    except OSError:
        return None
    return stat.st_ino, stat.st_mtime_ns


class BodyTooLargeError(ValueError):
    """A body longer than its limit, counted on the bytes read (a chunked one included)."""


async def _chunks(receive: Receive) -> AsyncIterator[bytes]:
    """The request's body as it comes."""
    while True:
        message = await receive()
        yield message.get("body", b"")
        if not message.get("more_body"):
            return


async def _read_body(receive: Receive, limit: int) -> bytes:
    """The request's body, or BodyTooLargeError as soon as more than ``limit`` bytes came:
    a declared length can be absent (chunked) or a lie."""
    body = bytearray()
    async for chunk in _chunks(receive):
        body += chunk
        if len(body) > limit:
            raise BodyTooLargeError(f"over {limit} bytes")
    return bytes(body)


def main() -> None:
    """``python -m tabular_mlops.serving.router ROUTES_FILE HOST PORT [STABLE_PORT]``: with
    ``STABLE_PORT`` (and the stable address's directory in ``TABULAR_STABLE_DIR``), PORT is
    the router's own and it hands out the stable address (local services); without, it
    serves PORT itself (a pod behind a Service)."""
    import sys

    import uvicorn

    from tabular_mlops.serving.http import PROTOCOL

    routes_file, host, port = Path(sys.argv[1]), sys.argv[2], int(sys.argv[3])
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(message)s")
    router = Router(routes_file)
    if len(sys.argv) > 4 and os.environ.get(STABLE_DIR_ENV):
        router.stable = StableListener(
            router, Path(os.environ[STABLE_DIR_ENV]), port, router_owner,
            bind_to=(host, int(sys.argv[4])),
        )  # fmt: skip
    uvicorn.run(
        router,
        host=host,
        port=port,
        lifespan="on",
        http=PROTOCOL,  # a header timeout: see serving/http.py
        access_log=False,
        log_level="warning",
        timeout_graceful_shutdown=30,
    )


if __name__ == "__main__":
    main()
