"""``run.py infer``: score a batch file with the staged model."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

import click

from cli.common import (
    activate_stack,
    config_option,
    env_option,
    finished_steps,
    load_pipeline_config,
    overrides_option,
    run_pipeline,
    staged_pipeline,
    staged_version,
    step_output,
)
from tabular_mlops.core.config import BatchRunConfig

if TYPE_CHECKING:
    from tabular_mlops.adapters.batch import BatchResult


@click.command()
@env_option
@config_option("batch_inference")
@click.option(
    "--input",
    "input_path",
    type=click.Path(dir_okay=False, path_type=Path),
    help="The batch: a .csv or .parquet file (overrides parameters.batch.input_path).",
)
@click.option(
    "--explain",
    is_flag=True,
    help="Write each row's explanation (and a binary classifier's reason codes) beside its "
    "answer (parameters.batch.explain).",
)
@overrides_option
def infer(
    env: str,
    config_path: Path,
    input_path: Path | None,
    explain: bool,
    overrides: tuple[str, ...],
) -> None:
    """Score a batch file with the model at the configured stage: schema gate, Evidently
    drift report, then chunked scoring to Parquet, with unusable rows written aside."""
    if input_path is not None:
        overrides = (*overrides, f"parameters.batch.input_path={input_path.resolve()}")
    if explain:
        overrides = (*overrides, "parameters.batch.explain=true")
    config = load_pipeline_config(BatchRunConfig, env, config_path, overrides)
    batch = config.parameters.batch
    if batch.input_path is None or not batch.input_path.is_file():
        raise click.ClickException(
            f"parameters.batch.input_path: {batch.input_path or 'not set'}: no such batch file"
        )
    if batch.input_path.stat().st_size == 0:
        raise click.ClickException(
            f"{batch.input_path}: the file is empty; give a CSV with a header row and rows, "
            "or a Parquet file"
        )
    activate_stack(env)
    staged_version(config)
    from pipelines.batch_inference import batch_inference_pipeline

    run = run_pipeline(
        "batch inference", staged_pipeline(batch_inference_pipeline, config), batch=batch
    )
    if run is None:
        return
    result = step_output(finished_steps(run), "score_batch", "batch_result")
    click.echo(
        f"\nBatch {result.batch_id}: {result.rows_scored} of {result.rows_read} rows scored "
        f"by version {result.model_version} in {result.seconds:.1f} s\n  {_predictions(result)}"
    )
    if result.rejected_path:
        click.echo(f"  {result.rows_rejected} rows rejected, with reasons: {result.rejected_path}")
    if result.unseen_categories:
        counts = ", ".join(f"{name}: {n}" for name, n in sorted(result.unseen_categories.items()))
        click.echo(
            f"  rows holding a category training never saw (scored as none of the known "
            f"ones; retrain on data that has it): {counts}"
        )


def _predictions(result: BatchResult) -> str:
    """Where the predictions are, or why there is no file of them."""
    if result.predictions_path:
        return f"predictions: {result.predictions_path}"
    if result.rows_read:
        return "no predictions file: every row was rejected"
    return "no predictions file: the file has no rows"
