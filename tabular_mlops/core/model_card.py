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
from tabular_mlops.core.pages import badge, number, page, table


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
