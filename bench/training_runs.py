"""Time `run.py train` on a fresh ZenML store: first run, run against the new champion,
and a fully cached rerun. Prints one row per run (the table in docs/benchmarks.md).

    .venv/bin/python bench/training_runs.py [--runs 3]
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import click

from tabular_mlops.adapters.paths import PROJECT_ROOT as REPO_ROOT


@click.command()
@click.option("--runs", default=3, show_default=True, type=click.IntRange(1, 10))
def main(runs: int) -> None:
    with tempfile.TemporaryDirectory(prefix="bench-training-") as scratch:
        repo = Path(scratch) / "repo"
        repo.mkdir()
        env = {
            **os.environ,
            "ZENML_CONFIG_PATH": str(Path(scratch) / "config"),
            "ZENML_REPOSITORY_PATH": str(repo),
            "ZENML_ANALYTICS_OPT_IN": "false",
            "MLFLOW_DISABLE_TELEMETRY": "true",
        }
        click.echo(f"{'run':<5}{'wall (s)':>10}{'pipeline (s)':>14}  steps cached")
        for index in range(1, runs + 1):
            started = time.perf_counter()
            result = subprocess.run(
                [sys.executable, "run.py", "train", "--env", "dev"],
                cwd=REPO_ROOT,
                env=env,
                capture_output=True,
                text=True,
                check=True,
            )
            wall = time.perf_counter() - started
            summary = re.search(
                r"completed in ([\d.]+) s \((\d+ of \d+) steps cached\)", result.stdout
            )
            pipeline, cached = summary.groups() if summary else ("?", "?")
            click.echo(f"{index:<5}{wall:>10.1f}{pipeline:>14}  {cached}")


if __name__ == "__main__":
    main()
