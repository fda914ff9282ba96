"""The BentoML service: what `bentoml serve <bento>` imports in each worker.

The bento carries this code and the model (model.pkl and spec.json in BentoML's
model store); the deployment's settings arrive as JSON in an environment variable.
"""

from __future__ import annotations

import logging
import os
from pathlib import Path

import bentoml
import joblib

from tabular_mlops.core.scoring import FastModel, PipelineScorer
from tabular_mlops.core.spec import SETTINGS_ENV, ServingSettings, ServingSpec
from tabular_mlops.serving.app import create_app
from tabular_mlops.serving.inference_log import InferenceLogWriter

logger = logging.getLogger(__name__)
SETTINGS = ServingSettings.model_validate_json(os.environ[SETTINGS_ENV])

_stored = bentoml.models.get(SETTINGS.model_tag)
_spec = ServingSpec.model_validate_json(Path(_stored.path_of("spec.json")).read_text())
_pipeline = joblib.load(_stored.path_of("model.pkl"))
_names = [feature.name for feature in _spec.features]
logger.info(
    "serving %s version %s (%s scoring path)",
    _spec.model_name,
    _spec.model_version,
    "numpy" if SETTINGS.fast_path else "pipeline",
)
app = create_app(
    FastModel(_pipeline, _names) if SETTINGS.fast_path else PipelineScorer(_pipeline, _names),
    _spec,
    InferenceLogWriter(Path(SETTINGS.inference_log_dir)) if SETTINGS.inference_log_dir else None,
    SETTINGS.max_batch_rows,
)


@bentoml.asgi_app(app, path="/")
@bentoml.service(
    name="tabular_classifier_service",
    workers=SETTINGS.workers,
    logging={"access": {"enabled": False}},
)
class TabularClassifierService:
    bento_model = bentoml.models.BentoModel(SETTINGS.model_tag)
