"""A micro-batch of events: validated like requests, scored together, nothing dropped."""

from __future__ import annotations

import json
import time

import numpy as np
import pytest

from tabular_mlops.core.events import Event, EventScorer
from tabular_mlops.core.scoring import scorer_for
from tabular_mlops.serving.inference_log import FlushedLog, read_records, row_lines


@pytest.fixture(scope="module")
def scorer(churn):
    frame, model, spec = churn
    names = [feature.name for feature in spec.features]
    return EventScorer(spec, scorer_for(model, names, frame[names])), frame, model


@pytest.fixture(scope="module")
def breast_cancer_scorer():
    from sklearn.datasets import load_breast_cancer

    from tabular_mlops.core.config import TrainingConfig
    from tabular_mlops.core.model_factory import fit_model
    from tabular_mlops.core.spec import ServingSpec

    frame = load_breast_cancer(as_frame=True).frame
    model, _ = fit_model(frame, "target", TrainingConfig())
    spec = ServingSpec.from_training_data("bc", "1", frame, "target", list(model.classes_))
    names = [feature.name for feature in spec.features]
    return EventScorer(spec, scorer_for(model, names, frame[names]))


def event(number: int, payload: object, deliveries: int = 1) -> Event:
    data = payload if isinstance(payload, bytes) else json.dumps(payload).encode()
    return Event(f"e:{number}", data, 1_700_000_000.0 + number, deliveries)


GOOD = {"tenure_months": 12.0, "monthly_charges": 80.5, "contract": "one-year", "region": None}


TWICE = (
    b'{"tenure_months": 1.0, "tenure_months": 2.0, "monthly_charges": 80.5, '
    b'"contract": "one-year", "region": null}'
)


def test_every_event_ends_as_a_prediction_or_a_dead_letter_with_the_reason(scorer):
    events_scorer, _, _ = scorer
    events = [
        event(0, GOOD),
        event(1, b'{"tenure_months": 1'),
        event(2, {**GOOD, "tenure_months": "12"}),
        event(3, {**GOOD, "colour": "red"}),
        event(4, TWICE),
        event(5, [1, 2]),
        event(6, GOOD, deliveries=6),
        event(7, {**GOOD, "contract": 'say "two-year"'}),  # escaped quotes: not a duplicate
        event(8, {**GOOD, "contract": "?"}),  # a missing marker, where training had none
        event(9, {**GOOD, "monthly_charges": "NA"}),  # a missing marker: missing
    ]
    batch = events_scorer.score(events, max_deliveries=5, now=time.time())
    # e:3 carries a column the model does not use: ignored (data.unknown_columns)
    assert [p["event_id"] for p in batch.predictions] == ["e:0", "e:3", "e:7", "e:9"]
    letters = {e.event_id: letter for e, letter in batch.dead_letters}
    assert sorted(letters) == ["e:1", "e:2", "e:4", "e:5", "e:6", "e:8"]
    problem = {k: (v["reason"], v["problems"][0]["field"], v["problems"][0]["problem"])
               for k, v in letters.items()}  # fmt: skip
    assert problem["e:1"][0] == "invalid" and "Invalid JSON" in problem["e:1"][2]
    assert problem["e:2"] == ("invalid", "tenure_months", "Input should be a valid number")
    assert problem["e:8"][1:] == ("contract", "missing, never missing in training")
    assert problem["e:4"] == ("invalid", "(event)", "duplicate key 'tenure_months'")
    assert problem["e:5"][0] == "invalid"
    assert problem["e:6"] == ("poison", "(event)", "delivered 6 times without a prediction")
    assert letters["e:2"]["event"] == json.dumps({**GOOD, "tenure_months": "12"})
    assert len(batch.rows) == len(batch.predictions) == 4
    assert batch.rows[3] == [GOOD["tenure_months"], None, GOOD["contract"], GOOD["region"]]


def test_streamed_labels_and_probabilities_are_the_pipelines(scorer):
    events_scorer, frame, model = scorer
    features = frame.drop(columns="churn").head(50)
    events = [
        event(i, {k: (None if v != v else v) for k, v in row.items()})
        for i, row in enumerate(features.astype(object).to_dict("records"))
    ]
    batch = events_scorer.score(events, max_deliveries=5, now=time.time())
    assert not batch.dead_letters
    expected = model.predict_proba(features)
    served = np.array([list(p["probabilities"].values()) for p in batch.predictions])
    assert np.allclose(served, expected, atol=1e-9)
    assert [p["label"] for p in batch.predictions] == list(model.predict(features))
    message = batch.message()
    assert message["model_version"] == "3" and len(message["predictions"]) == 50


def test_a_value_far_outside_training_is_dead_lettered_naming_the_feature(breast_cancer_scorer):
    row = {feature.name: 1e308 for feature in breast_cancer_scorer.spec.features}  # overflows
    batch = breast_cancer_scorer.score([event(0, row)], max_deliveries=5, now=time.time())
    [(_, letter)] = batch.dead_letters
    assert letter["reason"] == "unscorable"
    assert letter["problems"][0]["field"] == "mean radius"
    assert "far outside the range training covered" in letter["problems"][0]["problem"]


def test_streamed_rows_are_read_back_as_monitoring_reads_the_log(scorer, tmp_path):
    events_scorer, _, _ = scorer
    batch = events_scorer.score([event(0, GOOD)], max_deliveries=5, now=time.time())
    log = FlushedLog(tmp_path)
    names = [feature.name for feature in events_scorer.spec.features]
    [prediction] = batch.predictions
    log.write(row_lines("churn", "3", "stream", names, [
        (prediction["event_id"], batch.rows[0], prediction["label"], prediction["probabilities"])
    ]))  # fmt: skip
    log.close()
    frame = read_records(tmp_path)
    assert frame.attrs["unreadable_lines"] == 0
    assert frame.loc[0, "request_id"] == "e:0" and frame.loc[0, "source"] == "stream"
    assert frame.loc[0, "contract"] == "one-year" and frame.loc[0, "region"] is None


def test_a_replayed_file_sends_numbers_as_numbers_even_beside_a_bad_cell(tmp_path):
    from tabular_mlops.adapters.streaming.broker import BrokerError
    from tabular_mlops.adapters.streaming.replay import read_events

    path = tmp_path / "events.csv"
    path.write_text("a,b,target\n1.5,x,0\nabc,,1\n")
    assert [json.loads(p) for p in read_events(path, drop=["target"])] == [
        {"a": 1.5, "b": "x"},
        {"a": "abc", "b": ""},  # as the file has it: the consumer's contract reads it
    ]
    with pytest.raises(BrokerError, match=r"no column\(s\) \['label'\] to drop"):
        read_events(path, drop=["label"])


def test_a_category_training_never_saw_is_scored_and_counted_by_the_consumer(scorer):
    """As the service and batch scoring count them: the consumer's summary says how many
    predicted rows held a category training never saw, by feature."""
    from tabular_mlops.adapters.streaming.consumer import Consumer
    from tabular_mlops.core.config import StreamingConfig

    events_scorer, _, _ = scorer
    usual = {"tenure_months": 12.0, "monthly_charges": 70.5, "contract": "one-year",
             "region": "north"}  # fmt: skip
    batch = events_scorer.score(
        [event(1, usual), event(2, {**usual, "contract": "weekly"}),
         event(3, {**usual, "contract": "weekly", "region": "mars"})],
        max_deliveries=5, now=1_700_000_100.0,
    )  # fmt: skip
    assert len(batch.predictions) == 3 and batch.dead_letters == []
    consumer = Consumer(StreamingConfig(), models=None)
    consumer._count_unseen(consumer._rules(events_scorer)[2], batch.rows)
    assert consumer.stats.unseen_categories == {"contract": 2, "region": 1}
    assert consumer.stats.summary().endswith(
        "; rows holding a category training never saw: contract: 2, region: 1"
    )


def test_two_files_replayed_in_one_second_keep_their_events_apart():
    """The broker keeps one event of an id for two minutes: the default ids of two
    different files differ even within a second; the same rows sent twice share them."""
    from datetime import UTC, datetime

    from tabular_mlops.adapters.streaming.replay import default_prefix

    now = datetime(2026, 12, 6, 4, 31, 21, tzinfo=UTC)
    first, second = [b'{"a": 1}', b'{"a": 2}'], [b'{"a": 1}', b'{"a": 3}']
    assert default_prefix(first, now).startswith("replay-20261206T043121-")
    assert default_prefix(first, now) != default_prefix(second, now)
    assert default_prefix(first, now) == default_prefix(list(first), now)
    assert default_prefix([b"ab", b"c"], now) != default_prefix([b"a", b"bc"], now)


def test_a_row_the_model_chokes_on_is_dead_lettered_alone(scorer):
    events_scorer, _, _ = scorer

    class Choking:
        """The real scorer, except that it raises on one tenure, as a model can."""

        def predict_proba(self, rows):
            if any(row[0] == 13.0 for row in rows):
                raise ValueError("cannot take 13")
            return events_scorer.scorer.predict_proba(rows)

    choking = EventScorer(events_scorer.spec, Choking())
    events = [event(i, {**GOOD, "tenure_months": float(10 + i)}) for i in range(5)]
    batch = choking.score(events, max_deliveries=5, now=time.time())
    assert [p["event_id"] for p in batch.predictions] == ["e:0", "e:1", "e:2", "e:4"]
    [(_, letter)] = batch.dead_letters
    assert letter["event_id"] == "e:3" and letter["reason"] == "unscorable"
    assert "ValueError: cannot take 13" in letter["problems"][0]["problem"]


def test_predictions_messages_fit_the_broker_and_are_named_by_their_events(scorer):
    from tabular_mlops.adapters.streaming.consumer import prediction_messages

    events_scorer, _, _ = scorer
    batch = events_scorer.score([event(i, GOOD) for i in range(8)], 5, time.time())
    [(whole_id, whole)] = prediction_messages(batch, max_payload=1 << 20)
    assert len(json.loads(whole)["predictions"]) == 8
    parts = prediction_messages(batch, max_payload=len(whole) // 3)
    assert all(len(body) <= len(whole) // 3 for _, body in parts)
    ids = [p["event_id"] for _, body in parts for p in json.loads(body)["predictions"]]
    assert ids == [f"e:{i}" for i in range(8)]
    assert len({message_id for message_id, _ in parts}) == len(parts)
    again = events_scorer.score([event(i, GOOD) for i in range(8)], 5, time.time() + 5)
    assert prediction_messages(again, 1 << 20)[0][0] == whole_id  # the same batch again
    other = events_scorer.score([event(i, GOOD) for i in (0, 2, 1, 3, 4, 5, 6, 7)], 5, 0)
    assert prediction_messages(other, 1 << 20)[0][0] != whole_id


def test_the_streams_log_keeps_inputs_by_policy_and_flags_rows_far_outside(churn):
    """The stream consumer's lines follow the same rules as the service's log."""
    import json as json_

    from tabular_mlops.core.log_policy import HASHED_PREFIX, masker
    from tabular_mlops.core.problems import far_outside_check
    from tabular_mlops.serving.inference_log import row_lines

    _, _, spec = churn
    names = [f.name for f in spec.features]
    usual = {"tenure_months": 12.0, "monthly_charges": 70.5, "contract": "one-year",
             "region": "north"}  # fmt: skip
    absurd = {**usual, "monthly_charges": 7.05e9}
    lines = row_lines(
        "churn", "3", "stream", names,
        [(f"e{i}", [row[n] for n in names], "no", {"no": 0.9, "yes": 0.1})
         for i, row in enumerate((usual, absurd))],
        masker(names, {"region": "drop", "contract": "hash"}, "churn"),
        [far_outside_check(spec)([row[n] for n in names]) for row in (usual, absurd)],
    )  # fmt: skip
    first, second = (json_.loads(line) for line in lines)
    assert "region" not in first["inputs"] and first["inputs"]["contract"].startswith(HASHED_PREFIX)
    assert "outside" not in first and second["outside"] == ["monthly_charges"]


def test_a_versions_rows_are_logged_as_its_service_logs_them_unless_the_stream_says(churn):
    """One policy per version for every writer of its rows: the one its deployment
    recorded on it (`log_columns` metadata), unless `parameters.streaming.log_columns`
    is set."""
    from tabular_mlops.adapters.streaming.consumer import Consumer
    from tabular_mlops.core.config import StreamingConfig

    frame, model, spec = churn
    names = [f.name for f in spec.features]
    versioned = EventScorer(spec, scorer_for(model, names, frame[names]), {"region": "drop"})
    row = [12.0, 70.5, "one-year", "north"]
    mask, *_ = Consumer(StreamingConfig(), models=None)._rules(versioned)
    assert "region" not in mask(row) and mask(row)["contract"] == "one-year"
    told = StreamingConfig(log_columns={"contract": "hash"})
    mask, *_ = Consumer(told, models=None)._rules(versioned)
    assert mask(row)["region"] == "north" and mask(row)["contract"].startswith("sha256:")


def test_events_waiting_in_a_consumer_behind_are_kept_in_progress():
    """A consumer behind on a busy machine holds up to ``max_ack_pending`` events: those
    still waiting are told to the broker as in progress every third of ``ack_wait``, so
    they are neither delivered again nor dead-lettered for waiting."""
    import asyncio

    from tabular_mlops.adapters.streaming.consumer import Consumer
    from tabular_mlops.core.config import StreamingConfig

    class Waiting:
        touched = 0

        async def in_progress(self) -> None:
            self.touched += 1

    consumer = Consumer(StreamingConfig(ack_wait_seconds=30), models=None)
    start = consumer._touched
    waiting = [Waiting(), Waiting()]
    consumer._arrived = list(waiting)
    asyncio.run(consumer._keep_in_progress(now=start + 9))  # told less than 10 s ago
    assert [m.touched for m in waiting] == [0, 0]
    asyncio.run(consumer._keep_in_progress(now=start + 10))
    asyncio.run(consumer._keep_in_progress(now=start + 15))  # told 5 s ago
    assert [m.touched for m in waiting] == [1, 1]
    asyncio.run(consumer._keep_in_progress(now=start + 20))
    assert [m.touched for m in waiting] == [2, 2]
