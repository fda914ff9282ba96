"""Batch scoring throughput, file to file, against bare `model.predict` in memory.

Fits the default pipeline on scikit-learn's breast-cancer data, writes N rows
(sampled with noise) as Parquet and CSV, then in one run times:
  - bare `model.predict` on the N rows already in memory (the reference),
  - `score_file` (what the batch pipeline's scoring step runs) from each file to
    Parquet, in a fresh process each: one warm-up run, then the median of three,
    and the process's peak RSS,
and prints rows/s and the ratio. Peak RSS for 1x and 3x the rows (the 3x file
written as one row group) shows the memory bound: it follows the chunk size, not
the file or its row groups. Then the same for CSV at ``--memory-rows`` and ten
times as many (2M and 20M by default; the 20M file takes 3.9 GB of scratch disk
and about three minutes): peak RSS within 10% of each other.

    .venv/bin/python bench/batch_inference.py [--rows 1000000] [--chunk-rows 200000]
                                              [--memory-rows 2000000 | 0 to skip]
"""

from __future__ import annotations

import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import click
import joblib
import numpy as np

from tabular_mlops.adapters.paths import PROJECT_ROOT as REPO_ROOT

SCORE = """
import json, sys, joblib
from datetime import UTC, datetime
from pathlib import Path
sys.path.insert(0, {root!r})
from tabular_mlops.core.spec import ServingSpec
from tabular_mlops.adapters.batch import score_file
model = joblib.load({model!r})
spec = ServingSpec.model_validate_json(Path({spec!r}).read_text())
# one warm-up, then the median of three: the same footing as the warm baseline
runs = [
    score_file(
        Path({path!r}), model, spec, Path({out!r}), f"b{{i}}", {chunk_rows}, datetime.now(UTC)
    )
    for i in range({runs})
]
timed = runs[1:] or runs
result = sorted(timed, key=lambda r: r.seconds)[len(timed) // 2]
# VmHWM, not ru_maxrss: Linux carries ru_maxrss over from the parent across exec
peak = next(int(l.split()[1]) for l in open("/proc/self/status") if l.startswith("VmHWM")) / 1024
print(json.dumps({{"seconds": result.seconds, "rows": result.rows_scored, "peak_mb": peak}}))
"""


def _score_in_fresh_process(
    scratch: Path, path: Path, chunk_rows: int, runs: int = 4
) -> dict[str, float]:
    code = SCORE.format(
        runs=runs,
        chunk_rows=chunk_rows,
        root=str(REPO_ROOT),
        model=str(scratch / "model.joblib"),
        spec=str(scratch / "spec.json"),
        path=str(path),
        out=str(scratch / "out"),
    )
    output = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True
    ).stdout
    return dict(json.loads(output.strip().splitlines()[-1]))


@click.command()
@click.option("--rows", default=1_000_000, show_default=True)
@click.option(
    "--chunk-rows",
    default=200_000,
    show_default=True,
    help="Rows per chunk (the batch pipeline's default: configs/batch_inference.yaml).",
)
@click.option(
    "--memory-rows",
    default=2_000_000,
    show_default=True,
    help="CSV rows of the smaller memory file (the larger has ten times as many).",
)
def main(rows: int, chunk_rows: int, memory_rows: int) -> None:
    from tabular_mlops.adapters.sources import load_dataset
    from tabular_mlops.core.config import DataSourceConfig, TrainingConfig
    from tabular_mlops.core.model_factory import fit_model
    from tabular_mlops.core.spec import ServingSpec

    data = load_dataset(DataSourceConfig())
    model, _ = fit_model(data, "target", TrainingConfig(params={"max_iter": 1000}))
    spec = ServingSpec.from_training_data("bench", "1", data, "target", list(model.classes_))
    features = data.drop(columns=["target"])
    rng = np.random.default_rng(0)

    with tempfile.TemporaryDirectory(prefix="bench-batch-") as tmp:
        scratch = Path(tmp)
        joblib.dump(model, scratch / "model.joblib")
        (scratch / "spec.json").write_text(spec.model_dump_json())
        click.echo(f"writing {rows:,} and {3 * rows:,} rows ...")
        files = {}
        for count in (rows, 3 * rows):
            frame = features.sample(count, replace=True, random_state=count).reset_index(drop=True)
            frame = frame * rng.normal(1, 0.01, frame.shape)
            files[(count, "parquet")] = scratch / f"batch-{count}.parquet"
            # The larger file as a single row group: the worst case for a reader's memory.
            frame.to_parquet(files[(count, "parquet")], row_group_size=count)
            if count == rows:
                files[(count, "csv")] = scratch / f"batch-{count}.csv"
                frame.to_csv(files[(count, "csv")], index=False)
                in_memory = frame
        del frame

        bare = []
        for _ in range(3):
            started = time.perf_counter()
            model.predict(in_memory)
            bare.append(time.perf_counter() - started)
        bare_rate = rows / float(np.median(bare))
        click.echo(f"\n{'':<46}{'rows/s':>12}{'ratio':>8}{'peak RSS MB':>13}")
        label = "bare model.predict, in memory (median of 3)"
        click.echo(f"{label:<46}{bare_rate:>12,.0f}{1:>8.2f}{'(all rows held)':>16}")
        for (count, kind), path in files.items():
            repeats = 3 if count == rows else 1
            runs = [_score_in_fresh_process(scratch, path, chunk_rows) for _ in range(repeats)]
            seconds = float(np.median([r["seconds"] for r in runs]))
            rate = count / seconds
            label = f"score_file {kind} -> parquet, {count:,} rows"
            click.echo(
                f"{label:<46}{rate:>12,.0f}{rate / bare_rate:>8.2f}"
                f"{max(r['peak_mb'] for r in runs):>13,.0f}"
            )
        if memory_rows:
            _csv_memory(scratch, features, memory_rows, chunk_rows)


def _csv_memory(scratch: Path, features: Any, rows: int, chunk_rows: int) -> None:
    """Peak RSS of scoring a CSV of ``rows`` and of ten times as many, once each, in a
    fresh process: memory follows the chunk, not the file."""
    import pyarrow as pa
    import pyarrow.csv as pa_csv

    block = features.sample(min(rows, 200_000), replace=True, random_state=1).round(4)
    table = pa.Table.from_pandas(block.reset_index(drop=True), preserve_index=False)
    peaks = {}
    for count in (rows, 10 * rows):
        path = scratch / f"memory-{count}.csv"
        with pa_csv.CSVWriter(path, table.schema) as writer:
            for _ in range(count // table.num_rows):
                writer.write_table(table)
        result = _score_in_fresh_process(scratch, path, chunk_rows, runs=1)
        peaks[count] = result["peak_mb"]
        click.echo(
            f"{f'score_file csv, {count:,} rows ({path.stat().st_size >> 20:,} MB)':<46}"
            f"{count / result['seconds']:>12,.0f}{'':>8}{result['peak_mb']:>13,.0f}"
        )
        path.unlink()
    larger, smaller = peaks[10 * rows], peaks[rows]
    click.echo(f"peak RSS, {10 * rows:,} rows against {rows:,}: {larger / smaller:.2f}x")


if __name__ == "__main__":
    main()
