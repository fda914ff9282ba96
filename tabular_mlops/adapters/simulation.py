"""A drifting stream for the `run.py simulate` demonstration: requests as the service
would log them, and fresh labelled data for the retraining they should trigger."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime
from pathlib import Path

import numpy as np
import pandas as pd
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
                    prediction=spec.classes[int(proba.argmax())],
                    probabilities=dict(zip(spec.classes, proba.tolist(), strict=True)),
                )
            ]
        )
    writer.close()
    return request_ids
