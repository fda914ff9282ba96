"""Serving benchmark: our BentoML service vs `mlflow models serve` vs in-process calls.

Trains and deploys the dev model on a temporary ZenML store, starts `mlflow models
serve` on the very same model (the one the training step logged to MLflow), then
loads both with single-row requests (16 and 64 connections) and 100-row batches,
and prints throughput, p50/p99 latency and our/MLflow ratios.

    .venv/bin/python bench/serving.py [--seconds 10]

Everything binds 127.0.0.1; every server started here is stopped at the end.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import click
import pandas as pd
from sklearn.pipeline import Pipeline

sys.path.insert(0, str(Path(__file__).resolve().parent))

from loadgen import HEADER, LoadResult, run_load

from tabular_mlops.adapters.paths import PROJECT_ROOT as REPO_ROOT


def _cli(env: dict[str, str], *args: str) -> str:
    result = subprocess.run(
        [sys.executable, "run.py", *args], cwd=REPO_ROOT, env=env, capture_output=True, text=True
    )
    if result.returncode:
        raise SystemExit(f"run.py {' '.join(args)} failed:\n{result.stdout[-3000:]}")
    return result.stdout


def _wait(url: str, timeout: float = 120) -> None:
    from tabular_mlops.adapters.net import wait_for_url

    if not wait_for_url(url, timeout):
        raise SystemExit(f"{url} did not come up")


@click.command()
@click.option("--seconds", default=10.0, show_default=True, help="Measured time per load.")
def main(seconds: float) -> None:
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
    serving = [
        "--set", f"parameters.serving.state_dir={scratch / 'serving'}",
        "--set", f"parameters.serving.inference_log_dir={scratch / 'inference_log'}",
    ]  # fmt: skip
    click.echo("training and deploying the dev model ...")
    _cli(env, "train", "--env", "dev")
    _cli(env, "deploy", "--env", "dev", *serving)
    os.environ.update(env)  # this process now reads the same stores

    from mlflow import MlflowClient
    from zenml.client import Client
    from zenml.enums import ModelStages

    from tabular_mlops.adapters.deployment.local import LocalProcessTarget, read_live
    from tabular_mlops.adapters.net import free_port
    from tabular_mlops.adapters.processes import stop_process_group
    from tabular_mlops.adapters.sources import load_dataset
    from tabular_mlops.core.config import DataSourceConfig, ServingConfig

    ours = read_live(scratch / "serving", "tabular_classifier")
    if ours is None:
        raise SystemExit("the deployment recorded no live service")
    version = Client().get_model_version("tabular_classifier", ModelStages.PRODUCTION)
    tracking_uri = Client().active_stack.experiment_tracker.get_tracking_uri()  # type: ignore[union-attr]
    model_uri = str(version.run_metadata["mlflow_model_uri"])
    MlflowClient(tracking_uri)  # fail early if the store is unreadable
    mlflow_port = free_port()
    mlflow_log = (scratch / "mlflow-serve.log").open("w")
    mlflow_server = subprocess.Popen(
        [
            str(Path(sys.executable).parent / "mlflow"), "models", "serve", "-m", model_uri,
            "--env-manager", "local", "-h", "127.0.0.1", "-p", str(mlflow_port),
        ],
        # it execs `uvicorn` from PATH
        env={
            **env,
            "MLFLOW_TRACKING_URI": tracking_uri,
            "PATH": f"{Path(sys.executable).parent}{os.pathsep}{env['PATH']}",
        },
        stdout=mlflow_log,
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )  # fmt: skip
    try:
        _wait(f"http://127.0.0.1:{mlflow_port}/ping")
        features = load_dataset(DataSourceConfig()).drop(columns=["target"])
        one = json.loads(features.head(1).to_json(orient="records"))
        hundred = json.loads(features.sample(100, random_state=0).to_json(orient="records"))
        loads = [
            ("single row, 16 connections", one, 16),
            ("single row, 64 connections", one, 64),
            ("100-row batch, 16 connections", hundred, 16),
        ]
        results: dict[tuple[str, str], LoadResult] = {}
        click.echo("\n" + HEADER)
        for label, rows, connections in loads:
            for name, url, body in (
                ("ours (BentoML)", f"{ours.url}/predict", {"rows": rows}),
                ("mlflow models serve", f"http://127.0.0.1:{mlflow_port}/invocations",
                 {"dataframe_records": rows}),
            ):  # fmt: skip
                result = run_load(url, json.dumps(body).encode(), connections, seconds)
                results[(label, name)] = result
                click.echo(result.row(f"{name}: {label}"))
        click.echo("\nin process (the ceiling), one call per row:")
        model_artifact = version.get_artifact("model")
        if model_artifact is None:
            raise SystemExit("the production model version has no 'model' artifact")
        _in_process(model_artifact.load(), features)
        click.echo("\nratios, ours / mlflow models serve:")
        for label, _, _ in loads:
            a, b = results[(label, "ours (BentoML)")], results[(label, "mlflow models serve")]
            click.echo(
                f"  {label:<32} throughput x{a.throughput / b.throughput:.1f}   "
                f"p99 {a.percentile(99):.1f} ms vs {b.percentile(99):.1f} ms"
            )
    finally:
        stop_process_group(mlflow_server.pid)
        LocalProcessTarget(ServingConfig()).stop(ours)


def _in_process(model: Pipeline, features: pd.DataFrame) -> None:
    from tabular_mlops.core.scoring import FastModel

    row = features.head(1)
    values = row.to_numpy().tolist()
    fast = FastModel(model, list(features.columns))
    for name, call in (
        ("Pipeline.predict_proba(1-row DataFrame)", lambda: model.predict_proba(row)),
        ("FastModel.predict_proba(1 row)", lambda: fast.predict_proba(values)),
    ):
        call()
        count, started = 0, time.perf_counter()
        while time.perf_counter() - started < 3:
            call()
            count += 1
        click.echo(f"  {name:<44}{count / (time.perf_counter() - started):>10.0f} calls/s")


if __name__ == "__main__":
    main()
