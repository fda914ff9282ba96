"""`make run`'s command, `run.py all`, end to end in a process of its own, as a user runs it:
a fresh store, then a rerun in which the deployment is a no-op."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys

import pytest
import yaml

from tabular_mlops.adapters.net import free_port
from tabular_mlops.adapters.paths import CONFIG_DIR, PROJECT_ROOT

pytestmark = pytest.mark.integration


@pytest.fixture
def checkout(tmp_path):
    """Where `run.py` keeps configs and local state (`TABULAR_MLOPS_ROOT`), and its own
    ZenML store: nothing of the session's store or of the real checkout is touched."""
    root = tmp_path / "root"
    shutil.copytree(CONFIG_DIR, root / "configs")
    # the model's stable address on a free port, not the configured 3000
    deployment = root / "configs" / "deployment.yaml"
    config = yaml.safe_load(deployment.read_text())
    config["parameters"]["serving"]["port"] = free_port()
    deployment.write_text(yaml.safe_dump(config))
    (tmp_path / "repo").mkdir()
    env = {
        **os.environ,
        "TABULAR_MLOPS_ROOT": str(root),
        "TABULAR_MLOPS_STATE_DIR": str(root / ".local"),
        "ZENML_CONFIG_PATH": str(tmp_path / "zenml-config"),
        "ZENML_REPOSITORY_PATH": str(tmp_path / "repo"),
        "BENTOML_HOME": str(tmp_path / "bentoml"),
    }

    def run(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [sys.executable, "run.py", *args],
            cwd=PROJECT_ROOT,
            env=env,
            capture_output=True,
            text=True,
            timeout=600,
        )

    yield root, run
    run("deploy", "--stop")


def test_all_trains_deploys_and_scores_then_reruns_without_redeploying(checkout):
    root, run = checkout
    first = run("all")
    assert first.returncode == 0, first.stdout[-3000:] + first.stderr[-3000:]
    assert "Model 'tabular_classifier' version 1: promoted to production" in first.stdout
    assert "Serving 'tabular_classifier' version 1 at http://127.0.0.1:" in first.stdout
    assert "143 of 143 rows scored by version 1" in first.stdout
    assert (root / ".local" / "serving" / "tabular_classifier.json").is_file()

    second = run("all")
    assert second.returncode == 0, second.stdout[-3000:] + second.stderr[-3000:]
    assert "version 2: not promoted: identical to production version 1" in second.stdout
    assert "Version 1 of 'tabular_classifier' is already served at" in second.stdout
    assert not list((root / ".local" / "batch_predictions").glob("monitoring-sample-*"))
    assert "rows scored by version 1" in second.stdout

    status = run("deploy", "--status")
    assert "Model 'tabular_classifier' version 1 at http://127.0.0.1:" in status.stdout
    assert "(answering)" in status.stdout
    stopped = run("deploy", "--stop")
    assert stopped.returncode == 0 and "Stopped http://127.0.0.1:" in stopped.stdout
