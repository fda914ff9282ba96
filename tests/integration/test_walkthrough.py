"""The README and the docs/ pages it points to, walked as a new user walks them: their
commands, in their order, as real processes on a fresh clone and a fresh store, with a
live service, each checked for the outcome the page states, and the clone's tracked
tree clean after each."""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import httpx
import pytest
import yaml

from tabular_mlops.adapters.paths import PROJECT_ROOT
from tests.helpers import free_port

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def clone(tmp_path_factory):
    """This checkout's tracked files in a git repository of their own (a fresh clone),
    its service on a free port, a ZenML store, BentoML home and state of its own."""
    root = tmp_path_factory.mktemp("walkthrough")
    checkout = root / "clone"
    tracked = (
        subprocess.run(["git", "ls-files", "-z"], cwd=PROJECT_ROOT, capture_output=True, check=True)
        .stdout.decode()
        .split("\0")
    )
    for name in filter(None, tracked):
        source = PROJECT_ROOT / name
        if source.is_file():
            (checkout / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(source, checkout / name)
    port = free_port()
    dev = checkout / "configs" / "environments" / "dev.yaml"
    config = yaml.safe_load(dev.read_text())
    config["stack"]["components"]["model_deployer"]["configuration"]["port"] = port
    dev.write_text(yaml.safe_dump(config, sort_keys=False))
    streaming = checkout / "configs" / "streaming.yaml"
    config = yaml.safe_load(streaming.read_text())
    config["parameters"]["streaming"]["servers"] = [f"nats://127.0.0.1:{free_port()}"]
    streaming.write_text(yaml.safe_dump(config, sort_keys=False))
    git = ["git", "-c", "user.name=t", "-c", "user.email=t@t", "-c", "commit.gpgsign=false"]
    subprocess.run([*git, "init", "-q"], cwd=checkout, check=True)
    subprocess.run([*git, "add", "-A"], cwd=checkout, check=True)
    subprocess.run([*git, "commit", "-qm", "clone"], cwd=checkout, check=True)
    env = {k: v for k, v in os.environ.items() if not k.startswith(("ZENML_", "TABULAR_MLOPS_"))}
    env.update(
        ZENML_CONFIG_PATH=str(root / "zenml"),
        ZENML_ANALYTICS_OPT_IN="false",
        ZENML_ENABLE_RICH_TRACEBACK="false",
        ZENML_AUTO_OPEN_DASHBOARD="false",
        TABULAR_MLOPS_ROOT=str(checkout),
        BENTOML_HOME=str(checkout / ".local" / "bentoml"),
    )
    state = {"path": checkout, "env": env, "url": f"http://127.0.0.1:{port}"}
    yield state
    run(state, "deploy", "--stop")
    run(state, "stream", "--stop-broker")
    run(state, "warm", "--stop")


def run(clone, *args: str, expect: int = 0) -> str:
    """``python run.py ARGS`` in the clone; its output. The clone's tracked files must be
    as committed afterwards: no command writes into the tree unless asked."""
    done = subprocess.run(
        [sys.executable, "run.py", *args],
        cwd=clone["path"],
        env=clone["env"],
        capture_output=True,
        text=True,
        timeout=900,
    )
    output = done.stdout + done.stderr
    assert done.returncode == expect, f"run.py {' '.join(args)}:\n{output[-6000:]}"
    status = subprocess.run(
        ["git", "status", "--porcelain"], cwd=clone["path"], capture_output=True, text=True
    ).stdout
    assert status == "", f"run.py {' '.join(args)} left the tree dirty:\n{status}"
    return output


def predict(clone, dataset: str = "breast_cancer", explain: bool = False) -> dict:
    from tabular_mlops.adapters.sources import load_dataset
    from tabular_mlops.core.config import DataSourceConfig

    source = DataSourceConfig(dataset=dataset)  # type: ignore[arg-type]
    row = load_dataset(source).drop(columns=["target"]).iloc[0].to_dict()
    body = {"rows": [row], **({"explain": True} if explain else {})}
    answer = httpx.post(f"{clone['url']}/predict", json=body, timeout=30)
    assert answer.status_code == 200, answer.text
    return dict(answer.json())


def python(clone, *args: str) -> str:
    """``python ARGS`` in the clone, as the README's `python -m embedded` line."""
    done = subprocess.run(
        [sys.executable, *args], cwd=clone["path"], env=clone["env"], capture_output=True,
        text=True, timeout=300,
    )  # fmt: skip
    assert done.returncode == 0, done.stdout + done.stderr
    return done.stdout


def zenml(clone, *args: str) -> str:
    """``.venv/bin/zenml ARGS`` in the clone, as the README's ZenML lines, on a wide
    terminal (ZenML's tables cut columns to the width)."""
    done = subprocess.run(
        [str(Path(sys.executable).parent / "zenml"), *args], cwd=clone["path"],
        env={**clone["env"], "COLUMNS": "250"}, capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert done.returncode == 0, done.stdout + done.stderr
    return done.stdout + done.stderr  # ZenML's tables go to stderr


def rows(count: int):
    from tabular_mlops.adapters.sources import load_dataset
    from tabular_mlops.core.config import DataSourceConfig

    return load_dataset(DataSourceConfig()).head(count)


# The whole walkthrough is one test: 276 s alone on a quiet machine (2026-12-03), over the
# suite's 900 s per-test limit beside a CPU hog once (at 752 s quiet)
@pytest.mark.timeout(2700)
def test_the_readme_in_its_order(clone):
    # Quick start: `make run` is `python run.py all`
    out = run(clone, "all", "--env", "dev")
    assert "Model 'tabular_classifier' version 1: promoted to production" in out
    assert "majority baseline: roc_auc=0.5000 (lift +0.4962)" in out  # is ML worth it?
    assert f"Serving 'tabular_classifier' version 1 at {clone['url']}" in out
    assert "143 of 143 rows scored by version 1" in out
    assert predict(clone)["model_version"] == "1"
    # "Run it again": the gates against the new champion, the deployment a no-op
    out = run(clone, "all", "--env", "dev")
    assert "version 2: not promoted: identical to production version 1" in out
    assert "Version 1 of 'tabular_classifier' is already served at" in out
    assert "rows scored by version 1" in out
    assert not list((clone["path"] / ".local" / "batch_predictions").glob("monitoring-sample-*"))
    # the service is the dev stack's model deployer's, and ZenML lists it
    listing = zenml(clone, "model-deployer", "models", "list")
    assert "tabular_classifier" in listing and "deployment_pipeline" in listing, listing
    # "Commands after the first start warm": the second `all` ran in the server the first
    # started, and `warm --stop` stops it (the next command starts another)
    served = "".join(log.read_text() for log in (clone["path"] / ".local/warm").glob("*.log"))
    assert "runs all" in served, served
    assert "warm server pid" in run(clone, "warm", "--status")
    assert "stopped the warm server" in run(clone, "warm", "--stop")
    # the dashboard table's terminal side: versions, stages, the served version
    assert "production" in run(clone, "models")
    assert ".local/reports/" in run(clone, "report")
    # Model selection: the example's candidates as tracked trials, the best trained and gated
    out = run(clone, "train", "--config", "configs/examples/model_selection.yaml")
    assert "Model 'tabular_selected' version 1: promoted to production" in out
    assert "from 4 trials (cv roc_auc" in out and "leaderboard artifact" in out
    # Configuration and environments
    out = run(clone, "train", "--env", "dev")
    assert "version 3: not promoted: identical to production version 1" in out
    out = run(clone, "train", "--set", "parameters.split.test_size=0.3")
    assert re.search(r"version 4: (promoted to production|not promoted)", out), out
    out = run(
        clone, "train",
        "--set", "parameters.training.estimator=sklearn.ensemble.RandomForestClassifier",
        "--set", "parameters.training.params={n_estimators: 200}",
    )  # fmt: skip
    assert re.search(r"version 5: (promoted to production|not promoted)", out), out
    assert "stack 'dev'" in run(clone, "stack", "diff", "--env", "dev")
    assert "kubernetes" in run(clone, "stack", "show", "--env", "prod")
    # Serving: what is served, and a rollback to a version the gate passed (already served)
    status = run(clone, "deploy", "--status")
    assert f"version 1 at {clone['url']} (answering)" in status
    run(clone, "deploy", "--version", "1", "--reason", "roll back to the first version")
    assert predict(clone)["model_version"] == "1"
    # Progressive delivery: a candidate gated offline into staging, an A/B test, feedback,
    # the rules, then promoted by hand
    out = run(
        clone, "train", "--set", "parameters.promotion.stage=staging",
        "--set", "parameters.training.params.C=0.1",
    )  # fmt: skip
    candidate = re.search(r"version (\d+): promoted to staging", out)
    assert candidate, out
    run(clone, "deploy", "--set", "stage=staging", "--strategy", "ab")
    answered = predict(clone)
    token = run(clone, "deploy", "--print-token", "feedback").strip().splitlines()[-1]
    feedback = httpx.post(
        f"{clone['url']}/feedback",
        json={"request_id": answered["request_id"], "row": 0, "label": "malignant"},
        headers={"authorization": f"Bearer {token}"},
        timeout=30,
    )
    assert feedback.status_code == 202, feedback.text
    assert "The rules say now: continue" in run(clone, "rollout", "--status")
    assert "continue" in run(clone, "rollout")
    out = run(clone, "rollout", "--promote", "--reason", "the product owner asked")
    assert f"promote: version {candidate[1]} serves all traffic" in out
    assert predict(clone)["model_version"] == candidate[1]
    # the audit trail (docs/security.md): who did what and why, and a changed line found
    trail = run(clone, "audit")
    assert "the hash chain of" in trail and "is intact" in trail
    assert "(zenml: default)" in trail  # the store's user beside the OS user
    for done in ("promote ", "deploy ", "rollout-promote", "rollout-decision"):
        assert done in trail, (done, trail)
    assert "because: the product owner asked" in trail
    kept = clone["path"] / ".local" / "audit" / "dev.jsonl"
    original = kept.read_text()
    kept.write_text(original.replace("the product owner asked", "nobody asked", 1))
    tampered = run(clone, "audit", expect=1)
    assert "TAMPERED line" in tampered and "changed after it was written" in tampered
    kept.write_text(original)
    # the rollout scenario: its own weakened candidate, rolled back
    out = run(clone, "simulate", "--scenario", "rollout")
    assert "rollback" in out
    assert f"Left: version {candidate[1]} in production" in out and "staging: none" in out
    assert predict(clone)["model_version"] == candidate[1]
    # Batch inference, monitoring and retraining
    batch = clone["path"].parent / "new_rows.csv"
    rows(50).drop(columns=["target"]).to_csv(batch, index=False)
    assert "50 of 50 rows scored" in run(clone, "infer", "--input", str(batch))
    assert "Monitoring decision:" in run(clone, "monitor")
    # the loop with the live service, on the store the rolled-back rollout left:
    # retrained, gated against production, into staging, a canary beside the live
    # version, then promoted by the demo (test_continuous_training.py retrains again and
    # again on what each retraining leaves, one strategy after another)
    served = predict(clone)["model_version"]
    out = run(clone, "simulate")
    assert "Monitoring decision: NONE" in out and "Monitoring decision: RETRAIN" in out
    assert "promoted to staging" in out
    assert f"entered a canary experiment beside version {served}" in out
    assert "in production, served alone" in out
    assert predict(clone)["model_version"] != served
    # Streaming: a file's rows as events, the consumer, what each stream holds
    events = clone["path"].parent / "events.csv"
    rows(20).to_csv(events, index=False)
    assert "Published 20 events" in run(
        clone, "stream", "--replay", str(events), "--drop", "target"
    )
    out = run(clone, "stream", "--idle-exit", "3")
    assert "Stopped: 20 events in" in out and "20 predictions, 0 dead letters" in out
    assert "TABULAR_PREDICTIONS" in run(clone, "stream", "--status")
    run(clone, "stream", "--stop-broker")
    # Embedded: the production version as ONNX, scored without the project
    run(clone, "export", "--format", "onnx")
    manifest = json.loads((clone["path"] / ".local" / "embedded" / "manifest.json").read_text())
    assert manifest["model_name"] == "tabular_classifier"
    scored = python(clone, "-m", "embedded", ".local/embedded", str(batch))
    assert scored.count("benign") + scored.count("malignant") >= 50
    # the model card, written outside the tracked tree
    out = run(clone, "models", "--card")
    card = clone["path"] / ".local" / "model_cards" / "model_card.html"
    assert str(card) in out
    page = card.read_text()
    for section in ("Intended use", "Out of scope", "Limitations and caveats", "Fairness"):
        assert section in page
    # Why this answer? The live service explains, and so does a batch with --explain
    (explained,) = predict(clone, explain=True)["predictions"]
    explanation = explained["explanation"]
    assert explanation["unit"] == "log-odds of 'malignant'" and explained["reasons"]
    assert len(explanation["contributions"]) == 5
    assert "50 of 50 rows scored" in run(clone, "infer", "--input", str(batch), "--explain")
    assert f"Stopped {clone['url']}" in run(clone, "deploy", "--stop")
    # Regression: the whole loop on the diabetes example, at the address the classifier left
    out = run(clone, "all", "--set", "parameters.task=regression", "--stream", "--export",
              ".local/embedded/regressor")  # fmt: skip
    assert "Model 'tabular_regressor' version 1: promoted to production" in out
    assert "Serving 'tabular_regressor' version 1 at" in out
    assert "111 of 111 rows scored" in out and "111 predictions, 0 dead letters" in out
    assert "checked on 111 test rows: values within" in out
    answer = predict(clone, "diabetes")
    assert set(answer["predictions"][0]) == {"prediction", "interval"}
    assert "Stopped" in run(clone, "deploy", "--stop", "--set", "model.name=tabular_regressor")
