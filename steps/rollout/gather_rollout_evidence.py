from __future__ import annotations

from typing import Annotated

from zenml import step
from zenml.client import Client

from tabular_mlops.adapters.deployment.model_deployer import serving_target
from tabular_mlops.adapters.rollout_evidence import gather
from tabular_mlops.core.config import ServingConfig
from tabular_mlops.core.rollout import Evidence


# Never cached: the evidence grows with every request.
@step(enable_cache=False)
def gather_rollout_evidence(
    model_name: str, serving: ServingConfig
) -> Annotated[Evidence, "rollout_evidence"]:
    """Both arms' answers, errors, latencies, agreement and feedback since the rollout began,
    from the router's logs, the services' inference logs and the router itself."""
    target = serving_target(Client().active_stack, serving)
    rollout = target.rollout(model_name)
    if rollout is None:
        raise LookupError(f"no rollout of '{model_name}' is in progress: deploy with --strategy")
    return gather(
        rollout,
        target.evidence_dir(model_name),
        target.inference_log_dir,
        target.router_view(model_name),
    )
