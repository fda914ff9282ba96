"""Run a bento as a local HTTP server that outlives the pipeline, and remember where it is.

ZenML 0.98's BentoML model deployer starts its local daemon with the pre-1.2
BentoML API and dies on bentoml 1.4 (``'Service' object has no attribute
'runners'``), while ``bentoml serve <bento>`` itself works. So the stack keeps
its ``bentoml`` model deployer as the declared serving component, and this
module drives ``bentoml serve`` directly: a process group on 127.0.0.1, its
pid, port and bento recorded in a small JSON state file per model.
"""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import sys
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx

from configs.schema import ServingConfig
from service.spec import SETTINGS_ENV, ServingSettings
from steps.deployment.serving_target import BentoPackage, RunningService

HOST = "127.0.0.1"


class ServiceStartError(RuntimeError):
    """The service did not become ready; the message carries the end of its log."""


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind((HOST, 0))
        return int(sock.getsockname()[1])


def _ready(url: str) -> bool:
    try:
        return httpx.get(f"{url}/readyz", timeout=2).status_code == 200
    except httpx.HTTPError:
        return False


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True


def start(
    bento_tag: str,
    settings: ServingSettings,
    model_name: str,
    model_version: str,
    log_dir: Path,
    timeout: float,
) -> RunningService:
    """Start ``bento_tag`` on a free port and wait until it answers /readyz."""
    port = free_port()
    log_dir.mkdir(parents=True, exist_ok=True)
    log_file = log_dir / f"{model_name}-v{model_version}-{port}.log"
    with log_file.open("w") as log:
        process = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "bentoml",
                "serve",
                bento_tag,
                "--host",
                HOST,
                "--port",
                str(port),
            ],
            env={**os.environ, SETTINGS_ENV: settings.model_dump_json()},
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,  # its own process group: outlives us, stops as one
        )
    service = RunningService(
        model_name=model_name,
        model_version=model_version,
        bento_tag=bento_tag,
        url=f"http://{HOST}:{port}",
        pid=process.pid,
        port=port,
        log_file=str(log_file),
        started_at=datetime.now(UTC),
    )
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            break
        if _ready(service.url):
            return service
        time.sleep(0.5)
    stop(service)
    tail = "".join(log_file.read_text(errors="replace").splitlines(keepends=True)[-15:])
    raise ServiceStartError(
        f"bento {bento_tag} did not become ready on {service.url} "
        f"within {timeout:.0f} s; last lines of {log_file}:\n{tail}"
    )


def stop(service: RunningService, grace: float = 15) -> None:
    """Stop the service's whole process group: SIGTERM, then SIGKILL after ``grace`` s."""
    if service.pid is None:
        return
    try:
        os.killpg(service.pid, signal.SIGTERM)
    except ProcessLookupError:
        return
    deadline = time.monotonic() + grace
    while time.monotonic() < deadline and _alive(service.pid):
        time.sleep(0.2)
        with contextlib.suppress(ChildProcessError):  # reap it if it is our child
            os.waitpid(service.pid, os.WNOHANG)
    if _alive(service.pid):
        os.killpg(service.pid, signal.SIGKILL)


def state_file(state_dir: Path, model_name: str) -> Path:
    return state_dir / f"{model_name}.json"


def read_live(state_dir: Path, model_name: str) -> RunningService | None:
    path = state_file(state_dir, model_name)
    if not path.is_file():
        return None
    return RunningService.model_validate_json(path.read_text())


def record_live(state_dir: Path, service: RunningService) -> None:
    state_dir.mkdir(parents=True, exist_ok=True)
    path = state_file(state_dir, service.model_name)
    temporary = path.with_suffix(".tmp")
    temporary.write_text(service.model_dump_json(indent=2))
    temporary.replace(path)  # atomic: a reader sees the old or the new, never half


def forget_live(state_dir: Path, model_name: str) -> None:
    state_file(state_dir, model_name).unlink(missing_ok=True)


def is_answering(service: RunningService) -> bool:
    return service.pid is not None and _alive(service.pid) and _ready(service.url)


class LocalProcessTarget:
    """``bentoml serve`` processes on this machine; the bento store is the registry."""

    def __init__(self, serving: ServingConfig) -> None:
        self.serving = serving

    def publish(self, bento_tag: str) -> str:
        return bento_tag

    def start(self, package: BentoPackage) -> RunningService:
        return start(
            package.bento_tag,
            package.settings,
            package.model_name,
            package.model_version,
            self.serving.state_dir / "logs",
            self.serving.startup_timeout_seconds,
        )

    def live(self, model_name: str) -> RunningService | None:
        return read_live(self.serving.state_dir, model_name)

    def switch(self, candidate: RunningService) -> RunningService:
        record_live(self.serving.state_dir, candidate)
        return candidate

    def stop(self, service: RunningService) -> None:
        stop(service)

    def forget(self, model_name: str) -> None:
        forget_live(self.serving.state_dir, model_name)

    def is_answering(self, service: RunningService) -> bool:
        return is_answering(service)

    def plan(self, model_name: str) -> dict[str, Any]:
        return {
            "target": "local process (bentoml serve)",
            "host": HOST,
            "state_file": str(state_file(self.serving.state_dir, model_name)),
            "inference_log_dir": str(self.serving.inference_log_dir),
        }
