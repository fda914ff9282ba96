from __future__ import annotations

from typing import Annotated

from zenml import get_step_context, log_metadata, step

from configs.schema import ServingConfig
from service.spec import ServingSettings
from steps.deployment.packaging import build_bento
from steps.promotion.champion import load_staged_model


@step(enable_cache=False)
def package_model(
    serving: ServingConfig,
) -> tuple[Annotated[str, "bento_tag"], Annotated[ServingSettings, "serving_settings"]]:
    """Build a Bento from the model version at the deployment's stage.

    The request schema is derived from the model's own training data, and the
    numpy scoring path is checked against the pipeline on its test rows.
    """
    staged = load_staged_model(get_step_context().model)
    bento_tag, settings = build_bento(
        staged.model,
        staged.spec,
        staged.test_set[staged.features],
        serving.workers,
        serving.max_batch_rows,
        serving.inference_log_dir,
    )
    log_metadata(metadata={"bento_tag": bento_tag, "fast_path": settings.fast_path})
    return bento_tag, settings
