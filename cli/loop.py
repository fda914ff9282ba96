"""``run.py all``: train, deploy and score a batch in one process, as a first run would."""

from __future__ import annotations

from pathlib import Path

import click

from cli.common import config_option, env_option, overrides_option
from tabular_mlops.adapters.paths import CONFIG_DIR, LOCAL_DIR


@click.command("all")
@env_option
@config_option("training", help="The training config (e.g. the regression example's).")
@overrides_option
@click.option(
    "--input",
    "input_path",
    type=click.Path(dir_okay=False, path_type=Path),
    help="The batch to score (default: the production model's own test split).",
)
@click.option(
    "--stream",
    "with_stream",
    is_flag=True,
    help="Then replay the batch as events through the environment's local broker and score them.",
)
@click.option(
    "--export",
    "export_to",
    type=click.Path(file_okay=False, path_type=Path),
    help="Then write the model as ONNX for embedding into this folder.",
)
@click.pass_context
def all_stages(
    ctx: click.Context,
    env: str,
    config_path: Path,
    overrides: tuple[str, ...],
    input_path: Path | None,
    with_stream: bool = False,
    export_to: Path | None = None,
) -> None:
    """Train (gated), deploy the production model (a no-op when it is already served),
    then score a batch file with it: the whole lifecycle, in one process. The model the
    training config names (with --set flags) is the one deployed, scored, streamed and
    exported."""
    from cli.common import load_pipeline_config
    from cli.deploy import deploy
    from cli.infer import infer
    from cli.train import train
    from tabular_mlops.core.config import TrainingRunConfig

    name = load_pipeline_config(TrainingRunConfig, env, config_path, overrides).model.name
    model = (f"model.name={name}",)
    ctx.invoke(train, env=env, config_path=config_path, overrides=overrides)
    ctx.invoke(deploy, env=env, config_path=CONFIG_DIR / "deployment.yaml", overrides=model)
    batch = input_path or _test_split_batch(name)
    ctx.invoke(
        infer,
        env=env,
        config_path=CONFIG_DIR / "batch_inference.yaml",
        input_path=batch,
        # the model's own test rows are a demonstration, not traffic monitoring should see
        overrides=model + (() if input_path else ("parameters.batch.monitoring_sample_rows=0",)),
    )
    if with_stream:
        from cli.stream import stream

        streaming = {"env": env, "config_path": CONFIG_DIR / "streaming.yaml", "overrides": model}
        ctx.invoke(stream, **streaming, replay_path=batch)
        ctx.invoke(stream, **streaming, idle_exit=2.0)
    if export_to is not None:
        from cli.export import export

        try:
            ctx.invoke(
                export, env=env, config_path=CONFIG_DIR / "deployment.yaml", file_format="onnx",
                output=export_to, version=None, overrides=model,
            )  # fmt: skip
        except click.ClickException as exc:  # the loop itself went through
            click.echo(f"Not exported to ONNX: {exc.message}")


def _test_split_batch(name: str) -> Path:
    """The production model's test split, features only, as a Parquet batch file."""
    from zenml import Model
    from zenml.enums import ModelStages

    from tabular_mlops.adapters.champion import load_staged_model

    staged = load_staged_model(Model(name=name, version=ModelStages.PRODUCTION))
    path = LOCAL_DIR / "batches" / f"{name}-test-split.parquet"
    path.parent.mkdir(parents=True, exist_ok=True)
    staged.test_set[staged.features].to_parquet(path, index=False)
    return path
