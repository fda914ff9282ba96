"""The prediction endpoint: strict input, label + probabilities + model version, logged.

It is a FastAPI app, served either by uvicorn directly (local services: see
``serving/server.py`` for why) or mounted into the BentoML service (the
container image). Every limit is enforced before the work it protects:

- media type, declared size and headers before the body is read (415, 413, 431);
- duplicate keys while the JSON is parsed, the row count before any row is
  validated (400);
- each row against the features the model was trained on, strictly: numbers
  are JSON numbers, not strings or booleans (400, naming each field);
- probabilities that come out non-finite are never returned (422, naming the
  features outside the range training covered).

Error bodies list at most ``MAX_LISTED_PROBLEMS`` problems and count the rest.
"""

from __future__ import annotations

import io
import json
import logging
import re
import time
import uuid
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
from fastapi import FastAPI, Request
from fastapi.openapi.utils import get_openapi
from fastapi.responses import JSONResponse, Response
from prometheus_client import Counter, Histogram
from pydantic import BaseModel, Field, TypeAdapter, ValidationError

from tabular_mlops.core.files import checked_bytes
from tabular_mlops.core.log_policy import masker
from tabular_mlops.core.problems import (
    DuplicateKeyError,
    Problem,
    capped,
    describe_errors,
    far_outside_check,
    out_of_range,
    unique_keys,
    unseen_category_check,
)
from tabular_mlops.core.spec import (
    SCORING_CPU_HEADER,
    SHADOW_PATH,
    SOURCE_HEADER,
    SOURCE_TOKEN_HEADER,
    ServingSettings,
    ServingSpec,
    read_row,
    request_model,
)
from tabular_mlops.serving.credentials import API_KEY_HEADER, TokenFile
from tabular_mlops.serving.feedback import FEEDBACK_PATH, FeedbackRefusedError, read_feedback
from tabular_mlops.serving.inference_log import (
    InferenceLogWriter,
    JsonLinesLog,
    logged,
    row_lines,
)

if TYPE_CHECKING:
    from tabular_mlops.core.scoring import Scorer

PREDICTIONS = Counter(
    "tabular_predict_requests", "Prediction requests by outcome.", ["model_version", "outcome"]
)
ROWS = Counter("tabular_predict_rows", "Rows scored.", ["model_version"])
FAR_OUTSIDE = Counter(
    "tabular_predict_far_outside_rows",
    "Rows answered whose inputs lie over a training span outside the range training "
    "covered: logged with a flag, left out of monitoring and rollout evidence.",
    ["model_version"],
)
UNSEEN = Counter(
    "tabular_predict_unseen_category_rows",
    "Rows answered whose feature holds a category training never saw (scored as none of "
    "the known ones), by feature.",
    ["model_version", "feature"],
)
LOGGED = Counter(
    "tabular_inference_log_rows",
    "Rows the inference log wrote, or dropped (a full disk, a lost volume).",
    ["outcome"],
)
LATENCY = Histogram(
    "tabular_predict_latency_seconds",
    "Time to validate, score and answer a prediction request.",
    ["model_version"],
    buckets=(0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 1.0),
)

logger = logging.getLogger(__name__)

#: what a request id may be: echoed and logged, so short and plain
REQUEST_ID = re.compile(r"^[A-Za-z0-9._:-]{1,128}$")
#: bytes a row may take in a request body, generously (30 numbers take about 900)
BYTES_PER_FEATURE = 64
#: all request headers together (a browser sends about 1 KB)
MAX_HEADER_BYTES = 8192


class ErrorAnswer(BaseModel):
    """Every 4xx/5xx answer: what went wrong, and each problem by field."""

    error: str
    detail: list[Problem] = []


class Prediction(BaseModel):
    """A classifier's answer: the label and each class's probability; a regressor's: the
    predicted value, its prediction interval and, with unit costs, the decision."""

    label: str | None = None
    probabilities: dict[str, float] | None = None
    prediction: float | None = None
    #: [low, high]: the interval that holds the true value at the model's stated level
    interval: list[float] | None = None
    #: the cost-optimal quantity (e.g. units to stock): the newsvendor quantile
    decision: float | None = None
    #: with ``"explain": true``: why (``core/explain.py``) and, for a binary classifier,
    #: the codes of what pushed the row toward its answer
    explanation: Explanation | None = None
    reasons: list[str] | None = None


class Contribution(BaseModel):
    feature: str
    contribution: float


class Explanation(BaseModel):
    """``base`` + each contribution + ``rest`` = the model's raw output, in ``unit``."""

    base: float
    unit: str
    contributions: list[Contribution]
    rest: float


class PredictAnswer(BaseModel):
    #: this answer's own id, unique (feedback names it); also the ``x-request-id`` header
    request_id: str
    #: the client's ``x-request-id``, when it sent one: echoed, logged, never the answer's id
    correlation_id: str | None = None
    model_name: str
    model_version: str
    predictions: list[Prediction]


#: mirrored requests in one shadow batch
MAX_SHADOW_REQUESTS = 256


class ShadowItem(BaseModel):
    request_id: str = Field(pattern=REQUEST_ID.pattern)
    #: the live request's body, as the client sent it
    body: str


class ShadowBatch(BaseModel):
    requests: list[ShadowItem] = Field(min_length=1, max_length=MAX_SHADOW_REQUESTS)


class RefusedRequestError(ValueError):
    """A request refused with ``status``; ``problems`` name the fields."""

    def __init__(self, status: int, error: str, problems: list[Problem]) -> None:
        super().__init__(error)
        self.status, self.error, self.problems = status, error, problems

    def answer(self) -> Response:
        return _json(
            self.status,
            {"error": self.error, "detail": [p.model_dump() for p in self.problems]},
        )


def _json(status: int, payload: dict[str, Any], headers: dict[str, str] | None = None) -> Response:
    return Response(
        json.dumps(payload), status_code=status, media_type="application/json", headers=headers
    )


def parse_body(body: bytes, max_rows: int, validate: Any, spec: ServingSpec) -> Any:
    """The validated request, or :class:`RefusedRequestError`: JSON first (duplicate keys
    refused), then the row count, and only then each row, read as the training data was
    (missing markers, columns that are not model inputs: :func:`read_row`)."""
    try:
        document = json.loads(body, object_pairs_hook=unique_keys)
    except DuplicateKeyError as exc:
        raise RefusedRequestError(
            400, "invalid request", [Problem(field="(body)", problem=str(exc))]
        ) from None
    except (ValueError, RecursionError) as exc:
        raise RefusedRequestError(
            400, "invalid request", [Problem(field="(body)", problem=f"Invalid JSON: {exc}")]
        ) from None
    if not isinstance(document, dict):
        raise RefusedRequestError(
            400,
            "invalid request",
            [Problem(field="(body)", problem='Input should be an object: {"rows": [...]}')],
        )
    rows = document.get("rows")
    if isinstance(rows, list) and len(rows) > max_rows:
        raise RefusedRequestError(
            400,
            "invalid request",
            [Problem(field="rows", problem=f"List should have at most {max_rows} items, "
                     f"not {len(rows)}")],
        )  # fmt: skip
    if isinstance(rows, list):
        document["rows"] = [read_row(row, spec) for row in rows]
    try:
        return validate(document)
    except ValidationError as error:
        raise RefusedRequestError(400, "invalid request", describe_errors(error)) from None


def rows_of(parsed: Any) -> list[list[Any]]:
    """A validated request's rows as lists of values, in the features' order."""
    return [list(row.__dict__.values()) for row in parsed.rows]  # features only: see row_model


def unscorable(spec: ServingSpec, rows: list[list[Any]], bad: list[int]) -> list[Problem]:
    """For each row the model could not score, the features outside the range training
    covered, or that its probabilities are not finite."""
    problems = []
    for index in bad:
        problems.extend(
            out_of_range(spec, rows[index], f"rows.{index}.")
            or [Problem(field=f"rows.{index}", problem="the model's answer is not finite")]
        )
    return capped(problems)


def _refuse(request: Request, max_bytes: int, max_rows: int) -> Response | None:
    """What can be refused before the body is read: its type, its declared size, its
    headers, and a request id that cannot be echoed and logged as it is."""
    media_type = request.headers.get("content-type", "").split(";")[0].strip().lower()
    if media_type != "application/json":
        return RefusedRequestError(
            415,
            "unsupported media type",
            [
                Problem(
                    field="content-type", problem=f"{media_type or 'none'}; send application/json"
                )
            ],
        ).answer()
    if sum(len(k) + len(v) for k, v in request.headers.raw) > MAX_HEADER_BYTES:
        return RefusedRequestError(
            431,
            "request headers too large",
            [Problem(field="(headers)", problem=f"over {MAX_HEADER_BYTES} bytes in all")],
        ).answer()
    declared = request.headers.get("content-length", "")
    if declared.isdigit() and int(declared) > max_bytes:
        return _too_large(max_bytes, max_rows)
    request_id = request.headers.get("x-request-id")
    if request_id is not None and not REQUEST_ID.match(request_id):
        return RefusedRequestError(
            400,
            "invalid request",
            [Problem(field="x-request-id", problem="1 to 128 characters of letters, digits "
                     "and . _ : -")],
        ).answer()  # fmt: skip
    return None


def _too_large(max_bytes: int, max_rows: int) -> Response:
    return RefusedRequestError(
        413,
        "request too large",
        [Problem(field="(body)", problem=f"over {max_bytes} bytes; send at most {max_rows} rows")],
    ).answer()


def request_source(request: Request, tokens: TokenFile) -> str:
    """ "live", or the source a deployment's own check declares with its secret token."""
    source = request.headers.get(SOURCE_HEADER)
    if source is None:
        return "live"
    if not tokens.accepts("source", request.headers.get(SOURCE_TOKEN_HEADER)):
        raise RefusedRequestError(
            403,
            "forbidden",
            [Problem(field=SOURCE_HEADER, problem="reserved for this deployment's own checks")],
        )
    return source[:64]


ERROR_STATUSES = {
    "400": "A field, the JSON or the row count is wrong; each problem names its field",
    "403": f"{SOURCE_HEADER} was set without this deployment's token",
    "413": "The body is larger than the row limit allows",
    "415": "The body is not application/json",
    "422": "A row is valid but the model cannot score it (values far outside training)",
    "431": "The request headers are too large",
    "503": "The model is still loading",
}


def create_app(spec: ServingSpec, settings: ServingSettings) -> FastAPI:
    """The app, its routes and request schema; the model is bound later by :func:`bind`.

    ``bentoml serve`` imports the service module in its supervising process too,
    only to read the service's definition: building the app there costs nothing,
    while loading the model would import scikit-learn (over a second) for nothing.
    """
    max_rows = settings.max_batch_rows
    body_model = request_model(spec, max_rows)
    validate = TypeAdapter(body_model).validate_python
    max_bytes = max_rows * len(spec.features) * BYTES_PER_FEATURE + 4096
    names = [feature.name for feature in spec.features]
    classes = spec.classes
    regressor = spec.task == "regression"
    tokens = TokenFile(settings.tokens_file)
    statuses = (
        {
            **ERROR_STATUSES,
            "401": f"No {API_KEY_HEADER} was sent",
            "403": f"{ERROR_STATUSES['403']}; or {API_KEY_HEADER} is no client's key",
        }
        if settings.require_api_key
        else ERROR_STATUSES
    )
    logged_inputs = masker(names, settings.log_columns, spec.model_name)
    outside_of = far_outside_check(spec)
    version = spec.model_version
    app = FastAPI(
        title=f"{spec.model_name} prediction service",
        version=version,
        description=f"Predicts '{spec.target}'. Send one row or up to {max_rows} rows.",
    )
    error = {"model": ErrorAnswer}

    @app.post(
        "/predict",
        response_model=PredictAnswer,
        responses={int(status): {**error, "description": text} for status, text in
                   statuses.items()},
        openapi_extra={"requestBody": {"required": True, "content": {"application/json": {
            "schema": {"$ref": "#/components/schemas/PredictRequest"}}}}},
    )  # fmt: skip
    async def predict(request: Request) -> Response:
        started = time.perf_counter()
        model: Scorer | None = getattr(app.state, "scorer", None)
        if model is None:
            return _json(503, {"error": "the model is still loading", "detail": []})
        if settings.require_api_key:
            denied = tokens.key_refusal(request.headers.get(API_KEY_HEADER))
            # the deployment's own smoke test passes by its source token
            own = tokens.accepts("source", request.headers.get(SOURCE_TOKEN_HEADER))
            if denied is not None and not own:
                PREDICTIONS.labels(version, "unauthorized").inc()
                return _json(*denied)
        refused = _refuse(request, max_bytes, max_rows)
        if refused is not None:
            PREDICTIONS.labels(version, "invalid").inc()
            return refused
        body = await request.body()
        # nothing below awaits until the answer: this thread's CPU time is this request's
        cpu_started = time.thread_time()
        try:
            if len(body) > max_bytes:
                return _too_large(max_bytes, max_rows)
            source = request_source(request, tokens)
            parsed = parse_body(body, max_rows, validate, spec)
            rows = rows_of(parsed)
            predictions = answers(model.predict_proba(rows), rows)
            if parsed.explain:  # off by default: the scoring path above is untouched
                explain(rows, predictions)
        except RefusedRequestError as problem:
            PREDICTIONS.labels(version, "invalid" if problem.status != 422 else "unscorable").inc()
            return problem.answer()
        # the answer's id is always the service's own: two clients sending one
        # x-request-id must not share evidence; theirs is kept as the correlation id
        cpu_ms = (time.thread_time() - cpu_started) * 1000
        request_id = uuid.uuid4().hex
        correlation_id = request.headers.get("x-request-id")
        log_answers(request_id, rows, predictions, source, correlation_id)
        LATENCY.labels(version).observe(time.perf_counter() - started)
        answer = {
            "request_id": request_id,
            "model_name": spec.model_name,
            "model_version": version,
            "predictions": predictions,
        }
        if correlation_id is not None:
            answer["correlation_id"] = correlation_id
        return _json(200, answer, {"x-request-id": request_id, SCORING_CPU_HEADER: f"{cpu_ms:.3f}"})

    @app.post(SHADOW_PATH, include_in_schema=False)
    async def shadow(request: Request) -> Response:
        """A batch of mirrored live requests, scored in one call, each answered and logged
        under its own request id as ``shadow`` (see the router: one call per batch instead
        of one per request is what keeps a shadow's cost on the answered path small).

        Only the deployment's router may send them: the source token is required."""
        model: Scorer | None = getattr(app.state, "scorer", None)
        if model is None:
            return _json(503, {"error": "the model is still loading", "detail": []})
        try:
            if request_source(request, tokens) == "live":
                raise RefusedRequestError(
                    403, "forbidden", [Problem(field=SOURCE_HEADER, problem="required")]
                )
            batch = ShadowBatch.model_validate_json(await request.body())
        except ValidationError as error:
            return RefusedRequestError(400, "invalid request", describe_errors(error)).answer()
        except RefusedRequestError as problem:
            return problem.answer()
        # Each mirrored request is validated and scored on its own and timed, so the
        # shadow's latency is evidence per request, guarded as a canary's is (one matrix
        # for the batch was cheaper, but no request's time could be told from it).
        results = []
        for item in batch.requests:
            started, cpu_started = time.perf_counter(), time.thread_time()
            try:
                rows = rows_of(parse_body(item.body.encode(), max_rows, validate, spec))
                predictions = answers(model.predict_proba(rows), rows)
            except RefusedRequestError as problem:
                outcome = "invalid" if problem.status != 422 else "unscorable"
                PREDICTIONS.labels(version, outcome).inc()
                results.append({"request_id": item.request_id, "status": problem.status})
                continue
            cpu_ms = (time.thread_time() - cpu_started) * 1000  # within the wall-clock span
            ms = (time.perf_counter() - started) * 1000
            log_answers(item.request_id, rows, predictions, "shadow")
            labels = [logged(answer)[0] for answer in predictions]
            results.append({"request_id": item.request_id, "status": 200, "labels": labels,
                            "ms": ms, "cpu_ms": cpu_ms})  # fmt: skip
        return _json(200, {"model_version": version, "answers": results})

    def answers(probabilities: np.ndarray, rows: list[list[Any]]) -> list[dict[str, Any]]:
        """Label and probabilities per row (a regressor: its value, interval and decision);
        rows whose answers are not finite are refused (422, naming the features outside
        the range training covered)."""
        finite = np.isfinite(probabilities).all(axis=1)
        if not finite.all():
            bad = np.flatnonzero(~finite).tolist()
            raise RefusedRequestError(
                422, "the model cannot score these rows", unscorable(spec, rows, bad)
            )
        if regressor:
            return spec.value_answers(probabilities[:, 0].tolist())
        return [
            {"label": classes[int(i)], "probabilities": dict(zip(classes, p.tolist(), strict=True))}
            for i, p in zip(spec.label_indexes(probabilities), probabilities, strict=True)
        ]

    def explain(rows: list[list[Any]], predictions: list[dict[str, Any]]) -> None:
        """Add each answer's explanation (and a binary classifier's reason codes) in
        place; a model without an exact explanation is refused (422, naming why)."""
        explainer: Any = getattr(app.state, "explainer", None)
        if explainer is None or isinstance(explainer, str):  # str: why it has none
            why = explainer or "no explanation is loaded"
            raise RefusedRequestError(422, "this model's answers cannot be explained",
                                      [Problem(field="explain", problem=why)])  # fmt: skip
        from tabular_mlops.core.explain import UnexplainableRowsError, reasons

        scorer: Any = app.state.scorer
        try:
            if explainer.needs_frame or not hasattr(scorer, "transform"):
                import pandas as pd

                explained = explainer.explain(pd.DataFrame(rows, columns=names))
            else:  # the numpy path's own transformed rows, the columns checked at packaging
                explained = explainer.explain(None, transformed=scorer.transform(rows))
        except UnexplainableRowsError as exc:  # as for answers: nothing made up
            raise RefusedRequestError(
                422, "the model cannot explain these rows", unscorable(spec, rows, exc.rows)
            ) from None
        for row, prediction, explanation in zip(rows, predictions, explained, strict=True):
            prediction["explanation"] = explanation
            if len(classes) == 2:  # toward the answer given: + the positive class's log-odds
                toward = 1.0 if prediction["label"] == classes[1] else -1.0
                prediction["reasons"] = reasons(
                    explanation,
                    dict(zip(names, row, strict=True)),
                    toward,
                    explainer.averages,
                    dates=explainer.dates,
                )

    def log_answers(
        request_id: str, rows: list[list[Any]], predictions: list[dict[str, Any]], source: str,
        correlation_id: str | None = None,
    ) -> None:  # fmt: skip
        log: InferenceLogWriter | None = app.state.inference_log
        flags = [outside_of(row) for row in rows]
        flagged = sum(1 for flag in flags if flag)
        if flagged:
            FAR_OUTSIDE.labels(version).inc(flagged)
        for row in rows:
            for feature in app.state.unseen_of(row) or ():
                UNSEEN.labels(version, feature).inc()
        if log is not None:
            log.write_lines(
                row_lines(
                    spec.model_name, version, source, names,
                    ((request_id, row, *logged(answer))
                     for row, answer in zip(rows, predictions, strict=True)),
                    logged_inputs, flags, correlation_id=correlation_id, numbered=True,
                )
            )  # fmt: skip
        PREDICTIONS.labels(version, "ok").inc()
        ROWS.labels(version).inc(len(rows))

    @app.get("/livez", include_in_schema=False)
    async def livez() -> Response:
        return Response(status_code=200)

    @app.post(FEEDBACK_PATH, include_in_schema=False)
    async def feedback(request: Request) -> Response:
        """Feedback outside an experiment, when this version answers the stable address
        itself (``serving/stable.py``): stored beside its inference log, as the router
        stores it during one (``serving/feedback.py``)."""
        refused_for = tokens.refusal("feedback", request.headers.get("authorization"))
        if refused_for is not None:
            return _json(*refused_for, {"www-authenticate": "Bearer"})
        try:
            items = await read_feedback(request.headers.get("content-type"), request.stream())
        except FeedbackRefusedError as refused:
            return _json(refused.status, refused.answer)
        log = feedback_log(app, settings)
        if log is None:
            return _json(503, {"error": "feedback is not stored: the inference log is off",
                               "detail": []})  # fmt: skip
        now = datetime.now(UTC).isoformat()
        for item in items:
            log.append(json.dumps({"timestamp": now, **item.model_dump(), "version": version,
                                   "experiment": ""}))  # fmt: skip
        return _json(202, {"accepted": len(items), "matched": 0})

    @app.get("/readyz", include_in_schema=False)
    async def readyz() -> Response:
        """Ready when the model is loaded. A log that drops lines (a full disk) does not
        make the service unready, answering matters more, but says so here."""
        log: InferenceLogWriter | None = getattr(app.state, "inference_log", None)
        ready = getattr(app.state, "scorer", None) is not None
        body = {"ready": ready, "inference_log": log.health() if log else "off"}
        return JSONResponse(body, status_code=200 if ready else 503)

    @app.get("/metrics", include_in_schema=False)
    async def metrics() -> Response:
        from prometheus_client import CONTENT_TYPE_LATEST

        return Response(prometheus_text(), media_type=CONTENT_TYPE_LATEST)

    def openapi() -> dict[str, Any]:
        """FastAPI's document plus the request schema, whose definitions pydantic
        writes under ``$defs``: moved to ``components`` so every reference resolves."""
        if app.openapi_schema is None:
            document = get_openapi(
                title=app.title,
                version=app.version,
                description=app.description,
                routes=app.routes,
            )
            request_schema = body_model.model_json_schema(
                ref_template="#/components/schemas/{model}"
            )
            schemas = document.setdefault("components", {}).setdefault("schemas", {})
            schemas.update(request_schema.pop("$defs", {}))
            schemas["PredictRequest"] = request_schema
            # this model's answer only: a classifier's label (one of its classes) and
            # probabilities, or a regressor's value, interval and decision
            answer = document["components"]["schemas"]["Prediction"]
            properties = answer["properties"]
            if regressor:
                kept = [
                    "prediction",
                    *(["interval"] if spec.interval_half_width is not None else []),
                    *(["decision"] if spec.decision_offset is not None else []),
                ]
                properties["prediction"] = {"type": "number", "title": "Prediction"}
                described = (
                    f"[low, high], holding the true value with probability {spec.interval_level}"
                )
                floor: dict[str, float] = {}
                if spec.answer_floor is not None:  # a count's: never below 0
                    floor = {"minimum": spec.answer_floor}
                    described += f"; low is never below {spec.answer_floor:g}"
                properties["interval"] = {
                    "type": "array", "items": {"type": "number"}, "minItems": 2, "maxItems": 2,
                    "title": "Interval", "description": described,
                }  # fmt: skip
                properties["decision"] = {"type": "number", "title": "Decision", **floor}
            else:
                kept = ["label", "probabilities"]
                properties["label"] = {"type": "string", "enum": classes, "title": "Label"}
                properties["probabilities"] = {
                    "type": "object", "additionalProperties": {"type": "number"},
                    "title": "Probabilities",
                }  # fmt: skip
            # with "explain": true, the explanation (and a binary classifier's reasons)
            explained = ["explanation", *(["reasons"] if len(classes) == 2 else [])]
            answer["properties"] = {name: properties[name] for name in [*kept, *explained]}
            answer["required"] = kept
            app.openapi_schema = document
        return app.openapi_schema

    app.openapi = openapi  # type: ignore[method-assign]
    return app


def prometheus_text() -> bytes:
    """This process's metrics, or every worker's when they share a multiprocess directory."""
    import os

    from prometheus_client import CollectorRegistry, generate_latest, multiprocess

    if not os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
        return generate_latest()
    registry = CollectorRegistry()
    multiprocess.MultiProcessCollector(registry)
    return generate_latest(registry)


def feedback_log(app: FastAPI, settings: ServingSettings) -> JsonLinesLog | None:
    """This worker's feedback log, opened with the first feedback it is sent."""
    log: JsonLinesLog | None = getattr(app.state, "feedback_log", None)
    if log is None and settings.inference_log_dir:
        log = app.state.feedback_log = JsonLinesLog(
            Path(settings.inference_log_dir), prefix="feedback"
        )
    return log


def bind(app: FastAPI, scorer: Scorer, log: InferenceLogWriter | None) -> None:
    """Give the app its model and inference log: in each worker, before it serves."""
    from tabular_mlops.core.scoring import known_categories

    app.state.scorer = scorer
    app.state.inference_log = log
    # (a scorer that is no pipeline's, as a test's stand-in, knows no categories)
    known = known_categories(getattr(scorer, "model", None))
    app.state.unseen_of = unseen_category_check(known, getattr(scorer, "columns", []))


def count_logged(outcome: str, rows: int) -> None:
    LOGGED.labels(outcome=outcome).inc(rows)


def load_model(app: FastAPI, spec: ServingSpec, settings: ServingSettings, model_dir: Path) -> str:
    """Load the model from its directory in the model store and bind it with the
    inference log; returns which scoring path serves (numpy or the pipeline)."""
    from tabular_mlops.core.scoring import FastModel, PipelineScorer

    pipeline = unpickle_model(
        model_dir / "model.pkl", settings.model_sha256,
        f"model '{spec.model_name}' version {spec.model_version}",
    )  # fmt: skip
    names = [feature.name for feature in spec.features]
    scorer = FastModel if settings.fast_path else PipelineScorer
    log_dir = settings.inference_log_dir
    log = InferenceLogWriter(Path(log_dir), counted=count_logged) if log_dir else None
    bind(app, scorer(pipeline, names), log)
    load_explainer(app, pipeline)
    return "numpy" if settings.fast_path else "pipeline"


def unpickle_model(model_file: Path, expected: str | None, what: str) -> Any:
    """The model in ``model_file``, once its bytes hash to ``expected`` (the hash recorded
    when it was packaged; a pickle is code): the bytes checked are the bytes unpickled,
    never the file read again. ``what`` names the model in the refusal."""
    import joblib

    with model_file.open("rb") as stream:
        if expected:
            data = checked_bytes(stream, expected, what, str(model_file))
        else:
            logger.warning("%s: packaged before its hash was recorded; redeploy it", model_file)
            data = stream.read()
    return joblib.load(io.BytesIO(data))


def load_explainer(app: FastAPI, pipeline: Any) -> None:
    """The model's explainer (``core/explain.py``), or why it has none, for ``"explain":
    true`` requests; built once per worker, before it serves."""
    from tabular_mlops.core.explain import Explainer, NotExplainableError

    try:
        app.state.explainer = Explainer(pipeline)
    except NotExplainableError as exc:
        app.state.explainer = str(exc)
