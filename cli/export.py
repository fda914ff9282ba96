"""``run.py export``: the production model as files another program embeds."""

from __future__ import annotations

from pathlib import Path

import click

from cli.common import (
    activate_stack,
    config_option,
    env_option,
    load_pipeline_config,
    overrides_option,
    per_environment,
)
from tabular_mlops.adapters.paths import LOCAL_DIR
from tabular_mlops.core.config import DeploymentRunConfig


@click.command()
@env_option
@config_option("deployment")
@click.option("--format", "file_format", type=click.Choice(["onnx"]), default="onnx",
              show_default=True, help="What to export to.")  # fmt: skip
@click.option("--output", type=click.Path(file_okay=False, path_type=Path),
              default=None, show_default=".local/embedded (another environment's: "
              ".local/embedded/ENV; another model's: .../models/MODEL)",
              help="Folder for model.onnx and manifest.json.")  # fmt: skip
@click.option("--version", help="This model version instead of the one at the stage.")
@overrides_option
def export(
    env: str,
    config_path: Path,
    file_format: str,
    output: Path | None,
    version: str | None,
    overrides: tuple[str, ...],
) -> None:
    """Write the model at the configured stage as model.onnx and manifest.json (model
    version, feature order, classes, decision rule, checksum) for embedding: the
    version's `onnx_model` artifact from its deployment, or exported now, checked the
    same way (identical labels, probabilities within 1e-5 of the pipeline on its test
    split). Score it with `python -m embedded FOLDER rows.csv`."""
    from zenml.client import Client
    from zenml.enums import ModelStages

    from tabular_mlops.adapters.champion import load_version
    from tabular_mlops.adapters.onnx_export import OnnxExportError, export_onnx, write

    config = load_pipeline_config(DeploymentRunConfig, env, config_path, overrides)
    activate_stack(env)
    name = config.model.name
    if output is None:  # dev's export never overwrites staging's, nor the other way round
        output = per_environment(LOCAL_DIR / "embedded", env)
        from cli.deploy import default_model_name

        if name != default_model_name(env, config_path):  # nor another model's
            output = output / "models" / name  # (not output / name: a model named `staging`)
    if version is not None:  # as a rollback: a version the gate passed once, never one it refused
        from cli.deploy import check_was_promoted

        check_was_promoted(name, version)
    try:
        found = Client().get_model_version(name, version or ModelStages(config.stage))
    except KeyError:
        raise click.ClickException(
            f"model '{name}' has no version {version or f'at {config.stage}'}; train one "
            "with `python run.py train`"
        ) from None
    artifact = found.get_artifact("onnx_model")
    if artifact is not None:
        exported, origin = artifact.load(), f"the `onnx_model` artifact of version {found.number}"
    else:
        try:
            staged = load_version(found.id)
            exported = export_onnx(staged.model, staged.spec, staged.test_set[staged.features])
        except (LookupError, OnnxExportError) as exc:
            raise click.ClickException(str(exc)) from None
        origin = f"version {found.number}, exported now"
    if exported.skipped:
        raise click.ClickException(
            f"model '{name}' version {found.number} has no ONNX export: {exported.skipped}. "
            "Its services, batch scoring and stream score it with its scikit-learn pipeline; "
            "to embed a model, train one the check accepts (a linear model, or a tree "
            "ensemble whose labels ONNX reproduces)"
        )
    onnx_path, manifest_path = write(exported, output)
    check = exported.manifest["check"]
    agreement = (
        f"values within {check['max_relative_value_difference']:.1e} of their size"
        if "max_relative_value_difference" in check
        else f"labels identical, probabilities within {check['max_probability_difference']:.1e}"
    )
    click.echo(
        f"Exported model '{name}' {origin} ({file_format}):\n"
        f"  {onnx_path} ({exported.manifest['bytes']:,} bytes, sha256 "
        f"{exported.manifest['sha256'][:12]}…)\n  {manifest_path}\n"
        f"  checked on {check['rows']} test rows: {agreement}\n"
        f"Score rows with it: python -m embedded {output} rows.csv"
    )
