"""``run.py report``: Evidently's interactive page for a stored report, as a file to open."""

from __future__ import annotations

import click

from cli.common import activate_stack, env_option, per_environment, zenml_client
from tabular_mlops.adapters.paths import LOCAL_DIR

#: the artifacts that hold an Evidently snapshot, and the step that writes each
REPORTS = {
    "data_report_evidently": "validate_data (training pipeline: the data gate)",
    "batch_drift_evidently": "report_batch_drift (batch inference)",
    "monitoring_evidently": "detect_drift (continuous training)",
}


@click.command()
@click.argument("artifact", type=click.Choice(sorted(REPORTS)), default="data_report_evidently")
@click.option("--version", "version", help="Artifact version (default: the latest).")
@env_option
def report(artifact: str, version: str | None, env: str = "dev") -> None:
    """Write Evidently's full interactive report for a stored run to an HTML file.

    The dashboard shows each report as a static summary (its sandbox runs no
    scripts); this rebuilds Evidently's own page from the snapshot kept beside it.
    """
    from tabular_mlops.adapters.evidently_reports import interactive_html

    activate_stack(env)  # the environment's store: staging's and prod's reports are theirs
    try:
        stored = zenml_client().get_artifact_version(artifact, version)
    except KeyError:
        raise click.ClickException(
            f"no artifact '{artifact}'{f' version {version}' if version else ''} yet: "
            f"it is written by {REPORTS[artifact]}"
        ) from None
    snapshot = stored.load()
    if not snapshot:
        raise click.ClickException(f"{artifact} version {stored.version} holds no report")
    path = per_environment(LOCAL_DIR / "reports", env) / f"{artifact}-{stored.version}.html"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(interactive_html(snapshot))
    click.echo(f"Evidently report ({artifact}, version {stored.version}): {path}")
