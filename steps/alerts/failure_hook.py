from __future__ import annotations

from zenml import get_step_context
from zenml.client import Client

from tabular_mlops.adapters.alerts import notify
from tabular_mlops.adapters.compat import dynamic_run_name


def alert_on_failure(exception: BaseException) -> None:
    """ZenML's failure hook: the failed step (or, for a dynamic run, which ZenML calls
    outside any step, the run), and the first line of its error go to the stack's
    alerter."""
    reason = str(exception).splitlines()[0] if str(exception) else type(exception).__name__
    try:
        context = get_step_context()
        where = f"run '{context.pipeline_run.name}' failed at step '{context.step_run.name}'"
    except RuntimeError:  # a run-level hook: no step context
        where = f"run '{dynamic_run_name() or 'unknown'}' failed"
    notify(Client().active_stack, f"{where}: {type(exception).__name__}: {reason}")
