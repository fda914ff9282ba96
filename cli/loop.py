"""``run.py all``: train, deploy and score a batch in one process, as a first run would."""

from __future__ import annotations

from pathlib import Path

import click

from cli.common import env_option
from tabular_mlops.adapters.paths import CONFIG_DIR, LOCAL_DIR


@click.command("all")
@env_option
@click.option(
    "--input",
    "input_path",
    type=click.Path(dir_okay=False, path_type=Path),
    help="The batch to score (default: the production model's own test split).",
)
@click.pass_context
def all_stages(ctx: click.Context, env: str, input_path: Path | None) -> None:
    """Train (gated), deploy the production model (a no-op when it is already served),
    then score a batch file with it: the whole lifecycle, in one process."""
    from cli.deploy import deploy
    from cli.infer import infer
    from cli.train import train

    ctx.invoke(train, env=env, config_path=CONFIG_DIR / "training.yaml", overrides=())
    ctx.invoke(deploy, env=env, config_path=CONFIG_DIR / "deployment.yaml", overrides=())
    ctx.invoke(
        infer,
        env=env,
        config_path=CONFIG_DIR / "batch_inference.yaml",
        input_path=input_path or _test_split_batch(env),
        # the model's own test rows are a demonstration, not traffic monitoring should see
        overrides=() if input_path else ("parameters.batch.monitoring_sample_rows=0",),
    )


def _test_split_batch(env: str) -> Path:
    """The production model's test split, features only, as a Parquet batch file."""
    from zenml import Model
    from zenml.enums import ModelStages

    from cli.common import load_pipeline_config
    from tabular_mlops.adapters.champion import load_staged_model
    from tabular_mlops.core.config import TrainingRunConfig

    name = load_pipeline_config(TrainingRunConfig, env, CONFIG_DIR / "training.yaml").model.name
    staged = load_staged_model(Model(name=name, version=ModelStages.PRODUCTION))
    path = LOCAL_DIR / "batches" / f"{name}-test-split.parquet"
    path.parent.mkdir(parents=True, exist_ok=True)
    staged.test_set[staged.features].to_parquet(path, index=False)
    return path
