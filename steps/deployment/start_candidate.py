from __future__ import annotations

from typing import Annotated

from zenml import step
from zenml.client import Client

from tabular_mlops.adapters.deployment.model_deployer import serving_target
from tabular_mlops.adapters.deployment.target import BentoPackage, RunningService
from tabular_mlops.core.config import ServingConfig


@step(enable_cache=False)
def start_candidate(
    package: BentoPackage, serving: ServingConfig
) -> Annotated[RunningService, "candidate_service"]:
    """Start the new bento beside the live service: a process on a port of its own
    (dev, staging) or a Deployment of its own (prod), as the stack decides."""
    return serving_target(Client().active_stack, serving).start(package)
