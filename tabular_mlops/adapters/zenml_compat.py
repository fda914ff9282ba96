"""The one place that reaches into ZenML's private modules.

Each function names what it needs and why; ``tests/unit/test_zenml_compat.py``
imports every symbol used here, so an upgrade that moves one fails by name.
"""

from __future__ import annotations


def dynamic_run_name() -> str | None:
    """The name of the dynamic pipeline run whose entrypoint is executing here, if any.

    In a dynamic run a step call runs the step at once and returns its outputs
    (not a future), so ordering by ``after=`` means nothing there; and a run's
    failure hook fires outside any step, where ``get_step_context()`` raises.
    ZenML 0.98 exposes neither fact publicly.
    """
    from zenml.execution.pipeline.dynamic.run_context import DynamicPipelineRunContext

    context = DynamicPipelineRunContext.get()
    return None if context is None else str(context.run.name)


def use_global_config(directory: str) -> bool:
    """Point this process's ZenML client at the global config in ``directory`` (its server
    URL, active project and stack); whether anything changed.

    ZenML keeps one global config per ``ZENML_CONFIG_PATH``, read once into process-wide
    singletons; an environment with a ZenML server of its own keeps its client state
    apart, so a dead staging server never stands between dev and dev's store. The
    singletons are dropped so that the next ``Client()`` reads the new place (ZenML
    0.98 offers no public way to switch a running process).
    """
    import os

    from zenml.client import Client
    from zenml.config.global_config import GlobalConfiguration
    from zenml.constants import ENV_ZENML_CONFIG_PATH

    if os.environ.get(ENV_ZENML_CONFIG_PATH) == directory:
        return False
    os.environ[ENV_ZENML_CONFIG_PATH] = directory
    GlobalConfiguration._reset_instance()
    Client._reset_instance()
    return True


def default_global_config() -> str:
    """ZenML's global config directory as this process was started with it."""
    from zenml.utils.io_utils import get_global_config_directory

    return get_global_config_directory()


def forget_cached_stacks() -> None:
    """Drop ZenML's process-wide cache of stack objects.

    ZenML 0.98 caches a ``Stack`` by the stack's id and update time; updating one of
    its *components* (a new tracking URI) leaves that time as it was, so the process
    kept using the old component configuration (seen: a reaper talking to the MLflow
    server of an earlier staging, dead, for minutes)."""
    from zenml.stack import stack

    stack._STACK_CACHE.clear()
