from __future__ import annotations

from typing import Annotated

from zenml import get_step_context, step
from zenml.client import Client

from configs.schema import ServingConfig
from service.spec import ServingSettings
from steps.deployment.local_server import RunningService, start

SUPPORTED_DEPLOYERS = ("bentoml",)


@step(enable_cache=False)
def start_candidate(
    bento_tag: str, settings: ServingSettings, serving: ServingConfig
) -> Annotated[RunningService, "candidate_service"]:
    """Start the new bento beside the live service, on a port of its own."""
    stack = Client().active_stack
    if stack.deployer is not None and stack.deployer.flavor != "local":
        # Refuse rather than start a process on whatever machine runs this step.
        raise NotImplementedError(
            f"the '{stack.name}' stack serves through its {stack.deployer.flavor} deployer "
            "(containers); this pipeline deploys to local BentoML servers only so far. "
            "See docs/deploying.md, 'Serving in production'."
        )
    deployer = stack.model_deployer
    if deployer is None or deployer.flavor not in SUPPORTED_DEPLOYERS:
        raise RuntimeError(
            f"the active stack's model deployer is "
            f"{deployer.flavor if deployer else 'missing'}; this pipeline deploys with "
            f"{', '.join(SUPPORTED_DEPLOYERS)} (see configs/environments/)"
        )
    model = get_step_context().model
    return start(
        bento_tag,
        settings,
        model.name,
        str(model.number),
        serving.state_dir / "logs",
        serving.startup_timeout_seconds,
    )
