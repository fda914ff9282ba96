from __future__ import annotations

from typing import Annotated

from zenml import get_step_context, step
from zenml.client import Client

from tabular_mlops.adapters.champion import load_staged_model
from tabular_mlops.adapters.deployment.model_deployer import serving_target
from tabular_mlops.adapters.deployment.smoke import SmokeReport, smoke_test
from tabular_mlops.adapters.deployment.target import BentoPackage, RunningService
from tabular_mlops.core.config import ServingConfig


@step(enable_cache=False)
def smoke_test_candidate(
    package: BentoPackage, candidate: RunningService, serving: ServingConfig
) -> Annotated[SmokeReport, "smoke_test"]:
    """Real rows of the model's test split against the live candidate, at its own
    address; on any mismatch the candidate is stopped and the live service is left
    untouched."""
    try:
        staged = load_staged_model(get_step_context().model)
        rows = staged.test_set[staged.features].head(serving.smoke_rows)
        target = serving_target(Client().active_stack, serving)
        source_token = target.tokens(candidate.model_name).current["source"]
        return smoke_test(candidate.url, staged.model, rows, candidate.model_version, source_token)
    except Exception:
        serving_target(Client().active_stack, serving).stop(candidate)
        raise
