"""Start and stop the servers an environment's stack talks to (staging: MLflow, ZenML).

Both bind 127.0.0.1. The MLflow server runs as its own process group, its pid
in a file beside its store; the ZenML server is ZenML's own local daemon.
"""

from __future__ import annotations

import logging
import os
import subprocess
import sys
from pathlib import Path
from typing import TYPE_CHECKING

from tabular_mlops.adapters.blank_stores import seed_mlflow_store
from tabular_mlops.adapters.config_files import anchor_paths
from tabular_mlops.adapters.net import HOST, answers, wait_for_url
from tabular_mlops.adapters.processes import record_process, stop_recorded_process
from tabular_mlops.core.config import EnvironmentConfig, MlflowServerSpec, ServicesSpec

if TYPE_CHECKING:
    from zenml.client import Client

BIN = Path(sys.executable).parent
logger = logging.getLogger(__name__)


class ServerError(RuntimeError):
    """A server did not start or stop; the message says which and why."""


def _pid_file(spec: MlflowServerSpec) -> Path:
    return spec.backend_store.parent / "mlflow-server.pid"


def mlflow_url(spec: MlflowServerSpec) -> str:
    return f"http://{HOST}:{spec.port}"


def start_mlflow(spec: MlflowServerSpec, timeout: float = 90) -> str:
    url = mlflow_url(spec)
    if answers(f"{url}/health"):
        return url
    spec.backend_store.parent.mkdir(parents=True, exist_ok=True)
    spec.artifacts_destination.mkdir(parents=True, exist_ok=True)
    # a new store starts as a copy of the blank one MLflow migrated at install, as the
    # dev stack's tracking store does (the server then skips its migrations)
    seed_mlflow_store(f"sqlite:///{spec.backend_store.resolve()}")
    log = (spec.backend_store.parent / "mlflow-server.log").open("w")
    process = subprocess.Popen(
        [
            str(BIN / "mlflow"), "server",
            "--backend-store-uri", f"sqlite:///{spec.backend_store.resolve()}",
            "--artifacts-destination", str(spec.artifacts_destination.resolve()),
            "--host", HOST, "--port", str(spec.port), "--workers", "1",
        ],
        env={
            **os.environ,
            "PATH": f"{BIN}{os.pathsep}{os.environ.get('PATH', '')}",
            # MLflow 3 starts a job runner beside its server (huey, for GenAI jobs this
            # project never submits): 22 CPU-s of polling in one test of staging
            "MLFLOW_SERVER_ENABLE_JOB_EXECUTION": "false",
        },
        stdout=log,
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )  # fmt: skip
    record_process(_pid_file(spec), process.pid)
    logger.info("started mlflow server (pid %s) on %s", process.pid, url)
    if wait_for_url(f"{url}/health", timeout, lambda: process.poll() is not None):
        return url
    if process.poll() is not None:
        raise ServerError(f"mlflow server exited with {process.returncode}; see {log.name}")
    stop_mlflow(spec)
    raise ServerError(f"mlflow server did not answer on {url} within {timeout:.0f} s")


def stop_mlflow(spec: MlflowServerSpec) -> bool:
    """Stop the server `start_mlflow` started, if it is still that process: whether it was
    running."""
    return stop_recorded_process(_pid_file(spec), grace=10)


#: where ``zenml login --local`` serves when no port is given
ZENML_DEFAULT_PORT = 8237


def start_zenml(port: int | None = None) -> str:
    """The local ZenML server (and its dashboard) over this machine's store, on ``HOST``."""
    from zenml.exceptions import ZenMLBaseException

    from tabular_mlops.adapters.compat import start_local_zenml_server, stop_local_zenml_server

    port = port or ZENML_DEFAULT_PORT
    try:
        if not answers(f"http://{HOST}:{port}/health"):
            # a server that died (kill -9) is still the client's server and ZenML's
            # record of a running local daemon: forget both, or the login tries to reach it
            stop_local_zenml_server()
        url = start_local_zenml_server(HOST, port)
    except (ZenMLBaseException, OSError, RuntimeError) as exc:
        raise ServerError(
            f"the local ZenML server did not start on {HOST}:{port}: {exc}. Fix: check that "
            f"nothing else listens on port {port}, and read its log with `zenml logs`"
        ) from exc
    skip_onboarding_survey(url)
    return url


def skip_onboarding_survey(url: str) -> None:
    """Answer the dashboard's first-visit survey (name, e-mail, newsletter, "what are you
    building") so that a first visit opens on the runs: a warning if it cannot."""
    import httpx

    from tabular_mlops.adapters.compat import finish_onboarding_survey

    try:
        finish_onboarding_survey(url)
    except (httpx.HTTPError, KeyError, TypeError, ValueError) as exc:
        logger.warning("the dashboard will ask its first-visit survey (%s)", exc)


def stop_zenml() -> None:
    from tabular_mlops.adapters.compat import stop_local_zenml_server

    stop_local_zenml_server()


def up(services: ServicesSpec) -> dict[str, str]:
    """Start what ``services`` declares (paths as config files mean them); return name -> URL."""
    services = anchor_paths(services)
    urls = {}
    if services.mlflow:
        urls["MLflow"] = start_mlflow(services.mlflow)
    if services.zenml:
        urls["ZenML"] = start_zenml(services.zenml.port)
    return urls


def create_local_secrets(client: Client, services: ServicesSpec) -> None:
    """The ZenML secrets the stack references, for local servers that ignore them."""
    for name, values in services.local_secrets.items():
        try:
            client.get_secret(name)
        except KeyError:
            client.create_secret(name, values)


def down(services: ServicesSpec) -> list[str]:
    """Stop what ``services`` declares; the names of the servers that were running."""
    services = anchor_paths(services)
    stopped = []
    if services.zenml:
        was_running = answers(f"http://{HOST}:{services.zenml.port}/health")
        stop_zenml()  # also points the client back at the embedded store
        if was_running:
            stopped.append("ZenML")
    if services.mlflow and stop_mlflow(services.mlflow):
        stopped.append("MLflow")
    return stopped


def unreachable(environment: EnvironmentConfig, env: str) -> list[str]:
    """The servers the environment's stack talks to that do not answer now, each with
    its URL and what starts it; checked in seconds, before any pipeline or store call."""
    problems = []
    hint = (
        f"start it with `python run.py stack up --env {env}`"
        if environment.services
        else "check that it runs and that this machine reaches it"
    )
    tracker = environment.stack.components.experiment_tracker.configuration
    uri = str(tracker.get("tracking_uri") or "")
    if uri.startswith(("http://", "https://")) and not answers(f"{uri.rstrip('/')}/health"):
        problems.append(f"the MLflow tracking server at {uri} does not answer; {hint}")
    if environment.services and environment.services.zenml:
        url = f"http://{HOST}:{environment.services.zenml.port}"
        if not answers(f"{url}/health"):
            problems.append(f"the ZenML server at {url} does not answer; {hint}")
    return problems
