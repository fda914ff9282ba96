from __future__ import annotations

import logging
from typing import Annotated

from zenml import step
from zenml.client import Client

from tabular_mlops.adapters.alerts import notify
from tabular_mlops.adapters.deployment.model_deployer import serving_target
from tabular_mlops.adapters.rollout_evidence import gather
from tabular_mlops.core.config import ServingConfig
from tabular_mlops.core.rollout import Evidence
from tabular_mlops.serving.inference_log import lost_lines

logger = logging.getLogger(__name__)


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
    evidence_dir = target.evidence_dir(model_name)
    lost = sum(
        lost_lines(directory, prefix, rollout.started_at)
        for directory, prefix in (
            (evidence_dir, "routing"),
            (evidence_dir, "feedback"),
            (target.inference_log_dir, "requests"),
        )
    )
    if lost:
        # the decision stands on what was kept (drops hit both arms alike), but not unseen
        message = (
            f"the evidence of rollout {rollout.experiment} lost {lost} line(s) since it began "
            f"(a full disk or a lost volume under {evidence_dir} or "
            f"{target.inference_log_dir}): it is decided on what was kept"
        )
        logger.warning(message)
        notify(Client().active_stack, message)
    return gather(rollout, evidence_dir, target.inference_log_dir, target.router_view(model_name))
