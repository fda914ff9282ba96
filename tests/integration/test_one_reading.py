"""One reading of the data everywhere: the same raw rows, with "?", "NA" and empty cells,
scored by the model through each of its five readers give the same predictions.

A user's CSV where missing values are written as text is trained on, deployed and
exported for real; then the same file of raw rows goes through training's reader,
the batch pipeline, the live service (HTTP), the stream's scorer (fed by the replay's
own payloads) and the embedded ONNX scorer, in Python and as its command on the file.
"""

from __future__ import annotations

import json
import re
from pathlib import Path

import httpx
import numpy as np
import pandas as pd
import pytest

from tabular_mlops.adapters.deployment import local as local_server
from tests.helpers import free_port, invoke, serving_env

pytestmark = pytest.mark.integration

MODEL = "it_one_reading"
TARGET = "income"


def messy_frame(rows: int, seed: int) -> pd.DataFrame:
    """An Adult-like table as users export it: missing values written as "?", "NA", "n/a"
    or left empty, an id column and an assessment-only column beside the features."""
    rng = np.random.default_rng(seed)
    age = rng.integers(18, 80, rows).astype(float)
    hours = rng.normal(40, 10, rows).round(1)
    workclass = rng.choice(["Private", "Self-emp", "Gov"], rows, p=[0.6, 0.25, 0.15])
    region = rng.choice(["north", "south", "east", "west"], rows)
    score = 0.05 * (age - 45) + 0.06 * (hours - 40) + np.where(workclass == "Self-emp", 1.0, 0)
    income = np.where(score + rng.normal(0, 0.4, rows) > 0.2, ">50K", "<=50K")
    frame = pd.DataFrame(
        {
            "customer_id": [f"c-{seed}-{i}" for i in range(rows)],
            "age": age.astype(object),
            "hours": hours.astype(object),
            "workclass": workclass.astype(object),
            "region": region.astype(object),
            "race": rng.choice(["a", "b"], rows),
            TARGET: income,
        }
    )
    index = np.arange(rows)
    frame.loc[index % 17 == 3, "age"] = "?"
    frame.loc[index % 13 == 5, "hours"] = ""
    frame.loc[index % 11 == 1, "workclass"] = "?"
    frame.loc[index % 19 == 2, "workclass"] = "NA"
    frame.loc[index % 23 == 4, "region"] = "n/a"
    padded = index % 29 == 7  # a number with spaces around it, as some exports write
    frame.loc[padded, "hours"] = [f"  {value} " for value in hours[padded]]
    return frame


def data_settings(path: Path) -> list[str]:
    return [
        "--set", f"model.name={MODEL}",
        "--set", "parameters.data.source=file",
        "--set", f"parameters.data.path={path}",
        "--set", f"parameters.data.target={TARGET}",
        "--set", "parameters.data.drop_columns=[customer_id]",
        "--set", "parameters.data.assessment_columns=[race]",
        "--set", "parameters.evaluation.slice_column=workclass",
    ]  # fmt: skip


@pytest.fixture(scope="module")
def served(dev_stack, tmp_path_factory):
    """Trained on a messy CSV, deployed behind a free port and exported to ONNX; the raw
    rows to score (another draw of the same table, with its markers) beside it."""
    root = tmp_path_factory.mktemp("one_reading")
    training = root / "training.csv"
    messy_frame(900, seed=1).to_csv(training, index=False)
    raw_rows = root / "rows.csv"
    messy_frame(240, seed=2).to_csv(raw_rows, index=False)
    result = invoke("train", *data_settings(training))
    assert result.exit_code == 0, result.output
    state, port = root / "state", free_port()
    deploy = ["deploy", "--set", f"model.name={MODEL}", "--env", serving_env(root, port, state)]
    result = invoke(*deploy)
    assert result.exit_code == 0, result.output
    try:
        result = invoke("export", "--set", f"model.name={MODEL}", "--output", str(root / "onnx"))
        assert result.exit_code == 0, result.output
        yield {"root": root, "rows": raw_rows, "url": f"http://127.0.0.1:{port}"}
    finally:
        invoke(*deploy, "--stop")
        assert local_server.stray_processes(state, MODEL, keep=set()) == []


def probabilities_of(answers: list[dict]) -> np.ndarray:
    return np.array([[a["probabilities"][c] for c in sorted(a["probabilities"])] for a in answers])


def test_the_same_raw_rows_get_the_same_predictions_from_all_five_readers(served):
    from zenml.client import Client

    from embedded.scorer import EmbeddedModel
    from tabular_mlops.adapters.champion import load_version, version_at_stage
    from tabular_mlops.adapters.sources import load_dataset
    from tabular_mlops.adapters.streaming.models import StagedModels
    from tabular_mlops.adapters.streaming.replay import read_events
    from tabular_mlops.core.config import DataSourceConfig
    from tabular_mlops.core.events import Event

    path = served["rows"]
    raw = path.read_text()
    assert ",?," in raw and ",NA," in raw and ",," in raw and "n/a" in raw
    assert re.search(r",  [0-9.]+ ,", raw)
    production = version_at_stage(MODEL, "production")
    assert production is not None
    staged = load_version(production.id)
    assert "?" in staged.spec.reading.na_values

    # 1. training's reader, and the fitted pipeline itself
    source = DataSourceConfig(
        source="file", path=path, target=TARGET,
        drop_columns=["customer_id"], assessment_columns=["race"],
    )  # fmt: skip
    frame = load_dataset(source)
    expected = staged.model.predict_proba(frame[staged.features])
    expected_labels = list(staged.model.predict(frame[staged.features]))
    order = sorted(staged.spec.classes)
    expected = expected[:, [staged.spec.classes.index(c) for c in order]]

    # 2. the batch pipeline, file to file
    result = invoke("infer", "--input", str(path), "--set", f"model.name={MODEL}")
    assert result.exit_code == 0, result.output
    assert "240 of 240 rows scored" in result.output
    run = Client().list_pipeline_runs(sort_by="desc:created", size=1).items[0]
    batch = pd.read_parquet(run.steps["score_batch"].outputs["batch_result"][0].load()
                            .predictions_path).sort_values("row_number")  # fmt: skip
    batch_probabilities = batch[[f"probability_{c}" for c in order]].to_numpy()

    # 3. the live service, the records a client sends (the replay's own payloads: each
    # cell as the file has it, numbers as numbers, whole records with id and target)
    records = [json.loads(payload) for payload in read_events(path)]
    assert records[3]["age"] == "?" and records[5]["hours"] == ""
    answer = httpx.post(f"{served['url']}/predict", json={"rows": records}, timeout=30)
    assert answer.status_code == 200, answer.text
    online = answer.json()["predictions"]

    # 4. the stream's scorer, on the replay's payloads
    scorer = StagedModels(MODEL, "production").load(production.name)
    events = [Event(f"e:{i}", payload, 0.0) for i, payload in enumerate(read_events(path))]
    streamed = scorer.score(events, max_deliveries=5, now=0.0)
    assert streamed.dead_letters == []

    # 5. the embedded scorer, the ONNX export
    embedded = EmbeddedModel.load(served["root"] / "onnx")
    embedded_probabilities = embedded.predict_proba(records)
    embedded_probabilities = embedded_probabilities[:, [embedded.classes.index(c) for c in order]]
    # 6. the embedded scorer's own command, on the file itself
    import subprocess
    import sys

    from tabular_mlops.adapters.paths import PROJECT_ROOT

    command = subprocess.run(
        [sys.executable, "-m", "embedded", str(served["root"] / "onnx"), str(path)],
        cwd=PROJECT_ROOT, capture_output=True, text=True, check=True,
    )  # fmt: skip
    from_file = [json.loads(line) for line in command.stdout.splitlines()]

    for name, got in [
        ("batch", batch_probabilities),
        ("service", probabilities_of(online)),
        ("stream", probabilities_of(streamed.predictions)),
        ("embedded", embedded_probabilities),
        ("embedded command", probabilities_of(from_file)),
    ]:
        tolerance = 1e-5 if name.startswith("embedded") else 1e-9  # ONNX computes in float32
        assert got.shape == expected.shape, name
        assert np.abs(got - expected).max() <= tolerance, name
    assert list(batch["prediction"].astype(str)) == expected_labels
    assert [a["label"] for a in online] == expected_labels
    assert [a["label"] for a in streamed.predictions] == expected_labels
    assert embedded.predict(records) == expected_labels
    assert [a["label"] for a in from_file] == expected_labels


def test_the_contract_is_recorded_on_the_version_and_shipped_with_the_model(served):
    from tabular_mlops.adapters.champion import version_at_stage

    production = version_at_stage(MODEL, "production")
    assert production is not None
    contract = production.run_metadata["data_contract"]
    assert contract["other_columns"] == [TARGET, "customer_id", "race"]
    assert contract["unknown_columns"] == "ignore"
    manifest = json.loads((served["root"] / "onnx" / "manifest.json").read_text())
    assert manifest["na_values"] == contract["na_values"]
    assert manifest["other_columns"] == contract["other_columns"]
