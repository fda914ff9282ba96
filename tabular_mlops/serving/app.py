"""The prediction endpoint: strict input, label + probabilities + model version, logged.

It is a FastAPI app mounted into the BentoML service rather than a
``@bentoml.api`` method: measured on 2 cores, BentoML's API layer alone caps a
no-op endpoint at about 1,800 requests/s, a mounted ASGI app at over 5,000.
BentoML still serves, packages and supervises it, and keeps /livez, /readyz
and /metrics.
"""

from __future__ import annotations

import json
import re
import time
import uuid
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

import numpy as np
from fastapi import FastAPI, Request
from fastapi.responses import Response
from prometheus_client import Counter, Histogram
from pydantic import TypeAdapter, ValidationError

from tabular_mlops.core.spec import SOURCE_HEADER, ServingSpec, request_model
from tabular_mlops.serving.inference_log import InferenceLogWriter, InferenceRecord

if TYPE_CHECKING:
    from tabular_mlops.core.scoring import Scorer

PREDICTIONS = Counter(
    "tabular_predict_requests", "Prediction requests by outcome.", ["model_version", "outcome"]
)
ROWS = Counter("tabular_predict_rows", "Rows scored.", ["model_version"])
LATENCY = Histogram(
    "tabular_predict_latency_seconds",
    "Time to validate, score and answer a prediction request.",
    ["model_version"],
    buckets=(0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 1.0),
)


def _json(status: int, payload: dict[str, Any]) -> Response:
    return Response(json.dumps(payload), status_code=status, media_type="application/json")


#: problems listed in one error answer; the rest are counted, not listed
MAX_LISTED_PROBLEMS = 20
#: what a request id may be: echoed and logged, so short and plain
REQUEST_ID = re.compile(r"^[A-Za-z0-9._:-]{1,128}$")
#: bytes a row may take in a request body, generously (30 numbers take about 900)
BYTES_PER_FEATURE = 64


def describe_errors(error: ValidationError) -> list[dict[str, str]]:
    """One entry per problem, each naming the field (``rows.0.mean radius``) and what is
    wrong; at most ``MAX_LISTED_PROBLEMS``, then one entry counting the rest."""
    problems = error.errors(include_url=False)
    listed = [
        {
            "field": ".".join(str(part) for part in item["loc"]) or "(body)",
            "problem": item["msg"],
        }
        for item in problems[:MAX_LISTED_PROBLEMS]
    ]
    if len(problems) > MAX_LISTED_PROBLEMS:
        listed.append(
            {"field": "(body)", "problem": f"{len(problems) - MAX_LISTED_PROBLEMS} more problems"}
        )
    return listed


def create_app(spec: ServingSpec, max_rows: int) -> FastAPI:
    """The app, its routes and request schema; the model is bound later by :func:`bind`.

    ``bentoml serve`` imports the service module in its supervising process too,
    only to read the service's definition: building the app there costs nothing,
    while loading the model would import scikit-learn (over a second) for nothing.
    """
    body_model = request_model(spec, max_rows)
    parse = TypeAdapter(body_model).validate_json
    max_bytes = max_rows * len(spec.features) * BYTES_PER_FEATURE + 4096
    names = [feature.name for feature in spec.features]
    classes = spec.classes
    version = spec.model_version
    app = FastAPI(
        title=f"{spec.model_name} prediction service",
        version=version,
        description=f"Predicts '{spec.target}'. Send one row or up to {max_rows} rows.",
    )

    @app.post(
        "/predict",
        openapi_extra={
            "requestBody": {
                "required": True,
                "content": {"application/json": {"schema": body_model.model_json_schema()}},
            },
            "responses": {"400": {"description": "The request names each bad field"}},
        },
    )
    async def predict(request: Request) -> Response:
        started = time.perf_counter()
        model: Scorer | None = getattr(app.state, "scorer", None)
        if model is None:
            return _json(503, {"error": "the model is still loading"})
        log: InferenceLogWriter | None = app.state.inference_log
        refused = _refuse(request, max_bytes, max_rows)
        if refused is not None:
            PREDICTIONS.labels(version, "invalid").inc()
            return refused
        body = await request.body()
        if len(body) > max_bytes:
            PREDICTIONS.labels(version, "invalid").inc()
            return _too_large(max_bytes, max_rows)
        try:
            parsed = parse(body)
        except ValidationError as error:
            PREDICTIONS.labels(version, "invalid").inc()
            return _json(400, {"error": "invalid request", "detail": describe_errors(error)})
        rows = [list(row.__dict__.values()) for row in parsed.rows]  # type: ignore[attr-defined]
        probabilities = model.predict_proba(rows)
        finite = np.isfinite(probabilities).all(axis=1)
        if not finite.all():
            PREDICTIONS.labels(version, "unscorable").inc()
            return _json(
                422,
                {
                    "error": "the model cannot score these rows",
                    "detail": [
                        {"field": f"rows.{i}", "problem": "probabilities are not finite "
                         "(values far outside anything the model was trained on?)"}
                        for i in np.flatnonzero(~finite)[:MAX_LISTED_PROBLEMS].tolist()
                    ],
                },
            )  # fmt: skip
        request_id = request.headers.get("x-request-id") or uuid.uuid4().hex
        predictions: list[dict[str, Any]] = [
            {
                "label": classes[int(p.argmax())],
                "probabilities": dict(zip(classes, p.tolist(), strict=True)),
            }
            for p in probabilities
        ]
        if log is not None:
            now = datetime.now(UTC)
            source = request.headers.get(SOURCE_HEADER, "live")
            log.write(
                InferenceRecord(
                    request_id=request_id,
                    row=index,
                    timestamp=now,
                    model_name=spec.model_name,
                    model_version=version,
                    inputs=dict(zip(names, row, strict=True)),
                    prediction=answer["label"],
                    probabilities=answer["probabilities"],
                    source=source,
                )
                for index, (row, answer) in enumerate(zip(rows, predictions, strict=True))
            )
        PREDICTIONS.labels(version, "ok").inc()
        ROWS.labels(version).inc(len(rows))
        LATENCY.labels(version).observe(time.perf_counter() - started)
        return _json(
            200,
            {
                "request_id": request_id,
                "model_name": spec.model_name,
                "model_version": version,
                "predictions": predictions,
            },
        )

    return app


def _refuse(request: Request, max_bytes: int, max_rows: int) -> Response | None:
    """What can be refused before the body is read: its type, its declared size, and a
    request id that cannot be echoed and logged as it is."""
    media_type = request.headers.get("content-type", "").split(";")[0].strip().lower()
    if media_type != "application/json":
        return _json(
            415,
            {
                "error": "unsupported media type",
                "detail": [
                    {
                        "field": "content-type",
                        "problem": f"{media_type or 'none'}; send application/json",
                    }
                ],
            },
        )
    declared = request.headers.get("content-length", "")
    if declared.isdigit() and int(declared) > max_bytes:
        return _too_large(max_bytes, max_rows)
    request_id = request.headers.get("x-request-id")
    if request_id is not None and not REQUEST_ID.match(request_id):
        return _json(
            400,
            {
                "error": "invalid request",
                "detail": [
                    {
                        "field": "x-request-id",
                        "problem": "1 to 128 characters of letters, digits and . _ : -",
                    }
                ],
            },
        )
    return None


def _too_large(max_bytes: int, max_rows: int) -> Response:
    return _json(
        413,
        {
            "error": "request too large",
            "detail": [
                {
                    "field": "(body)",
                    "problem": f"over {max_bytes} bytes; send at most {max_rows} rows",
                }
            ],
        },
    )


def bind(app: FastAPI, scorer: Scorer, log: InferenceLogWriter | None) -> None:
    """Give the app its model and inference log: in each worker, before it serves."""
    app.state.scorer = scorer
    app.state.inference_log = log
