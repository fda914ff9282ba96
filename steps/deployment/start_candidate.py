from __future__ import annotations

from typing import Annotated

from zenml import step
from zenml.client import Client

from configs.schema import ServingConfig
from steps.deployment.serving_target import BentoPackage, RunningService, target_for


@step(enable_cache=False)
def start_candidate(
    package: BentoPackage, serving: ServingConfig
) -> Annotated[RunningService, "candidate_service"]:
    """Start the new bento beside the live service: a process on a port of its own
    (dev, staging) or a Deployment of its own (prod), as the stack decides."""
    return target_for(Client().active_stack, serving).start(package)
