from __future__ import annotations

from typing import Annotated

import pandas as pd
from sklearn.pipeline import Pipeline
from zenml import get_step_context, log_metadata, step

from configs.schema import ServingConfig
from service.spec import ServingSettings, ServingSpec
from steps.deployment.packaging import build_bento


@step(enable_cache=False)
def package_model(
    serving: ServingConfig,
) -> tuple[Annotated[str, "bento_tag"], Annotated[ServingSettings, "serving_settings"]]:
    """Build a Bento from the model version at the deployment's stage.

    The request schema is derived from the model's own training data, and the
    numpy scoring path is checked against the pipeline on its test rows.
    """
    zenml_model = get_step_context().model
    model: Pipeline = zenml_model.load_artifact("model")
    train_set: pd.DataFrame = zenml_model.load_artifact("train_set")
    test_set: pd.DataFrame = zenml_model.load_artifact("test_set")
    features = list(model.feature_names_in_)
    [target] = [c for c in train_set.columns if c not in features]
    spec = ServingSpec.from_training_data(
        zenml_model.name, str(zenml_model.number), train_set, target, list(model.classes_)
    )
    bento_tag, settings = build_bento(
        model,
        spec,
        test_set[features],
        serving.workers,
        serving.max_batch_rows,
        serving.inference_log_dir,
    )
    log_metadata(metadata={"bento_tag": bento_tag, "fast_path": settings.fast_path})
    return bento_tag, settings
