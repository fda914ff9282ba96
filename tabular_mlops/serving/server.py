"""Serve the bento's app with uvicorn: how every version runs, on a laptop (``deploy`` on
dev, staging) and in a pod on the cluster (the Deployment's command), the same module
with the same settings.

Why not ``bentoml serve``: measured on 2 cores with wrk, BentoML 1.4's server
adds a tail of hundreds of milliseconds (its ``TimeoutMiddleware`` keeps one
timer per request alive for the whole timeout) and its OpenTelemetry
middleware costs about two thirds of the throughput; the same app under
uvicorn answers at p99 of a few ms (docs/benchmarks.md). The bento stays the
packaged unit: this module is part of it, the deployment starts it from the
bento's own ``src`` directory, and the model is read from BentoML's model
store locally, from the bento's own ``models/`` in the container image.

Supervision: uvicorn's supervisor restarts a worker that dies, and each worker
leaves as soon as its supervisor is gone (``kill -9`` included), so no worker
ever serves on alone.

Workers are forked, not spawned: the supervisor imports what a worker needs (the
app, scikit-learn, the model's own classes) once, and each worker, at the start or
when it is restarted, loads only the model file. uvicorn spawns a fresh interpreter
per worker, which imported all of it again: a service of two workers started in
0.69 of the time, for 0.45 of the CPU, forked (``bench/server_start.py``).
``TABULAR_SERVER_WORKER_START=spawn`` starts them as uvicorn does.
"""

from __future__ import annotations

import contextlib
import logging
import multiprocessing
import os
import signal
import sys
import tempfile
import threading
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

from tabular_mlops.core.files import ModelFileChangedError
from tabular_mlops.core.spec import SETTINGS_ENV, ServingSettings, ServingSpec
from tabular_mlops.core.threads import THREAD_POOL_ENVS
from tabular_mlops.serving.stable import STABLE_DIR_ENV

if TYPE_CHECKING:
    from collections.abc import Callable
    from multiprocessing.context import ForkProcess
    from socket import socket

    from fastapi import FastAPI
    from uvicorn import Config
    from uvicorn.supervisors import Multiprocess

logger = logging.getLogger(__name__)
#: set by the supervising process, read by its workers
SUPERVISOR_ENV = "TABULAR_SERVER_SUPERVISOR"
#: the server's own port, for its workers (the owner file of the stable address names it)
PORT_ENV = "TABULAR_SERVER_PORT"
#: set when this worker's server is gone and it is about to leave
LEAVING = threading.Event()
#: how long a worker's health ping may go unanswered before uvicorn kills it as hung
WORKER_HEALTHCHECK_SECONDS = 30
#: how long a worker that refused its model file waits before it exits (and is restarted)
REFUSED_MODEL_PAUSE_SECONDS = 5.0
#: "spawn": start each worker as a fresh interpreter, as uvicorn does (where forking a
#: process that has imported the model's libraries is not safe)
WORKER_START_ENV = "TABULAR_SERVER_WORKER_START"
#: what a relative ``model_dir`` is taken from: the bento's root (a BentoML image sets it)
BENTO_PATH_ENV = "BENTO_PATH"


def one_thread_per_worker(environ: dict[str, str] | os._Environ[str]) -> None:
    """One OpenMP and BLAS thread per server process, unless the environment names a
    number: the service scales by worker processes, and each worker's pool (as many
    threads as cores, spinning after each call) fought the others. Measured on 2 cores
    with 2 workers, a histogram gradient boosting model under wrk: 125-185 req/s at p99
    1.4 s with the pools, 1,900 req/s at p99 17 ms without (bench/serving_threads.py).
    Set before NumPy or scikit-learn load, in the process whose workers inherit it."""
    for name in THREAD_POOL_ENVS:
        environ.setdefault(name, "1")


def command(python: str, host: str, port: int) -> list[str]:
    """The server's command line: the local target and the pod spec both start this."""
    return [python, "-m", "tabular_mlops.serving.server", host, str(port)]


def model_directory(settings: ServingSettings) -> Path:
    """Where the model's files are: the model store's directory, or in the image the
    bento's own copy of it."""
    if settings.model_dir is None:
        raise SystemExit(f"{SETTINGS_ENV} has no model_dir: start this through the deployment")
    model_dir = Path(settings.model_dir)
    if not model_dir.is_absolute():
        model_dir = Path(os.environ.get(BENTO_PATH_ENV, ".")) / model_dir
    return model_dir


def app_factory() -> FastAPI:
    """The app with its model loaded: called by uvicorn in every worker."""
    # here, not at the top: the deployment imports this module for `command` alone
    from tabular_mlops.serving.app import create_app, load_model

    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(message)s")
    settings = ServingSettings.model_validate_json(os.environ[SETTINGS_ENV])
    model_dir = model_directory(settings)
    spec = ServingSpec.model_validate_json((model_dir / "spec.json").read_text())
    app = create_app(spec, settings)
    try:
        path = load_model(app, spec, settings, model_dir)
    except ModelFileChangedError as refused:
        # the other workers keep the model they checked and loaded; uvicorn starts this
        # one again, so not at once (each start imports scikit-learn)
        logger.error("pid %s refused its model: %s", os.getpid(), refused)
        time.sleep(REFUSED_MODEL_PAUSE_SECONDS)
        raise SystemExit(1) from None
    if os.environ.get(STABLE_DIR_ENV):
        _serve_stable_address(app, Path(os.environ[STABLE_DIR_ENV]), int(os.environ[PORT_ENV]))
    supervisor = int(os.environ.get(SUPERVISOR_ENV, "0"))
    if supervisor and supervisor != os.getpid():
        threading.Thread(
            target=_leave_with, args=(supervisor,), name="supervisor-watch", daemon=True
        ).start()
    logger.info(
        "pid %s serves %s version %s (%s scoring path) with the code in %s",
        os.getpid(),
        spec.model_name,
        spec.model_version,
        path,
        Path(__file__).parents[1],
    )
    return app


def _serve_stable_address(app: FastAPI, directory: Path, own_port: int) -> None:
    """Also accept on the model's stable address whenever the owner file names this
    version (``serving/stable.py``): from the app's start to its end."""
    from contextlib import asynccontextmanager

    from tabular_mlops.serving.stable import StableListener

    inner = app.router.lifespan_context

    @asynccontextmanager
    async def lifespan(application: Any) -> AsyncIterator[Any]:
        async with inner(application) as state:
            listener = StableListener(app, directory, own_port, leaving=LEAVING.is_set)
            await listener.start()
            try:
                yield state
            finally:
                await listener.stop()

    app.router.lifespan_context = lifespan


def _leave_with(supervisor: int) -> None:
    """Stop this worker once its supervisor is gone: gracefully, then for sure."""
    while os.getppid() == supervisor:
        time.sleep(0.5)
    LEAVING.set()  # no new connection on the stable address: the router stands in
    time.sleep(0.2)
    logger.warning("supervisor %s is gone: worker %s stops", supervisor, os.getpid())
    os.kill(os.getpid(), signal.SIGTERM)
    time.sleep(10)
    os._exit(1)


def main() -> None:
    """``python -m tabular_mlops.serving.server HOST PORT``; settings in the environment."""
    import uvicorn
    from uvicorn.supervisors import Multiprocess

    from tabular_mlops.serving.http import PROTOCOL

    one_thread_per_worker(os.environ)
    host, port = sys.argv[1], int(sys.argv[2])
    settings = ServingSettings.model_validate_json(os.environ[SETTINGS_ENV])
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(message)s")
    os.environ[SUPERVISOR_ENV] = str(os.getpid())
    os.environ[PORT_ENV] = str(port)
    if settings.workers > 1 and not os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
        # /metrics sums every worker's counters from files in one directory: the local
        # target gives each service its own; in a pod, a fresh one in its /tmp
        os.environ["PROMETHEUS_MULTIPROC_DIR"] = tempfile.mkdtemp(prefix="tabular-metrics-")
    options: dict[str, Any] = dict(
        factory=True,
        host=host,
        port=port,
        workers=settings.workers,
        http=PROTOCOL,  # a header timeout: see serving/http.py
        access_log=False,
        log_level="info",
        timeout_graceful_shutdown=10,
        # uvicorn kills a worker whose health ping is unanswered for this long (its own
        # default, 5 s, is a starved process on a loaded machine, not a hung one)
        timeout_worker_healthcheck=WORKER_HEALTHCHECK_SECONDS,
    )
    if settings.workers == 1:
        uvicorn.run("tabular_mlops.serving.server:app_factory", **options)
        return
    if os.environ.get(WORKER_START_ENV) != "spawn":
        preload(settings)
        fork_workers()
    config = uvicorn.Config("tabular_mlops.serving.server:app_factory", **options)
    supervisor = Multiprocess(config, sockets=[config.bind_socket()])
    stop_at_once(supervisor)
    supervisor.run()
    end_without_finalizing()


def end_without_finalizing() -> None:
    """End the supervisor once its workers are joined, without the interpreter's
    finalization: freeing the preloaded model and libraries object by object took
    0.2-0.3 s of CPU after the last worker had exited (strace, 2026-12-05), which every
    `deploy --stop` and every release waited for; the kernel frees the memory at once.
    Nothing is left to finalize: the workers are joined, the socket is the kernel's."""
    logging.shutdown()
    for stream in (sys.stdout, sys.stderr):
        with contextlib.suppress(OSError, ValueError):
            stream.flush()
    os._exit(0)


def preload(settings: ServingSettings) -> None:
    """Import, in the supervisor, everything its forked workers need: the app, the
    scoring and explaining code, and the model's own classes (unpickling the model once
    imports them; the model itself is dropped, each worker loads its own). A model file
    that fails its check is not unpickled here: the workers refuse it, as before."""
    from tabular_mlops.core.explain import Explainer, NotExplainableError
    from tabular_mlops.core.scoring import FastModel  # noqa: F401  (imported for the workers)
    from tabular_mlops.serving.app import unpickle_model

    model_file = model_directory(settings) / "model.pkl"
    if not settings.model_sha256 or not model_file.is_file():
        return
    try:
        model = unpickle_model(model_file, settings.model_sha256, "the model")
    except ModelFileChangedError:
        return
    with contextlib.suppress(NotExplainableError):
        Explainer(model)


def fork_workers() -> None:
    """Have uvicorn's supervisor fork its workers from this process instead of spawning
    fresh interpreters (uvicorn 0.54 creates each one through its module's private
    ``get_subprocess``; ``tests/unit/test_serving_logic.py`` fails by name if that
    changes). A forked worker first puts back the signal handlers a new interpreter
    has: the supervisor's own would queue a worker's signals for the supervisor."""
    from uvicorn.supervisors import multiprocess

    multiprocess.get_subprocess = forked_worker  # type: ignore[assignment]  # a ForkProcess


#: the supervisor's stop-at-once pipe (``stop_at_once``): not a worker's to hold
_WAKE_FDS: list[int] = []


class _ForkedWorker(multiprocessing.context.ForkProcess):
    """One of uvicorn's workers, forked with the supervisor's signals blocked: a signal
    that reaches the new worker before it has put back a new interpreter's handlers
    waits for them, instead of running the supervisor's (which ignored a SIGTERM there,
    and the supervisor, already stopping, waited for that worker for ever).

    Once forked, the supervisor closes its copy of the worker's end of the health-check
    pipe (uvicorn kept it open): a worker that dies while the supervisor pings it is
    then seen dead at once, not after the ping's whole timeout (30 s, a restart that
    long on one of every few kills)."""

    def __init__(self, config: Config, target: Callable[..., None], sockets: list[socket]):
        super().__init__()
        self.config, self.uvicorn_target, self.sockets = config, target, sockets
        #: the supervisor's signal mask before the fork: the worker's once it is ready
        self.mask: set[int | signal.Signals] = set()

    def start(self) -> None:
        from uvicorn.supervisors.multiprocess import SIGNALS

        self.mask = signal.pthread_sigmask(signal.SIG_BLOCK, SIGNALS)
        try:
            super().start()
        finally:
            signal.pthread_sigmask(signal.SIG_SETMASK, self.mask)
        with contextlib.suppress(AttributeError, OSError):  # uvicorn's Process, its pipe
            self.uvicorn_target.__self__.child_conn.close()  # type: ignore[attr-defined]

    def run(self) -> None:  # in the worker
        from uvicorn.supervisors.multiprocess import SIGNALS

        for number in SIGNALS:
            signal.signal(number, signal.SIG_DFL)
        signal.signal(signal.SIGINT, signal.default_int_handler)
        for descriptor in _WAKE_FDS:
            with contextlib.suppress(OSError):
                os.close(descriptor)
        signal.pthread_sigmask(signal.SIG_SETMASK, self.mask)
        self.config.configure_logging()
        with contextlib.suppress(KeyboardInterrupt):  # as uvicorn's: the supervisor asked
            self.uvicorn_target(sockets=self.sockets)


def forked_worker(
    config: Config, target: Callable[..., None], sockets: list[socket]
) -> ForkProcess:
    """``uvicorn._subprocess.get_subprocess``, forking."""
    return _ForkedWorker(config, target, sockets)


def stop_at_once(supervisor: Multiprocess) -> None:
    """Let SIGTERM and SIGINT end ``supervisor``'s loop at once. uvicorn's own handlers
    queue the signal for the loop, which looks every 0.5 s: each stop of a service
    waited up to half a second (a quarter on average) before its workers were told.

    The handler only writes a byte to a pipe (uvicorn's queueing is kept); a thread
    reading it sets the loop's event. Setting the event in the handler itself could
    wait for ever on the event's lock when the signal lands while the loop holds it."""
    wake_read, wake_write = os.pipe()
    _WAKE_FDS[:] = [wake_read, wake_write]
    os.set_blocking(wake_write, False)

    def wake() -> None:
        os.read(wake_read, 1)
        logger.info("Received a stop signal, exiting.")
        supervisor.should_exit.set()

    threading.Thread(target=wake, name="stop-at-once", daemon=True).start()
    for number in (signal.SIGTERM, signal.SIGINT):
        queued = signal.getsignal(number)

        def handler(signum: int, frame: Any, queued: Any = queued) -> None:
            if callable(queued):
                queued(signum, frame)
            with contextlib.suppress(BlockingIOError):  # already woken
                os.write(wake_write, b"x")

        signal.signal(number, handler)


if __name__ == "__main__":
    main()
