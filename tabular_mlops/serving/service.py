"""The BentoML service: what `bentoml serve <bento>` imports, in its supervisor and workers.

The bento carries this code and the model (model.pkl and spec.json in BentoML's
model store); the deployment's settings arrive as JSON in an environment
variable. Only the workers load the model (in the service's constructor): the
supervisor imports this module just to read the service's definition.
"""

from __future__ import annotations

import logging
import os
from pathlib import Path

import bentoml

from tabular_mlops.core.spec import SETTINGS_ENV, ServingSettings, ServingSpec
from tabular_mlops.serving.app import bind, create_app
from tabular_mlops.serving.inference_log import InferenceLogWriter

logger = logging.getLogger(__name__)
SETTINGS = ServingSettings.model_validate_json(os.environ[SETTINGS_ENV])
SPEC = ServingSpec.model_validate_json(
    Path(bentoml.models.get(SETTINGS.model_tag).path_of("spec.json")).read_text()
)
app = create_app(SPEC, SETTINGS.max_batch_rows)


@bentoml.asgi_app(app, path="/")
@bentoml.service(
    name="tabular_classifier_service",
    workers=SETTINGS.workers,
    logging={"access": {"enabled": False}},
)
class TabularClassifierService:
    bento_model = bentoml.models.BentoModel(SETTINGS.model_tag)

    def __init__(self) -> None:
        import joblib

        from tabular_mlops.core.scoring import FastModel, PipelineScorer

        pipeline = joblib.load(self.bento_model.path_of("model.pkl"))
        names = [feature.name for feature in SPEC.features]
        scorer = FastModel if SETTINGS.fast_path else PipelineScorer
        log_dir = SETTINGS.inference_log_dir
        bind(app, scorer(pipeline, names), InferenceLogWriter(Path(log_dir)) if log_dir else None)
        logger.info(
            "serving %s version %s (%s scoring path)",
            SPEC.model_name,
            SPEC.model_version,
            "numpy" if SETTINGS.fast_path else "pipeline",
        )
