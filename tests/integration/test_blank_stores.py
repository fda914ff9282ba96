"""A new store that starts as a copy of the blank one installed by `make`
(tabular_mlops/adapters/blank_stores.py) is the store its library would have created:
the same tables, migration stamp, flavors and server settings for ZenML, MLflow's
default experiment where MLflow puts it."""

from __future__ import annotations

import os
import sqlite3
import subprocess
import sys
from pathlib import Path

import pytest

from cli.common import BASE_ZENML_CONFIG_VARIABLE
from tabular_mlops.adapters import blank_stores
from tabular_mlops.adapters.paths import PROJECT_ROOT

pytestmark = pytest.mark.integration

#: a new ZenML store, opened the way a command opens it (cli.common.zenml_client) or
#: ZenML's own way; then the MLflow tracking store of the stack's tracker, the way
#: `activate_stack` seeds it, opened by MLflow
OPEN_STORE = """
import sys
from mlflow.tracking import MlflowClient
from zenml.client import Client
from zenml.config.global_config import GlobalConfiguration
if sys.argv[1] == "ours":
    from cli.common import zenml_client
    from tabular_mlops.adapters import blank_stores
    client = zenml_client()
    client.zen_store
    tracking = "sqlite:///" + sys.argv[2]
    assert blank_stores.seed_mlflow_store(tracking)
else:
    client = Client()
    client.zen_store
    tracking = "sqlite:///" + sys.argv[2]
MlflowClient(tracking).search_experiments()
print(GlobalConfiguration().user_id.hex)
"""


def _open(kind: str, root: Path) -> str:
    """The user id of a global config in ``root`` whose new store ``kind`` opened."""
    environment = {
        **_clean_environment(),
        "ZENML_CONFIG_PATH": str(root / "config"),
        "ZENML_REPOSITORY_PATH": str(root / "repository"),
        "PYTHONPATH": str(PROJECT_ROOT),  # run from ``root``: MLflow's default experiment
    }
    (root / "repository").mkdir(parents=True)
    done = subprocess.run(
        [sys.executable, "-c", OPEN_STORE, kind, str(root / "mlflow.db")],
        cwd=root, env=environment, capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert done.returncode == 0, done.stdout + done.stderr
    return done.stdout.split()[-1]


def _clean_environment() -> dict[str, str]:
    """This test process's environment without what earlier tests in it left for the
    commands they ran in it (the base ZenML config a staging test's command recorded)."""
    return {k: v for k, v in os.environ.items() if k != BASE_ZENML_CONFIG_VARIABLE}


def _store_path(root: Path, **extra: str) -> str:
    """What a command with the global config in ``root`` takes for its local ZenML store."""
    done = subprocess.run(
        [sys.executable, "-c", "from tabular_mlops.adapters.compat import local_zenml_store_path;"
         " print(local_zenml_store_path())"],
        cwd=PROJECT_ROOT, capture_output=True, text=True, timeout=120,
        env={**_clean_environment(), "ZENML_CONFIG_PATH": str(root / "config"), **extra},
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    return done.stdout.strip().splitlines()[-1]


def _rows(database: Path, query: str) -> set[tuple]:
    with sqlite3.connect(database) as connection:
        return set(connection.execute(query).fetchall())


def _schema(database: Path) -> set[tuple]:
    """Each table's and index's definition, its lines in any order (MLflow's migrations
    write a table's constraints in an order that differs between runs of its own)."""
    return {
        (kind, name, tuple(sorted(line.strip().rstrip(",") for line in (sql or "").splitlines())))
        for kind, name, sql in _rows(database, "select type, name, sql from sqlite_master")
    }


def test_a_store_copied_from_the_blank_one_is_the_store_its_library_creates(tmp_path):
    if not all(blank_stores.blank_store(lib).is_file() for lib in ("zenml", "mlflow")):
        # what `make` runs after installing the packages
        subprocess.run(
            [sys.executable, "-m", "tabular_mlops.adapters.blank_stores"],
            cwd=PROJECT_ROOT, check=True, capture_output=True,
        )  # fmt: skip
    ids = {kind: _open(kind, tmp_path / kind) for kind in ("ours", "zenml")}
    zenml = {
        kind: tmp_path / kind / "config/local_stores/default_zen_store/zenml.db" for kind in ids
    }

    assert _schema(zenml["ours"]) == _schema(zenml["zenml"])
    same = (
        "select * from alembic_version",
        "select name, type, integration, is_custom, source, config_schema from flavor",
        "select server_name, active, enable_analytics, display_announcements, display_updates,"
        " logo_url, onboarding_state from server_settings",
        "select name, is_service_account, active from user",
        "select name from project",
        "select name from stack",
    )
    for query in same:
        assert _rows(zenml["ours"], query) == _rows(zenml["zenml"], query), query
    for kind, user_id in ids.items():  # each store names its own global config's user
        assert _rows(zenml[kind], "select id from server_settings") == {(user_id,)}
    assert ids["ours"] != ids["zenml"]
    # a later command reads the store from the config file the first wrote (ZenML's base
    # store class then, with no `database`), or from ZENML_STORE_URL: the same lock, the
    # same copy
    assert _store_path(tmp_path / "ours") == str(zenml["ours"])
    elsewhere = tmp_path / "elsewhere" / "zenml.db"
    assert _store_path(tmp_path / "new", ZENML_STORE_URL=f"sqlite:///{elsewhere}") == str(elsewhere)
    flavor_ids = "select id from flavor"  # copied, not registered again
    assert _rows(zenml["ours"], flavor_ids) == _rows(blank_stores.blank_store("zenml"), flavor_ids)
    assert not _rows(zenml["zenml"], flavor_ids) & _rows(zenml["ours"], flavor_ids)
    mlflow = {kind: tmp_path / kind / "mlflow.db" for kind in ids}
    assert _schema(mlflow["ours"]) == _schema(mlflow["zenml"])
    query = "select * from alembic_version"
    assert _rows(mlflow["ours"], query) == _rows(mlflow["zenml"], query)
    for kind in ids:  # MLflow's default experiment, where MLflow puts it for its opener
        assert _rows(
            mlflow[kind], "select experiment_id, name, artifact_location from experiments"
        ) == {(0, "Default", str(tmp_path / kind / "mlruns" / "0"))}


def test_commands_started_together_on_a_new_store_take_turns_making_it(tmp_path):
    """Two commands at once on a new store: each opens it and activates the stack.
    Before, one of them failed in ZenML's creation of the store ("never been migrated
    with alembic"; from a copy, a default user not made yet) or in registering the
    stack's components (a component with that name already exists): in each of three
    tries with two, and of four with three. With the store's lock taken out, this test
    failed 2 of 3 (the registration lock behind it is not caught here: once the store's
    lock staggers the commands, they no longer register at the same moment)."""
    import yaml

    environment = {
        **_clean_environment(),
        "ZENML_CONFIG_PATH": str(tmp_path / "config"),
        "ZENML_REPOSITORY_PATH": str(tmp_path / "repository"),
        "TABULAR_MLOPS_STATE_DIR": str(tmp_path / "state"),
    }
    (tmp_path / "repository").mkdir()
    command = "from cli.common import activate_stack; activate_stack('dev', preflight=False)"
    started = [
        subprocess.Popen(
            [sys.executable, "-c", command],
            cwd=PROJECT_ROOT,
            env=environment,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
        )
        for _ in range(2)
    ]
    outputs = [process.communicate(timeout=300)[0] for process in started]
    assert all(process.returncode == 0 for process in started), "\n".join(outputs)
    user_id = yaml.safe_load((tmp_path / "config" / "config.yaml").read_text())["user_id"]
    database = tmp_path / "config/local_stores/default_zen_store/zenml.db"
    assert _rows(database, "select id from server_settings") == {(user_id.replace("-", ""),)}
    assert _rows(database, "select name from stack") == {("default",), ("dev",)}
