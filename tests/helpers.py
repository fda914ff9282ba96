"""Helpers shared by the tests: invoking the CLI in-process and making small datasets."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
from click.testing import CliRunner, Result

from tabular_mlops.serving.credentials import Role


def _port_slice() -> range:
    """This pytest worker's own ports, below the kernel's ephemeral range (which hands out
    every port a process binds to port 0 and every client connection's own port)."""
    import os

    ephemeral_low = int(Path("/proc/sys/net/ipv4/ip_local_port_range").read_text().split()[0])
    worker = os.environ.get("PYTEST_XDIST_WORKER", "gw0").removeprefix("gw")
    width = (ephemeral_low - 20_000) // 8
    low = 20_000 + (int(worker) % 8) * width
    return range(low, low + width)


_PORTS: list[int] = []


def free_port() -> int:
    """A port on 127.0.0.1 for a test to configure (a stable address, a server's, a
    broker's): free now, and one no process of the suite is given by the kernel meanwhile.
    A port the kernel picked (bind to port 0) and let go could be handed out again to the
    next server or client connection of any worker before the test's own server bound it
    (a router once got the stable address's number as its own port)."""
    import socket

    if not _PORTS:
        _PORTS.extend(reversed(_port_slice()))
    while _PORTS:
        port = _PORTS.pop()
        with socket.socket() as probe:
            try:
                probe.bind(("127.0.0.1", port))
            except OSError:
                continue
        return port
    raise RuntimeError("this pytest worker has used every port of its slice")


def serving_env(
    directory: Path,
    port: int,
    state: Path,
    log: Path | None = None,
    workers: int = 1,
    base: str = "dev",
) -> str:
    """``base``'s environment YAML with its model deployer on ``port``, its state in
    ``state`` and its inference log in ``log``, for ``--env``."""
    from tabular_mlops.adapters.config_files import with_model_deployer

    path = with_model_deployer(
        base,
        directory,
        port=port,
        state_dir=state,
        inference_log_dir=log or state / "inference_log",
        workers=workers,
    )
    return str(path)


def bearer(state_dir: Path, model_name: str, role: Role) -> dict[str, str]:
    """The header a client of the model's deployment sends for ``role`` (feedback, admin)."""
    from tabular_mlops.adapters.deployment.local import deployment_tokens

    return {"authorization": f"Bearer {deployment_tokens(state_dir, model_name).current[role]}"}


def invoke(*args: str) -> Result:
    """Run ``python run.py ARGS`` in this process, against the session's ZenML store."""
    from cli.main import cli

    return CliRunner().invoke(cli, list(args), catch_exceptions=False)


def customer_churn_frame(rows: int = 400, seed: int = 0) -> pd.DataFrame:
    """A small tabular dataset with categorical columns, missing values and string labels."""
    rng = np.random.default_rng(seed)
    tenure = rng.integers(1, 72, rows).astype(float)
    monthly = rng.normal(70, 20, rows).round(2)
    contract = rng.choice(["month-to-month", "one-year", "two-year"], rows, p=[0.5, 0.3, 0.2])
    region = rng.choice(["north", "south", "east", "west"], rows)
    risk = -0.05 * tenure + 0.03 * monthly + np.where(contract == "month-to-month", 1.5, -1.0)
    churn = np.where(risk + rng.normal(0, 0.7, rows) > 0.6, "yes", "no")
    frame = pd.DataFrame(
        {
            "tenure_months": tenure,
            "monthly_charges": monthly,
            "contract": contract,
            "region": region,
            "churn": churn,
        }
    )
    frame.loc[rng.choice(rows, rows // 10, replace=False), "monthly_charges"] = np.nan
    frame.loc[rng.choice(rows, rows // 10, replace=False), "region"] = None
    return frame


def write_csv(frame: pd.DataFrame, path: Path) -> Path:
    frame.to_csv(path, index=False)
    return path


class SteadyClient:
    """``threads`` clients that keep one URL and post ``body`` until stopped, each on a
    keep-alive connection as an application's HTTP client would, ``pause`` seconds
    between a thread's requests: the answers by status (or exception) and the model
    versions that answered.

    The pause keeps the clients from taking the machine: back to back, four threads
    took the GIL from the deploys the test runs in the same process and the CPU from the
    servers they start (one test took 275 s on a slow 2-core machine). Four threads at
    5 ms still took half the test's CPU (127 CPU-s for four deploys under them, 2026-12-05);
    at 20 ms, four threads together still send a request every 5 ms, which falls into
    every window a release or a restart opens."""

    def __init__(self, url: str, body: str, threads: int = 4, pause: float = 0.02) -> None:
        import collections
        import threading

        self.url, self.body, self.pause = url, body, pause
        self.outcomes: collections.Counter[str] = collections.Counter()
        self.versions: collections.Counter[str] = collections.Counter()
        self._stop = threading.Event()
        self._lock = threading.Lock()
        self._threads = [threading.Thread(target=self._run, daemon=True) for _ in range(threads)]

    def _run(self) -> None:
        import httpx

        with httpx.Client(timeout=30) as client:
            while not self._stop.is_set():
                try:
                    answer = client.post(
                        self.url, content=self.body, headers={"content-type": "application/json"}
                    )
                    outcome = str(answer.status_code)
                    version = answer.json().get("model_version") if outcome == "200" else None
                except Exception as exc:  # every failure is counted, by kind
                    outcome, version = type(exc).__name__, None
                with self._lock:
                    self.outcomes[outcome] += 1
                    if version is not None:
                        self.versions[version] += 1
                self._stop.wait(self.pause)

    def __enter__(self) -> SteadyClient:
        for thread in self._threads:
            thread.start()
        return self

    def __exit__(self, *_: object) -> None:
        self._stop.set()
        for thread in self._threads:
            thread.join(timeout=60)

    @property
    def failed(self) -> dict[str, int]:
        return {k: v for k, v in self.outcomes.items() if k != "200"}


def census_frame(rows: int = 1200, seed: int = 0, bias: float = 0.0) -> pd.DataFrame:
    """A small stand-in for the UCI Adult census data (income ``>50K`` / ``<=50K``) with
    sensitive columns ``sex`` and ``race``; ``bias`` lowers women's labelled income, so
    a model trained on it learns to select them less."""
    rng = np.random.default_rng(seed)
    age = rng.integers(18, 70, rows).astype(float)
    hours = rng.normal(40, 10, rows).clip(5, 80).round()
    gain = np.where(rng.random(rows) < 0.15, rng.exponential(5000, rows), 0.0).round()
    education = rng.choice(["hs", "college", "bachelors", "masters"], rows, p=[0.4, 0.3, 0.2, 0.1])
    sex = rng.choice(["Female", "Male"], rows)
    race = rng.choice(
        ["White", "Black", "Asian-Pac-Islander", "Other"], rows, p=[0.7, 0.15, 0.1, 0.05]
    )
    schooling = pd.Series(education).map(
        {"hs": 0.0, "college": 0.6, "bachelors": 1.2, "masters": 1.8}
    )
    score = 0.04 * (age - 40) + 0.05 * (hours - 40) + 0.0004 * gain + schooling.to_numpy() - 0.8
    score = score - bias * (sex == "Female")
    income = np.where(score + rng.normal(0, 0.8, rows) > 0, ">50K", "<=50K")
    return pd.DataFrame(
        {"age": age, "hours-per-week": hours, "capital-gain": gain, "education": education,
         "sex": sex, "race": race, "income": income}
    )  # fmt: skip


def schemathesis_finds_nothing(url: str) -> None:
    """Schemathesis against the service at ``url``, through its own OpenAPI document: every
    check it has, a bounded number of cases, no issue found."""
    import subprocess
    import sys

    from tabular_mlops.adapters.paths import PROJECT_ROOT

    run = subprocess.run(
        [
            sys.executable, "-m", "schemathesis.cli", "run", f"{url}/openapi.json",
            "--checks", "all", "--max-examples", "40", "--seed", "7", "--workers", "1",
        ],
        cwd=PROJECT_ROOT,  # schemathesis.toml: 422 is an answer to a valid but unscorable row
        capture_output=True,
        text=True,
        timeout=600,
    )  # fmt: skip
    assert run.returncode == 0, run.stdout[-4000:]
    assert "No issues found" in run.stdout


def explained_total(explanation: dict) -> float:
    """An explanation's base + contributions + rest: the raw output it accounts for."""
    return (
        explanation["base"]
        + sum(c["contribution"] for c in explanation["contributions"])
        + explanation["rest"]
    )
