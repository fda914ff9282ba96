"""``run.py models``: the model's versions, stages, gate decisions and what is served.

The open-source ZenML dashboard has no model pages (its Models tab is a ZenML
Pro page), so this is where versions and stages are listed, beside each
training run's ``model_card`` artifact in the dashboard.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

import click

from cli.common import (
    activate_stack,
    config_option,
    env_option,
    load_pipeline_config,
    overrides_option,
)
from tabular_mlops.adapters.paths import LOCAL_DIR
from tabular_mlops.core.config import DeploymentRunConfig

if TYPE_CHECKING:
    from zenml.client import Client
    from zenml.enums import ModelStages


@click.command()
@env_option
@config_option("deployment")
@overrides_option
@click.option("--limit", default=20, show_default=True, help="Newest versions to list.")
@click.option(
    "--card",
    "card_path",
    type=click.Path(dir_okay=False, path_type=Path),
    is_flag=False,
    flag_value=LOCAL_DIR / "model_cards" / "model_card.html",
    help="Write the production version's model card "
    "(default .local/model_cards/model_card.html; --card PATH elsewhere).",
)
@click.option("--version", "card_version", help="With --card: this version instead.")
def models(
    env: str,
    config_path: Path,
    overrides: tuple[str, ...],
    limit: int,
    card_path: Path | None,
    card_version: str | None,
) -> None:
    """List the model's versions: stage, gate, primary metric, what is served, and where
    to look (MLflow run, the run whose model_card the dashboard shows)."""
    from zenml.client import Client
    from zenml.enums import ModelStages

    from cli.common import serving_target

    config = load_pipeline_config(DeploymentRunConfig, env, config_path, overrides)
    name = config.model.name
    activate_stack(env)
    client = Client()
    if card_path is not None:
        _write_card(client, name, card_version or ModelStages.PRODUCTION, card_path)
        return
    try:
        versions = client.list_model_versions(name, sort_by="desc:number", size=limit).items
    except KeyError:
        versions = []
    if not versions:
        raise click.ClickException(f"no versions of '{name}' yet: `python run.py train` makes one")
    live = serving_target(env, config, activate=False).live(name)
    served = live.model_version if live else None
    click.echo(f"Model '{name}' ({env}): {len(versions)} newest versions\n")
    click.echo(
        f"  {'version':<8}{'stage':<12}{'gate':<10}{'primary metric':<26}{'served':<8}created"
    )
    for version in versions:
        metadata: dict[str, Any] = dict(version.run_metadata)
        decision = metadata.get("candidate_vs_champion") or {}
        primary = decision.get("primary_metric")
        value = (decision.get("candidate_metrics") or {}).get(primary)
        metric = f"{primary}={value:.4f}" if primary and value is not None else "-"
        here = "yes" if str(version.number) == served else ""
        click.echo(
            f"  {version.number:<8}{version.stage or '-':<12}{metadata.get('gate', '-'):<10}"
            f"{metric:<26}{here:<8}{version.created:%Y-%m-%d %H:%M}"
        )
    click.echo(
        "\nIn the dashboard: each training run's DAG has a 'model_card' artifact (stage, gates,"
        "\nlineage). Write one to a file: python run.py models --card [--version N]"
    )
    if live is not None:
        click.echo(f"Served: version {served} at {live.url}")


def _write_card(client: Client, name: str, version: str | ModelStages, path: Path) -> None:
    try:
        model_version = client.get_model_version(name, version)
    except KeyError:
        raise click.ClickException(f"'{name}' has no version {version}") from None
    card = model_version.get_artifact("model_card")
    if card is None:
        raise click.ClickException(
            f"version {model_version.number} has no model card: it was trained before cards "
            "were written; `python run.py train --no-cache` makes a new version with one"
        )
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(str(card.load()))
    stage = model_version.stage or "no stage"
    click.echo(f"Model card of '{name}' version {model_version.number} ({stage}): {path}")
