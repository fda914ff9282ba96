"""A service's start: workers forked from a supervisor that imported what they need,
against uvicorn's own way (each worker a fresh interpreter), side by side.

On a private ZenML store and state directory: `run.py train` and `run.py deploy` once;
then each round starts the live version's own server command (2 workers, its
settings, the bento's code) on a free port twice, with workers forked (the default)
and spawned (``TABULAR_SERVER_WORKER_START=spawn``), in alternating order. Per start:
the time until ``/readyz`` answers 200 and the CPU time of the server's process tree
once every worker has started (the tree idle); then wrk on its own port (one row, 16
connections, 5 s), so that a faster start is not paid for in throughput. Prints medians and ratios.

    .venv/bin/python bench/server_start.py [--rounds 5]
"""

from __future__ import annotations

import json
import os
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import click
import httpx
import psutil

sys.path.insert(0, str(Path(__file__).resolve().parent))

from loop_vs_template import ROOT, kill_leftovers, machine, private_home, run
from serving import find_wrk, run_wrk

sys.path.insert(0, str(ROOT))

from tabular_mlops.adapters.net import free_port
from tabular_mlops.serving.server import WORKER_START_ENV
from tabular_mlops.serving.stable import STABLE_DIR_ENV

PYTHON = sys.executable
MODEL = "bench_start"


def tree_cpu(process: psutil.Process) -> float:
    total = 0.0
    for each in [process, *process.children(recursive=True)]:
        try:
            times = each.cpu_times()
        except psutil.NoSuchProcess:
            continue
        total += times.user + times.system
    return total


def ready(url: str, deadline: float) -> bool:
    while time.monotonic() < deadline:
        try:
            if httpx.get(f"{url}/readyz", timeout=1).status_code == 200:
                return True
        except httpx.HTTPError:
            pass
        time.sleep(0.02)
    return False


def one_start(
    command: list[str], env: dict[str, str], cwd: str, how: str, wrk: str, body: str
) -> dict[str, float]:
    port = free_port()
    started = time.monotonic()
    with tempfile.TemporaryDirectory(prefix="bench-metrics-") as metrics:
        run_env = {**env, "PROMETHEUS_MULTIPROC_DIR": metrics, WORKER_START_ENV: how}
        run_env.pop(STABLE_DIR_ENV, None)  # its own port only: the live one keeps the address
        process = subprocess.Popen(
            [*command[:-1], str(port)], env=run_env, cwd=cwd,
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        )  # fmt: skip
        try:
            url = f"http://127.0.0.1:{port}"
            if not ready(url, started + 120):
                raise click.ClickException(f"the server ({how}) did not answer in 120 s")
            answered = time.monotonic() - started
            supervisor = psutil.Process(process.pid)
            # /readyz answers once one worker is ready: wait for the others too (the
            # tree's CPU still for half a second), then count what the start cost
            cpu, still = tree_cpu(supervisor), 0.0
            while still < 0.5:
                time.sleep(0.1)
                now = tree_cpu(supervisor)
                still = still + 0.1 if now - cpu < 0.01 else 0.0
                cpu = now
            load = run_wrk(wrk, f"{url}/predict", body, 16, 5)
        finally:
            process.send_signal(signal.SIGTERM)
            process.wait(30)
    return {
        "ready (s)": answered,
        "CPU to start all workers (s)": cpu,
        "then req/s (wrk, 16 conn.)": load.requests_per_second,
        "p99 (ms)": load.percentiles_ms[99],
    }


@click.command()
@click.option("--rounds", default=5, show_default=True, type=click.IntRange(1, 50))
def main(rounds: int) -> None:
    from tabular_mlops.adapters.deployment import local as local_server
    from tabular_mlops.adapters.deployment.target import LocalProcess
    from tabular_mlops.adapters.sources import load_dataset
    from tabular_mlops.core.config import DataSourceConfig

    with private_home("bench-start-") as (home, env, log):
        state = home / "state"
        env["TABULAR_MLOPS_WARM"] = "0"
        cli = [PYTHON, "run.py"]
        named = ["--set", f"model.name={MODEL}"]
        wrk = find_wrk()
        row = load_dataset(DataSourceConfig()).drop(columns=["target"]).head(1)
        body = json.dumps({"rows": json.loads(row.to_json(orient="records"))})
        results: dict[str, dict[str, list[float]]] = {"fork": {}, "spawn": {}}
        try:
            click.echo("training and deploying once ...", err=True)
            run("train", [*cli, "train", *named], ROOT, env, log, timeout=600)
            run("deploy", [*cli, "deploy", *named], ROOT, env, log, timeout=600)
            live = local_server.read_live(state / "serving", MODEL) or local_server.read_live(
                state, MODEL
            )
            spec = live.runs_as if live is not None else None
            if not isinstance(spec, LocalProcess) or spec.cwd is None:
                raise click.ClickException(f"no local service recorded under {state}")
            for index in range(rounds):
                click.echo(f"round {index + 1} of {rounds} ...", err=True)
                order = ("fork", "spawn") if index % 2 == 0 else ("spawn", "fork")
                for how in order:
                    figures = one_start(
                        spec.command, {**os.environ, **spec.env}, spec.cwd, how, wrk, body
                    )
                    for name, value in figures.items():
                        results[how].setdefault(name, []).append(value)
        finally:
            run("stop", [*cli, "deploy", *named, "--stop"], ROOT, env, log, timeout=120)
            kill_leftovers(str(home))
    click.echo("\n".join(machine()))
    click.echo(f"\n{'2 workers, the default model':<32}{'forked':>10}{'spawned':>10}{'ratio':>8}")
    for name in results["fork"]:
        fork = statistics.median(results["fork"][name])
        spawn = statistics.median(results["spawn"][name])
        click.echo(f"{name:<32}{fork:>10.2f}{spawn:>10.2f}{fork / spawn:>8.2f}")


if __name__ == "__main__":
    main()
