"""Data for demonstrations, tests and benchmarks: a drifting stream for `run.py simulate`
(requests as the service would log them, fresh labelled data for the retraining they
should trigger), users driving an online experiment, and a census-like frame with
sensitive columns for the governance gate."""

from __future__ import annotations

import json
import uuid
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Literal

import numpy as np
import pandas as pd
from pydantic import BaseModel, Field
from sklearn.pipeline import Pipeline

from tabular_mlops.core.spec import ServingSpec
from tabular_mlops.serving.inference_log import InferenceLogWriter, InferenceRecord


def shifted(frame: pd.DataFrame, spec: ServingSpec, shift: float, seed: int) -> pd.DataFrame:
    """Numeric features moved by ``shift`` standard deviations, with a little noise:
    the world changed, the labels did not."""
    rng = np.random.default_rng(seed)
    out = frame.copy()
    for feature in spec.features:
        if feature.kind == "numeric" and shift:
            std = float(frame[feature.name].std()) or 1.0
            noise = rng.normal(0, 0.1 * std, len(frame))
            out[feature.name] = frame[feature.name] + shift * std + noise
    return out


def log_requests(
    rows: pd.DataFrame, model: Pipeline, spec: ServingSpec, log_dir: Path
) -> list[str]:
    """Score ``rows`` one request each and log them exactly as the service does."""
    features = [f.name for f in spec.features]
    probabilities = model.predict_proba(rows[features])
    writer = InferenceLogWriter(log_dir)
    request_ids = []
    for (_, row), proba in zip(rows[features].iterrows(), probabilities, strict=True):
        request_id = uuid.uuid4().hex
        request_ids.append(request_id)
        writer.write(
            [
                InferenceRecord(
                    request_id=request_id,
                    timestamp=datetime.now(UTC),
                    model_name=spec.model_name,
                    model_version=spec.model_version,
                    inputs={k: (None if pd.isna(v) else v) for k, v in row.items()},
                    prediction=spec.classes[int(spec.label_indexes(proba[None, :])[0])],
                    probabilities=dict(zip(spec.classes, proba.tolist(), strict=True)),
                )
            ]
        )
    writer.close()
    return request_ids


class TrafficReport(BaseModel):
    """What a stream of live requests got back, by model version, and the feedback sent."""

    requests: int = 0
    failed: dict[str, int] = Field(default_factory=dict)
    answered_by: dict[str, int] = Field(default_factory=dict)
    correct_by: dict[str, int] = Field(default_factory=dict)
    #: a regressor's answers: the sum of their absolute errors, by version
    error_by: dict[str, float] = Field(default_factory=dict)
    feedback_sent: int = 0


def drive_traffic(
    url: str,
    rows: pd.DataFrame,
    target: str,
    users: int = 200,
    feedback: Literal["label", "reward"] | None = "label",
    feedback_every: int = 500,
    seed: int = 0,
    token: str | None = None,
) -> TrafficReport:
    """Post ``rows`` one request each to ``url`` (the model's stable address), as ``users``
    distinct users (``x-user-id``), then tell the router what was true: the row's label,
    or a reward of 1 for a right answer and 0 for a wrong one, every ``feedback_every``
    answers: labels arrive after the answers, as they would in life."""
    import httpx

    rng = np.random.default_rng(seed)
    report = TrafficReport()
    truths: list[dict[str, object]] = []
    features = rows.drop(columns=[target])
    records = json.loads(features.to_json(orient="records"))
    # the deployment's feedback token (``run.py deploy --print-token feedback``)
    auth = {"authorization": f"Bearer {token}"} if token else {}
    with httpx.Client(base_url=url, timeout=30) as client:
        for record, truth in zip(records, rows[target].astype(str), strict=True):
            headers = {"x-request-id": uuid.uuid4().hex, "x-user-id": f"user-{rng.integers(users)}"}
            report.requests += 1
            try:
                answer = client.post("/predict", json={"rows": [record]}, headers=headers)
            except httpx.HTTPError as exc:
                kind = type(exc).__name__
                report.failed[kind] = report.failed.get(kind, 0) + 1
                continue
            if answer.status_code != 200:
                kind = str(answer.status_code)
                report.failed[kind] = report.failed.get(kind, 0) + 1
                continue
            body = answer.json()
            request_id = body["request_id"]  # the answer's own id: feedback names it
            version, answered = body["model_version"], body["predictions"][0]
            report.answered_by[version] = report.answered_by.get(version, 0) + 1
            # a classifier is right on the label; a regressor's value is never exactly
            # right: it is told the true value, and the report counts it by its error
            right = answered.get("label", answered.get("prediction")) == truth
            if "prediction" in answered:
                error = abs(float(answered["prediction"]) - float(truth))
                report.error_by[version] = report.error_by.get(version, 0.0) + error
            report.correct_by[version] = report.correct_by.get(version, 0) + int(right)
            if feedback == "label":
                truths.append({"request_id": request_id, "row": 0, "label": truth})
            elif feedback == "reward":
                truths.append({"request_id": request_id, "row": 0, "reward": float(right)})
            if len(truths) >= feedback_every:
                report.feedback_sent += _send_feedback(client, truths, auth)
        report.feedback_sent += _send_feedback(client, truths, auth)
    return report


def _send_feedback(client: Any, truths: list[dict[str, object]], auth: dict[str, str]) -> int:
    """Post what is pending to ``/feedback`` and clear it; how many items went."""
    sent = len(truths)
    if truths:
        client.post("/feedback", json=truths, headers=auth).raise_for_status()
        truths.clear()
    return sent
