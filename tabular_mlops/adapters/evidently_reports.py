"""Evidently reports run by the stack's data validator, reduced to figures a gate can use.

The steps hand in the active stack's data validator (ZenML's Evidently flavor),
so the component the environment declares is the one that profiles the data.
What the dashboard shows is a static page of those figures: the open-source
dashboard runs HTML visualizations in a sandbox without scripts, where
Evidently's own pages stay blank, and rendering them costs most of a report's
time. Evidently's full snapshot is kept beside it; ``python run.py report``
turns it into the interactive page on demand.
"""

from __future__ import annotations

import html
import tempfile
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Literal, NamedTuple

import pandas as pd

from tabular_mlops.core.columns import column_kind
from tabular_mlops.core.drift import DriftSummary, summarize
from tabular_mlops.core.pages import distributions_svg, number, page, table

if TYPE_CHECKING:
    from zenml.data_validators import BaseDataValidator

#: what a report may run: drift (per column, against the reference), the dataset's summary
#: (rows, columns, missing values, constant, empty and duplicated columns and rows: what
#: the page shows), or Evidently's whole quality preset (a summary and charts per column
#: and the correlations on top: 1.3 CPU-s against 0.1 s for the 31 columns of the default
#: data, none of it read by a gate or the page)
Preset = Literal["DataDriftPreset", "DatasetSummaryMetric", "DataQualityPreset"]


class NoDataValidatorError(RuntimeError):
    """The active stack declares no data validator that can profile data."""


class DataReport(NamedTuple):
    summary: DriftSummary
    #: a static page of the summary: no scripts, readable in the dashboard's sandbox
    html: str
    #: Evidently's snapshot (JSON), from which its interactive page is rebuilt
    snapshot: str


def build_report(
    validator: BaseDataValidator | None,
    current: pd.DataFrame,
    reference: pd.DataFrame | None,
    title: str,
    artifact: str,
    presets: Sequence[Preset] = ("DataDriftPreset", "DatasetSummaryMetric"),
    target: str | None = None,
    prediction: str | None = None,
) -> DataReport:
    """Profile ``current`` (against ``reference`` when there is one) with the stack's validator.

    Without a reference (the first run of a project) only the presets that need
    none are run: drift has nothing to be measured against. ``artifact`` names the
    step output that keeps the snapshot, for the page's pointer to the full report.
    """
    if validator is None or validator.flavor != "evidently":
        raise NoDataValidatorError(
            "the active stack has no Evidently data validator; declare one under "
            "stack.components.data_validator (flavor: evidently) in configs/environments/"
        )
    if current.empty:  # Evidently fails on an empty column: say so instead
        return DataReport(
            DriftSummary(compared_with_reference=False, quality={"number_of_rows": 0}),
            page(
                title,
                f"<h3>{html.escape(title)}</h3><p>0 rows: every row was set aside before "
                "this report (the rejected rows and their reasons are beside the "
                "predictions), so there is nothing to compare.</p>",
            ),
            "",
        )
    from evidently.legacy.pipeline.column_mapping import ColumnMapping
    from zenml.integrations.evidently.metrics import EvidentlyMetricConfig

    if reference is None:
        presets = [p for p in presets if p != "DataDriftPreset"] or ["DatasetSummaryMetric"]
    else:  # columns only one side has are the schema check's business, not drift's
        shared = [c for c in reference.columns if c in current.columns]
        reference, current = reference[shared], current[shared]
    features = [c for c in current.columns if c not in (target, prediction)]
    mapping = ColumnMapping(
        target=target if target in current.columns else None,
        prediction=prediction if prediction in current.columns else None,
        numerical_features=[c for c in features if column_kind(current[c]) == "numeric"],
        categorical_features=[c for c in features if column_kind(current[c]) == "categorical"],
    )
    report = validator.data_profiling(
        # ZenML's argument order: ``dataset`` is Evidently's reference data.
        dataset=reference,
        comparison_dataset=current,
        profile_list=[EvidentlyMetricConfig.metric(preset) for preset in presets],
        column_mapping=mapping,
    )
    summary = summarize(report.as_dict(), compared_with_reference=reference is not None)
    with tempfile.TemporaryDirectory() as scratch:
        path = Path(scratch) / "snapshot.json"
        report.save(str(path))
        snapshot = path.read_text()
    return DataReport(summary, render_summary(summary, title, len(current), artifact), snapshot)


def interactive_html(snapshot: str) -> str:
    """Evidently's own page for a stored snapshot (scripts included: open it in a browser)."""
    from evidently.legacy.report import Report

    with tempfile.TemporaryDirectory() as scratch:
        path = Path(scratch) / "snapshot.json"
        path.write_text(snapshot)
        return str(Report.load(str(path)).get_html())


def render_summary(summary: DriftSummary, title: str, rows: int, artifact: str) -> str:
    """The summary as one static page that fits the dashboard's panel: the verdict, the
    quality figures, then per column its test, score, threshold, verdict and both
    distributions (drifted columns first, shaded)."""
    esc = html.escape
    if summary.compared_with_reference:
        verdict = (
            f"{len(summary.drifted_columns)} of {len(summary.columns)} columns drifted "
            f"({summary.drift_share:.0%}); dataset drift: "
            f"{'yes' if summary.dataset_drift else 'no'}"
        )
    else:
        verdict = (
            "no reference to compare with yet (no model version is in production): quality "
            "figures only. Once one is, the next run compares every column with that "
            "version's training data: per column the drift test, its score and threshold, "
            "the verdict and both distributions"
        )
    sections = [
        f"<h3>{esc(title)}</h3>",
        f"<p>{rows} rows. {esc(verdict)}. Full Evidently report: "
        f"<code>python run.py report {esc(artifact)}</code>.</p>",
    ]
    if summary.quality:
        sections.append(
            table(["quality", "value"],
                  [[n.replace("_", " "), number(v)] for n, v in summary.quality.items()])
        )  # fmt: skip
    ordered = sorted(summary.columns, key=lambda c: (not c.drifted, c.column))
    if ordered:
        header = ["column", "test", "score", "threshold", "verdict"]
        cells = [[c.column, c.test, number(c.score), number(c.threshold),
                  "drifted" if c.drifted else "ok"] for c in ordered]  # fmt: skip
        sections.append(table(header, cells, numeric_from=2, bad_rows=[c.drifted for c in ordered]))
        drawn = [
            f"<tr><td>{esc(c.column)}</td><td>"
            f"{distributions_svg(c.reference_distribution, c.current_distribution)}</td></tr>"
            for c in ordered
            if c.reference_distribution and c.current_distribution
        ]
        if drawn:
            sections.append(
                "<h3>Distributions: reference (grey), current (blue)</h3>"
                f"<table><tbody>{''.join(drawn)}</tbody></table>"
            )
    return page(title, "\n".join(sections))
