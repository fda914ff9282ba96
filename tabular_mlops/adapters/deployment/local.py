"""Run a bento as a local HTTP server that outlives the pipeline, and remember where it is.

``bentoml serve <bento>`` runs as its own process group on 127.0.0.1; its pid,
port and bento are recorded in a small JSON state file per model, which is all
that ``deploy --status`` and ``--stop`` need to read.
"""

from __future__ import annotations

import logging
import os
import subprocess
import sys
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from pydantic import ValidationError

from tabular_mlops.adapters.deployment.target import BentoPackage, LocalProcess, RunningService
from tabular_mlops.adapters.net import HOST, answers, free_port, wait_for_url
from tabular_mlops.adapters.processes import is_alive, stop_process_tree
from tabular_mlops.core.config import ServingConfig
from tabular_mlops.core.spec import SETTINGS_ENV, ServingSettings

logger = logging.getLogger(__name__)


class ServiceStartError(RuntimeError):
    """The service did not become ready; the message carries the end of its log."""


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
        started_at=datetime.now(UTC),
        runs_as=LocalProcess(pid=process.pid, port=port, log_file=str(log_file)),
    )
    logger.info("started %s (pid %s) on %s", bento_tag, process.pid, service.url)
    if wait_for_url(f"{service.url}/readyz", timeout, lambda: process.poll() is not None):
        return service
    stop_process_tree(process.pid)
    tail = "".join(log_file.read_text(errors="replace").splitlines(keepends=True)[-15:])
    raise ServiceStartError(
        f"bento {bento_tag} did not become ready on {service.url} "
        f"within {timeout:.0f} s; last lines of {log_file}:\n{tail}"
    )


def state_file(state_dir: Path, model_name: str) -> Path:
    return state_dir / f"{model_name}.json"


class ServiceStateError(RuntimeError):
    """A state file is not a service record; the message names the file."""


def read_live(state_dir: Path, model_name: str) -> RunningService | None:
    path = state_file(state_dir, model_name)
    if not path.is_file():
        return None
    try:
        return RunningService.model_validate_json(path.read_text())
    except ValidationError as exc:
        problem = exc.errors()[0]["msg"]
        raise ServiceStateError(
            f"{path}: not a service record ({problem}); if no service of '{model_name}' "
            "runs, delete the file"
        ) from None


def record_live(state_dir: Path, service: RunningService) -> None:
    state_dir.mkdir(parents=True, exist_ok=True)
    path = state_file(state_dir, service.model_name)
    temporary = path.with_suffix(".tmp")
    temporary.write_text(service.model_dump_json(indent=2))
    temporary.replace(path)  # atomic: a reader sees the old or the new, never half


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
        if isinstance(service.runs_as, LocalProcess):
            stop_process_tree(service.runs_as.pid)

    def forget(self, model_name: str) -> None:
        state_file(self.serving.state_dir, model_name).unlink(missing_ok=True)

    def is_answering(self, service: RunningService) -> bool:
        return (
            isinstance(service.runs_as, LocalProcess)
            and is_alive(service.runs_as.pid)
            and answers(f"{service.url}/readyz")
        )

    def plan(self, model_name: str) -> dict[str, Any]:
        return {
            "target": "local process (bentoml serve)",
            "host": HOST,
            "state_file": str(state_file(self.serving.state_dir, model_name)),
            "inference_log_dir": str(self.serving.inference_log_dir),
        }
