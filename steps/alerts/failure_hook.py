from __future__ import annotations

from zenml import get_step_context
from zenml.client import Client

from tabular_mlops.adapters.alerts import notify


def alert_on_failure(exception: BaseException) -> None:
    """ZenML's failure hook: the failed step, its run and the first line of its error
    go to the stack's alerter."""
    context = get_step_context()
    reason = str(exception).splitlines()[0] if str(exception) else type(exception).__name__
    notify(
        Client().active_stack,
        f"run '{context.pipeline_run.name}' failed at step '{context.step_run.name}': "
        f"{type(exception).__name__}: {reason}",
    )
