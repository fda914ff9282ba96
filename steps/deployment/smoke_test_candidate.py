from __future__ import annotations

from typing import Annotated

import pandas as pd
from sklearn.pipeline import Pipeline
from zenml import get_step_context, step
from zenml.client import Client

from tabular_mlops.adapters.deployment.select import target_for
from tabular_mlops.adapters.deployment.smoke import SmokeReport, smoke_test
from tabular_mlops.adapters.deployment.target import RunningService
from tabular_mlops.core.config import ServingConfig


@step(enable_cache=False)
def smoke_test_candidate(
    candidate: RunningService, serving: ServingConfig
) -> Annotated[SmokeReport, "smoke_test"]:
    """Real rows of the model's test split against the live candidate; on any
    mismatch the candidate is stopped and the live service is left untouched."""
    model_version = get_step_context().model
    model: Pipeline = model_version.load_artifact("model")
    test_set: pd.DataFrame = model_version.load_artifact("test_set")
    rows = test_set[list(model.feature_names_in_)].head(serving.smoke_rows)
    try:
        return smoke_test(candidate.url, model, rows, candidate.model_version)
    except Exception:
        target_for(Client().active_stack, serving).stop(candidate)
        raise
