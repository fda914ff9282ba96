from __future__ import annotations

import html
from typing import Annotated, Literal

from zenml import step
from zenml.types import HTMLString

from tabular_mlops.core.config import ServingConfig
from tabular_mlops.core.pages import badge, number, page, table
from tabular_mlops.core.rollout import Evidence, RolloutDecision, decide


@step(enable_cache=False)
def decide_rollout(
    evidence: Evidence,
    serving: ServingConfig,
    by_hand: Literal["promote", "rollback"] | None = None,
) -> tuple[Annotated[RolloutDecision, "rollout_decision"], Annotated[HTMLString, "rollout_report"]]:
    """Promote, roll back or continue by the plan's rules (or as decided by hand), and the
    experiment's report: a static page the dashboard shows."""
    decision = decide(evidence, evidence.plan or serving.rollout)
    if by_hand is not None:
        decision = RolloutDecision(
            action=by_hand,
            reasons=[f"decided by hand (the rules said {decision.action}: "
                     f"{'; '.join(decision.reasons)})"],
            figures=decision.figures,
        )  # fmt: skip
    return decision, HTMLString(experiment_report(evidence, decision))


def experiment_report(evidence: Evidence, decision: RolloutDecision) -> str:
    """Both arms side by side, the decision and its figures, as a static page."""

    def ms(value: float | None) -> str:
        return "n/a" if value is None else f"{value:.1f} ms"

    a, b = evidence.champion, evidence.candidate
    arms = table(
        ["", f"champion v{a.version}", f"candidate v{b.version}"],
        [
            ["requests answered", str(a.requests), str(b.requests)],
            ["errors", f"{a.errors} ({a.error_rate:.2%})", f"{b.errors} ({b.error_rate:.2%})"],
            ["latency p50 / p99", f"{ms(a.p50_ms)} / {ms(a.p99_ms)}",
             f"{ms(b.p50_ms)} / {ms(b.p99_ms)}"],
            ["scoring CPU p99 (the guardrail's)", ms(a.scoring_cpu_p99_ms),
             ms(b.scoring_cpu_p99_ms)],
            ["labelled rows, correct", f"{a.labelled}, {a.correct}", f"{b.labelled}, {b.correct}"],
            ["rewards, sum", f"{a.rewarded}, {a.reward_sum:.1f}",
             f"{b.rewarded}, {b.reward_sum:.1f}"],
        ],
    )  # fmt: skip
    router = f"{evidence.router_state} {evidence.router_reason}".strip()
    sections = [
        f"<h2>Rollout ({html.escape(evidence.strategy)}): "
        f"{badge(decision.action, decision.action != 'rollback')}</h2>",
        "<ul>" + "".join(f"<li>{html.escape(r)}</li>" for r in decision.reasons) + "</ul>",
        arms,
        f"<p>Shadow: {evidence.agreed} of {evidence.compared} mirrored requests agreed. "
        f"Router: {html.escape(router)}</p>",
        "<h3>Figures</h3>",
        table(["figure", "value"], [[k, number(v)] for k, v in decision.figures.items()]),
    ]
    return page(f"Rollout: {decision.action}", "\n".join(sections))
