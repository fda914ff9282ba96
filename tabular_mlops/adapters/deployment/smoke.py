"""Check a live endpoint against the model's offline answers on real rows."""

from __future__ import annotations

import json

import httpx
import numpy as np
import pandas as pd
from pydantic import BaseModel
from sklearn.base import is_regressor
from sklearn.pipeline import Pipeline

from tabular_mlops.core.spec import SOURCE_HEADER, SOURCE_TOKEN_HEADER


class SmokeTestError(RuntimeError):
    """The new service answered wrongly or not at all; it must not go live."""


class SmokeReport(BaseModel):
    url: str
    rows: int
    model_version: str
    max_probability_difference: float


def rows_as_json(rows: pd.DataFrame) -> list[dict[str, object]]:
    """JSON-ready records: NaN becomes null, numpy scalars become Python ones."""
    return json.loads(rows.to_json(orient="records"))


def smoke_test(
    url: str,
    model: Pipeline,
    rows: pd.DataFrame,
    expected_version: str,
    source_token: str | None,
    tolerance: float = 1e-6,
) -> SmokeReport:
    """Send ``rows`` (features only) in one request, tagged as the deployment's own test
    with its token (monitoring leaves them out); compare labels and probabilities."""
    try:
        response = httpx.post(
            f"{url}/predict",
            json={"rows": rows_as_json(rows)},
            headers={SOURCE_HEADER: "smoke-test", SOURCE_TOKEN_HEADER: source_token or ""},
            timeout=30,
        )
    except httpx.HTTPError as exc:
        raise SmokeTestError(f"{url}/predict did not answer: {exc}") from exc
    if response.status_code != 200:
        raise SmokeTestError(
            f"{url}/predict answered {response.status_code}: {response.text[:500]}"
        )
    answer = response.json()
    if answer.get("model_version") != expected_version:
        raise SmokeTestError(
            f"{url} serves model version {answer.get('model_version')!r}, "
            f"expected {expected_version!r}"
        )
    if is_regressor(model):
        return _compare_values(url, answer, model.predict(rows), len(rows), expected_version)
    classes = [str(c) for c in model.classes_]
    expected = model.predict_proba(rows)
    served = np.array([[p["probabilities"][c] for c in classes] for p in answer["predictions"]])
    labels = [p["label"] for p in answer["predictions"]]
    expected_labels = [str(label) for label in model.predict(rows)]  # the model's own rule
    if served.shape != expected.shape or labels != expected_labels:
        wrong = sum(a != b for a, b in zip(labels, expected_labels, strict=False))
        raise SmokeTestError(
            f"{url} labels differ from the model's offline predictions on "
            f"{wrong} of {len(rows)} rows"
        )
    difference = float(np.abs(served - expected).max())
    if difference > tolerance:
        raise SmokeTestError(
            f"{url} probabilities differ from offline ones by up to {difference:.2e} "
            f"(tolerance {tolerance:.0e})"
        )
    return SmokeReport(
        url=url,
        rows=len(rows),
        model_version=expected_version,
        max_probability_difference=difference,
    )


#: a served value may differ from the pipeline's by this share of its size (float64 on both
#: sides: the numpy path's sums in another order)
VALUE_TOLERANCE = 1e-9


def _compare_values(
    url: str, answer: dict, expected: np.ndarray, rows: int, expected_version: str
) -> SmokeReport:
    """A regressor's served values against the pipeline's own ``predict``."""
    served = np.array([p.get("prediction", np.nan) for p in answer["predictions"]], dtype=float)
    if served.shape != expected.shape:
        raise SmokeTestError(f"{url} answered {len(served)} values for {rows} rows")
    scale = np.maximum(np.abs(expected), 1.0)
    relative = np.abs(served - expected) / scale  # a missing value is NaN: infinitely off
    difference = float(np.max(np.where(np.isnan(relative), np.inf, relative), initial=0.0))
    if difference > VALUE_TOLERANCE:
        raise SmokeTestError(
            f"{url} values differ from the model's offline predictions by up to "
            f"{difference:.2e} of their size (tolerance {VALUE_TOLERANCE:.0e})"
        )
    return SmokeReport(
        url=url, rows=rows, model_version=expected_version, max_probability_difference=difference
    )
