"""The lifecycle's pipelines; every one is declared with :func:`lifecycle_pipeline`."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from zenml import pipeline
from zenml.steps import BaseStep

from steps.alerts.failure_hook import alert_on_failure

RECORDED: dict[str, Any] = {"enable_artifact_metadata": True, "enable_artifact_visualization": True}


def lifecycle_pipeline(**options: Any) -> Callable[[Callable[..., Any]], Any]:
    """ZenML's ``@pipeline`` with what every pipeline here shares: failures reach the
    stack's alerter, and artifact metadata and visualizations are switched on by name.

    They are on by default, but the dashboard reads them from each *step's* settings
    and shows an unset one as "Artifact visualization: Disabled" (ZenML 0.98), which
    sends a person looking for a switch; so the steps the pipeline's module calls
    are configured too."""

    def declare(function: Callable[..., Any]) -> Any:
        for candidate in list(function.__globals__.values()):
            if isinstance(candidate, BaseStep):
                candidate.configure(**RECORDED)
        return pipeline(on_failure=alert_on_failure, **options)(function).configure(**RECORDED)

    return declare
