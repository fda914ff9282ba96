"""Served workers with one native thread each against OpenMP's default (one per core).

A histogram gradient boosting classifier (breast cancer) is trained on a private store
and served on dev with two workers; each round releases it twice with ``deploy
--force``, once with ``OMP_NUM_THREADS`` and ``OPENBLAS_NUM_THREADS`` set to the core
count (what the server ran with before it set them to 1) and once without (the
server's default now: one), and loads the stable address with wrk (single row, 16
connections). Prints each arm's throughput and p99 and their ratio.

    .venv/bin/python bench/serving_threads.py [--rounds 2] [--seconds 8]
"""

from __future__ import annotations

import json
import os
import statistics
import sys
from pathlib import Path

import click
import yaml

sys.path.insert(0, str(Path(__file__).resolve().parent))

from loop_vs_template import ROOT, kill_leftovers, private_home, run
from serving import find_wrk, run_wrk

from tabular_mlops.adapters.net import free_port
from tabular_mlops.core.threads import THREAD_POOL_ENVS

MODEL = "bench_hgb"


@click.command()
@click.option("--rounds", default=2, show_default=True, type=click.IntRange(1, 20))
@click.option("--seconds", default=8.0, show_default=True)
def main(rounds: int, seconds: float) -> None:
    from sklearn.datasets import load_breast_cancer

    wrk = find_wrk()
    cores = str(os.cpu_count() or 1)
    row = load_breast_cancer(as_frame=True).frame.drop(columns=["target"]).iloc[0].to_dict()
    body = json.dumps({"rows": [row]})
    with private_home("bench-threads-") as (home, env, log):
        for name in THREAD_POOL_ENVS:
            env.pop(name, None)
        port = free_port()
        dev = yaml.safe_load((ROOT / "configs" / "environments" / "dev.yaml").read_text())
        dev["stack"]["components"]["model_deployer"]["configuration"].update(port=port, workers=2)
        environment = home / "dev.yaml"
        environment.write_text(yaml.safe_dump(dev, sort_keys=False))
        cli = [sys.executable, "run.py"]
        common = ["--env", str(environment), "--set", f"model.name={MODEL}"]
        results: dict[str, list[tuple[float, float]]] = {}
        try:
            click.echo("training once ...", err=True)
            run("train", [*cli, "train", *common,
                          "--set", "parameters.training.estimator="
                          "sklearn.ensemble.HistGradientBoostingClassifier",
                          "--set", "parameters.training.params={max_iter: 100}"],
                ROOT, env, log, timeout=900)  # fmt: skip
            for index in range(rounds):
                for arm, extra in ((f"{cores} threads a worker (OpenMP's default)",
                                    dict.fromkeys(THREAD_POOL_ENVS, cores)),
                                   ("one thread a worker (the server's default)", {})):  # fmt: skip
                    click.echo(f"round {index + 1}: {arm} ...", err=True)
                    run("deploy", [*cli, "deploy", "--force", *common], ROOT,
                        {**env, **extra}, log, timeout=600)  # fmt: skip
                    result = run_wrk(wrk, f"http://127.0.0.1:{port}/predict", body, 16, seconds)
                    results.setdefault(arm, []).append(
                        (result.requests_per_second, result.percentiles_ms[99])
                    )
                    click.echo(result.row(f"round {index + 1}: {arm}"), err=True)
        finally:
            run("stop", [*cli, "deploy", "--stop", *common], ROOT, env, log, timeout=120)
            kill_leftovers(str(home))
    click.echo(f"\n{'served with':<46}{'req/s (median)':>16}{'p99 ms (median)':>17}")
    medians = {}
    for arm, values in results.items():
        rate = statistics.median(v[0] for v in values)
        p99 = statistics.median(v[1] for v in values)
        medians[arm] = (rate, p99)
        click.echo(f"{arm:<46}{rate:>16,.0f}{p99:>17.1f}")
    (before, after) = medians.values()
    click.echo(
        f"one thread a worker: x{after[0] / before[0]:.1f} the throughput, "
        f"p99 x{after[1] / before[1]:.3f}"
    )


if __name__ == "__main__":
    main()
