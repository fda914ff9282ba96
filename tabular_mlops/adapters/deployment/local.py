"""Local services (dev, staging): a process per model version behind the model's stable address.

Clients use one address per model, ``127.0.0.1:<port>`` (the port of the
``tabular_local`` model deployer), for the model's whole life. It is one
listening socket handed between processes (``serving/stable.py``): the live
version's workers accept on it themselves when no experiment runs (no hop), the
router (``serving/router.py``, on a port of its own) while one does, and
whenever the live version is not there to. A release starts the candidate on
a free port, the deployment smoke-tests it there, and the switch rewrites the
router's routes and signals it; the router names the new version the address's
owner, the old one stops accepting and finishes its clients' connections, and
is stopped only then. So a release, a failed release and a rollback cost a
client no failed request.

Files under the model deployer's ``state_dir``, per model:

- ``<model>.json``: the live service (what ``deploy --status`` reads);
- ``<model>.router.json`` and ``<model>.routes.json``: the router and what it forwards to;
- ``stable/<model>/``: who owns the stable address and who holds it;
- ``<model>.lock``: held by the deployment in progress (two at once would race);
- ``<model>.decision.json``: a rollout decision written down and not carried out yet;
- ``logs/``: one log per process; ``metrics/<model>-v<version>-<port>/``: each
  service's own Prometheus multiprocess directory, so one service's start never
  touches another's counters.

Every process started here carries ``TABULAR_MLOPS_SERVICE=<state dir>::<model>``
in its environment: a deploy or ``--stop`` finds and stops any of them that is
not the live service or its router (what a killed deploy, or the workers of a
killed service, would leave behind).
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import logging
import os
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import IO, Any
from urllib.parse import urlsplit

import psutil
from pydantic import BaseModel, ValidationError

from tabular_mlops.adapters.deployment.target import (
    BentoPackage,
    LocalProcess,
    Rollout,
    RunningService,
    after_the_switch,
)
from tabular_mlops.adapters.failpoints import failpoint
from tabular_mlops.adapters.net import (
    HOST,
    answer_of,
    answers,
    free_port,
    wait_for_url,
    wait_until,
)
from tabular_mlops.adapters.processes import (
    has_exited,
    identity,
    is_same_process,
    is_wall_clock_start,
    orphans_of_group,
    stop_process_tree,
    stop_process_trees,
    terminate,
)
from tabular_mlops.adapters.retention import prune_old_logs
from tabular_mlops.core.config import LocalServingConfig, ServingConfig
from tabular_mlops.core.files import write_atomically
from tabular_mlops.core.rollout import RolloutPlan
from tabular_mlops.core.spec import SETTINGS_ENV
from tabular_mlops.serving.credentials import (
    TOKENS_FILE_ENV,
    TokenFile,
    Tokens,
    new_tokens,
    read_tokens,
    rotated,
    write_tokens,
)
from tabular_mlops.serving.router import ROUTES_PATH, Routes, Upstream, write_routes
from tabular_mlops.serving.server import command as server_command
from tabular_mlops.serving.stable import (
    STABLE_DIR_ENV,
    bindable,
    describe,
    holders,
    read_owner,
)

logger = logging.getLogger(__name__)

#: names the deployment a process belongs to: ``<state dir>::<model>``
MARKER_ENV = "TABULAR_MLOPS_SERVICE"
#: how long a switch waits for the router to finish the old version's requests
DRAIN_SECONDS = 30
#: restarts a supervisor record keeps (the newest)
RESTARTS_KEPT = 20
#: how the supervisor signs the deployment lock while it starts a process again
SUPERVISOR_HOLDER = "the supervisor, restarting what died,"
#: deployment locks this process holds, by lock file: steps of one run (each with a
#: target of its own) take it in ``start`` and give it back in ``switch`` or ``stop``
_HELD: dict[Path, IO[str]] = {}


class ServiceStartError(RuntimeError):
    """The service did not become ready; the message carries the end of its log."""


class ServiceStateError(RuntimeError):
    """A state file is not a service record; the message names the file."""


class AddressMovedError(RuntimeError):
    """The model is served at another address than the model deployer's port now says."""


class AddressTakenError(RuntimeError):
    """The model deployer's port is held by a process that is not this model's."""


class DeploymentInProgressError(RuntimeError):
    """Another deployment of the same model holds its lock."""


class RouterProcess(BaseModel):
    pid: int
    started: float
    #: the stable address's port
    port: int
    log_file: str
    #: the router's own port (None: a router that listened on the stable port itself)
    control_port: int | None = None

    @property
    def url(self) -> str:
        return f"http://{HOST}:{self.control_port or self.port}"

    @property
    def running(self) -> bool:
        """Whether the recorded process still runs (not another one given its pid)."""
        return _is_running(self.pid, self.started)


class Restart(BaseModel):
    """One process the supervisor found dead, and what it did about it."""

    at: datetime
    what: str
    pid_before: int
    pid_after: int | None = None
    outcome: str


class SupervisorProcess(BaseModel):
    """The deployment's supervisor (``deployment/supervisor.py``) and its recent restarts."""

    pid: int
    started: float
    log_file: str
    restarts: list[Restart] = []

    @property
    def running(self) -> bool:
        return _is_running(self.pid, self.started)


def _what(service: RunningService) -> str:
    """How a served version is named in the supervisor's restarts."""
    return f"version {service.model_version} (port {getattr(service.runs_as, 'port', '?')})"


def _restart(what: str, before: int, after: int | None, outcome: str) -> Restart:
    logger.warning("%s (pid %s) had died: %s", what, before, outcome)
    return Restart(at=datetime.now(UTC), what=what, pid_before=before, pid_after=after,
                   outcome=outcome)  # fmt: skip


def state_file(state_dir: Path, model_name: str, kind: str = "") -> Path:
    return state_dir / f"{model_name}{kind}.json"


def stable_dir(state_dir: Path, model_name: str) -> Path:
    """The stable address's owner file and holders (``serving/stable.py``)."""
    return (state_dir / "stable" / model_name).resolve()


def marker(state_dir: Path, model_name: str) -> str:
    return f"{state_dir.resolve()}::{model_name}"


def _spawn(command: list[str], env: dict[str, str], log: IO[str], cwd: Path | None = None) -> int:
    process = subprocess.Popen(
        command,
        env={**os.environ, **env},
        cwd=cwd,
        stdout=log,
        stderr=subprocess.STDOUT,
        start_new_session=True,  # its own group: outlives the deploy, and no Ctrl-C reaches it
    )
    return process.pid


def _tail(log_file: Path, lines: int = 15) -> str:
    return "".join(log_file.read_text(errors="replace").splitlines(keepends=True)[-lines:])


def tokens_file(state_dir: Path, model_name: str) -> Path:
    """The model's tokens (``serving/credentials.py``): 0600, in a 0700 directory."""
    return state_dir / "secrets" / f"{model_name}.tokens.json"


def deployment_tokens(state_dir: Path, model_name: str) -> Tokens:
    """The model's tokens, written at its first deploy."""
    path = tokens_file(state_dir, model_name)
    if not path.is_file():
        write_tokens(path, new_tokens())
        logger.info("wrote the deployment's tokens to %s (owner only)", path)
    return read_tokens(path)


def start_service(
    package: BentoPackage, state_dir: Path, timeout: float, stable_port: int
) -> RunningService:
    """Start the bento's app on a free port other than the model's stable address
    (``serving/server.py``) and wait until it is ready."""
    import bentoml

    from tabular_mlops.adapters.compat import bento_yaml_through_libyaml

    bento_yaml_through_libyaml()
    bento = bentoml.bentos.get(package.bento_tag)
    source = Path(bento.path) / "src"
    deployment_tokens(state_dir, package.model_name)
    settings = package.settings.model_copy(
        update={
            "model_dir": bentoml.models.get(package.settings.model_tag).path,
            "tokens_file": str(tokens_file(state_dir, package.model_name).resolve()),
        }
    )
    port = free_port(avoid={stable_port})
    label = f"{package.model_name}-v{package.model_version}-{port}"
    metrics = metrics_dir(state_dir, label)
    shutil.rmtree(metrics, ignore_errors=True)
    metrics.mkdir(parents=True)
    (state_dir / "logs").mkdir(parents=True, exist_ok=True)
    log_file = state_dir / "logs" / f"{label}.log"
    command = server_command(sys.executable, HOST, port)
    env = {
        SETTINGS_ENV: settings.model_dump_json(),
        # the bento's copy of the code, not the checkout's
        "PYTHONPATH": str(source),
        "PROMETHEUS_MULTIPROC_DIR": str(metrics),
        MARKER_ENV: marker(state_dir, package.model_name),
        # it accepts on the model's stable address itself whenever it is the one live version
        STABLE_DIR_ENV: str(stable_dir(state_dir, package.model_name)),
    }
    with log_file.open("w") as log:
        pid = _spawn(command, env, log, cwd=source)
    service = RunningService(
        model_name=package.model_name,
        model_version=package.model_version,
        bento_tag=package.bento_tag,
        url=f"http://{HOST}:{port}",
        started_at=datetime.now(UTC),
        runs_as=LocalProcess(
            pid=pid,
            started=identity(pid),
            port=port,
            log_file=str(log_file),
            command=command,
            env=env,
            cwd=str(source),
        ),
    )
    logger.info("started %s (pid %s) on %s", package.bento_tag, pid, service.url)
    if wait_for_url(f"{service.url}/readyz", timeout, lambda: has_exited(pid)):
        return service
    stop_process_tree(pid)
    shutil.rmtree(metrics, ignore_errors=True)
    raise ServiceStartError(
        f"bento {package.bento_tag} did not become ready on {service.url} "
        f"within {timeout:g} s; last lines of {log_file}:\n{_tail(log_file)}"
    )


def metrics_dir(state_dir: Path, label: str) -> Path:
    """One service's Prometheus multiprocess directory: its workers' counters, nobody else's."""
    return state_dir / "metrics" / label


def _read(path: Path, model: type[BaseModel], what: str) -> Any:
    if not path.is_file():
        return None
    try:
        return model.model_validate_json(path.read_text())
    except ValidationError as exc:
        raise ServiceStateError(
            f"{path}: not a {what} record ({exc.errors()[0]['msg']}); if nothing of this "
            "model is served, delete the file"
        ) from None


def _write(path: Path, record: BaseModel) -> None:
    write_atomically(path, record.model_dump_json(indent=2))


def read_live(state_dir: Path, model_name: str) -> RunningService | None:
    record: RunningService | None = _read(
        state_file(state_dir, model_name), RunningService, "service"
    )
    return record


def record_live(state_dir: Path, service: RunningService) -> None:
    _write(state_file(state_dir, service.model_name), service)


def router_status(url: str, token: str | None) -> dict[str, Any] | None:
    """What the router at ``url`` reports, read with the deployment's admin ``token``."""
    return answer_of(f"{url}{ROUTES_PATH}", token=token)


#: how long a dead server's worker may take to leave before it is killed: it stops by
#: itself once it sees its server gone (0.25 s), a SIGTERM makes it drain its requests
ORPHAN_GRACE_SECONDS = 5.0


def _is_running(pid: int, started: float | None) -> bool:
    return is_same_process(pid, started) if started is not None else psutil.pid_exists(pid)


def stray_processes(state_dir: Path, model_name: str, keep: set[int]) -> list[psutil.Process]:
    """Processes started for this model's deployments that are neither in ``keep`` nor
    descendants of it: left by a killed deploy, or workers of a killed service."""
    wanted = marker(state_dir, model_name)
    kept = set(keep)
    for pid in keep:
        with contextlib.suppress(psutil.Error):
            kept.update(child.pid for child in psutil.Process(pid).children(recursive=True))
    strays = []
    for process in psutil.process_iter():
        if process.pid in kept or process.pid == os.getpid():
            continue
        with contextlib.suppress(psutil.Error):
            if process.environ().get(MARKER_ENV) == wanted:
                strays.append(process)
    return strays


class LocalProcessTarget:
    """Processes on this machine sharing the address ``local.port``; the bento store is
    the registry. ``serving`` is the deployment's policy, ``local`` the model
    deployer's configuration (the environment's)."""

    def __init__(self, serving: ServingConfig, local: LocalServingConfig) -> None:
        self.serving = serving
        self.local = local
        self.state_dir = local.state_dir
        self.workers = local.workers
        self.inference_log_dir = local.inference_log_dir
        #: each model's tokens file, read again only when it changes (a switch polls the
        #: router's status with the admin token every 50 ms)
        self._token_files: dict[str, TokenFile] = {}

    @property
    def stable_url(self) -> str:
        return f"http://{HOST}:{self.local.port}"

    # --- the deployment's lock ------------------------------------------------------------
    def _lock_file(self, model_name: str) -> Path:
        return (self.state_dir / f"{model_name}.lock").resolve()

    def _acquire(self, model_name: str, holder: str = "", wait: bool = True) -> None:
        """The model's deployment lock, or DeploymentInProgressError naming who holds it.
        A supervisor's restart (``holder``) takes seconds: a deployment waits for it
        (``wait``) rather than fail."""
        path = self._lock_file(model_name)
        if path in _HELD:
            return
        self.state_dir.mkdir(parents=True, exist_ok=True)
        handle = path.open("a+")
        deadline = time.monotonic() + self.serving.startup_timeout_seconds + 10
        while True:
            try:
                fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except BlockingIOError:
                handle.seek(0)
                current = handle.read().strip() or "another process"
                restarting = current.startswith(SUPERVISOR_HOLDER)
                if wait and restarting and not holder and time.monotonic() < deadline:
                    time.sleep(0.1)
                    continue
                handle.close()
                raise DeploymentInProgressError(
                    f"another deployment of '{model_name}' is in progress ({current}); "
                    "wait for it to finish"
                ) from None
        handle.truncate(0)
        handle.write(f"{holder} pid {os.getpid()}".strip())
        handle.flush()
        _HELD[path] = handle
        if not holder:  # a deployment: it may write records such a supervisor misreads
            self._retire_older_supervisor(self.supervisor(model_name))

    def _release(self, model_name: str) -> None:
        handle = _HELD.pop(self._lock_file(model_name), None)
        if handle is not None:
            handle.close()  # closing drops the flock; so does the process dying

    # --- ServingTarget ----------------------------------------------------------------------
    def publish(self, bento_tag: str) -> str:
        return bento_tag

    def start(self, package: BentoPackage) -> RunningService:
        self._acquire(package.model_name)
        try:
            self._check_address(package.model_name)
            self.sweep(package.model_name)
            return start_service(
                package,
                self.state_dir,
                self.serving.startup_timeout_seconds,
                self.local.port,
            )
        except BaseException:
            self._release(package.model_name)
            raise

    def live(self, model_name: str) -> RunningService | None:
        return read_live(self.state_dir, model_name)

    def served(self) -> list[RunningService]:
        found = []
        for path in sorted(self.state_dir.glob("*.json")):
            with contextlib.suppress(ValidationError, OSError):
                record = RunningService.model_validate_json(path.read_text())
                if path == state_file(self.state_dir, record.model_name):  # not a candidate's
                    found.append(record)
        return found

    def router(self, model_name: str) -> RouterProcess | None:
        record: RouterProcess | None = _read(
            state_file(self.state_dir, model_name, ".router"), RouterProcess, "router"
        )
        return record

    def switch(self, candidate: RunningService) -> RunningService:
        """Point the model's stable address at ``candidate``: the router is told (and started
        if it is not running), and this returns once it has drained the old version."""
        if not isinstance(candidate.runs_as, LocalProcess):
            raise TypeError(f"{candidate.instance} is not a local process")
        upstream = Upstream(url=candidate.runs_as.direct_url, model_version=candidate.model_version)
        self._publish(candidate.model_name, [upstream])
        live = candidate.model_copy(update={"url": self.stable_url})
        record_live(self.state_dir, live)
        self.supervise(candidate.model_name)
        self._release(candidate.model_name)
        return live

    def evidence_dir(self, model_name: str) -> Path:
        """Where the router writes the routing and feedback logs of the model."""
        return (self.state_dir / "evidence" / model_name).resolve()

    # --- credentials ------------------------------------------------------------------------
    def tokens(self, model_name: str) -> Tokens:
        """The model's tokens (feedback, admin, source), created at its first deploy."""
        return deployment_tokens(self.state_dir, model_name)

    def rotate_tokens(self, model_name: str) -> Tokens:
        """New tokens; the old ones are accepted for ``ROTATION_GRACE`` more. Every server
        reads the file again when it changes: nothing restarts, no request fails."""
        tokens = rotated(self.tokens(model_name), datetime.now(UTC))
        write_tokens(tokens_file(self.state_dir, model_name), tokens)
        return tokens

    def tokens_location(self, model_name: str) -> str:
        return str(tokens_file(self.state_dir, model_name).resolve())

    def set_api_keys(self, model_name: str, change: Callable[[Tokens], Tokens]) -> Tokens:
        """The tokens with ``change`` applied (a client's API key made or revoked), written
        under the deployment's lock; servers read them again without a restart."""
        self._acquire(model_name)
        try:
            tokens = change(self.tokens(model_name))
            write_tokens(tokens_file(self.state_dir, model_name), tokens)
            return tokens
        finally:
            self._release(model_name)

    def prune_logs(self, model_name: str, days: int | None) -> list[Path]:
        """The model's inference, routing, feedback and process logs older than ``days``
        removed; those of its running processes kept."""
        running: list[Any] = [s.runs_as for s in self._served(model_name)]
        records = [*running, self.router(model_name), self.supervisor(model_name)]
        keep = [Path(r.log_file) for r in records if getattr(r, "log_file", None)]
        directories = [
            self.inference_log_dir, self.evidence_dir(model_name), self.state_dir / "logs"
        ]  # fmt: skip
        return prune_old_logs(directories, days, keep)

    def _admin(self, model_name: str) -> str:
        files = self._token_files.setdefault(
            model_name, TokenFile(tokens_file(self.state_dir, model_name))
        )
        token = files.token("admin")
        return token if token is not None else self.tokens(model_name).current["admin"]

    def _publish(
        self,
        model_name: str,
        upstreams: list[Upstream],
        plan: RolloutPlan | None = None,
        experiment: str = "",
    ) -> None:
        """Write the routes, signal the router (starting it if needed) and wait until it
        routes by them and has drained every upstream it no longer names."""
        routes_file = state_file(self.state_dir, model_name, ".routes")
        previous: Routes | None = _read(routes_file, Routes, "routes")
        routes = Routes(
            model_name=model_name,
            generation=(previous.generation + 1) if previous else 1,
            upstreams=upstreams,
            plan=plan or RolloutPlan(),
            experiment=experiment,
            evidence_dir=str(self.evidence_dir(model_name)),
        )
        write_routes(routes_file, routes)
        router = self._ensure_router(model_name, routes_file)
        os.kill(router.pid, signal.SIGHUP)

        def generation() -> Any:
            return (router_status(router.url, self._admin(model_name)) or {}).get("generation")

        if not wait_until(lambda: generation() == routes.generation, 10, interval=0.05):
            # the router kept its routes (e.g. it runs older code that cannot read these):
            # put the file back as it routes, and change nothing else
            if previous is not None:
                write_routes(routes_file, previous)
            raise ServiceStartError(
                f"the router of {self.stable_url} (pid {router.pid}) did not take the new "
                f"routes; see {router.log_file}. Nothing was switched; `deploy --stop` then "
                "`deploy` starts a new router"
            )

        def drained() -> bool:  # a router that does not answer has not said so
            status = router_status(router.url, self._admin(model_name))
            return status is not None and not status.get("draining")

        if not wait_until(drained, DRAIN_SECONDS, interval=0.05):
            logger.warning("router still draining after %s s; going on", DRAIN_SECONDS)
        self._wait_for_address(model_name, routes, router)

    def _wait_for_address(self, model_name: str, routes: Routes, router: RouterProcess) -> None:
        """Wait until the stable address is where the routes put it (``serving/stable.py``):
        the one live version accepts on it itself (no hop), and every version the routes no
        longer name has stopped accepting and finished its clients' connections, so it
        can be stopped without failing a request."""
        directory = stable_dir(self.state_dir, model_name)
        named = {urlsplit(upstream.url).port for upstream in routes.upstreams}

        def settled() -> bool:
            owner = read_owner(directory)
            if owner is None or owner.generation < routes.generation:
                return False
            versions = [h for h in holders(directory) if h.port != router.control_port]
            if owner.port != router.control_port and not any(
                h.accepting for h in versions if h.port == owner.port
            ):
                return False
            return all(not h.accepting and h.open == 0 for h in versions if h.port not in named)

        if not wait_until(settled, DRAIN_SECONDS, interval=0.05):
            logger.warning(
                "the stable address had not settled after %s s (%s); going on",
                DRAIN_SECONDS,
                describe(directory),
            )

    # --- online experiments ---------------------------------------------------------------
    def rollout(self, model_name: str) -> Rollout | None:
        record: Rollout | None = _read(
            state_file(self.state_dir, model_name, ".rollout"), Rollout, "rollout"
        )
        return record

    def note_decision(self, model_name: str, decision: dict[str, Any] | None) -> None:
        path = state_file(self.state_dir, model_name, ".decision")
        if decision is None:
            path.unlink(missing_ok=True)
        else:
            write_atomically(path, json.dumps(decision, default=str))

    def noted_decision(self, model_name: str) -> dict[str, Any] | None:
        path = state_file(self.state_dir, model_name, ".decision")
        try:
            noted = json.loads(path.read_text())
        except FileNotFoundError:
            return None
        except ValueError:  # torn by hand: still a decision waiting
            return {"decision": "decision", "experiment": "?", "candidate": "?"}
        return noted if isinstance(noted, dict) else None

    def begin_rollout(
        self, champion: RunningService, candidate: RunningService, plan: RolloutPlan,
    ) -> Rollout:  # fmt: skip
        """The candidate joins the champion behind the model's address, by ``plan``."""
        if not isinstance(candidate.runs_as, LocalProcess) or not isinstance(
            champion.runs_as, LocalProcess
        ):
            raise TypeError("a local rollout needs local processes")
        running = self.rollout(candidate.model_name)
        if running is not None:
            self.stop(candidate)
            raise DeploymentInProgressError(
                f"rollout {running.experiment} of version {running.candidate.model_version} is "
                "in progress: decide it first (python run.py rollout, --promote or --abort)"
            )
        started = datetime.now(UTC)
        rollout = Rollout(
            experiment=f"{candidate.model_name}-v{candidate.model_version}-{started:%Y%m%dT%H%M%S}",
            plan=plan,
            champion=champion,
            candidate=candidate,
            started_at=started,
        )
        self._publish(
            candidate.model_name,
            [
                Upstream(url=champion.runs_as.direct_url, model_version=champion.model_version),
                Upstream(url=candidate.runs_as.direct_url, model_version=candidate.model_version),
            ],
            plan,
            rollout.experiment,
        )  # fmt: skip
        _write(state_file(self.state_dir, candidate.model_name, ".rollout"), rollout)
        self.supervise(candidate.model_name)
        self._release(candidate.model_name)
        return rollout

    def finish_rollout(self, model_name: str, promote: bool) -> RunningService:
        """Give all traffic to the candidate (``promote``) or back to the champion, stop the
        other one, and return what is live."""
        rollout = self.rollout(model_name)
        if rollout is None:
            raise ServiceStateError(f"no rollout of '{model_name}' is in progress")
        self._acquire(model_name)
        try:
            winner, loser = (
                (rollout.candidate, rollout.champion)
                if promote
                else (rollout.champion, rollout.candidate)
            )
            live = self.switch(winner)
            failpoint("rollout-switched")  # the traffic moved, the experiment's record stays

            def end() -> None:
                # no record names the loser before it stops: the supervisor never restarts it
                state_file(self.state_dir, model_name, ".rollout").unlink(missing_ok=True)
                self.stop(loser)

            after_the_switch(winner, end, (
                f"version {loser.model_version}'s processes, if still running, are named by "
                "`python run.py deploy --status` and stopped by the next `deploy`"
            ))  # fmt: skip
            return live
        finally:
            self._release(model_name)

    def router_view(self, model_name: str) -> dict[str, Any] | None:
        """What the router reports: routes, each arm's figures, the rollout's state."""
        router = self.router(model_name)
        return router_status(router.url, self._admin(model_name)) if router is not None else None

    def _moved_from(self, model_name: str) -> RouterProcess | None:
        """The model's running router when it answers on another port than ``local.port``
        (the environment's port was changed while the model was served there)."""
        record = self.router(model_name)
        if record is None or record.port == self.local.port or not record.running:
            return None
        status = router_status(record.url, self._admin(model_name))
        return record if status and status.get("model_name") == model_name else None

    def _check_address(self, model_name: str) -> None:
        """Refuse to move a served model's address as a side effect: its clients use the
        old one. Moving it is ``deploy --stop``, then a deploy on the new port."""
        router = self.router(model_name)
        ours = router is not None and router.running
        if (
            not ours
            and not holders(stable_dir(self.state_dir, model_name))
            and not bindable(HOST, self.local.port)
        ):
            raise AddressTakenError(
                f"{self.stable_url} is taken by a process that is not this model's; nothing "
                f"was started. Stop that process, or give the model deployer another "
                "`port` in the environment's YAML (configs/environments/)"
            )
        moved = self._moved_from(model_name)
        if moved is not None:
            raise AddressMovedError(
                f"'{model_name}' is served at http://{HOST}:{moved.port} (router pid "
                f"{moved.pid}), but the model deployer's port is now {self.local.port}; "
                "nothing was changed. To move it: `python run.py deploy --stop`, then "
                f"deploy (its clients must follow); or set the port back to {moved.port}"
            )

    def _ensure_router(self, model_name: str, routes_file: Path) -> RouterProcess:
        self._check_address(model_name)
        record = self.router(model_name)
        if record is not None and record.running:
            status = router_status(record.url, self._admin(model_name))
            if (
                record.port == self.local.port
                and record.control_port is not None
                and status
                and status["model_name"] == model_name
            ):
                return record
            stop_process_tree(record.pid)  # one that hangs, or a stale record's
        log_file = self.state_dir / "logs" / f"{model_name}-router.log"
        log_file.parent.mkdir(parents=True, exist_ok=True)
        control_port = free_port(avoid={self.local.port})
        with log_file.open("a") as log:
            # it binds the stable address, or takes it over from the processes holding it
            pid = _spawn(
                [
                    sys.executable,
                    "-m",
                    "tabular_mlops.serving.router",
                    str(routes_file.resolve()),
                    HOST,
                    str(control_port),
                    str(self.local.port),
                ],
                {
                    MARKER_ENV: marker(self.state_dir, model_name),
                    STABLE_DIR_ENV: str(stable_dir(self.state_dir, model_name)),
                    TOKENS_FILE_ENV: str(tokens_file(self.state_dir, model_name).resolve()),
                },
                log,
            )
        record = RouterProcess(
            pid=pid,
            started=identity(pid),
            port=self.local.port,
            log_file=str(log_file),
            control_port=control_port,
        )
        if not wait_until(
            lambda: router_status(record.url, self._admin(model_name)) is not None,
            30,
            lambda: has_exited(pid),
        ):
            stop_process_tree(pid)
            tail = _tail(log_file)
            errors = [line for line in tail.splitlines() if " ERROR " in line]
            cause = errors[-1].split(" ERROR ", 1)[1] if errors else "see its log"
            raise ServiceStartError(
                f"the router of {self.stable_url} did not start ({cause}); last lines of "
                f"{log_file}:\n{tail}"
            )
        _write(state_file(self.state_dir, model_name, ".router"), record)
        logger.info("router (pid %s) serves %s at %s", pid, model_name, self.stable_url)
        return record

    def stop(self, service: RunningService) -> None:
        process = service.runs_as
        if isinstance(process, LocalProcess) and _is_running(process.pid, process.started):
            stop_process_tree(process.pid)
        self._drop_metrics(service)
        self._release(service.model_name)

    def _drop_metrics(self, service: RunningService) -> None:
        """The stopped service's metrics directory (its workers' counter files)."""
        process = service.runs_as
        if isinstance(process, LocalProcess):
            label = f"{service.model_name}-v{service.model_version}-{process.port}"
            shutil.rmtree(metrics_dir(self.state_dir, label), ignore_errors=True)

    def forget(self, model_name: str) -> None:
        """Stop the router, a rollout's candidate, and anything else left of the model's
        deployments. The supervisor goes first: it would start them again. Not while a
        deployment is in progress (DeploymentInProgressError): it would serve again
        moments after the stop."""
        self._acquire(model_name)
        try:
            self._forget(model_name)
        finally:
            self._release(model_name)

    def _forget(self, model_name: str) -> None:
        """Everything of the model stops at once: the supervisor, which would start the
        rest again, cannot meanwhile (it takes the deployment's lock, held here)."""
        everything = {process.pid for process in self.strays(model_name, keep_live=False)}
        for record in (self.supervisor(model_name), self.router(model_name)):
            if record is not None and record.running:
                everything.add(record.pid)
        rollout = self.rollout(model_name)
        candidate = rollout.candidate.runs_as if rollout is not None else None
        if isinstance(candidate, LocalProcess) and _is_running(candidate.pid, candidate.started):
            everything.add(candidate.pid)
        stop_process_trees(everything)
        state_file(self.state_dir, model_name, ".supervisor").unlink(missing_ok=True)
        if rollout is not None:  # the lock stays held: `stop` would release it here
            self._drop_metrics(rollout.candidate)
        for kind in ("", ".router", ".routes", ".rollout"):
            state_file(self.state_dir, model_name, kind).unlink(missing_ok=True)
        shutil.rmtree(stable_dir(self.state_dir, model_name), ignore_errors=True)

    def sweep_if_idle(
        self, model_name: str, why: str = "left over from an earlier deployment"
    ) -> list[int]:
        """:meth:`sweep` unless a deployment is in progress (its candidate is no stray)."""
        return self._when_idle(model_name, lambda: self.sweep(model_name, why=why))

    def leftovers(self, model_name: str) -> list[int]:
        """What :meth:`sweep_if_idle` would stop, left running."""
        return self._when_idle(
            model_name, lambda: [process.pid for process in self.strays(model_name)]
        )

    def _when_idle(self, model_name: str, work: Callable[[], list[int]]) -> list[int]:
        """``work()`` under the deployment's lock; nothing while a deployment holds it."""
        try:
            self._acquire(model_name, wait=False)
        except DeploymentInProgressError:
            return []
        try:
            return work()
        finally:
            self._release(model_name)

    def sweep(
        self,
        model_name: str,
        keep_live: bool = True,
        why: str | None = "left over from an earlier deployment",
    ) -> list[int]:
        """Stop this model's processes that nothing records (see the module's docstring),
        each logged with ``why`` (nothing when everything of the model is stopped)."""
        strays = self.strays(model_name, keep_live)
        for process in strays:
            if why:
                logger.warning("stopping pid %s: %s", process.pid, why)
        stop_process_trees([process.pid for process in strays])
        return [process.pid for process in strays]

    def strays(self, model_name: str, keep_live: bool = True) -> list[psutil.Process]:
        """This model's processes that nothing records: the live service, the candidate of
        a rollout and the router are kept (unless ``keep_live`` is False)."""
        keep: set[int] = set()
        live = self.live(model_name) if keep_live else None
        router = self.router(model_name) if keep_live else None
        if live is not None and isinstance(live.runs_as, LocalProcess):
            keep.add(live.runs_as.pid)
        rollout = self.rollout(model_name) if keep_live else None
        if rollout is not None and isinstance(rollout.candidate.runs_as, LocalProcess):
            keep.add(rollout.candidate.runs_as.pid)
        if router is not None:
            keep.add(router.pid)
        supervisor = self.supervisor(model_name) if keep_live else None
        if supervisor is not None:
            keep.add(supervisor.pid)
        return stray_processes(self.state_dir, model_name, keep)

    # --- supervision -------------------------------------------------------------------------
    def supervisor(self, model_name: str) -> SupervisorProcess | None:
        record: SupervisorProcess | None = _read(
            state_file(self.state_dir, model_name, ".supervisor"), SupervisorProcess, "supervisor"
        )
        return record

    @staticmethod
    def _retire_older_supervisor(record: SupervisorProcess | None) -> None:
        """Stop a supervisor started by a version of this project that told processes
        apart by their wall-clock start: it would take the processes this version records
        (by their start since boot) for dead ones and start them again. The next
        :meth:`supervise` starts one of this version."""
        if record is not None and is_wall_clock_start(record.started) and record.running:
            logger.warning("stopping the supervisor (pid %s) an earlier version started",
                           record.pid)  # fmt: skip
            with contextlib.suppress(ProcessLookupError):
                os.kill(record.pid, signal.SIGTERM)

    def supervise(self, model_name: str) -> SupervisorProcess:
        """The model's supervisor, started if it is not running: it starts the router and
        the served versions again when one dies (``deployment/supervisor.py``)."""
        record = self.supervisor(model_name)
        if record is not None and record.running and not is_wall_clock_start(record.started):
            return record
        self._retire_older_supervisor(record)
        log_file = self.state_dir / "logs" / f"{model_name}-supervisor.log"
        log_file.parent.mkdir(parents=True, exist_ok=True)
        with log_file.open("a") as log:
            pid = _spawn(
                [sys.executable, "-m", "tabular_mlops.adapters.deployment.supervisor",
                 str(self.state_dir.resolve()), model_name, str(self.local.port),
                 str(self.serving.startup_timeout_seconds)],
                {MARKER_ENV: marker(self.state_dir, model_name)},
                log,
            )  # fmt: skip
        record = SupervisorProcess(
            pid=pid,
            started=identity(pid),
            log_file=str(log_file),
            restarts=record.restarts if record is not None else [],
        )
        _write(state_file(self.state_dir, model_name, ".supervisor"), record)
        logger.info("supervisor (pid %s) watches %s", pid, model_name)
        return record

    def heal(
        self,
        model_name: str,
        may_restart: Callable[[str], bool],
        worth_trying: Callable[[str], bool] = lambda what: True,
    ) -> list[Restart]:
        """Start again what of the model's deployment died: the router, the live version,
        a rollout's candidate (each on its own port, so the routes stay as they are);
        ``may_restart(what)`` says no to a process that keeps dying (``worth_trying``
        asks the same without counting). Nothing while a deployment holds the model's
        lock: it is changing what should run; the lock is taken only when something
        died that is worth trying (a deploy or a status beside a look finds it free)."""
        if not any(worth_trying(what) for what in self._dead(model_name)):
            return []
        try:
            self._acquire(model_name, holder=SUPERVISOR_HOLDER)
        except DeploymentInProgressError:
            return []
        try:
            restarts = [*self._heal_router(model_name, may_restart)]
            for service in self._served(model_name):
                restarts.extend(self._heal_service(service, may_restart))
            if restarts:
                record = self.supervisor(model_name)
                if record is not None:
                    kept = [*record.restarts, *restarts][-RESTARTS_KEPT:]
                    _write(
                        state_file(self.state_dir, model_name, ".supervisor"),
                        record.model_copy(update={"restarts": kept}),
                    )
            return restarts
        finally:
            self._release(model_name)

    def _dead(self, model_name: str) -> list[str]:
        """What of the router and the served versions recorded as running has exited."""
        router = self.router(model_name)
        dead = ["router"] if router is not None and not router.running else []
        return dead + [
            _what(s)
            for s in self._served(model_name)
            if isinstance(s.runs_as, LocalProcess)
            and not _is_running(s.runs_as.pid, s.runs_as.started)
        ]

    def _served(self, model_name: str) -> list[RunningService]:
        rollout = self.rollout(model_name)
        live = self.live(model_name)
        return [s for s in (live, rollout.candidate if rollout else None) if s is not None]

    def _heal_router(self, model_name: str, may_restart: Callable[[str], bool]) -> list[Restart]:
        router = self.router(model_name)
        if router is None or router.running or not may_restart("router"):
            return []
        routes_file = state_file(self.state_dir, model_name, ".routes")
        try:
            started = self._ensure_router(model_name, routes_file)
        except ServiceStartError as exc:
            return [_restart("router", router.pid, None, f"failed: {exc}")]
        return [_restart("router", router.pid, started.pid, "answering again")]

    def _heal_service(
        self, service: RunningService, may_restart: Callable[[str], bool]
    ) -> list[Restart]:
        process, what = service.runs_as, _what(service)
        if not isinstance(process, LocalProcess) or _is_running(process.pid, process.started):
            return []
        if not may_restart(what):
            return []
        if not process.command:
            older = "not restartable: started by an older version; `python run.py deploy --force`"
            return [_restart(what, process.pid, None, older)]
        # its orphaned workers still hold the port: gone first. Found by their marker, and
        # by their process group (its dead leader's id): under load, a sweep once found
        # none, the new server's readiness check was answered by them, and the address
        # answered 503 once they left, until the next restart (2026-12-06)
        self.sweep(service.model_name, why=f"a worker of {what}, whose server died")
        orphans = orphans_of_group(process.pid, process.started)
        for orphan in orphans:
            logger.warning("stopping pid %s: a worker of %s, whose server died", orphan.pid, what)
        terminate(orphans, ORPHAN_GRACE_SECONDS)
        # and whatever else still listens there leaves first: a server that cannot bind
        # exits at once, and another's answer must not pass for the new server's
        if not wait_until(lambda: bindable(HOST, process.port), ORPHAN_GRACE_SECONDS):
            return [_restart(what, process.pid, None, f"port {process.port} is still taken")]
        with Path(process.log_file).open("a") as log:
            pid = _spawn(process.command, process.env, log, cwd=Path(process.cwd or "."))
        ready = wait_for_url(
            f"{process.direct_url}/readyz",
            self.serving.startup_timeout_seconds,
            lambda: has_exited(pid),
        )
        if not ready or has_exited(pid):  # exited: whatever answered was not it
            stop_process_tree(pid)
            return [_restart(what, process.pid, None, f"did not start; see {process.log_file}")]
        self._replace_process(service.model_name, process.pid, pid)
        return [_restart(what, process.pid, pid, "answering again")]

    def _replace_process(self, model_name: str, old_pid: int, new_pid: int) -> None:
        """Every record naming ``old_pid`` (live, the rollout's champion or candidate) now
        names ``new_pid``."""

        def renewed(service: RunningService) -> RunningService:
            process = service.runs_as
            if not isinstance(process, LocalProcess) or process.pid != old_pid:
                return service
            runs_as = process.model_copy(update={"pid": new_pid, "started": identity(new_pid)})
            return service.model_copy(update={"runs_as": runs_as})

        live = self.live(model_name)
        if live is not None:
            record_live(self.state_dir, renewed(live))
        rollout = self.rollout(model_name)
        if rollout is not None:
            _write(
                state_file(self.state_dir, model_name, ".rollout"),
                rollout.model_copy(
                    update={
                        "champion": renewed(rollout.champion),
                        "candidate": renewed(rollout.candidate),
                    }
                ),
            )

    def problems(self, service: RunningService) -> list[str]:
        process = service.runs_as
        if not isinstance(process, LocalProcess):
            return [f"{service.instance} is not a local process"]
        found = []
        router = self.router(service.model_name)
        moved = self._moved_from(service.model_name)
        if moved is not None:
            found.append(
                f"the model deployer's port is now {self.local.port}, but the model is "
                f"served at port {moved.port}: `deploy --stop`, then deploy, moves it"
            )
        elif router is None or not router.running:
            found.append(f"the router of {self.stable_url} is not running")
        if not _is_running(process.pid, process.started):
            found.append(f"the service process (pid {process.pid}) is gone")
        elif self.rollout(service.model_name) is None and not any(
            h.accepting and h.port == process.port
            for h in holders(stable_dir(self.state_dir, service.model_name))
        ):
            found.append(
                f"version {service.model_version} does not accept on {self.stable_url} "
                f"itself (see {process.log_file}); the router forwards to it, a hop"
            )
        status = (
            router_status(router.url, self._admin(service.model_name))
            if router is not None
            else None
        )
        served = ((status or {}).get("live") or {}).get("model_version")
        if status is not None and served != service.model_version:
            found.append(f"{service.url} forwards to version {served}")
        if not answers(f"{service.url}/readyz"):  # a slow answer is an answer
            found.append(f"{service.url}/readyz does not answer")
        return found

    def address_view(self, model_name: str) -> str:
        """Who accepts on the model's stable address now (``deploy --status``)."""
        router = self.router(model_name)
        router_port = router.control_port if router is not None else None
        ports = sorted({h.port for h in holders(stable_dir(self.state_dir, model_name))
                        if h.accepting})  # fmt: skip
        if not ports:
            return "nobody accepts on it: requests wait in its queue"
        names = [
            f"the router (port {port})" if port == router_port else f"the service on port {port}"
            for port in ports
        ]
        hop = "" if router_port in ports else ", itself (no hop)"
        return f"accepted by {' and '.join(names)}{hop}"

    def plan(self, model_name: str) -> dict[str, Any]:
        return {
            "target": "local processes; the stable address is the live one's, a router's "
            "during a rollout",
            "stable_url": self.stable_url,
            "state_file": str(state_file(self.state_dir, model_name)),
            "inference_log_dir": str(self.inference_log_dir),
        }
