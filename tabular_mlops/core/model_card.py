"""The model card: one static page per model version, readable where ZenML Pro's Models tab is not.

The open-source dashboard has no model pages (its Models tab is a ZenML Pro
advert), so every training run writes this card as an artifact: what the
version is and where it stands, what both gates decided and on which figures,
and its lineage (the dataset artifacts and their content hashes, the
hyperparameters, the MLflow run and registry entry, the code commit). The page
has no scripts: the dashboard shows HTML visualizations in a sandboxed iframe.
"""

from __future__ import annotations

import html
from typing import Any

from pydantic import BaseModel

from tabular_mlops.core.gate import PromotionDecision, PromotionOutcome
from tabular_mlops.core.governance import GovernanceReport, importance_shift
from tabular_mlops.core.pages import badge, number, page, reliability_svg, table
from tabular_mlops.core.report import SliceMetrics


class DatasetLineage(BaseModel):
    """One dataset artifact the version was made from."""

    role: str
    artifact: str
    version: str
    artifact_id: str
    content_hash: str | None = None
    rows: int | None = None


class ModelCard(BaseModel):
    model_name: str
    model_version: str
    #: the version's stage when the card was written (None: no stage)
    stage: str | None
    outcome: PromotionOutcome
    decision: PromotionDecision
    estimator: str
    hyperparameters: dict[str, str]
    #: the data gate's figures: drift share, drifted columns, whether drift was accepted
    data_gate: dict[str, Any]
    datasets: list[DatasetLineage]
    code: dict[str, Any]
    #: run id, experiment id, model URI, registry version, tracking URI
    mlflow: dict[str, str]
    pipeline_run: str
    #: the evaluation's per-slice metrics (column, slices)
    slice_column: str | None = None
    slices: list[SliceMetrics] = []


def render_model_card(card: ModelCard) -> str:
    esc = html.escape
    decision, outcome = card.decision, card.outcome
    champion = decision.champion_metrics or {}
    metric_rows = [
        [
            name + (" (primary)" if name == decision.primary_metric else ""),
            number(value),
            number(champion.get(name)),
        ]
        for name, value in decision.candidate_metrics.items()
    ]
    against = (
        f"champion version {esc(decision.champion_version)}"
        if decision.champion_version
        else "no champion (first model)"
    )
    drift = card.data_gate
    if drift:
        drifted = ", ".join(drift.get("drifted_columns") or []) or "no column"
        accepted = "; drift accepted by the run" if drift.get("drift_accepted") else ""
        data_gate = (
            f"<p>Passed. Drift share {number(drift.get('drift_share'))} ({esc(drifted)} "
            f"drifted){accepted}.</p>"
        )
    else:
        data_gate = '<p class="muted">Passed; no drift figures (no reference: the first model).</p>'
    datasets = table(
        ["role", "artifact", "version", "rows", "content hash"],
        [
            [d.role, d.artifact, d.version, "n/a" if d.rows is None else str(d.rows),
             (d.content_hash or "n/a")[:16]]
            for d in card.datasets
        ],
        numeric_from=3,
    )  # fmt: skip
    dirty = " (with uncommitted changes)" if card.code.get("git_dirty") else ""
    verdict = badge("approved" if decision.approved else "rejected", decision.approved)
    sections = [
        f"<h2>{esc(card.model_name)} version {esc(card.model_version)}</h2>",
        f"<p>Stage: <b>{esc(card.stage or 'none')}</b> · {badge(str(outcome), outcome.promoted)}"
        f" · <code>{esc(card.estimator)}</code></p>",
        f"<h3>Model gate {verdict}</h3>",
        f"<p>Against {against}: {esc('; '.join(decision.reasons))}.</p>",
        table(["test metric", "this version", "champion, same rows"], metric_rows),
        *slice_sections(card.slice_column, card.slices),
        *(
            governance_sections(decision.governance, decision.champion_governance)
            if decision.governance
            else []
        ),
        "<h3>Data gate</h3>",
        data_gate,
        "<h3>Lineage</h3>",
        datasets,
        f"<p>Code: <code>{esc(str(card.code.get('git_commit', 'unknown')))}</code>{esc(dirty)}"
        f" · pipeline run <code>{esc(card.pipeline_run)}</code></p>",
        table(["MLflow", ""], [[k, v] for k, v in card.mlflow.items()], numeric_from=2),
        table(["hyperparameter", "value"], sorted([k, v] for k, v in card.hyperparameters.items())),
    ]
    return page(f"{card.model_name} version {card.model_version}", "\n".join(sections))


def governance_sections(
    candidate: GovernanceReport, champion: GovernanceReport | None = None
) -> list[str]:
    """The governance figures as page sections: decision rule and cost, fairness by group,
    calibration with its reliability diagram, robustness, importance (and what changed
    from the champion), and the scoring path's speed."""
    esc = html.escape
    sections = ["<h3>Decision rule and cost</h3>"]
    rule = (
        f"'{esc(candidate.positive_label)}' when its probability is at least "
        f"{candidate.decision_threshold:.3f} (tuned to the cost matrix)"
        if candidate.decision_threshold is not None and candidate.positive_label
        else "the most probable class"
    )
    cost = ""
    if candidate.cost_per_1000 is not None:
        theirs = champion.cost_per_1000 if champion else None
        cost = f" Expected cost per 1,000 predictions: {number(candidate.cost_per_1000)}" + (
            f" (champion, same rows: {number(theirs)})." if theirs is not None else "."
        )
    sections.append(f"<p>Answers {rule}.{cost}</p>")
    for result in candidate.fairness:
        gaps = (
            f"demographic-parity difference {number(result.demographic_parity_difference)}, "
            f"equalized-odds difference {number(result.equalized_odds_difference)}"
        )
        small = (
            "; groups under the minimum rows, not in the gaps: "
            + esc(", ".join(result.small_groups))
            if result.small_groups
            else ""
        )
        sections.append(f"<h3>Fairness by {esc(result.column)}</h3><p>{gaps}{small}</p>")
        sections.append(
            table(
                [
                    "group",
                    "rows",
                    "accuracy",
                    "selection rate",
                    "true positive rate",
                    "false positive rate",
                ],
                [
                    [
                        g.group,
                        str(g.rows),
                        number(g.accuracy),
                        number(g.selection_rate),
                        number(g.true_positive_rate),
                        number(g.false_positive_rate),
                    ]
                    for g in result.groups
                ],
            )
        )
    if candidate.calibration is not None:
        c = candidate.calibration
        sections.append(
            f"<h3>Calibration</h3><p>Brier score {number(c.brier_score)}, expected calibration "
            f"error {number(c.expected_calibration_error)}.</p>{reliability_svg(c.curve)}"
        )
    if candidate.robustness is not None:
        r = candidate.robustness
        sections.append(
            f"<h3>Robustness</h3><p>Noise of {r.noise_scale:g} std on the numeric features "
            f"flips {r.flip_share:.1%} of predictions"
            + (f" (e.g. rows {esc(str(r.flipped_rows))})" if r.flipped_rows else "")
            + ".</p>"
        )
        if r.directional:
            sections.append(
                table(
                    ["expectation", "worst move against it", "rows breaking it", "e.g. rows"],
                    [
                        [
                            f"+{d.step:g} {d.feature}: P({d.label}) {d.direction}",
                            number(d.worst_move),
                            str(d.violations),
                            str(d.example_rows),
                        ]
                        for d in r.directional
                    ],
                    bad_rows=[d.violations > 0 for d in r.directional],
                )
            )
    if candidate.importance:
        top = list(candidate.importance.items())[:10]
        sections.append("<h3>Feature importance (accuracy drop when shuffled)</h3>")
        sections.append(table(["feature", "importance"], [[n, number(v)] for n, v in top]))
        if champion is not None and champion.importance:
            shift = importance_shift(candidate.importance, champion.importance)
            sections.append("<p>Changed most since the champion:</p>")
            sections.append(
                table(["feature", "champion", "this version"],
                      [[n, number(a), number(b)] for n, a, b in shift])
            )  # fmt: skip
    if candidate.latency is not None:
        t = candidate.latency
        sections.append(
            f"<h3>Scoring speed</h3><p>{esc(t.scoring_path)}: one row p50 "
            f"{t.single_row_p50_ms:.3f} ms, p99 {t.single_row_p99_ms:.3f} ms; "
            f"{t.rows_per_second:,.0f} rows/s in a batch of {t.batch_rows:,}.</p>"
        )
    return sections


def slice_sections(column: str | None, slices: list[SliceMetrics]) -> list[str]:
    """Per-slice metrics as a heading and a table (``n/a`` where a metric is undefined)."""
    if not slices:
        return []
    names = sorted({name for s in slices for name in s.metrics})
    return [
        f"<h3>By {html.escape(str(column))}</h3>",
        table(
            ["slice", "rows", *names],
            [[s.value, str(s.rows), *(number(s.metrics.get(n)) for n in names)] for s in slices],
        ),
    ]
