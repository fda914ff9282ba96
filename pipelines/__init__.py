"""The lifecycle's pipelines; every one is declared with :func:`lifecycle_pipeline`."""

from __future__ import annotations

import functools
import hashlib
from collections.abc import Callable
from pathlib import Path
from typing import Any

from zenml import pipeline
from zenml.config.cache_policy import CachePolicy
from zenml.steps import BaseStep
from zenml.utils import source_utils

from steps.alerts.failure_hook import alert_on_failure

#: the package whose code every step's output depends on beside the step's own
PACKAGE = Path(__file__).resolve().parents[1] / "tabular_mlops"


def package_code_version() -> str:
    """A hash of every module of ``tabular_mlops``: part of each step's cache key, so a
    changed training function (a new attribute on the fitted model, a new check) is
    never answered from a step run with the old one. ZenML's default key holds the
    step's own source only, not the functions it calls."""
    return _package_hash()


@functools.cache
def _package_hash() -> str:
    digest = hashlib.sha256()
    for path in sorted(PACKAGE.rglob("*.py")):
        digest.update(path.relative_to(PACKAGE).as_posix().encode())
        digest.update(path.read_bytes())
    return digest.hexdigest()


RECORDED: dict[str, Any] = {
    "enable_artifact_metadata": True,
    "enable_artifact_visualization": True,
    "cache_policy": CachePolicy(cache_func=source_utils.resolve(package_code_version)),
}


def lifecycle_pipeline(**options: Any) -> Callable[[Callable[..., Any]], Any]:
    """ZenML's ``@pipeline`` with what every pipeline here shares: failures reach the
    stack's alerter, and artifact metadata and visualizations are switched on by name.

    They are on by default, but the dashboard reads them from each *step's* settings
    and shows an unset one as "Artifact visualization: Disabled" (ZenML 0.98), which
    sends a person looking for a switch; so the steps the pipeline's module calls
    are configured too. Each step's cache key holds the package's code version
    (:func:`package_code_version`) too."""

    def declare(function: Callable[..., Any]) -> Any:
        for candidate in list(function.__globals__.values()):
            if isinstance(candidate, BaseStep):
                candidate.configure(**RECORDED)
        return pipeline(on_failure=alert_on_failure, **options)(function).configure(**RECORDED)

    return declare
