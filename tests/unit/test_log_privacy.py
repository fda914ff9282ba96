"""What the logs keep: per input keep / hash / drop, and no file older than the retention."""

from __future__ import annotations

import os
import time

import pandas as pd
import pytest

from tabular_mlops.adapters.monitoring_data import masked_columns
from tabular_mlops.adapters.retention import prune_old_logs
from tabular_mlops.core.log_policy import (
    HASHED_PREFIX,
    LogPolicyError,
    check_policy,
    hashed,
    masker,
)


def test_each_input_is_kept_hashed_or_dropped_as_configured():
    names = ["age", "sex", "race"]
    logged = masker(names, {"sex": "hash", "race": "drop"}, salt="census")
    row = logged([39, "Female", "White"])
    assert set(row) == {"age", "sex"} and row["age"] == 39
    assert row["sex"] == hashed("Female", "census") and row["sex"].startswith(HASHED_PREFIX)
    assert "Female" not in str(row) and logged([40, "Female", "Black"])["sex"] == row["sex"]
    assert logged([40, None, "x"])["sex"] is None
    assert masker(names, {}, "census")([1, 2, 3]) == {"age": 1, "sex": 2, "race": 3}


def test_a_policy_for_a_column_that_is_no_input_is_refused_naming_it():
    with pytest.raises(LogPolicyError, match=r"names \['rase'\], which are not inputs"):
        check_policy({"rase": "drop"}, ["age", "sex"])


def test_the_app_logs_inputs_by_the_policy(churn, tmp_path):
    from fastapi.testclient import TestClient

    from tabular_mlops.core.scoring import FastModel
    from tabular_mlops.core.spec import ServingSettings
    from tabular_mlops.serving.app import bind, create_app
    from tabular_mlops.serving.inference_log import InferenceLogWriter, read_records

    _, model, spec = churn
    settings = ServingSettings(
        model_tag="churn:1", log_columns={"region": "drop", "contract": "hash"}
    )
    app = create_app(spec, settings)
    log = InferenceLogWriter(tmp_path)
    bind(app, FastModel(model, [f.name for f in spec.features]), log)
    row = {"tenure_months": 12.0, "monthly_charges": 70.5, "contract": "one-year",
           "region": "north"}  # fmt: skip
    assert TestClient(app).post("/predict", json={"rows": [row]}).status_code == 200
    log.close()
    logged = read_records(tmp_path)
    assert "region" not in logged.columns
    assert logged["contract"][0].startswith(HASHED_PREFIX) and logged["tenure_months"][0] == 12
    assert masked_columns(logged, ["tenure_months", "contract", "region"]) == ["contract", "region"]


def test_logs_older_than_the_retention_are_removed_and_a_running_ones_kept(tmp_path):
    old, new, running, other = (tmp_path / n for n in (
        "requests-2026-01-01-h-1.jsonl", "requests-2026-12-01-h-1.jsonl", "m-v1-3000.log",
        "notes.txt"))  # fmt: skip
    for path in (old, new, running, other):
        path.write_text("x")
    long_ago = time.time() - 100 * 86_400
    for path in (old, running, other):
        os.utime(path, (long_ago, long_ago))
    assert prune_old_logs([tmp_path], None) == []
    removed = prune_old_logs([tmp_path, tmp_path / "absent"], 90, keep=[running])
    assert removed == [old]
    assert new.exists() and running.exists() and other.exists()


def test_monitoring_sees_no_masked_column_when_nothing_was_logged():
    assert masked_columns(pd.DataFrame(), ["a"]) == []
