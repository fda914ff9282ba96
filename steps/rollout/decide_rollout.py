from __future__ import annotations

import html
from typing import Annotated, Literal

from zenml import step
from zenml.types import HTMLString

from tabular_mlops.core.config import ServingConfig
from tabular_mlops.core.rollout import Evidence, RolloutDecision, decide


@step(enable_cache=False)
def decide_rollout(
    evidence: Evidence,
    serving: ServingConfig,
    by_hand: Literal["promote", "rollback"] | None = None,
) -> tuple[Annotated[RolloutDecision, "rollout_decision"], Annotated[HTMLString, "rollout_report"]]:
    """Promote, roll back or continue by the plan's rules (or as decided by hand), and the
    experiment's report: a static page the dashboard shows."""
    decision = decide(evidence, serving.rollout)
    if by_hand is not None:
        decision = RolloutDecision(
            action=by_hand,
            reasons=[f"decided by hand (the rules said {decision.action}: "
                     f"{'; '.join(decision.reasons)})"],
            figures=decision.figures,
        )  # fmt: skip
    return decision, HTMLString(experiment_report(evidence, decision))


def experiment_report(evidence: Evidence, decision: RolloutDecision) -> str:
    """Both arms side by side, the decision and its figures, as static HTML."""

    def row(label: str, champion: object, candidate: object) -> str:
        return f"<tr><th>{label}</th><td>{champion}</td><td>{candidate}</td></tr>"

    def ms(value: float | None) -> str:
        return "-" if value is None else f"{value:.1f} ms"

    a, b = evidence.champion, evidence.candidate
    rows = [
        row("requests answered", a.requests, b.requests),
        row("errors", f"{a.errors} ({a.error_rate:.2%})", f"{b.errors} ({b.error_rate:.2%})"),
        row("latency p50 / p99", f"{ms(a.p50_ms)} / {ms(a.p99_ms)}", f"{ms(b.p50_ms)} / {ms(b.p99_ms)}"),  # noqa: E501
        row("labelled rows, correct", f"{a.labelled}, {a.correct}", f"{b.labelled}, {b.correct}"),
        row("rewards, sum", f"{a.rewarded}, {a.reward_sum:.1f}", f"{b.rewarded}, {b.reward_sum:.1f}"),  # noqa: E501
    ]  # fmt: skip
    figures = "".join(
        f"<tr><th>{html.escape(k)}</th><td>{v:.4g}</td></tr>" for k, v in decision.figures.items()
    )
    reasons = "".join(f"<li>{html.escape(r)}</li>" for r in decision.reasons)
    colour = {"promote": "#1b7f3b", "rollback": "#b42318", "continue": "#555"}[decision.action]
    table = '<table border="1" cellpadding="6" style="border-collapse: collapse">'
    heading = (
        f"<h2>Rollout ({html.escape(evidence.strategy)}): "
        f'<span style="color:{colour}">{decision.action}</span></h2>'
    )
    arms = f"<tr><th></th><th>champion v{a.version}</th><th>candidate v{b.version}</th></tr>"
    router = f"{evidence.router_state} {evidence.router_reason}".strip()
    return "\n".join(
        [
            '<html><body style="font-family: sans-serif; max-width: 52em">',
            heading,
            f"<ul>{reasons}</ul>",
            f"{table}{arms}{''.join(rows)}</table>",
            f"<p>Shadow: {evidence.agreed} of {evidence.compared} mirrored requests agreed. "
            f"Router: {html.escape(router)}</p>",
            f"<h3>Figures</h3>{table}{figures}</table>",
            "</body></html>",
        ]
    )
