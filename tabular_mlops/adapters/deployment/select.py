"""The serving target is chosen by the active stack, never by the pipeline's code."""

from __future__ import annotations

from typing import TYPE_CHECKING

from tabular_mlops.adapters.deployment.kubernetes import KubernetesTarget
from tabular_mlops.adapters.deployment.local import LocalProcessTarget
from tabular_mlops.adapters.deployment.target import ServingTarget, UnsupportedStackError
from tabular_mlops.core.config import ServingConfig

if TYPE_CHECKING:
    from zenml.stack import Stack


def target_for(stack: Stack, serving: ServingConfig) -> ServingTarget:
    """A ``kubernetes`` deployer serves containers on its cluster; a stack without a
    deployer serves ``bentoml serve`` processes on this machine.

    ZenML's own BentoML model deployer is not used: with bentoml 1.4 its local
    daemon dies on start (``'Service' object has no attribute 'runners'``).
    """
    deployer = stack.deployer
    if deployer is None:
        return LocalProcessTarget(serving)
    if deployer.flavor == "kubernetes":
        return KubernetesTarget.from_stack(stack, serving)
    raise UnsupportedStackError(
        f"the '{stack.name}' stack's deployer has flavor '{deployer.flavor}'; this project "
        "serves containers through a 'kubernetes' deployer, or local processes when the "
        "stack declares no deployer (see configs/environments/)"
    )
