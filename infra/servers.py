"""Start and stop the servers an environment's stack talks to (staging: MLflow, ZenML).

Both bind 127.0.0.1. The MLflow server runs as its own process group, its pid
in a file beside its store; the ZenML server is ZenML's own local daemon.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import httpx

from configs.schema import MlflowServerSpec, ServicesSpec, ZenMLServerSpec

HOST = "127.0.0.1"
BIN = Path(sys.executable).parent


class ServerError(RuntimeError):
    """A server did not start or stop; the message says which and why."""


def _pid_file(spec: MlflowServerSpec) -> Path:
    return spec.backend_store.parent / "mlflow-server.pid"


def mlflow_url(spec: MlflowServerSpec) -> str:
    return f"http://{HOST}:{spec.port}"


def _answers(url: str) -> bool:
    try:
        return httpx.get(url, timeout=2).status_code == 200
    except httpx.HTTPError:
        return False


def start_mlflow(spec: MlflowServerSpec, timeout: float = 90) -> str:
    url = mlflow_url(spec)
    if _answers(f"{url}/health"):
        return url
    spec.backend_store.parent.mkdir(parents=True, exist_ok=True)
    spec.artifacts_destination.mkdir(parents=True, exist_ok=True)
    log = (spec.backend_store.parent / "mlflow-server.log").open("w")
    process = subprocess.Popen(
        [
            str(BIN / "mlflow"), "server",
            "--backend-store-uri", f"sqlite:///{spec.backend_store.resolve()}",
            "--artifacts-destination", str(spec.artifacts_destination.resolve()),
            "--host", HOST, "--port", str(spec.port), "--workers", "1",
        ],
        env={**os.environ, "PATH": f"{BIN}{os.pathsep}{os.environ.get('PATH', '')}"},
        stdout=log,
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )  # fmt: skip
    _pid_file(spec).write_text(str(process.pid))
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise ServerError(f"mlflow server exited with {process.returncode}; see {log.name}")
        if _answers(f"{url}/health"):
            return url
        time.sleep(0.5)
    stop_mlflow(spec)
    raise ServerError(f"mlflow server did not answer on {url} within {timeout:.0f} s")


def stop_mlflow(spec: MlflowServerSpec) -> bool:
    pid_file = _pid_file(spec)
    if not pid_file.is_file():
        return False
    pid = int(pid_file.read_text())
    try:
        os.killpg(pid, signal.SIGTERM)
        for _ in range(50):
            os.killpg(pid, 0)
            time.sleep(0.2)
        os.killpg(pid, signal.SIGKILL)
    except ProcessLookupError:
        pass
    pid_file.unlink()
    return True


def _zenml(*args: str) -> None:
    result = subprocess.run(
        [str(BIN / "zenml"), *args],
        env={**os.environ, "ZENML_AUTO_OPEN_DASHBOARD": "false"},
        capture_output=True,
        text=True,
    )
    if result.returncode:
        raise ServerError(f"`zenml {' '.join(args)}` failed:\n{result.stdout}{result.stderr}")


def start_zenml(spec: ZenMLServerSpec) -> str:
    _zenml("login", "--local", "--ip-address", HOST, "--port", str(spec.port))
    return f"http://{HOST}:{spec.port}"


def stop_zenml() -> None:
    _zenml("logout", "--local")


def up(services: ServicesSpec, root: Path) -> dict[str, str]:
    """Start what ``services`` declares (paths relative to ``root``); return name -> URL."""
    services = resolve(services, root)
    urls = {}
    if services.mlflow:
        urls["MLflow"] = start_mlflow(services.mlflow)
    if services.zenml:
        urls["ZenML"] = start_zenml(services.zenml)
    return urls


def down(services: ServicesSpec, root: Path) -> list[str]:
    services = resolve(services, root)
    stopped = []
    if services.zenml:
        stop_zenml()
        stopped.append("ZenML")
    if services.mlflow and stop_mlflow(services.mlflow):
        stopped.append("MLflow")
    return stopped


def resolve(services: ServicesSpec, root: Path) -> ServicesSpec:
    if services.mlflow is None:
        return services
    mlflow = services.mlflow.model_copy(
        update={
            "backend_store": root / services.mlflow.backend_store,
            "artifacts_destination": root / services.mlflow.artifacts_destination,
        }
    )
    return services.model_copy(update={"mlflow": mlflow})
