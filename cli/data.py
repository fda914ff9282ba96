"""``run.py demand-data``: the regression example's data as a CSV file to open."""

from __future__ import annotations

from pathlib import Path

import click

from tabular_mlops.adapters.paths import LOCAL_DIR


@click.command("demand-data")
@click.option(
    "--output",
    type=click.Path(dir_okay=False, path_type=Path),
    default=LOCAL_DIR / "data" / "demand.csv",
    show_default=".local/data/demand.csv",
    help="The CSV file to write.",
)
def demand_data(output: Path) -> None:
    """Write the seeded demand data (tabular_mlops/core/demand.py: daily units sold per
    store and product over two years) to a CSV: the rows the regression example trains
    on with `dataset: demand`, the same on every machine. Train on the file itself with
    --set parameters.data.source=file --set parameters.data.path=FILE."""
    from tabular_mlops.core.demand import demand_frame

    frame = demand_frame()
    output.parent.mkdir(parents=True, exist_ok=True)
    frame.to_csv(output, index=False)
    click.echo(f"Wrote {len(frame):,} rows ({', '.join(frame.columns)}) to {output}")
