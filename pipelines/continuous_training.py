from __future__ import annotations

import contextlib
from collections.abc import Iterator
from typing import Any

from zenml import Model
from zenml.steps import BaseStep

from pipelines import deployment, lifecycle_pipeline, training
from pipelines.deployment import redeployment_pipeline
from pipelines.training import retraining_pipeline
from steps.deployment.find_live_service import find_live_service
from steps.monitoring.chart_monitoring_trend import chart_monitoring_trend
from steps.monitoring.collect_predictions import collect_predictions
from steps.monitoring.detect_drift import detect_drift
from tabular_mlops.adapters.compat import step_options_for_a_while
from tabular_mlops.core.audit import retraining_note
from tabular_mlops.core.config import MonitoringConfig, RetrainingPlan


@lifecycle_pipeline(dynamic=True, enable_cache=False)
def continuous_training_pipeline(monitoring: MonitoringConfig, plan: RetrainingPlan) -> None:
    """monitor -> decide (and chart the trend) -> retrain -> gate -> promote -> redeploy.

    Each stage runs only when the one before says so: a retraining is a child
    run of the training pipeline, whose gates decide what is promoted; only a
    promoted model is redeployed, and only where a service of it is live.
    """
    with configured_steps(plan.step_options):
        current = collect_predictions(monitoring)
        decision, _, _ = detect_drift(current, monitoring)
        chart_monitoring_trend(decision)
        if not plan.enabled or decision.load().action != "retrain":
            return
        # a child run: its outputs, not a run record (ZenML's annotation says the latter)
        promotion: Any = retraining_pipeline.with_options(
            model=Model(**plan.model.model_dump()), settings=plan.training_settings
        )(**dict(plan.parameters))
        outcome = promotion.load()
        if not plan.redeploy or not outcome.promoted:
            return
        if find_live_service(plan.serving).load():
            redeployment_pipeline.with_options(
                model=Model(name=plan.model.name, version=plan.stage),
                settings=plan.deployment_settings,
            )(serving=plan.serving,
              note=retraining_note(outcome.stage, plan.serving.rollout.strategy))  # fmt: skip


@contextlib.contextmanager
def configured_steps(step_options: dict[str, dict[str, Any]]) -> Iterator[None]:
    """Apply the configs' per-step settings (e.g. prod's pod volumes and resources) for
    this run only.

    ZenML 0.98 ignores a run config's ``steps:`` in dynamic pipelines ("cannot be
    applied to any pipeline step invocations"), so the step objects that this run
    and its child runs invoke are configured directly. ZenML keeps what a dynamic
    run configures on the step object and merges it into every later compile of
    that step in the process, so it is put back when the run ends.
    """
    known = {
        candidate.name: candidate
        for module in (training, deployment)
        for candidate in vars(module).values()
        if isinstance(candidate, BaseStep)
    }
    known.update(
        {
            s.name: s
            for s in (collect_predictions, detect_drift, chart_monitoring_trend, find_live_service)
        }
    )
    unknown = sorted(set(step_options) - set(known))
    if unknown:
        raise ValueError(
            f"steps.{unknown[0]}: no step of that name in the loop; known: {sorted(known)}"
        )
    with contextlib.ExitStack() as configured:
        for name, options in step_options.items():
            configured.enter_context(step_options_for_a_while(known[name], options))
        yield
