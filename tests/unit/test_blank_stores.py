"""Putting a copy of a blank store in place (tabular_mlops/adapters/blank_stores.py):
never over a store, whole or not at all."""

from __future__ import annotations

from pathlib import Path

from tabular_mlops.adapters.blank_stores import _put_in_place, seed_mlflow_store


def test_a_copy_is_put_in_place_whole_after_its_fix_up(tmp_path):
    blank = tmp_path / "blank.sqlite"
    blank.write_bytes(b"blank")
    target = tmp_path / "store" / "zenml.db"
    seen: list[Path] = []

    def own(copy: Path) -> None:
        assert not target.exists()  # fixed up before anyone can open it
        seen.append(copy)
        copy.write_bytes(copy.read_bytes() + b", owned")

    assert _put_in_place(blank, target, own)
    assert target.read_bytes() == b"blank, owned" and seen
    assert list(target.parent.iterdir()) == [target]  # no partial copy left behind


def test_a_store_that_exists_is_never_touched_and_a_missing_blank_one_changes_nothing(tmp_path):
    blank = tmp_path / "blank.sqlite"
    blank.write_bytes(b"blank")
    target = tmp_path / "zenml.db"
    target.write_bytes(b"a user's runs")
    assert not _put_in_place(blank, target, None)
    assert target.read_bytes() == b"a user's runs"
    missing = tmp_path / "new" / "zenml.db"
    assert not _put_in_place(tmp_path / "no-such-blank.sqlite", missing, None)
    assert not missing.parent.exists()


def test_only_a_sqlite_tracking_store_is_seeded(tmp_path):
    assert not seed_mlflow_store("http://127.0.0.1:5000")
    assert not seed_mlflow_store("postgresql://db/mlflow")


def test_a_copy_that_fails_leaves_nothing_and_the_library_creates_its_own(tmp_path, monkeypatch):
    import errno
    import shutil

    blank = tmp_path / "blank.sqlite"
    blank.write_bytes(b"blank")
    target = tmp_path / "store" / "zenml.db"

    def full_disk(source: Path, destination: Path) -> None:
        Path(destination).write_bytes(b"bla")  # what was written before the disk filled
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(shutil, "copyfile", full_disk)
    assert not _put_in_place(blank, target, None)
    assert list(target.parent.iterdir()) == []  # no store, no partial copy


def test_a_partial_copy_of_a_killed_process_is_removed_and_a_live_ones_kept(tmp_path):
    """``kill -9`` mid-copy leaves ``.zenml.db.<pid>.partial``: the next copy removes it
    once that process is gone, and leaves a running copier's alone."""
    import subprocess
    import sys

    blank = tmp_path / "blank.sqlite"
    blank.write_bytes(b"blank")
    target = tmp_path / "store" / "zenml.db"
    target.parent.mkdir()
    gone = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"],
                          capture_output=True, text=True, check=True).stdout.strip()  # fmt: skip
    dead = target.with_name(f".zenml.db.{gone}.partial")
    dead.write_bytes(b"bl")
    with subprocess.Popen([sys.executable, "-c", "import time; time.sleep(30)"]) as running:
        live = target.with_name(f".zenml.db.{running.pid}.partial")
        live.write_bytes(b"bla")
        try:
            assert _put_in_place(blank, target, None)
        finally:
            running.kill()
    assert target.read_bytes() == b"blank"
    assert sorted(p.name for p in target.parent.iterdir()) == [live.name, "zenml.db"]
