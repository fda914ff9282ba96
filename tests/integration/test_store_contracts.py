"""What the pipelines and adapters promise of ZenML's and MLflow's stores, checked against
real ones: the session's ZenML repository, an MLflow SQLite database. Here and not in
tests/unit, whose tests open no store and start no server (`make test-unit`, seconds)."""

from __future__ import annotations

import pytest

from tabular_mlops.adapters.paths import PROJECT_ROOT


def test_no_step_takes_a_literal_parameter_which_a_dynamic_pipeline_cannot_check(zenml_repo):
    """ZenML 0.98's dynamic pipelines (the retraining) fail a step whose parameter is typed
    ``Literal`` ("typing.Literal cannot be used with issubclass()"): steps take text and
    narrow it (``core.config.as_task``)."""
    import importlib
    import typing

    from zenml.steps import BaseStep

    found = []
    for path in sorted((PROJECT_ROOT / "steps").rglob("*.py")):
        module = importlib.import_module(
            ".".join(path.relative_to(PROJECT_ROOT).with_suffix("").parts)
        )
        for name, value in vars(module).items():
            if isinstance(value, BaseStep) and value.__module__ == module.__name__:
                hints = typing.get_type_hints(value.entrypoint)
                found += [
                    f"{module.__name__}.{name}({parameter})"
                    for parameter, hint in hints.items()
                    if typing.get_origin(hint) is typing.Literal
                ]
    assert found == []


def test_every_steps_cache_key_holds_the_packages_code(zenml_repo, tmp_path, monkeypatch):
    """A changed training function is never answered from a step cached with the old one
    (ZenML's own key holds only the step's source)."""
    import pipelines
    from pipelines.training import training_pipeline  # configures the steps it calls
    from steps.training.train_model import train_model

    assert training_pipeline is not None
    policy = train_model.configuration.cache_policy
    assert policy is not None and policy.cache_func is not None
    assert policy.cache_func.attribute == "package_code_version"
    (tmp_path / "core.py").write_text("def fit(): return 1\n")
    monkeypatch.setattr(pipelines, "PACKAGE", tmp_path)
    pipelines._package_hash.cache_clear()
    try:
        before = pipelines.package_code_version()
        (tmp_path / "core.py").write_text("def fit(): return 2\n")
        pipelines._package_hash.cache_clear()
        assert pipelines.package_code_version() != before
    finally:
        pipelines._package_hash.cache_clear()


def test_a_run_a_failed_step_left_open_is_ended_before_the_next_pipeline(tmp_path):
    """ZenML's tracker leaves a step's MLflow run open when the step fails while saving its
    outputs; the next tracked step of the same process then failed ("already active")."""
    import mlflow

    from tabular_mlops.adapters.mlflow_models import end_leaked_runs

    mlflow.set_tracking_uri(f"sqlite:///{tmp_path / 'mlflow.db'}")
    try:
        # its own experiment: the process's active one (an earlier pipeline's on this
        # worker) is not in this database
        experiment = mlflow.create_experiment("leaked runs")
        mlflow.start_run(run_name="left open", experiment_id=experiment)
        mlflow.start_run(run_name="nested, left open", nested=True, experiment_id=experiment)
        assert end_leaked_runs() == 2
        assert mlflow.active_run() is None and end_leaked_runs() == 0
    finally:
        while mlflow.active_run() is not None:
            mlflow.end_run()
        mlflow.set_tracking_uri("")


def test_a_promotion_lock_is_taken_over_only_when_stale_by_the_stores_clock(
    zenml_repo, monkeypatch
):
    """A holder that died leaves its lock: it is taken over once older than ``stale_after``
    by the store's own clock. This machine's clock stepped forward an hour takes over
    nothing: the live holder keeps its lock, and the waiter times out naming it."""
    import contextlib

    from zenml.client import Client

    from tabular_mlops.adapters import promotion_lock as lock

    client = Client()
    name = lock.lock_name("lock_model", "production")
    client.create_tag(name=name)
    try:
        monkeypatch.setattr(lock, "_age", lambda created: 3600.0)  # as this clock says
        with (
            pytest.raises(lock.PromotionLockTimeoutError, match=name),
            lock.promotion_lock("lock_model", "production", timeout=1),
        ):
            pass
        monkeypatch.setattr(lock, "_store_age", lambda client, created: 700.0)
        with lock.promotion_lock("lock_model", "production", timeout=5):
            pass  # ten minutes old by the store's clock too: its holder died
    finally:
        with contextlib.suppress(KeyError):
            client.delete_tag(name)
    tags = [t.name for t in client.list_tags(size=1000).items]
    assert not [t for t in tags if t.startswith("promotion-lock")], tags


def test_a_lock_whose_holder_was_killed_on_this_machine_is_taken_over_at_once(zenml_repo):
    """A command killed (``kill -9``) while it held a promotion lock blocked every
    promotion of the model for ten minutes. The holder names itself in a second tag: a
    waiter on the same machine sees it is gone and takes the lock over at once; a live
    holder keeps it, also beside the name a dead one left behind."""
    import signal
    import socket
    import subprocess
    import sys
    import time

    from zenml.client import Client

    from tabular_mlops.adapters import promotion_lock as lock

    client = Client()
    name = lock.lock_name("lock_killed", "production")
    holding = (
        "import os, signal, sys\n"
        "from tabular_mlops.adapters.promotion_lock import promotion_lock\n"
        "with promotion_lock('lock_killed', 'production'):\n"
        "    print('held', flush=True)\n"
        "    sys.stdin.readline()\n"
    )
    holder = subprocess.Popen([sys.executable, "-c", holding], cwd=PROJECT_ROOT,
                              stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)  # fmt: skip
    try:
        assert holder.stdout is not None and holder.stdout.readline() == "held\n"
        # alive, it keeps the lock
        with (
            pytest.raises(lock.PromotionLockTimeoutError, match=name),
            lock.promotion_lock("lock_killed", "production", timeout=0.5),
        ):
            pass
        holder.send_signal(signal.SIGKILL)
        holder.wait(timeout=10)
    finally:
        holder.kill()
    # a name a dead holder left before, older than the lock: never taken for its holder
    stale_name = f"{lock.holder_prefix(name)}{socket.gethostname()}-1-0.0-leftover"
    client.create_tag(name=stale_name)
    started = time.monotonic()
    with lock.promotion_lock("lock_killed", "production", timeout=5):
        assert time.monotonic() - started < 5
        # held by a live process of this machine (this one): kept, beside the dead names,
        # also when the clocks say it is an hour old
        with pytest.MonkeyPatch.context() as clocks:
            clocks.setattr(lock, "_age", lambda created: 3600.0)
            clocks.setattr(lock, "_store_age", lambda c, created: 3600.0)
            with (
                pytest.raises(lock.PromotionLockTimeoutError, match=name),
                lock.promotion_lock("lock_killed", "production", timeout=0.5),
            ):
                pass
    # the dead holders' names went with the take-over, this one's with its release
    assert not [t.name for t in client.list_tags(size=1000).items if t.name.startswith(name)]


def test_a_lock_that_never_named_its_holder_is_taken_over_after_seconds(zenml_repo, monkeypatch):
    """A command killed between the lock's tag and its holder's (milliseconds) left a lock
    no one could account for, which blocked every decision for ten minutes: taken over
    once it has had no holder's name for ``HOLDERLESS_SECONDS`` by the store's clock."""
    import contextlib

    from zenml.client import Client

    from tabular_mlops.adapters import promotion_lock as lock

    client = Client()
    name = lock.lock_name("lock_holderless", "production")
    client.create_tag(name=name)
    try:
        monkeypatch.setattr(lock, "_age", lambda created: lock.HOLDERLESS_SECONDS + 1)
        with (
            pytest.raises(lock.PromotionLockTimeoutError, match="another command changing"),
            lock.promotion_lock("lock_holderless", "production", timeout=0.5),
        ):
            pass  # seconds old by this clock, not yet by the store's
        monkeypatch.setattr(lock, "_store_age", lambda c, created: lock.HOLDERLESS_SECONDS + 1)
        with lock.promotion_lock("lock_holderless", "production", timeout=5):
            pass
    finally:
        with contextlib.suppress(KeyError):
            client.delete_tag(name)
    assert not client.list_tags(name=f"startswith:{name}").items


def test_a_promotion_waiting_for_the_lock_looks_again_soon_then_twice_a_second(
    zenml_repo, monkeypatch
):
    """A waiter tries the lock again after 0.05 s, doubling up to 0.5 s: a promotion holds
    it a second or less, and the second of two trainings no longer waits half a second
    for nothing."""
    import contextlib

    from zenml.client import Client

    from tabular_mlops.adapters import promotion_lock as lock

    client = Client()
    name = lock.lock_name("lock_waiter", "production")
    client.create_tag(name=name)
    pauses: list[float] = []

    def wait(seconds: float) -> None:
        pauses.append(seconds)
        if len(pauses) == 6:  # the holder is done
            client.delete_tag(name)

    monkeypatch.setattr(lock, "_wait", wait)
    try:
        with lock.promotion_lock("lock_waiter", "production", timeout=60):
            assert client.get_tag(name, allow_name_prefix_match=False)  # held by this one
    finally:
        with contextlib.suppress(KeyError):
            client.delete_tag(name)
    assert pauses == [0.05, 0.1, 0.2, 0.4, 0.5, 0.5]


def test_a_lock_released_while_a_waiter_looks_at_it_is_tried_again_not_an_error(
    zenml_repo, monkeypatch
):
    """ZenML's get-by-name counts, then fetches: a tag deleted between the two queries
    (the holder releasing the lock that moment) left a page of total 1 and no items, and
    ``get_tag`` indexed it (IndexError in `promote_model`, one CI run of two trainings at
    once). The waiter reads the tag from the items alone: gone is gone, and it tries the
    lock again."""
    import contextlib

    from zenml.client import Client

    from tabular_mlops.adapters import promotion_lock as lock

    client = Client()
    name = lock.lock_name("lock_released", "production")
    client.create_tag(name=name)
    listed = Client.list_tags
    looked: list[int] = []

    def released_between_count_and_fetch(self: Client, *args: object, **kwargs: object):
        page = listed(self, *args, **kwargs)
        if str(kwargs.get("name", "")).endswith(name) and not looked:  # "equals:NAME" too
            looked.append(1)
            client.delete_tag(name)  # the holder is done, after the count
            return page.model_copy(update={"items": [], "total": 1})
        return page

    monkeypatch.setattr(Client, "list_tags", released_between_count_and_fetch)
    monkeypatch.setattr(lock, "_wait", lambda seconds: None)
    try:
        with lock.promotion_lock("lock_released", "production", timeout=10):
            assert looked == [1]  # it did look while the lock was being released
    finally:
        with contextlib.suppress(KeyError):
            client.delete_tag(name)
    assert not client.list_tags(name=name).items


def test_the_zenml_user_is_named_once_the_command_reached_its_store(tmp_path, monkeypatch):
    """The session's own ZenML store (tests/conftest.py): its user is ``default``."""
    from zenml.client import Client

    from tabular_mlops.adapters import audit

    monkeypatch.setattr(audit, "LOCAL_DIR", tmp_path)

    Client().active_user  # noqa: B018 (what every pipeline run asks first)
    entry = audit.record("dev", "deploy", "m", "1")
    assert entry is not None and entry.who.endswith(" (zenml: default)"), entry.who


def test_the_client_keeps_the_user_it_fetched_where_the_audit_reads_it():
    """``cached_zenml_user`` reads ``Client._active_user``, never the store."""
    from zenml.client import Client

    from tabular_mlops.adapters.compat import cached_zenml_user

    assert "_active_user" in Client.__annotations__ or hasattr(Client, "_active_user")
    user = Client().active_user
    assert Client()._active_user is user and cached_zenml_user() == user.name
