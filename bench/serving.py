"""Serving benchmark with wrk: ours vs `mlflow models serve` on the same model, side by side.

Trains and deploys the dev model on a temporary ZenML store, then loads, one
after the other on the same machine:

- ours, through the model's stable address, as clients use it (no experiment
  running: the live version's workers accept there themselves);
- ours, at the service's own port;
- ours, through the router (its own port: the hop every request took before the
  stable address was handed to the live version, and takes during a rollout);
- the same bento under `bentoml serve` (what serving it with uvicorn removed);
- `mlflow models serve` on the very model the training step logged to MLflow;

with single-row requests at 16 and 64 connections and 100-row batches at 16,
and prints requests/s, p50/p90/p99 and the ratios to MLflow. Then the stable
address against the own port, single row at 16 and 64 connections,
``--rollout-rounds`` times in alternation, with the medians and their ratio
(the target: at least 0.9 of the own port's throughput). Then the routed
paths of a rollout, single row at 16 connections, with a second version live
beside the champion: the champion alone, a canary holding half the traffic,
and a shadow (answered by the champion, ``shadow_share`` of the requests
mirrored to the candidate in batches), in alternation, ``--rollout-rounds``
times, with the medians and what each costs against the champion alone. wrk is a C load
generator: a Python one on 2 cores takes the CPU the servers need and hides
their tails. The script finds `wrk` on PATH, or installs Debian's package when
it runs as root.

    .venv/bin/python bench/serving.py [--seconds 10] [--rollout-rounds 3]

Everything binds 127.0.0.1; every server started here is stopped at the end.
"""

from __future__ import annotations

import json
import logging
import os
import re
import shutil
import subprocess
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path

import click

from tabular_mlops.adapters.paths import PROJECT_ROOT as REPO_ROOT

UNITS_MS = {"us": 0.001, "ms": 1.0, "s": 1000.0}


@dataclass(frozen=True)
class WrkResult:
    requests_per_second: float
    percentiles_ms: dict[int, float]
    errors: int

    def row(self, label: str) -> str:
        p = self.percentiles_ms
        return (
            f"  {label:<44}{self.requests_per_second:>9,.0f} req/s   p50 {p[50]:6.1f}  "
            f"p90 {p[90]:6.1f}  p99 {p[99]:6.1f} ms   errors {self.errors}"
        )


def find_wrk() -> str:
    found = shutil.which("wrk")
    if found:
        return found
    if os.geteuid() == 0 and shutil.which("apt-get"):
        click.echo("installing wrk (Debian package) ...")
        subprocess.run(["apt-get", "install", "-y", "-qq", "wrk"], check=True)
        found = shutil.which("wrk")
    if not found:
        raise SystemExit("wrk is needed: `apt-get install wrk` or `brew install wrk`")
    return found


def parse_wrk(output: str) -> WrkResult:
    """Requests/s, the latency percentiles (``--latency``) and every kind of error."""
    percentiles = {
        int(q): float(value) * UNITS_MS[unit]
        for q, value, unit in re.findall(r"^\s+(\d+)%\s+([\d.]+)(us|ms|s)\s*$", output, re.M)
    }
    rate = re.search(r"Requests/sec:\s+([\d.]+)", output)
    if rate is None or not percentiles:
        raise SystemExit(f"unexpected wrk output:\n{output}")
    errors = sum(int(n) for n in re.findall(r"(?:connect|read|write|timeout) (\d+)", output))
    non_2xx = re.search(r"Non-2xx or 3xx responses: (\d+)", output)
    return WrkResult(
        float(rate.group(1)), percentiles, errors + (int(non_2xx.group(1)) if non_2xx else 0)
    )


def run_wrk(wrk: str, url: str, body: str, connections: int, seconds: float) -> WrkResult:
    with tempfile.NamedTemporaryFile("w", suffix=".lua", delete=False) as script:
        script.write(
            'wrk.method = "POST"\nwrk.headers["Content-Type"] = "application/json"\n'
            f"wrk.body = {json.dumps(body)}\n"
        )
    try:
        run = subprocess.run(
            [wrk, "-t1", f"-c{connections}", f"-d{seconds:g}s", "--latency", "-s", script.name,
             url],
            capture_output=True, text=True, check=True,
        )  # fmt: skip
    finally:
        Path(script.name).unlink()
    return parse_wrk(run.stdout)


def _cli(env: dict[str, str], *args: str) -> str:
    result = subprocess.run(
        [sys.executable, "run.py", *args], cwd=REPO_ROOT, env=env, capture_output=True, text=True
    )
    if result.returncode:
        raise SystemExit(f"run.py {' '.join(args)} failed:\n{result.stdout[-3000:]}")
    return result.stdout


def _start(command: list[str], env: dict[str, str], log: Path, ready_url: str) -> int:
    from tabular_mlops.adapters.net import wait_for_url

    with log.open("w") as handle:
        process = subprocess.Popen(
            command, env=env, stdout=handle, stderr=subprocess.STDOUT, start_new_session=True
        )
    if not wait_for_url(ready_url, 180, lambda: process.poll() is not None):
        raise SystemExit(f"{' '.join(command[:4])} did not come up; see {log}")
    return process.pid


@click.command()
@click.option("--seconds", default=10.0, show_default=True, help="Measured time per load.")
@click.option(
    "--rollout-rounds", default=3, show_default=True,
    help="Alternations of the rollout paths (champion alone, canary, shadow).",
)  # fmt: skip
@click.option("--keep-scratch", is_flag=True, help="Keep the run's stores and logs.")
def main(seconds: float, rollout_rounds: int, keep_scratch: bool) -> None:
    wrk = find_wrk()
    logging.getLogger("httpx").setLevel(logging.WARNING)
    scratch = Path(tempfile.mkdtemp(prefix="bench-serving-"))
    (scratch / "repo").mkdir()
    env = {
        **os.environ,
        "ZENML_CONFIG_PATH": str(scratch / "config"),
        "ZENML_REPOSITORY_PATH": str(scratch / "repo"),
        "ZENML_ANALYTICS_OPT_IN": "false",
        "BENTOML_HOME": str(scratch / "bentoml"),
        "BENTOML_DO_NOT_TRACK": "true",
        "MLFLOW_DISABLE_TELEMETRY": "true",
    }
    os.environ.update(env)  # this process reads the same stores
    from tabular_mlops.adapters.net import free_port

    port = free_port()
    from tabular_mlops.adapters.config_files import with_model_deployer

    # dev's stack, its model deployer on a port and state of this benchmark's own
    environment = with_model_deployer(
        "dev", scratch / "env", port=port, state_dir=scratch / "serving",
        inference_log_dir=scratch / "inference_log",
    )  # fmt: skip
    serving = ["--env", str(environment)]
    click.echo("training and deploying the dev model ...")
    _cli(env, "train", "--env", "dev")
    _cli(env, "deploy", *serving)

    import bentoml
    from zenml.client import Client
    from zenml.enums import ModelStages

    from tabular_mlops.adapters.deployment.local import LocalProcessTarget, read_live
    from tabular_mlops.adapters.deployment.target import LocalProcess
    from tabular_mlops.adapters.processes import stop_process_tree
    from tabular_mlops.adapters.sources import load_dataset
    from tabular_mlops.core.config import DataSourceConfig, LocalServingConfig, ServingConfig

    ours = read_live(scratch / "serving", "tabular_classifier")
    if ours is None or not isinstance(ours.runs_as, LocalProcess):
        raise SystemExit("the deployment recorded no live local service")
    version = Client().get_model_version("tabular_classifier", ModelStages.PRODUCTION)
    tracking_uri = Client().active_stack.experiment_tracker.get_tracking_uri()  # type: ignore[union-attr]
    started: list[int] = []
    try:
        mlflow_port = free_port()
        started.append(
            _start(
                [
                    str(Path(sys.executable).parent / "mlflow"), "models", "serve",
                    "-m", str(version.run_metadata["mlflow_model_uri"]),
                    "--env-manager", "local", "-h", "127.0.0.1", "-p", str(mlflow_port),
                ],
                # it execs `uvicorn` from PATH
                {**env, "MLFLOW_TRACKING_URI": tracking_uri,
                 "PATH": f"{Path(sys.executable).parent}{os.pathsep}{env['PATH']}"},
                scratch / "mlflow-serve.log",
                f"http://127.0.0.1:{mlflow_port}/ping",
            )
        )  # fmt: skip
        bento = bentoml.bentos.get(ours.bento_tag)
        baked = {e.name: e.value for e in bento.info.envs}
        bentoml_port = free_port()
        started.append(
            _start(
                [sys.executable, "-m", "bentoml", "serve", ours.bento_tag,
                 "--host", "127.0.0.1", "--port", str(bentoml_port)],
                {**env, **baked},  # the bento's settings: same app, same inference log
                scratch / "bentoml-serve.log",
                f"http://127.0.0.1:{bentoml_port}/readyz",
            )
        )  # fmt: skip
        features = load_dataset(DataSourceConfig()).drop(columns=["target"])
        one = json.loads(features.head(1).to_json(orient="records"))
        hundred = json.loads(features.sample(100, random_state=0).to_json(orient="records"))
        loads = [
            ("single row, 16 connections", one, 16),
            ("single row, 64 connections", one, 64),
            ("100-row batch, 16 connections", hundred, 16),
        ]
        router = LocalProcessTarget(ServingConfig(), LocalServingConfig(
            port=port, state_dir=scratch / "serving")).router(ours.model_name)  # fmt: skip
        if router is None:
            raise SystemExit("no router is recorded for the deployed model")
        servers = [
            ("ours, stable address", f"{ours.url}/predict", "rows"),
            ("ours, service's own port", f"{ours.runs_as.direct_url}/predict", "rows"),
            ("ours, through the router", f"{router.url}/predict", "rows"),
            ("same bento under `bentoml serve`", f"http://127.0.0.1:{bentoml_port}/predict",
             "rows"),
            ("mlflow models serve", f"http://127.0.0.1:{mlflow_port}/invocations",
             "dataframe_records"),
        ]  # fmt: skip
        results: dict[tuple[str, str], WrkResult] = {}
        for label, rows, connections in loads:
            click.echo(f"\n{label} (wrk -t1 -c{connections} -d{seconds:g}s):")
            for name, url, key in servers:
                result = run_wrk(wrk, url, json.dumps({key: rows}), connections, seconds)
                results[(label, name)] = result
                click.echo(result.row(name))
        click.echo("\nratios to mlflow models serve (throughput), and p99:")
        for label, _, _ in loads:
            mlflow = results[(label, "mlflow models serve")]
            for name, _, _ in servers[:-1]:
                mine = results[(label, name)]
                ratio = mine.requests_per_second / mlflow.requests_per_second
                click.echo(
                    f"  {label:<30} {name:<34} x{ratio:5.1f}   p99 "
                    f"{mine.percentiles_ms[99]:6.1f} ms vs {mlflow.percentiles_ms[99]:6.1f} ms"
                )
        _stable_against_own_port(wrk, ours.url, ours.runs_as.direct_url,
                                 json.dumps({"rows": one}), seconds, rollout_rounds)  # fmt: skip
        _rollout_paths(wrk, env, serving, scratch / "serving", ours.url,
                       json.dumps({"rows": one}), seconds, rollout_rounds,
                       results[("single row, 16 connections", "mlflow models serve")])  # fmt: skip
    finally:
        for pid in started:
            stop_process_tree(pid)
        _cli(env, "deploy", "--stop", *serving)
        if keep_scratch:
            click.echo(f"stores, logs and inference logs kept in {scratch}")
        else:  # a run leaves gigabytes of inference log
            shutil.rmtree(scratch, ignore_errors=True)


def _stable_against_own_port(
    wrk: str, stable: str, own: str, body: str, seconds: float, rounds: int
) -> None:
    """The stable address and the live version's own port, in alternation: the medians
    and their ratio. Both are accepted by the same workers; which worker a connection
    lands on is the kernel's choice, so one run can favour either side."""
    for connections in (16, 64):
        click.echo(
            f"\nstable address against the own port, single row, {connections} connections, "
            f"{rounds} rounds in alternation (wrk -c{connections} -d{seconds:g}s each):"
        )
        measured: dict[str, list[WrkResult]] = {"stable address": [], "own port": []}
        for _ in range(rounds):
            for name, url in (("stable address", stable), ("own port", own)):
                result = run_wrk(wrk, f"{url}/predict", body, connections, seconds)
                measured[name].append(result)
                click.echo(result.row(name))
        (rate, p99), (own_rate, own_p99) = (_median(measured[n]) for n in measured)
        click.echo(
            f"  medians: stable address {rate:,.0f} req/s p99 {p99:.1f} ms, own port "
            f"{own_rate:,.0f} req/s p99 {own_p99:.1f} ms: throughput ratio "
            f"{rate / own_rate:.2f}"
        )


def _rollout_paths(
    wrk: str,
    env: dict[str, str],
    serving: list[str],
    state_dir: Path,
    url: str,
    body: str,
    seconds: float,
    rounds: int,
    mlflow: WrkResult,
) -> None:
    """A second version beside the champion: the champion alone, a canary at half the
    traffic, and a shadow, measured in alternation.

    Both versions stay live throughout: ``deploy --strategy shadow`` starts the
    candidate, then the router's routes are switched between the three plans
    (the champion alone, canary 50/50, the deployed shadow), ``rounds`` times
    over, and the medians compared, so the machine's drift over the run falls on
    every side alike."""
    import httpx

    from tabular_mlops.adapters.deployment.local import (
        RouterProcess,
        deployment_tokens,
        state_file,
    )
    from tabular_mlops.core.rollout import RolloutPlan
    from tabular_mlops.serving.router import Routes, write_routes

    click.echo("\ntraining a second version (staging) for the rollout paths ...")
    _cli(env, "train", "--env", "dev", "--set", "parameters.promotion.stage=staging",
         "--set", "parameters.training.params.C=0.5", "--set", "enable_cache=false")  # fmt: skip
    never = ["--set", "parameters.serving.rollout.hold_requests=1000000000"]
    _cli(env, "deploy", *serving, "--set", "stage=staging",
         "--strategy", "shadow", *never)  # fmt: skip
    routes_file = state_file(state_dir, "tabular_classifier", ".routes")
    router = RouterProcess.model_validate_json(
        state_file(state_dir, "tabular_classifier", ".router").read_text()
    )
    router_url = router.url  # its status; the rollout's requests go to the stable address
    token = deployment_tokens(state_dir, "tabular_classifier").current["admin"]
    admin = {"authorization": f"Bearer {token}"}
    shadow = Routes.model_validate_json(routes_file.read_text())
    canary_plan = RolloutPlan(
        **{**shadow.plan.model_dump(), "strategy": "canary", "canary_steps": [0.5, 1.0]}
    )
    plans = {
        "champion alone": shadow.model_copy(update={"upstreams": shadow.upstreams[:1]}),
        "canary 50%": shadow.model_copy(update={"plan": canary_plan}),
        f"shadow {shadow.plan.shadow_share:.0%}": shadow,
    }
    click.echo(
        f"\nsingle row, 16 connections, through the stable address, both versions live, "
        f"{rounds} rounds in alternation (wrk -c16 -d{seconds:g}s each):"
    )
    measured: dict[str, list[WrkResult]] = {name: [] for name in plans}
    for _ in range(rounds):
        for name, routes in plans.items():
            write_routes(routes_file, routes)
            _wait_for_arms(router_url, len(routes.upstreams), routes.plan.strategy, admin)
            before = httpx.get(f"{router_url}/-/routes", headers=admin).json()
            result = run_wrk(wrk, f"{url}/predict", body, 16, seconds)
            after = httpx.get(f"{router_url}/-/routes", headers=admin).json()
            measured[name].append(result)
            served = ", ".join(
                f"v{a['version']} {a['requests'] - b['requests']:,}"
                for a, b in zip(after["arms"], before["arms"], strict=True)
            )
            skipped = after["shadow"]["skipped"] - before["shadow"]["skipped"]
            click.echo(result.row(name) + f"   by version: {served}; shadow skipped {skipped}")
    median = {name: _median(results) for name, results in measured.items()}
    alone = median["champion alone"]
    click.echo("  medians:")
    for name, (rate, p99) in median.items():
        click.echo(
            f"  {name:<44}{rate:>9,.0f} req/s   p99 {p99:6.1f} ms   "
            f"x{rate / mlflow.requests_per_second:.1f} mlflow models serve, "
            f"{rate / alone[0]:.1%} of the champion alone"
        )
    _cli(env, "rollout", *serving, "--abort", "--reason", "the benchmark is done")


def _median(results: list[WrkResult]) -> tuple[float, float]:
    """The median throughput and the median p99 of repeated runs."""
    middle = len(results) // 2
    return (
        sorted(r.requests_per_second for r in results)[middle],
        sorted(r.percentiles_ms[99] for r in results)[middle],
    )


def _wait_for_arms(router_url: str, arms: int, strategy: str, admin: dict[str, str]) -> None:
    """Until the router has read the routes file (it checks every 2 s)."""
    import time

    import httpx

    def taken() -> bool:
        view = httpx.get(f"{router_url}/-/routes", headers=admin).json()
        return len(view["arms"]) == arms and (arms == 1 or view["strategy"] == strategy)

    deadline = time.monotonic() + 10
    while not taken():
        if time.monotonic() > deadline:
            raise SystemExit("the router did not take the new routes within 10 s")
        time.sleep(0.2)


if __name__ == "__main__":
    main()
