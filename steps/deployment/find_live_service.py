from __future__ import annotations

from typing import Annotated

from zenml import get_step_context, step
from zenml.client import Client

from tabular_mlops.adapters.deployment.model_deployer import serving_target
from tabular_mlops.core.config import ServingConfig


@step(enable_cache=False)  # services start and stop between runs
def find_live_service(serving: ServingConfig) -> Annotated[bool, "model_is_served"]:
    """Whether the run's model has a live service: only then is a new version redeployed."""
    model_name = get_step_context().model.name
    return serving_target(Client().active_stack, serving).live(model_name) is not None
