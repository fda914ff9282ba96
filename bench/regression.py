"""The regression example against the classifier, side by side in one run.

1. **Serving**: the demand regressor and the default classifier, each deployed on dev's
   stack (a port and state of their own), under the same wrk load through their stable
   addresses; the ratio is the regressor's throughput over the classifier's.
2. **Batch**: 1M demand rows Parquet to Parquet by ``score_file`` (the batch pipeline's
   scorer) against bare ``model.predict`` on the same rows held in memory.
3. **The loop**: ``run.py all`` of the regression example against ``run.py all`` of the
   classifier, each on a fresh store.

    python bench/regression.py [--seconds 10] [--rows 1000000]
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path

import click

sys.path.insert(0, str(Path(__file__).resolve().parent))

from serving import find_wrk, run_wrk

from tabular_mlops.adapters.paths import PROJECT_ROOT

DEMAND = PROJECT_ROOT / "configs" / "examples" / "demand_training.yaml"


def fresh_env(scratch: Path) -> dict[str, str]:
    (scratch / "repo").mkdir(parents=True, exist_ok=True)
    return {
        **os.environ,
        "ZENML_CONFIG_PATH": str(scratch / "config"),
        "ZENML_REPOSITORY_PATH": str(scratch / "repo"),
        "ZENML_ANALYTICS_OPT_IN": "false",
        "BENTOML_HOME": str(scratch / "bentoml"),
        "BENTOML_DO_NOT_TRACK": "true",
        "MLFLOW_DISABLE_TELEMETRY": "true",
        "TABULAR_MLOPS_STATE_DIR": str(scratch / "state"),
    }


def cli(env: dict[str, str], *args: str) -> float:
    """``run.py ARGS`` in a process of its own; its wall time."""
    started = time.perf_counter()
    done = subprocess.run([sys.executable, "run.py", *args], cwd=PROJECT_ROOT, env=env,
                          capture_output=True, text=True)  # fmt: skip
    if done.returncode:
        raise SystemExit(f"run.py {' '.join(args)} failed:\n{done.stdout[-3000:]}")
    return time.perf_counter() - started


def serving(scratch: Path, seconds: float) -> None:
    from tabular_mlops.adapters.config_files import with_model_deployer
    from tabular_mlops.adapters.net import free_port
    from tabular_mlops.adapters.sources import load_dataset
    from tabular_mlops.core.config import DataSourceConfig

    env = fresh_env(scratch / "serving")
    rows = {
        "tabular_classifier": load_dataset(DataSourceConfig()).drop(columns=["target"]),
        "demand_forecast": load_dataset(
            DataSourceConfig(dataset="demand", target="units_sold")
        ).drop(columns=["units_sold"]),
    }
    urls, deployments = {}, []
    cli(env, "train")
    cli(env, "train", "--config", str(DEMAND))
    for name in rows:
        port = free_port()
        environment = with_model_deployer(
            "dev", scratch / "serving" / name, port=port,
            state_dir=scratch / "serving" / name / "state",
            inference_log_dir=scratch / "serving" / name / "log",
        )  # fmt: skip
        deployment = ["deploy", "--env", str(environment), "--set", f"model.name={name}"]
        cli(env, *deployment)
        deployments.append(deployment)
        urls[name] = f"http://127.0.0.1:{port}/predict"
    try:
        wrk = find_wrk()
        for label, connections, count in (("single row", 16, 1), ("single row", 64, 1),
                                          ("100-row batch", 16, 100)):  # fmt: skip
            click.echo(f"\n{label}, {connections} connections (wrk -t1 -d{seconds:g}s):")
            rates = {}
            for name, url in urls.items():
                sample = rows[name].sample(count, random_state=0)
                body = json.dumps({"rows": json.loads(sample.to_json(orient="records"))})
                result = run_wrk(wrk, url, body, connections, seconds)
                rates[name] = result.requests_per_second
                click.echo(result.row(name))
            ratio = rates["demand_forecast"] / rates["tabular_classifier"]
            click.echo(f"  regressor / classifier throughput: {ratio:.2f}")
    finally:
        for deployment in deployments:
            cli(env, *deployment, "--stop")


def batch(scratch: Path, rows: int) -> None:
    import numpy as np

    from tabular_mlops.adapters.batch import score_file
    from tabular_mlops.adapters.sources import load_dataset
    from tabular_mlops.core.config import DataSourceConfig, SplitConfig, TrainingConfig
    from tabular_mlops.core.model_factory import fit_model
    from tabular_mlops.core.spec import ServingSpec
    from tabular_mlops.core.splits import split_rows

    data = load_dataset(DataSourceConfig(dataset="demand", target="units_sold"))
    train, _ = split_rows(data, SplitConfig(test_size=0.2, time_column="date"), "units_sold",
                          "regression")  # fmt: skip
    estimator = TrainingConfig(estimator="sklearn.linear_model.PoissonRegressor",
                               params={"alpha": 0.001, "max_iter": 1000})  # fmt: skip
    model, _ = fit_model(train, "units_sold", estimator, task="regression",
                         date_columns=["date"])  # fmt: skip
    from tabular_mlops.adapters.champion import regression_answer

    spec = ServingSpec.from_training_data("demand", "1", train, "units_sold", [],
                                          **regression_answer(model))  # fmt: skip
    features = data.drop(columns=["units_sold"]).sample(rows, replace=True, random_state=0)
    features = features.reset_index(drop=True)
    path = scratch / "demand-batch.parquet"
    features.to_parquet(path)
    bare = []
    for _ in range(3):
        started = time.perf_counter()
        model.predict(features)
        bare.append(time.perf_counter() - started)
    ours = []
    for attempt in range(3):
        started = time.perf_counter()
        result = score_file(path, model, spec, scratch / f"out-{attempt}", f"b{attempt}",
                            100_000, datetime.now(UTC))  # fmt: skip
        ours.append(time.perf_counter() - started)
    bare_rate, our_rate = rows / float(np.median(bare)), rows / float(np.median(ours))
    click.echo(f"\nbatch, {rows:,} demand rows (medians of 3):")
    click.echo(f"  bare model.predict, in memory      {bare_rate:>12,.0f} rows/s")
    click.echo(f"  score_file, Parquet to Parquet     {our_rate:>12,.0f} rows/s "
               f"({result.rows_scored:,} scored)")  # fmt: skip
    click.echo(f"  score_file / bare predict: {our_rate / bare_rate:.2f}")


def loop(scratch: Path) -> None:
    times = {}
    runs = (("classifier", "tabular_classifier", ()),
            ("regressor", "demand_forecast", ("--config", str(DEMAND))))  # fmt: skip
    for name, model, args in runs:
        env = fresh_env(scratch / f"loop-{name}")
        times[name] = cli(env, "all", *args)
        cli(env, "deploy", "--stop", "--set", f"model.name={model}")
    click.echo(f"\nrun.py all, fresh store: classifier {times['classifier']:.1f} s, "
               f"regressor {times['regressor']:.1f} s, "
               f"ratio {times['regressor'] / times['classifier']:.2f}")  # fmt: skip


@click.command()
@click.option("--seconds", default=10.0, show_default=True, help="wrk time per load.")
@click.option("--rows", default=1_000_000, show_default=True, help="Rows of the batch.")
@click.option("--keep-scratch", is_flag=True, help="Keep the run's stores and logs.")
def main(seconds: float, rows: int, keep_scratch: bool) -> None:
    scratch = Path(tempfile.mkdtemp(prefix="bench-regression-"))
    try:
        serving(scratch, seconds)
        batch(scratch, rows)
        loop(scratch)
    finally:
        if not keep_scratch:
            shutil.rmtree(scratch, ignore_errors=True)


if __name__ == "__main__":
    main()
