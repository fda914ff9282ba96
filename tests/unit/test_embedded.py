"""The ONNX export and the standalone scorer: same answers as the pipeline, nothing else
imported, and a file that does not answer as the pipeline does is never written."""

from __future__ import annotations

import json
import subprocess
import sys

import numpy as np
import pytest

from tabular_mlops.adapters.onnx_export import OnnxExportError, export_onnx, write
from tabular_mlops.adapters.paths import PROJECT_ROOT
from tabular_mlops.core.config import CostConfig, TrainingConfig
from tabular_mlops.core.governance import decision_rule
from tabular_mlops.core.model_factory import fit_model
from tabular_mlops.core.spec import ServingSpec
from tests.helpers import customer_churn_frame


def exported(frame, target, training=None, cost=None):
    model, _ = fit_model(frame, target, training or TrainingConfig(), cost)
    positive, threshold = decision_rule(model)
    spec = ServingSpec.from_training_data(
        "m", "4", frame, target, list(model.classes_), positive, threshold
    )
    features = [feature.name for feature in spec.features]
    return model, spec, export_onnx(model, spec, frame[features]), frame[features]


@pytest.mark.parametrize(
    "training, cost",
    [
        (None, None),
        (TrainingConfig(calibration="sigmoid"), None),
        (None, CostConfig(matrix={"yes": {"no": 10, "yes": 0}, "no": {"yes": 1, "no": 0}})),
    ],
    ids=["plain", "calibrated", "cost-tuned threshold"],
)
def test_the_embedded_file_answers_as_the_pipeline(training, cost):
    from embedded import EmbeddedModel

    frame = customer_churn_frame(rows=500)  # categoricals, missing values, string labels
    model, spec, result, features = exported(frame, "churn", training, cost)
    assert result.manifest["check"]["labels_identical"]
    embedded = EmbeddedModel.from_bytes(result.onnx, result.manifest)
    rows = features.astype(object).where(features.notna(), None).to_dict("records")
    probabilities = embedded.predict_proba(rows)
    assert np.abs(probabilities - model.predict_proba(features)).max() <= 1e-5
    assert embedded.predict(rows) == list(model.predict(features))
    if cost is not None:
        assert result.manifest["decision_threshold"] < 0.5
        assert embedded.predict(rows) != [spec.classes[i] for i in probabilities.argmax(axis=1)]
    assert result.manifest["features"][2] == {
        "name": "contract", "kind": "categorical", "input": "contract", "nullable": False,
        "fill": "month-to-month",
    }  # fmt: skip


def test_a_file_that_disagrees_with_the_pipeline_is_refused(monkeypatch):
    import embedded.scorer

    frame = customer_churn_frame(rows=300)
    real = embedded.scorer.EmbeddedModel.predict_proba
    monkeypatch.setattr(
        embedded.scorer.EmbeddedModel, "predict_proba", lambda self, rows: real(self, rows) + 1e-4
    )
    with pytest.raises(OnnxExportError, match=r"differ from the pipeline's by up to 1\.00e-04"):
        exported(frame, "churn")


def test_an_estimator_skl2onnx_cannot_convert_is_refused_with_the_reason():
    training = TrainingConfig(estimator="sklearn.semi_supervised.LabelSpreading")
    refused = r"cannot be converted to ONNX: MissingShapeCalculator: .* type .*LabelSpreading"
    with pytest.raises(OnnxExportError, match=refused):
        exported(customer_churn_frame(rows=200), "churn", training)


def test_a_forest_whose_float32_splits_move_rows_is_refused_naming_the_difference():
    training = TrainingConfig(estimator="sklearn.ensemble.RandomForestClassifier",
                              params={"random_state": 0})  # fmt: skip
    with pytest.raises(OnnxExportError, match=r"probabilities differ from the pipeline's by up"):
        exported(customer_churn_frame(rows=300), "churn", training)


def test_the_standalone_scorer_imports_neither_sklearn_pandas_zenml_nor_mlflow(tmp_path):
    frame = customer_churn_frame(rows=300)
    model, _, result, features = exported(frame, "churn")
    write(result, tmp_path / "export")
    rows = features.head(5)
    rows.to_csv(tmp_path / "rows.csv", index=False)
    program = (
        "import sys, json\n"
        "from embedded import EmbeddedModel\n"
        f"model = EmbeddedModel.load({str(tmp_path / 'export')!r})\n"
        "labels = model.predict([{'tenure_months': 3.0, 'monthly_charges': 99.0,"
        " 'contract': 'month-to-month', 'region': None}])\n"
        "heavy = sorted({m.split('.')[0] for m in sys.modules} & "
        "{'sklearn', 'pandas', 'zenml', 'mlflow', 'tabular_mlops'})\n"
        "print(json.dumps({'labels': labels, 'heavy': heavy}))\n"
    )
    answer = subprocess.run([sys.executable, "-c", program], cwd=PROJECT_ROOT,
                            capture_output=True, text=True, check=True)  # fmt: skip
    assert json.loads(answer.stdout) == {"labels": ["yes"], "heavy": []}

    cli = subprocess.run(
        [sys.executable, "-m", "embedded", str(tmp_path / "export"), str(tmp_path / "rows.csv")],
        cwd=PROJECT_ROOT, capture_output=True, text=True, check=True,
    )  # fmt: skip
    lines = [json.loads(line) for line in cli.stdout.splitlines()]
    assert [line["label"] for line in lines] == list(model.predict(rows))

    rows.head(2).to_json(tmp_path / "rows.json", orient="records")
    as_json = subprocess.run(
        [sys.executable, "-m", "embedded", str(tmp_path / "export"), str(tmp_path / "rows.json")],
        cwd=PROJECT_ROOT, capture_output=True, text=True, check=True,
    )  # fmt: skip
    assert len(as_json.stdout.splitlines()) == 2


def test_the_scorer_names_a_bad_row_and_refuses_a_tampered_file(tmp_path):
    from embedded import EmbeddedModel, InvalidRowError

    frame = customer_churn_frame(rows=300)
    _, _, result, _ = exported(frame, "churn")
    model = EmbeddedModel.from_bytes(result.onnx, result.manifest)
    good = {"tenure_months": 3.0, "monthly_charges": 99.0, "contract": "one-year", "region": None}
    with pytest.raises(InvalidRowError, match=r"row 1: feature 'tenure_months': 'abc' is not"):
        model.predict([good, {**good, "tenure_months": "abc"}])
    with pytest.raises(InvalidRowError, match=r"row 0: feature 'contract' is missing a value"):
        model.predict([{**good, "contract": None}])
    with pytest.raises(InvalidRowError, match=r"row 0: feature 'region' is missing$"):
        model.predict([{k: v for k, v in good.items() if k != "region"}])
    with pytest.raises(InvalidRowError, match=r"row 0: feature 'tenure_months': inf is not finite"):
        model.predict([{**good, "tenure_months": float("inf")}])
    with pytest.raises(InvalidRowError, match=r"row 0: feature 'tenure_months': True is not a"):
        model.predict([{**good, "tenure_months": True}])
    as_pandas_gives = {**good, "tenure_months": np.float32(3.0), "region": float("nan")}
    assert model.predict_proba([as_pandas_gives]) == pytest.approx(model.predict_proba([good]))
    with pytest.raises(ValueError, match="not the one exported with this manifest"):
        EmbeddedModel.from_bytes(result.onnx + b"x", result.manifest)
    write(result, tmp_path)
    cli = subprocess.run(
        [sys.executable, "-m", "embedded", str(tmp_path), "-"], input='{"tenure_months": 1}',
        cwd=PROJECT_ROOT, capture_output=True, text=True,
    )  # fmt: skip
    assert cli.returncode == 2 and "feature 'monthly_charges' is missing" in cli.stderr


def test_the_command_reads_a_users_csv_as_the_batch_reader_does_and_names_what_it_refuses(
    tmp_path, capsys
):
    """A byte-order mark, CRLF ends, numbers padded with spaces and the training data's
    missing markers in a nullable numeric column: scored as the records themselves. A
    file the batch reader refuses is refused here too, naming the file and the line or
    column (a copy of a column, a short or long line, a Latin-1 byte, no rows, a header
    in another case, ';' between fields, digits Python reads and a CSV reader does not)."""
    from embedded import EmbeddedModel

    frame = customer_churn_frame(rows=300)
    frame.loc[::7, "monthly_charges"] = None  # a nullable numeric feature
    _, _, result, _ = exported(frame, "churn")
    write(result, tmp_path / "export")
    model = EmbeddedModel.from_bytes(result.onnx, result.manifest)

    def cli(name: str, content: bytes) -> subprocess.CompletedProcess:
        """The command in this process (a test above runs it as its own)."""
        from embedded.__main__ import main

        (tmp_path / name).write_bytes(content)
        status = main([str(tmp_path / "export"), str(tmp_path / name)])
        said = capsys.readouterr()
        return subprocess.CompletedProcess([], status, said.out, said.err)

    header = "tenure_months,monthly_charges,contract,region"
    lines = ["  12 ,NA,one-year,north", "3,?,month-to-month,", "40,70.5,two-year,east"]
    messy = cli("messy.csv", ("\ufeff" + "\r\n".join([header, *lines, ""])).encode())
    assert messy.returncode == 0, messy.stderr
    records = [
        {"tenure_months": 12.0, "monthly_charges": None, "contract": "one-year", "region": "north"},
        {"tenure_months": 3.0, "monthly_charges": None, "contract": "month-to-month",
         "region": None},
        {"tenure_months": 40.0, "monthly_charges": 70.5, "contract": "two-year", "region": "east"},
    ]  # fmt: skip
    assert [json.loads(line) for line in messy.stdout.splitlines()] == model.answers(records)

    refused = {
        "copy.csv": (f"{header},region\n1,2,one-year,north,west\n".encode(),
                     "column(s) ['region'] appear more than once in the header"),
        "short.csv": (f"{header}\n1,2,one-year\n".encode(),
                      "line 2 has 3 fields and the header 4: add the missing field"),
        "long.csv": (f"{header}\n1,2,one-year,north,x\n".encode(),
                     "line 2 has 5 fields and the header 4: quote a value"),
        "latin1.csv": (f"{header}\n1,2,one-year,nórth\n".encode("latin-1"),
                       "line 2 is not UTF-8 text (byte 0xf3, character 15)"),
        "empty.csv": (b"", "the file is empty"),
        "header.csv": (f"{header}\n".encode(), "a header and no rows"),
        "case.csv": (b"Tenure_Months,monthly_charges,contract,region\n1,2,one-year,north\n",
                     "missing column(s) ['tenure_months']; the file has "
                     "'Tenure_Months' for 'tenure_months'"),
        "semicolon.csv": (header.replace(",", ";").encode() + b"\n1;2;one-year;north\n",
                          "its header is one column holding ';'"),
        "tabs.csv": (header.replace(",", "\t").encode() + b"\n1\t2\tone-year\tnorth\n",
                     "its header is one column holding '\\t'"),
        # a row the scorer refuses: said by its line in the file, as the batch reader does
        "digits.csv": (f"{header}\n1,2,one-year,north\n1_0,2,one-year,north\n".encode(),
                       "digits.csv: line 3: feature 'tenure_months': '1_0' is not a number"),
        "infinite.csv": (f"{header}\n1e400,2,one-year,north\n".encode(),
                         "infinite.csv: line 2: feature 'tenure_months': inf is not finite"),
        "spaces.csv": (f"{header}\n1,2,one-year,north\n   \n".encode(),
                       "line 3 has 1 fields and the header 4: delete the line of spaces"),
    }  # fmt: skip
    refused |= {
        "rows.json": (b'{"rows": [1]}', "row 0: 1 is not an object of feature values"),
        "broken.json": (b'{"rows": [', "not JSON (Expecting value: line 1 column 11"),
        "rows.parquet": (b"PAR1", "a .csv, .json or .jsonl file is scored"),
    }
    for name, (content, said) in refused.items():
        answer = cli(name, content)
        assert (answer.returncode, answer.stdout) == (2, ""), (name, answer.stderr)
        assert answer.stderr.startswith(f"error: {tmp_path / name}: "), (name, answer.stderr)
        assert said in answer.stderr, (name, answer.stderr)


def test_the_embedded_scorer_reads_rows_by_the_models_data_contract():
    from embedded import EmbeddedModel
    from embedded.scorer import InvalidRowError

    frame = customer_churn_frame(rows=500)
    _, _, result, features = exported(frame, "churn")
    embedded = EmbeddedModel.from_bytes(result.onnx, result.manifest)
    row = features.astype(object).where(features.notna(), None).to_dict("records")[0]
    as_none = embedded.predict_proba([{**row, "region": None, "monthly_charges": None}])
    for marker in ("?", "NA", ""):
        marked = {**row, "region": marker, "monthly_charges": marker, "churn": "yes"}
        assert np.array_equal(embedded.predict_proba([marked]), as_none), marker
    with pytest.raises(InvalidRowError, match="row 0: feature 'contract' is missing a value"):
        embedded.predict_proba([{**row, "contract": "?"}])  # never missing in training
    refusing = EmbeddedModel.from_bytes(
        result.onnx, {**result.manifest, "unknown_columns": "refuse"}
    )
    refusing.predict_proba([{**row, "churn": "yes"}])  # the target: a column it knows
    with pytest.raises(InvalidRowError, match=r"row 0: \['plan'\] are not features"):
        refusing.predict_proba([{**row, "plan": "gold"}])


def test_a_model_the_check_refuses_is_recorded_as_not_exported_with_the_reason():
    from materializers.onnx_model_materializer import render_html
    from tabular_mlops.adapters.onnx_export import OnnxModel

    frame = customer_churn_frame(rows=200)
    _, spec, _, _ = exported(frame, "churn")
    skipped = OnnxModel.not_exported(spec, "labels differ on 3 of 50 test rows")
    assert skipped.skipped == "labels differ on 3 of 50 test rows" and skipped.onnx == b""
    page = render_html(skipped.manifest)
    assert "not exported" in page and "labels differ on 3 of 50 test rows" in page
