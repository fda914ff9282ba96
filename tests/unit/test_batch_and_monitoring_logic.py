from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pandas as pd
import pytest

from tabular_mlops.adapters.batch import BatchSchemaError, check_columns, read_chunks, score_file
from tabular_mlops.adapters.monitoring_data import LabelsError, collect, performance
from tabular_mlops.adapters.simulation import log_requests, shifted
from tabular_mlops.core.config import MonitoringConfig
from tabular_mlops.core.drift import DriftSummary
from tabular_mlops.core.problems import some
from tabular_mlops.core.signals import decide


def test_bad_rows_are_written_aside_with_reasons(churn, tmp_path):
    frame, model, spec = churn
    batch = frame.drop(columns=["churn"]).head(10).astype(object)
    batch.loc[2, "tenure_months"] = "twelve"
    batch.loc[5, "contract"] = None  # never missing in training
    batch.loc[7, "region"] = None  # missing in training too: fine
    # not finite: the row alone, not the whole chunk (the scaler refuses infinity)
    batch.loc[8, "monthly_charges"], batch.loc[9, "tenure_months"] = "inf", "-1e400"
    batch.loc[9, "contract"] = None
    path = tmp_path / "batch.csv"
    batch.to_csv(path, index=False)
    result = score_file(path, model, spec, tmp_path / "out", "b1", 4, datetime.now(UTC))
    assert (result.rows_read, result.rows_scored, result.rows_rejected) == (10, 6, 4)
    rejected = pd.read_csv(result.rejected_path)
    assert rejected["row_number"].tolist() == [2, 5, 8, 9]
    assert rejected["tenure_months"][0] == "twelve"  # as the file has it, to be mended
    assert rejected["tenure_months"][3] == "-1e400"
    assert rejected["rejection_reason"].tolist() == [
        "column 'tenure_months': 'twelve' is not a number",
        "column 'contract': missing, never missing in training",
        "column 'monthly_charges': 'inf' is not a finite number",
        # each problem of a row, every value as the file has it
        "column 'tenure_months': '-1e400' is not a finite number; column 'contract': "
        "missing, never missing in training",
    ]
    scored = pd.read_parquet(result.predictions_path)
    assert len(scored) == 6 and 2 not in scored["row_number"].tolist()
    assert set(scored["prediction"]) <= {"yes", "no"}
    assert {"probability_yes", "probability_no", "model_version", "batch_id", "scored_at"} <= set(
        scored.columns
    )
    assert (scored["model_version"] == "3").all()


def test_a_batch_whose_every_row_is_rejected_names_no_predictions_file(churn, tmp_path):
    frame, model, spec = churn
    batch = frame.drop(columns=["churn"]).head(3).assign(contract=None)
    path = tmp_path / "batch.csv"
    batch.to_csv(path, index=False)
    result = score_file(path, model, spec, tmp_path / "out", "b0", 4, datetime.now(UTC))
    assert (result.rows_scored, result.rows_rejected, result.predictions_path) == (0, 3, None)
    assert not list((tmp_path / "out").glob("predictions-*"))


def test_parquet_batches_score_the_same_as_the_model(churn, tmp_path):
    frame, model, spec = churn
    features = frame.drop(columns=["churn"])
    path = tmp_path / "batch.parquet"
    features.to_parquet(path)
    result = score_file(path, model, spec, tmp_path / "out", "b2", 64, datetime.now(UTC))
    scored = pd.read_parquet(result.predictions_path)
    assert scored["prediction"].tolist() == list(model.predict(features))


def test_an_infinite_number_in_a_parquet_batch_rejects_its_row_alone(churn, tmp_path):
    frame, model, spec = churn
    batch = frame.drop(columns=["churn"]).head(5).copy()
    batch.loc[1, "monthly_charges"] = float("-inf")
    path = tmp_path / "batch.parquet"
    batch.to_parquet(path)
    result = score_file(path, model, spec, tmp_path / "out", "bp", 4, datetime.now(UTC))
    assert (result.rows_scored, result.rows_rejected) == (4, 1)
    assert pd.read_csv(result.rejected_path)["rejection_reason"].tolist() == [
        "column 'monthly_charges': '-inf' is not a finite number"
    ]


def test_parquet_is_read_in_chunks_whatever_its_row_groups(churn, tmp_path):
    frame, _, spec = churn
    path = tmp_path / "one-row-group.parquet"
    frame.to_parquet(path, row_group_size=len(frame))
    sizes = [len(chunk) for chunk, _ in read_chunks(path, spec, 64)]
    assert max(sizes) <= 64 and sum(sizes) == len(frame)


def test_a_batch_without_the_models_columns_stops(churn, tmp_path):
    frame, _, spec = churn
    path = tmp_path / "batch.csv"
    frame.drop(columns=["churn", "contract"]).to_csv(path, index=False)
    with pytest.raises(BatchSchemaError, match=r"batch.csv: missing column\(s\) \['contract'\]"):
        check_columns(path, spec)


def test_a_messy_header_is_named_as_such_by_both_readers(churn, tmp_path):
    """A spreadsheet's ';' CSV reads as one column, a column may differ only in case or
    spaces: training's reader and the batch reader both say so."""
    from tabular_mlops.adapters.sources import DataSourceError, load_dataset
    from tabular_mlops.core.config import DataSourceConfig

    frame, _, spec = churn
    path = tmp_path / "semicolons.csv"
    frame.to_csv(path, sep=";", index=False)
    hint = r"it was read as one column, whose header holds ';': the file must be comma-separated"
    with pytest.raises(BatchSchemaError, match=hint):
        check_columns(path, spec)
    with pytest.raises(DataSourceError, match=hint):
        load_dataset(DataSourceConfig(source="file", path=path, target="churn"))
    assert some(list("abcdefg")) == "['a', 'b', 'c', 'd', 'e'] and 2 more"  # not all 30
    shouting = tmp_path / "shouting.csv"
    frame.rename(columns={"contract": "Contract ", "churn": "CHURN"}).to_csv(shouting, index=False)
    with pytest.raises(BatchSchemaError, match=r"the file has 'Contract ' for 'contract': names"):
        check_columns(shouting, spec)
    with pytest.raises(DataSourceError, match=r"the file has 'CHURN' for 'churn': names must"):
        load_dataset(DataSourceConfig(source="file", path=shouting, target="churn"))
    # `--set parameters.data.target=churn ` loses its space (the value is read as YAML)
    spaced = tmp_path / "spaced.csv"
    frame.rename(columns={"churn": "churn "}).to_csv(spaced, index=False)
    with pytest.raises(DataSourceError) as refused:
        load_dataset(DataSourceConfig(source="file", path=spaced, target="churn"))
    assert "the file has 'churn ' for 'churn'" in str(refused.value)
    assert "--set 'KEY=\" name \"'" in str(refused.value)


def test_a_header_naming_a_column_twice_is_refused_by_every_reader(churn, tmp_path):
    """pandas would read the copy as 'tenure_months.1', Arrow would find one of the two:
    each reader refuses the file instead, naming the column."""
    from tabular_mlops.adapters.sources import DataSourceError, load_dataset
    from tabular_mlops.adapters.streaming.broker import BrokerError
    from tabular_mlops.adapters.streaming.replay import read_events
    from tabular_mlops.core.config import DataSourceConfig

    frame, _, spec = churn
    twice = frame.head(5).assign(copy=33).rename(columns={"copy": "tenure_months"})
    path = tmp_path / "twice.csv"
    twice.to_csv(path, index=False)
    named = r"column\(s\) \['tenure_months'\] appear more than once in the header"
    with pytest.raises(BatchSchemaError, match=named):
        check_columns(path, spec)
    with pytest.raises(DataSourceError, match=f"^{path}: {named}"):  # the path said once
        load_dataset(DataSourceConfig(source="file", path=path, target="churn"))
    with pytest.raises(BrokerError, match=named):
        read_events(path)


def test_a_file_that_is_not_a_table_is_named_with_its_line_by_every_reader(churn, tmp_path):
    """A row with a field too many or too few, or text that is not UTF-8: the file and the line,
    and what to do, from the batch reader, training's reader and the replay alike."""
    from tabular_mlops.adapters.batch import BatchFileError
    from tabular_mlops.adapters.sources import DataSourceError, load_dataset
    from tabular_mlops.adapters.streaming.broker import BrokerError
    from tabular_mlops.adapters.streaming.replay import read_events
    from tabular_mlops.core.config import DataSourceConfig

    frame, model, spec = churn
    lines = frame.head(6).to_csv(index=False).splitlines()
    ragged = tmp_path / "ragged.csv"
    ragged.write_text("\n".join([*lines[:4], lines[4] + ",extra", *lines[5:]]) + "\n")
    latin = tmp_path / "latin1.csv"  # a spreadsheet's "CSV" in Western European
    frame.head(6).assign(region=["north", "south", "Zürich", "east", "west", "north"]).to_csv(
        latin, index=False, encoding="latin-1"
    )
    short = tmp_path / "short.csv"  # pandas alone reads the missing field as missing
    short.write_text("\n".join([*lines[:3], lines[3].rsplit(",", 1)[0], *lines[4:]]) + "\n")
    fields = r"line 5 has 6 fields and the header 5: quote a value that holds a comma"
    fewer = r"line 4 has 4 fields and the header 5: add the missing field \(empty when"
    encoding = r"line 4 is not UTF-8 text \(byte 0xfc, character \d+\): save the file as UTF-8"
    for path, said in ((ragged, fields), (short, fewer), (latin, encoding)):
        with pytest.raises(BatchFileError, match=f"{path}: ({said})"):
            score_file(path, model, spec, tmp_path / "out", "b", 4, datetime.now(UTC))
        with pytest.raises(DataSourceError, match=f"{path}: ({said})"):
            load_dataset(DataSourceConfig(source="file", path=path, target="churn"))
        with pytest.raises(BrokerError, match=f"{path}: ({said})"):
            read_events(path)


def test_a_number_with_spaces_around_it_is_that_number_in_a_batch(churn, tmp_path):
    """As training's reader (pandas) and the stream read it: " 12 " is 12."""
    frame, model, spec = churn
    batch = frame.drop(columns=["churn"]).head(4).astype(object)
    padded = batch.assign(tenure_months=[f"  {v} " for v in batch["tenure_months"]])
    path = tmp_path / "padded.csv"
    padded.to_csv(path, index=False)
    result = score_file(path, model, spec, tmp_path / "out", "b", 4, datetime.now(UTC))
    assert (result.rows_scored, result.rows_rejected) == (4, 0)
    scored = pd.read_parquet(result.predictions_path)
    expected = model.predict_proba(frame.drop(columns=["churn"]).head(4))
    assert scored[[f"probability_{c}" for c in model.classes_]].to_numpy() == pytest.approx(
        expected
    )


def test_a_header_without_rows_is_refused_and_a_sample_of_rejected_rows_is_no_drift(
    churn, tmp_path
):
    """Nothing to score is said as such; a batch whose every row is rejected is scored
    (0 rows, each rejected with its reason) and its drift report says there was nothing
    to compare, instead of failing inside Evidently."""
    from tabular_mlops.adapters.batch import read_sample
    from tabular_mlops.adapters.evidently_reports import build_report

    frame, _, spec = churn
    header = tmp_path / "header.csv"
    frame.drop(columns=["churn"]).head(0).to_csv(header, index=False)
    with pytest.raises(BatchSchemaError, match=f"{header}: a header and no rows: nothing to"):
        check_columns(header, spec)
    rejected = frame.drop(columns=["churn"]).head(5).assign(tenure_months="1,234")
    path = tmp_path / "rejected.csv"
    rejected.to_csv(path, index=False)
    sample = read_sample(path, spec, 100)
    assert sample.empty

    class Evidently:
        flavor = "evidently"

    summary, page, snapshot = build_report(
        Evidently(), sample, frame, title="Batch drift", artifact="batch_drift_evidently"
    )
    assert not summary.compared_with_reference and snapshot == ""
    assert "0 rows: every row was set aside before this report" in page


CONFIG = MonitoringConfig(min_rows=10, alert_drift_share=0.2, retrain_drift_share=0.5)


@pytest.mark.parametrize(
    ("share", "rows", "accuracy", "action"),
    [
        (0.0, 100, None, "none"),
        (0.3, 100, None, "alert"),
        (0.6, 100, None, "retrain"),
        (0.0, 100, 0.5, "retrain"),
        (0.9, 5, None, "none"),
    ],
)
def test_decision_follows_the_thresholds(share, rows, accuracy, action):
    drift = DriftSummary(compared_with_reference=True, drift_share=share)
    measured = (
        None
        if accuracy is None
        else {"labels": 50.0, "labelled_rows": 50.0, "accuracy": accuracy, "f1_macro": accuracy}
    )
    assert decide(rows, drift, measured, CONFIG).action == action


def logged(churn, tmp_path, rows: int, copies: int = 1):
    """``rows`` churn rows logged as live requests (the log file ``copies`` times), and
    what monitoring collects of the last hour: (request ids, collected frame)."""
    import shutil

    frame, model, spec = churn
    config = CONFIG.model_copy(
        update={"inference_log_dir": tmp_path / "log", "batch_predictions_dir": tmp_path / "b"}
    )
    ids = log_requests(frame.head(rows), model, spec, config.inference_log_dir)
    (written,) = config.inference_log_dir.glob("requests-*.jsonl")
    for copy in range(1, copies):
        shutil.copy(written, written.with_name(written.name.replace(".jsonl", f"-{copy}.jsonl")))
    now = datetime.now(UTC)
    return ids, collect(config, [f.name for f in spec.features], now - timedelta(hours=1), now)


def test_collect_and_join_labels(churn, tmp_path):
    frame = churn[0]
    ids, current = logged(churn, tmp_path, 20)
    assert len(current) == 20 and set(current["origin"]) == {"online"}
    labels = tmp_path / "labels.csv"
    pd.DataFrame({"request_id": ids, "row": 0, "label": frame.head(20)["churn"]}).to_csv(labels)
    measured = performance(current, labels)
    assert measured is not None and measured["labelled_rows"] == 20
    pd.DataFrame({"request_id": ids}).to_csv(labels, index=False)
    with pytest.raises(LabelsError, match=r"labels.csv: missing column\(s\) \['label', 'row'\]"):
        performance(current, labels)


def test_a_repeated_prediction_counts_once_and_is_counted(churn, tmp_path):
    """A stream redelivers after a crash and a client retries: same id, row and inputs,
    logged twice (even in another file), read once; the repeats are counted."""
    _, current = logged(churn, tmp_path, 30, copies=2)
    assert len(current) == 30
    assert current.attrs["duplicate_rows"] == 30


def test_a_labels_file_that_matches_little_is_named_with_the_counts(churn, tmp_path):
    ids, current = logged(churn, tmp_path, 20)
    labels = tmp_path / "labels.csv"
    drift = DriftSummary(compared_with_reference=True, drift_share=0.0)
    pd.DataFrame({"request_id": ["elsewhere"] * 20, "row": 0, "label": "yes"}).to_csv(labels)
    measured = performance(current, labels)
    assert measured == {"labels": 20.0, "labelled_rows": 0.0}
    reasons = decide(len(current), drift, measured, CONFIG.model_copy(update={"min_rows": 1}))
    assert any("none of the file's 20 labels matches" in r for r in reasons.reasons)
    pd.DataFrame({"request_id": [*ids[:5], *["x"] * 15], "row": 0, "label": "yes"}).to_csv(labels)
    reasons = decide(len(current), drift, performance(current, labels), CONFIG)
    assert any("5 of 20 match" in r and "under 50%" in r for r in reasons.reasons)


def test_shift_moves_numbers_not_labels(churn):
    frame, _, spec = churn
    moved = shifted(frame, spec, 2.0, seed=0)
    assert (moved["churn"] == frame["churn"]).all()
    assert (
        moved["tenure_months"].mean() > frame["tenure_months"].mean() + frame["tenure_months"].std()
    )


def test_a_column_named_like_an_answer_is_refused_before_any_row_is_scored(churn, tmp_path):
    """Scoring a predictions file again (or ids named `prediction`, `row_number`) would
    give the output two columns of one name: refused, naming them, with nothing written."""
    frame, model, spec = churn
    first = score_file(_write(frame, tmp_path / "batch.csv"), model, spec, tmp_path / "out",
                       "b1", 64, datetime.now(UTC))  # fmt: skip
    again = pd.read_parquet(first.predictions_path).join(frame.drop(columns=["churn"]))
    path = _write(again, tmp_path / "scored.csv")
    message = (
        r"scored.csv: column\(s\) \['row_number', 'prediction', 'probability_no', "
        r"'probability_yes', 'model_version'\] and 2 more would be carried into the "
        r"predictions file .* rename or drop them"
    )
    with pytest.raises(BatchSchemaError, match=message):
        check_columns(path, spec)
    with pytest.raises(BatchSchemaError, match=message):
        score_file(path, model, spec, tmp_path / "out2", "b2", 64, datetime.now(UTC))
    assert not (tmp_path / "out2" / "predictions-b2.parquet").exists()
    ids = frame.assign(explanation="free text", customer_id=range(len(frame)))
    check_columns(_write(ids, tmp_path / "ids.csv"), spec)  # no --explain: not a clash
    with pytest.raises(BatchSchemaError, match=r"\['explanation'\] would be carried"):
        check_columns(tmp_path / "ids.csv", spec, explain=True)


def test_a_column_named_like_an_answer_but_for_case_is_scored_and_warned_of(
    churn, tmp_path, caplog
):
    """`Prediction` beside scoring's `prediction` is two columns for pandas and Parquet,
    one for a case-blind reader: the batch is scored, and the log names the pair."""
    frame, _, spec = churn
    path = _write(frame.assign(Prediction="old system's"), tmp_path / "cased.csv")
    with caplog.at_level("WARNING", logger="tabular_mlops.adapters.batch"):
        check_columns(path, spec)
    assert "carried column(s) 'Prediction' beside 'prediction' differ" in caplog.text
    caplog.clear()
    with caplog.at_level("WARNING", logger="tabular_mlops.adapters.batch"):
        check_columns(_write(frame, tmp_path / "plain.csv"), spec)
    assert caplog.text == ""


def _write(frame: pd.DataFrame, path):
    frame.to_csv(path, index=False)
    return path
