"""The three levers behind batch scoring's throughput and memory, each against the
way it was done before, side by side in one run (figures in docs/benchmarks.md).

  - read: Parquet page by page (``pre_buffer=False``, 1 MiB buffer, what
    ``read_chunks`` does) vs pyarrow's default pre-buffering, on 3M rows in one
    row group: seconds and the most Arrow memory held;
  - transform: ``FastModel.transform_frame`` (column-major, in place) vs
    ``to_numpy`` followed by out-of-place arithmetic, on 1M rows;
  - write: dictionary pages only on repeating columns (what ``score_file``
    does) vs on every column, 1M output rows.

    .venv/bin/python bench/batch_levers.py [--rows 1000000]
"""

from __future__ import annotations

import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING

import click
import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

if TYPE_CHECKING:
    from tabular_mlops.core.scoring import FastModel


def _median_seconds(work: Callable[[], object], runs: int = 3) -> float:
    times = []
    for _ in range(runs):
        started = time.perf_counter()
        work()
        times.append(time.perf_counter() - started)
    return float(np.median(times))


def _read(path: Path, pre_buffer: bool) -> int:
    """Stream the file in 200k-row batches; returns the most Arrow memory held."""
    from tabular_mlops.adapters.batch import PARQUET_READ_BUFFER

    options = {} if pre_buffer else {"pre_buffer": False, "buffer_size": PARQUET_READ_BUFFER}
    most = 0
    for batch in pq.ParquetFile(path, **options).iter_batches(batch_size=200_000):
        most = max(most, pa.total_allocated_bytes())
        batch.to_pandas()
    return most


def _out_of_place(fast: FastModel, frame: pd.DataFrame) -> np.ndarray:
    """The transform as it was: a copy, then a new array per arithmetic step."""
    numeric = frame[fast.numeric_names].to_numpy(dtype=float, na_value=np.nan)
    numeric = np.where(np.isnan(numeric), fast.medians, numeric)
    return np.asarray((numeric - fast.mean) / fast.scale)


def _write(path: Path, table: pa.Table, use_dictionary: bool | list[str]) -> None:
    with pq.ParquetWriter(path, table.schema, use_dictionary=use_dictionary) as writer:
        for start in range(0, table.num_rows, 200_000):
            writer.write_table(table.slice(start, 200_000))


def _row(label: str, ours: float, theirs: float, unit: str = "s") -> None:
    click.echo(f"{label:<44}{ours:>10.3f}{theirs:>12.3f} {unit:<3}{theirs / ours:>8.1f}x")


@click.command()
@click.option("--rows", default=1_000_000, show_default=True)
def main(rows: int) -> None:
    from tabular_mlops.adapters.sources import load_dataset
    from tabular_mlops.core.config import DataSourceConfig, TrainingConfig
    from tabular_mlops.core.model_factory import fit_model
    from tabular_mlops.core.scoring import FastModel

    data = load_dataset(DataSourceConfig())
    model, _ = fit_model(data, "target", TrainingConfig(params={"max_iter": 1000}))
    features = data.drop(columns=["target"])
    rng = np.random.default_rng(0)
    frame = features.sample(rows, replace=True, random_state=0).reset_index(drop=True)
    frame = frame * rng.normal(1, 0.01, frame.shape)  # as bench/batch_inference.py: real values
    fast = FastModel(model, list(features.columns))
    probabilities = rng.random(rows)
    zeros = pa.array(np.zeros(rows, dtype=np.int32))
    output = pa.table(
        {
            "row_number": np.arange(rows),
            "prediction": pa.DictionaryArray.from_arrays(
                pa.array((probabilities > 0.5).astype(np.int32)), pa.array(["a", "b"])
            ),
            "probability_a": probabilities,
            "probability_b": 1 - probabilities,
            "model_version": pa.DictionaryArray.from_arrays(zeros, pa.array(["1"])),
        }
    )
    click.echo(f"{'':<44}{'ours':>10}{'before':>12}{'':>4}{'ratio':>8}")
    with tempfile.TemporaryDirectory(prefix="bench-levers-") as tmp:
        big = Path(tmp) / "one-row-group.parquet"
        three = pd.concat([frame] * 3, ignore_index=True)
        (three * rng.normal(1, 0.01, three.shape)).to_parquet(big, row_group_size=3 * rows)
        _row(
            f"read {3 * rows:,} rows, one row group",
            _median_seconds(lambda: _read(big, pre_buffer=False)),
            _median_seconds(lambda: _read(big, pre_buffer=True)),
        )
        _row(
            "  most Arrow memory held while reading",
            _read(big, pre_buffer=False) / 2**20,
            _read(big, pre_buffer=True) / 2**20,
            "MB",
        )
        _row(
            f"transform {rows:,} rows",
            _median_seconds(lambda: fast.transform_frame(frame)),
            _median_seconds(lambda: _out_of_place(fast, frame)),
        )
        repeating = [f.name for f in output.schema if pa.types.is_dictionary(f.type)]
        target = Path(tmp) / "out.parquet"
        _row(
            f"write {rows:,} output rows",
            _median_seconds(lambda: _write(target, output, repeating)),
            _median_seconds(lambda: _write(target, output, True)),
        )


if __name__ == "__main__":
    main()
