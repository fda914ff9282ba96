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
from collections.abc import Callable, Sequence
from typing import Any

from pydantic import BaseModel

from tabular_mlops.core.baselines import lift
from tabular_mlops.core.config import DataSourceConfig, ModelCardConfig
from tabular_mlops.core.gate import PromotionDecision, PromotionOutcome
from tabular_mlops.core.governance import (
    DirectionalChange,
    DirectionalResult,
    GovernanceReport,
    importance_shift,
)
from tabular_mlops.core.pages import badge, number, page, reliability_svg, table
from tabular_mlops.core.report import BaselineScore, SliceMetrics


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
    #: intended and out-of-scope use, population, period, label meaning, limitations
    purpose: ModelCardConfig = ModelCardConfig()
    #: where the data came from, in words
    source: str = ""
    target: str = ""
    #: rows of each class in the test split
    label_counts: dict[str, int] = {}
    #: the trivial models the version had to beat, on its test rows
    baselines: list[BaselineScore] = []


def describe_source(data: DataSourceConfig) -> str:
    """Where the training data came from, in words."""
    where = (
        f"scikit-learn's bundled '{data.dataset}' dataset"
        if data.source == "sklearn"
        else f"the file {data.path}"
    )
    left = f"; columns left out: {', '.join(data.drop_columns)}" if data.drop_columns else ""
    kept = (
        f"; kept only to assess the model (never inputs): {', '.join(data.assessment_columns)}"
        if data.assessment_columns
        else ""
    )
    return f"{where}{left}{kept}"


def derived_limitations(card: ModelCard) -> list[str]:
    """Caveats the card can state from its own figures."""
    said = []
    test_rows = sum(card.label_counts.values())
    accuracy = card.decision.candidate_metrics.get("accuracy")
    if test_rows and accuracy is not None:
        margin = 1.96 * (accuracy * (1 - accuracy) / test_rows) ** 0.5
        said.append(
            f"Measured on {test_rows} held-out rows: test accuracy {accuracy:.3f} is known to "
            f"about ±{margin:.3f} (95% normal interval); smaller differences between versions "
            "are noise."
        )
    rare = [c for c, n in card.label_counts.items() if test_rows and n < 0.1 * test_rows]
    if rare:
        said.append(f"Rare classes in the test split ({', '.join(rare)}): their figures are noisy.")
    if card.data_gate.get("drift_accepted"):
        said.append(
            "Trained on data that drifted from the previous production model's, accepted by the "
            "run: the world it learned is not the one earlier versions saw."
        )
    said.append(
        "Valid for rows like its training data: numbers far outside the ranges it saw and "
        "categories it never saw are answered with less evidence behind them."
    )
    return said


def purpose_sections(card: ModelCard) -> list[str]:
    """Intended use, out-of-scope use, the data described, limitations."""
    esc = html.escape
    p = card.purpose
    unset = (
        '<span class="muted">not described (set parameters.card.{} in configs/training.yaml)</span>'
    )
    counts = ", ".join(f"{esc(c)} ({n} test rows)" for c, n in card.label_counts.items())
    rows = {d.role: d.rows for d in card.datasets}
    data_rows = [
        ["source", esc(card.source) or unset.format("source")],
        ["rows", ", ".join(f"{esc(r)}: {n}" for r, n in rows.items() if n is not None) or "n/a"],
        ["population", esc(p.population) or unset.format("population")],
        ["period", esc(p.period) or unset.format("period")],
        ["label", f"<code>{esc(card.target)}</code>: {counts}" if counts else esc(card.target)],
        ["label meaning", esc(p.label_meaning) or unset.format("label_meaning")],
    ]
    out_of_scope = "".join(f"<li>{esc(u)}</li>" for u in p.out_of_scope_use)
    limits = "".join(f"<li>{esc(x)}</li>" for x in [*p.limitations, *derived_limitations(card)])
    return [
        "<h3>Intended use</h3>",
        f"<p>{esc(p.intended_use)}</p>",
        "<h3>Out of scope</h3>",
        f"<ul>{out_of_scope}</ul>" if out_of_scope else "<p>Nothing stated.</p>",
        "<h3>Data</h3>",
        "<table><tbody>"
        + "".join(f"<tr><th>{k}</th><td>{v}</td></tr>" for k, v in data_rows)
        + "</tbody></table>",
        "<h3>Limitations and caveats</h3>",
        f"<ul>{limits}</ul>",
    ]


def fairness_not_assessed(governance: GovernanceReport | None) -> list[str]:
    """The explicit statement a card makes when no group was compared."""
    if governance is not None and (governance.fairness or governance.error_gaps):
        return []
    return [
        "<h3>Fairness</h3>",
        "<p><b>Not assessed</b>: no sensitive column is configured "
        "(<code>parameters.evaluation.fairness.sensitive_columns</code>), so no group's "
        "accuracy or selection rate was compared with another's.</p>",
    ]


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
        *purpose_sections(card),
        f"<h3>Model gate {verdict}</h3>",
        f"<p>Against {against}: {esc('; '.join(decision.reasons))}.</p>",
        table(["test metric", "this version", "champion, same rows"], metric_rows),
        *baseline_sections(card.baselines, decision.candidate_metrics, decision.primary_metric),
        *slice_sections(card.slice_column, card.slices),
        *(
            governance_sections(decision.governance, decision.champion_governance)
            if decision.governance
            else []
        ),
        *fairness_not_assessed(decision.governance),
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
    if candidate.task == "regression":
        return [*regression_sections(candidate, champion), *_shared_sections(candidate, champion)]
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
            sections.append(directional_table(r.directional, lambda d: f"P({d.label})"))
    return sections + _shared_sections(candidate, champion)


def regression_sections(
    candidate: GovernanceReport, champion: GovernanceReport | None = None
) -> list[str]:
    """A regressor's answer (value, interval, decision) and cost, MAE by group, and how far
    noise and declared steps move its predictions."""
    esc = html.escape
    sections = ["<h3>Answer, interval and cost</h3>"]
    said = "Answers the predicted value"
    if candidate.interval is not None:
        i = candidate.interval
        said += (
            f" with a {i.level:.0%} prediction interval of ±{number(i.half_width)} (split-"
            f"conformal, from the training split's out-of-fold errors); on the test split it "
            f"held {i.coverage:.1%} of the true values"
        )
    if candidate.decision_quantile is not None:
        said += (
            f". The decision is the {candidate.decision_quantile:.0%} quantile of the "
            f"predictive distribution (the prediction {candidate.decision_offset or 0:+.4g}; "
            "under / (under + over) of the unit costs)"
        )
    if candidate.cost_per_1000 is not None:
        theirs = champion.cost_per_1000 if champion else None
        said += f". Expected cost per 1,000 decisions: {number(candidate.cost_per_1000)}" + (
            f" (champion, same rows: {number(theirs)})" if theirs is not None else ""
        )
    sections.append(f"<p>{said}.</p>")
    if candidate.cost_per_1000 is not None and candidate.baseline_cost_per_1000 is not None:
        saved = candidate.baseline_cost_per_1000 - candidate.cost_per_1000
        sections.append(
            "<p><b>What it is worth</b>: without a model, deciding the same cost-optimal "
            "quantity every time (that quantile of the training targets) costs "
            f"{number(candidate.baseline_cost_per_1000)} per 1,000 decisions on the same test "
            f"rows; the model's decisions save {number(saved)} per 1,000 "
            f"({saved / candidate.baseline_cost_per_1000:.0%}), under the unit costs the "
            "gate was given. The return on the model is that saving times the decisions "
            "made, less what building and running it costs.</p>"
            if candidate.baseline_cost_per_1000
            else ""
        )
    for gaps in candidate.error_gaps:
        small = (
            "; groups under the minimum rows, not in the gaps: " + esc(", ".join(gaps.small_groups))
            if gaps.small_groups
            else ""
        )
        sections.append(
            f"<h3>Errors by {esc(gaps.column)}</h3><p>largest MAE over smallest "
            f"{number(gaps.ratio)}, difference {number(gaps.difference)}{small}</p>"
        )
        sections.append(
            table(
                ["group", "rows", "MAE"],
                [[g.group, str(g.rows), number(g.mae)] for g in gaps.groups],
            )
        )
    if candidate.prediction_change is not None:
        r = candidate.prediction_change
        sections.append(
            f"<h3>Robustness</h3><p>Noise of {r.noise_scale:g} std on the numeric features "
            f"moves predictions by {r.mean_change:.3f} of their std on average.</p>"
        )
        if r.directional:
            sections.append(directional_table(r.directional, lambda d: "prediction"))
    return sections


def directional_table(
    results: Sequence[DirectionalResult | DirectionalChange],
    moved: Callable[[Any], str],
) -> str:
    """The declared directional expectations and how far the model moved against each
    (``moved``: what moves, P(label) or the prediction); broken ones shaded."""
    return table(
        ["expectation", "worst move against it", "rows breaking it", "e.g. rows"],
        [[f"+{d.step:g} {d.feature}: {moved(d)} {d.direction}", number(d.worst_move),
          str(d.violations), str(d.example_rows)] for d in results],
        bad_rows=[d.violations > 0 for d in results],
    )  # fmt: skip


def _shared_sections(
    candidate: GovernanceReport, champion: GovernanceReport | None = None
) -> list[str]:
    """Importance (and what changed from the champion) and the scoring path's speed."""
    esc = html.escape
    sections = []
    if candidate.importance:
        top = list(candidate.importance.items())[:10]
        drop = "MAE rise" if candidate.task == "regression" else "accuracy drop"
        sections.append(f"<h3>Feature importance ({drop} when shuffled)</h3>")
        sections.append(table(["feature", "importance"], [[n, number(v)] for n, v in top]))
        if champion is not None and champion.importance:
            shift = importance_shift(candidate.importance, champion.importance)
            sections.append("<p>Changed most since the champion:</p>")
            sections.append(
                table(["feature", "champion", "this version"],
                      [[n, number(a), number(b)] for n, a, b in shift])
            )  # fmt: skip
    sections += example_sections(candidate)
    if candidate.latency is not None:
        t = candidate.latency
        sections.append(
            f"<h3>Scoring speed</h3><p>{esc(t.scoring_path)}: one row p50 "
            f"{t.single_row_p50_ms:.3f} ms, p99 {t.single_row_p99_ms:.3f} ms; "
            f"{t.rows_per_second:,.0f} rows/s in a batch of {t.batch_rows:,}.</p>"
        )
    return sections


def example_sections(governance: GovernanceReport) -> list[str]:
    """A few test rows explained: base, the largest contributions, the rest, and the
    reason codes (``core/explain.py``); or why the model has no explanation."""
    esc = html.escape
    if governance.not_explained:
        return ["<h3>Explained examples</h3>",
                f'<p class="muted">None: {esc(governance.not_explained)}.</p>']  # fmt: skip
    if not governance.explained_examples:
        return []
    sections = ["<h3>Explained examples</h3>",
                f"<p>Why three test rows got their answers, in "
                f"{esc(governance.explained_examples[0]['unit'])}: the base (the training "
                "average) plus each feature's contribution is the model's output.</p>"]  # fmt: skip
    for example in governance.explained_examples:
        rows = [["base", number(example["base"])]]
        rows += [[c["feature"], f"{c['contribution']:+.4g}"] for c in example["contributions"]]
        rows.append(["other features", f"{example['rest']:+.4g}"])
        codes = f"; reasons {', '.join(example['reasons'])}" if example.get("reasons") else ""
        sections.append(
            f"<p>Test row {example['row']}: <b>{esc(str(example['answer']))}</b>{esc(codes)}</p>"
        )
        sections.append(table(["", "contribution"], rows))
    return sections


def baseline_sections(
    baselines: list[BaselineScore], metrics: dict[str, float], primary: str
) -> list[str]:
    """Is ML worth it? The model beside each trivial baseline on the same test rows: the
    primary metric and the lift (positive: the model is better)."""
    if not baselines:
        return []
    ours = metrics.get(primary)
    rows = [["this model", "", number(ours), ""]]
    for baseline in baselines:
        theirs = baseline.metrics.get(primary)
        gained = lift(ours, theirs, primary) if ours is not None and theirs is not None else None
        rows.append([baseline.name, baseline.description, number(theirs), number(gained)])
    return [
        "<h3>Against trivial baselines</h3>",
        table(
            ["model", "what it does", f"{primary}, same test rows", "lift"], rows, numeric_from=2
        ),
    ]


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
