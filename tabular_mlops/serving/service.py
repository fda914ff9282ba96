"""The BentoML service: what `bentoml serve <bento>` imports, in its supervisor and workers.

The bento carries this code and the model (model.pkl and spec.json in BentoML's
model store); the deployment's settings arrive as JSON in an environment
variable. Only the workers load the model (in the service's constructor): the
supervisor imports this module just to read the service's definition.

The bento's service definition, which ``bentoml build`` needs and ``bentoml serve
<bento>`` runs by hand. Neither the local target nor the container does: both run
the same app under uvicorn (``serving/server.py``), without BentoML's timeout and
tracing middlewares (docs/decisions.md).
"""

from __future__ import annotations

import logging
import os
from pathlib import Path

import bentoml

from tabular_mlops.core.spec import SETTINGS_ENV, ServingSettings, ServingSpec
from tabular_mlops.serving.app import create_app, load_model

logger = logging.getLogger(__name__)
SETTINGS = ServingSettings.model_validate_json(os.environ[SETTINGS_ENV])
SPEC = ServingSpec.model_validate_json(
    Path(bentoml.models.get(SETTINGS.model_tag).path_of("spec.json")).read_text()
)
app = create_app(SPEC, SETTINGS)


@bentoml.asgi_app(app, path="/")
@bentoml.service(
    name="tabular_classifier_service",
    workers=SETTINGS.workers,
    logging={"access": {"enabled": False}},
    # BentoML's TimeoutMiddleware schedules a timer of this length per request and
    # never cancels it: with the default 60 s, a minute of timers stays alive and
    # the tail grows to hundreds of ms under load. Scoring 1,000 rows takes
    # milliseconds, so 5 s bounds a stuck request without the pile-up.
    traffic={"timeout": 5},
)
class TabularClassifierService:
    bento_model = bentoml.models.BentoModel(SETTINGS.model_tag)

    def __init__(self) -> None:
        path = load_model(app, SPEC, SETTINGS, Path(self.bento_model.path_of("")))
        logger.info(
            "serving %s version %s (%s scoring path)", SPEC.model_name, SPEC.model_version, path
        )
