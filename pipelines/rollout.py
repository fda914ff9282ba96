from __future__ import annotations

from typing import Any, Literal

from pipelines import lifecycle_pipeline
from steps.rollout.apply_rollout_decision import apply_rollout_decision
from steps.rollout.decide_rollout import decide_rollout
from steps.rollout.gather_rollout_evidence import gather_rollout_evidence
from tabular_mlops.core.config import ServingConfig


@lifecycle_pipeline(name="rollout_pipeline")
def rollout_pipeline(
    model_name: str,
    serving: ServingConfig,
    by_hand: Literal["promote", "rollback"] | None = None,
    reason: str | None = None,
) -> Any:
    """gather both arms' evidence -> decide (or take the decision made by hand, and why)
    -> apply."""
    evidence = gather_rollout_evidence(model_name, serving)
    decision, _ = decide_rollout(evidence, serving, by_hand)
    return apply_rollout_decision(model_name, decision, serving, by_hand, reason)
