"""The audit trail: entries chained by hash, a changed, removed or inserted line found,
and commands writing at once taking turns."""

from __future__ import annotations

import multiprocessing

import pytest

from tabular_mlops.adapters import audit
from tabular_mlops.core.audit import verify


@pytest.fixture
def trail(tmp_path, monkeypatch):
    monkeypatch.setattr(audit, "LOCAL_DIR", tmp_path)
    return tmp_path / "audit" / "dev.jsonl"


def _write_many(directory, count: int) -> None:
    audit.LOCAL_DIR = directory
    for number in range(count):
        audit.record("dev", "deploy", "m", str(number))


def test_entries_say_who_what_and_why_and_chain(trail):
    first = audit.record("configs/environments/dev.yaml", "promote", "m", "3", stage="production")
    second = audit.record("dev", "rollout-abort", "m", "4", "latency on checkout")
    assert first is not None and second is not None
    assert (first.seq, second.seq, second.previous) == (1, 2, first.hash)
    assert first.env == "dev" and "@" in first.who and first.details == {"stage": "production"}
    entries, problems = audit.read_trail("dev")
    assert problems == [] and [e.reason for e in entries] == [None, "latency on checkout"]


def test_a_changed_a_removed_and_an_inserted_line_are_reported(trail):
    for version in "123":
        audit.record("dev", "deploy", "m", version, "because")
    lines = trail.read_text().splitlines()
    changed = [lines[0].replace('"because"', '"nobody asked"'), *lines[1:]]
    assert verify(changed)[1] == ["line 1 (#1): changed after it was written"]
    removed = [lines[0], lines[2]]
    assert verify(removed)[1] == [
        "line 2 (#3): does not follow #1; a line before it was removed, changed or inserted"
    ]
    assert verify([*lines[:1], "{}", *lines[1:]])[1] == ["line 2: not an audit entry"]
    assert verify(lines)[1] == []


def test_two_commands_at_once_take_turns(trail):
    context = multiprocessing.get_context("spawn")
    writers = [context.Process(target=_write_many, args=(trail.parent.parent, 25)) for _ in "ab"]
    for writer in writers:
        writer.start()
    for writer in writers:
        writer.join(60)
    entries, problems = audit.read_trail("dev")
    assert problems == [] and [e.seq for e in entries] == list(range(1, 51))


def test_an_unwritable_trail_does_not_fail_what_was_done(trail, caplog):
    """A full disk, or the file taken by something else: the entry is said to be missing."""
    trail.mkdir(parents=True)  # not a file: opening it for appending fails as a full disk does
    assert audit.record("dev", "stop", "m") is None
    assert "the audit entry for stop of 'm' was not written" in caplog.text


def test_a_version_a_rollback_took_out_stays_out_until_a_release():
    from datetime import UTC, datetime

    from tabular_mlops.core.audit import AuditEntry, last_served, rolled_back_from

    def entry(action: str, version: str, model: str = "m", **details: str) -> AuditEntry:
        return AuditEntry(seq=0, at=datetime.now(UTC), who="u", env="dev", action=action,
                          model=model, version=version, details=details)  # fmt: skip

    released = [entry("deploy", "5")]
    assert rolled_back_from(released, "m") == ({}, None)
    first = entry("rollback", "2", replaced="5")
    second = entry("rollback", "1", replaced="2")
    trail = [*released, first, entry("deploy", "3", "other"), second]
    # rollbacks in a row, each version with the rollback that took it out
    assert rolled_back_from(trail, "m") == ({"5": first, "2": second}, second)
    # neither a stop, an experiment begun and aborted, nor a cold rollback ends it
    trail += [
        entry("stop", "1"),
        entry("deploy", "5", rollout="canary"),
        entry("rollout-decision", "5", decision="rollback"),
        entry("rollback", "1"),
    ]
    assert set(rolled_back_from(trail, "m")[0]) == {"5", "2"}
    # a release, or an experiment promoted, does
    assert rolled_back_from([*trail, entry("deploy", "5")], "m") == ({}, None)
    promoted = entry("rollout-decision", "6", decision="promote")
    assert rolled_back_from([*trail, promoted], "m") == ({}, None)
    # rolled forward on purpose to the version a rollback took out: it is back in
    back, forward = entry("rollback", "1", replaced="3"), entry("rollback", "3", replaced="1")
    assert rolled_back_from([*released, back, forward], "m") == ({"1": forward}, forward)
    # what a rollback made after a stop replaces: the version stopped
    assert last_served([*released, entry("stop", "5"), entry("deploy", "4", "other")], "m") == "5"
    assert last_served([entry("deploy", "7", rollout="ab")], "m") is None


def test_a_release_entry_is_a_rollback_only_when_a_version_named_by_hand_replaced_another():
    from tabular_mlops.core.audit import ReleaseNote, release_entry

    by_hand = ReleaseNote(reason="v4 misprices", by_hand=True)
    assert release_entry("3", "4", None, None, by_hand, None) == ("rollback", {"replaced": "4"})
    # stopped first, then rolled back: the version stopped last is the one replaced
    assert release_entry("3", None, None, None, by_hand, "4") == ("rollback", {"replaced": "4"})
    assert release_entry("3", "3", None, None, by_hand, None) == ("rollback", {})
    # beside the live version, in an experiment, a version named by hand is a deploy
    assert release_entry("3", "4", "m-v3-1", "canary", by_hand, None) == (
        "deploy",
        {"rollout": "canary", "experiment": "m-v3-1"},
    )
    assert release_entry("5", "4", None, None, ReleaseNote(), "4") == ("deploy", {})


def test_who_asked_a_decision_by_hand_is_recorded_as_its_own_action():
    from tabular_mlops.core.audit import asked_action

    assert (asked_action("promote"), asked_action("rollback")) == (
        "rollout-promote",
        "rollout-abort",
    )


def test_an_entry_a_step_recorded_is_found_by_its_run():
    from datetime import UTC, datetime

    from tabular_mlops.core.audit import AuditEntry, recorded_for_run

    entry = AuditEntry(seq=1, at=datetime.now(UTC), who="u", env="dev", action="deploy",
                       model="m", details={"run": "deployment_pipeline-1"})  # fmt: skip
    assert recorded_for_run([entry], "deployment_pipeline-1")
    assert not recorded_for_run([entry], "deployment_pipeline-2")


def test_a_retrainings_redeploy_says_to_which_stage_and_what_decides_it():
    from tabular_mlops.core.audit import retraining_note

    assert retraining_note("production", "replace").reason == (
        "a retraining promoted it to production"
    )
    assert retraining_note("staging", "canary").reason == (
        "a retraining promoted it to staging; a canary experiment beside the live version decides"
    )


def test_a_promotion_by_the_gates_names_its_stage_champion_and_run():
    from tabular_mlops.core.audit import promotion_details
    from tabular_mlops.core.gate import PromotionOutcome

    first = PromotionOutcome(promoted=True, stage="production", model_version="1")
    assert promotion_details(first, "training_pipeline-x") == {
        "stage": "production",
        "gated_against": "none",
        "run": "training_pipeline-x",
    }
