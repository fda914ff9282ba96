"""The training pipeline end to end on the session's temporary ZenML store and MLflow."""

from __future__ import annotations

import contextlib
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from tabular_mlops.adapters.sources import load_dataset
from tabular_mlops.core.config import DataSourceConfig
from tests.helpers import customer_churn_frame, invoke, write_csv

pytestmark = pytest.mark.integration

MODEL = "it_breast_cancer"


def production_version(name: str = MODEL) -> str | None:
    from zenml.client import Client
    from zenml.enums import ModelStages

    return Client().get_model_version(name, ModelStages.PRODUCTION).name


@pytest.fixture(scope="module")
def first_run(dev_stack):
    result = invoke("train", "--env", "dev", "--set", f"model.name={MODEL}")
    assert result.exit_code == 0, result.output
    return result


def test_a_promotion_its_step_recorded_elsewhere_is_recorded_by_the_command(dev_stack, monkeypatch):
    """On a cluster the promote step runs in a pod, whose audit trail goes with it: the
    command records the promotion in its own trail, naming the run; on dev, where the
    step's entry is there, it records nothing more."""
    import steps.promotion.promote_model as promote_step
    from tabular_mlops.adapters.audit import read_trail

    def promotions(name: str) -> list[tuple[str, str | None, str, bool]]:
        return [(e.action, e.version, e.details["stage"], e.details["run"].startswith(
            "training_pipeline")) for e in read_trail("dev")[0] if e.model == name]  # fmt: skip

    with monkeypatch.context() as pod:
        pod.setattr(promote_step, "record", lambda *args, **kwargs: None)  # the pod's trail
        result = invoke("train", "--set", "model.name=it_promoted_in_a_pod")
    assert result.exit_code == 0, result.output
    assert promotions("it_promoted_in_a_pod") == [("promote", "1", "production", True)]
    result = invoke("train", "--set", "model.name=it_promoted_here")
    assert result.exit_code == 0, result.output
    assert promotions("it_promoted_here") == [("promote", "1", "production", True)]
    # a step after the promotion fails: the promotion stands, and is recorded all the same
    import steps.promotion.write_model_card as card_step

    def broken(*args: object, **kwargs: object) -> str:
        raise RuntimeError("the card's template is gone")

    with monkeypatch.context() as pod:
        pod.setattr(promote_step, "record", lambda *args, **kwargs: None)
        pod.setattr(card_step, "render_model_card", broken)
        result = invoke("train", "--set", "model.name=it_promoted_then_failed")
    assert result.exit_code != 0 and "the card's template is gone" in result.output
    assert promotions("it_promoted_then_failed") == [("promote", "1", "production", True)]


def test_first_run_promotes_a_model_with_its_lineage(first_run):
    import mlflow
    from mlflow import MlflowClient
    from zenml.client import Client
    from zenml.enums import ModelStages

    assert f"Model '{MODEL}' version 1: promoted to production" in first_run.output
    assert "mlflow ui --backend-store-uri sqlite:///" in first_run.output
    # exported where the default model's export is not overwritten: a folder of its own
    from tabular_mlops.adapters.paths import LOCAL_DIR

    exported = invoke("export", "--set", f"model.name={MODEL}")
    assert exported.exit_code == 0, exported.output
    folder = LOCAL_DIR / "embedded" / "models" / MODEL
    assert (folder / "manifest.json").is_file()
    assert f"python -m embedded {folder} rows.csv" in exported.output

    client = Client()
    version = client.get_model_version(MODEL, ModelStages.PRODUCTION)
    assert version.name == "1"
    for artifact in ("raw_dataset", "train_set", "test_set", "model", "evaluation_report"):
        assert version.get_artifact(artifact) is not None, artifact
    metadata = version.run_metadata
    assert metadata["gate"] == "approved"
    assert (
        len(metadata["code_version"]["git_commit"]) in (7, 40)
        or metadata["code_version"]["git_commit"] == "unknown"
    )
    assert metadata["test_metrics"]["roc_auc"] > 0.95
    assert metadata["estimator"] == "sklearn.linear_model._logistic.LogisticRegression"
    assert metadata["hyperparameters"]["C"] == "1.0"

    mlflow.set_tracking_uri(client.active_stack.experiment_tracker.get_tracking_uri())
    mlflow_client = MlflowClient()
    run = mlflow_client.get_run(metadata["mlflow_run_id"])
    assert run.data.params["estimator"] == "sklearn.linear_model.LogisticRegression"
    assert run.data.params["C"] == "1.0"
    assert run.data.metrics["test_roc_auc"] == pytest.approx(metadata["test_metrics"]["roc_auc"])
    champion = mlflow_client.get_model_version_by_alias(MODEL, "champion")
    assert str(champion.version) == metadata["registry_version"]
    assert champion.tags["zenml_model_version"] == "1"


def test_the_mlflow_model_ships_only_its_prediction_time_code(first_run, tmp_path):
    """MLflow's own loader reads the model in a fresh process, importing the code the model
    carries: the one module the fitted pipeline calls, and nothing else of the project."""
    import subprocess
    import sys

    import mlflow
    from zenml.client import Client

    version = Client().get_model_version(MODEL, "1")
    uri = str(version.run_metadata["mlflow_model_uri"])
    mlflow.set_tracking_uri(Client().active_stack.experiment_tracker.get_tracking_uri())
    local = Path(mlflow.artifacts.download_artifacts(uri, dst_path=str(tmp_path)))
    shipped = sorted(str(p.relative_to(local / "code")) for p in (local / "code").rglob("*.py"))
    assert shipped == [
        "tabular_mlops/__init__.py",
        "tabular_mlops/core/__init__.py",
        "tabular_mlops/core/transformers.py",
    ]
    probe = (
        "import sys, mlflow, pandas as pd\n"
        f"model = mlflow.pyfunc.load_model({str(local)!r})\n"
        "print(model.predict(pd.read_json(sys.stdin, orient='records').astype(float))[:2])\n"
        "print(sys.modules['tabular_mlops.core.transformers'].__file__)"
    )
    rows = load_dataset(DataSourceConfig()).drop(columns=["target"]).head(2)
    loaded = subprocess.run(
        [sys.executable, "-c", probe],
        input=rows.to_json(orient="records"),
        capture_output=True,
        text=True,
        cwd=tmp_path,
    )
    assert loaded.returncode == 0, loaded.stderr[-2000:]
    assert "malignant" in loaded.stdout or "benign" in loaded.stdout
    assert str(local / "code" / "tabular_mlops" / "core" / "transformers.py") in loaded.stdout


def test_the_registry_champion_loads_and_serves_with_mlflows_own_tools(first_run, tmp_path):
    """`models:/NAME@champion` is what MLflow users reach for: its loader and `mlflow
    models serve` must both work on what the model gate promoted."""
    import os
    import subprocess
    import sys

    import httpx
    import mlflow
    from zenml.client import Client

    from tabular_mlops.adapters.net import wait_for_url
    from tabular_mlops.adapters.processes import stop_process_group
    from tests.helpers import free_port

    tracking = Client().active_stack.experiment_tracker.get_tracking_uri()
    mlflow.set_tracking_uri(tracking)
    rows = load_dataset(DataSourceConfig()).drop(columns=["target"]).head(3)
    champion = mlflow.pyfunc.load_model(f"models:/{MODEL}@champion")
    assert list(champion.predict(rows)) == ["malignant", "malignant", "malignant"]

    port = free_port()
    mlflow_bin = str(Path(sys.executable).parent / "mlflow")
    server = subprocess.Popen(
        [mlflow_bin, "models", "serve", "-m", f"models:/{MODEL}@champion",
         "--env-manager", "local", "--host", "127.0.0.1", "--port", str(port)],
        env={
            **os.environ,
            "MLFLOW_TRACKING_URI": tracking,
            "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}",
        },
        stdout=(tmp_path / "serve.log").open("w"),
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )  # fmt: skip
    try:
        url = f"http://127.0.0.1:{port}"
        assert wait_for_url(f"{url}/ping", 120, lambda: server.poll() is not None), (
            tmp_path / "serve.log"
        ).read_text()[-2000:]
        answer = httpx.post(
            f"{url}/invocations", json={"dataframe_split": rows.to_dict(orient="split")}
        )
        assert answer.status_code == 200, answer.text
        assert answer.json()["predictions"] == ["malignant", "malignant", "malignant"]
    finally:
        stop_process_group(server.pid)


def test_the_model_card_shows_the_version_its_gates_and_lineage(first_run, tmp_path):
    """What the dashboard shows instead of ZenML Pro's model pages, and `run.py models`."""
    from zenml.client import Client

    version = Client().get_model_version(MODEL, "1")
    card = str(version.get_artifact("model_card").load())
    assert "<script" not in card.lower()
    train_set = version.get_artifact("train_set")
    for expected in (f"{MODEL} version 1", "production", "approved", "no champion (first model)",
                     train_set.content_hash[:16], version.run_metadata["mlflow_run_id"],
                     version.run_metadata["code_version"]["git_commit"], "roc_auc"):  # fmt: skip
        assert expected in card, expected
    listing = invoke("models", "--env", "dev", "--set", f"model.name={MODEL}")
    assert listing.exit_code == 0, listing.output
    assert "  1       production  approved" in listing.output
    path = tmp_path / "card.html"
    written = invoke("models", "--env", "dev", "--set", f"model.name={MODEL}", "--card", str(path))
    assert written.exit_code == 0, written.output
    assert path.read_text() == card


def test_evidentlys_interactive_page_is_built_from_the_runs_snapshot(first_run):
    """The dashboard shows the static summary; `run.py report` builds Evidently's own page
    (scripts and all) from the snapshot the run kept, to open in a browser."""
    from zenml.client import Client
    from zenml.enums import VisualizationType

    stored = Client().get_artifact_version("data_report_evidently")
    assert VisualizationType.HTML not in {v.type for v in stored.visualizations or []}
    result = invoke("report", "data_report_evidently")
    assert result.exit_code == 0, result.output
    written = Path(result.output.strip().rsplit(": ", 1)[-1])
    assert "<script" in written.read_text().lower()  # Evidently's own, interactive


def test_no_visualization_this_project_writes_has_a_script(first_run):
    """The dashboard shows HTML visualizations in <iframe sandbox="">: a script would leave
    the panel blank, so every page is static."""
    from zenml.client import Client
    from zenml.enums import VisualizationType
    from zenml.io import fileio

    html_pages = 0
    for artifact in Client().list_artifact_versions(size=1000, hydrate=True).items:
        for visualization in artifact.visualizations or []:
            if visualization.type == VisualizationType.HTML:
                with fileio.open(visualization.uri) as handle:
                    assert "<script" not in handle.read().lower(), artifact.name
                html_pages += 1
    assert html_pages >= 3  # data report, evaluation report, model card


def test_rerun_on_the_same_data_is_cached_and_keeps_production(first_run):
    result = invoke("train", "--env", "dev", "--set", f"model.name={MODEL}")
    assert result.exit_code == 0, result.output
    assert "version 2: not promoted: identical to production version 1" in result.output
    assert production_version() == "1"
    from zenml.client import Client

    rerun = Client().get_model_version(MODEL, "2")
    assert rerun.run_metadata["test_metrics"]["roc_auc"] > 0.95  # cached steps, full metadata
    result = invoke("train", "--env", "dev", "--set", f"model.name={MODEL}")
    assert "(7 of 13 steps cached)" in result.output


def test_worse_model_is_recorded_but_not_promoted(first_run, tmp_path):
    from zenml.client import Client

    result = invoke(
        "train",
        "--set", f"model.name={MODEL}",
        "--set", "parameters.training.estimator=sklearn.dummy.DummyClassifier",
        "--set", "parameters.training.params={}",
        "--set", "parameters.promotion.min_metrics={}",
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    assert "not promoted: roc_auc = 0.5000 regresses against champion version 1" in result.output
    # is ML worth it? no better than the class shares, on the same test rows
    assert "roc_auc = 0.5000 does not beat the majority baseline" in result.output
    assert "majority baseline: roc_auc=0.5000 (lift +0.0000)" in result.output
    assert production_version() == "1"
    rejected = Client().list_model_versions(MODEL, sort_by="desc:number", size=1).items[0]
    assert rejected.run_metadata["gate"] == "rejected"
    # nor is it exported for embedding, as it is never served
    exported = invoke("export", "--set", f"model.name={MODEL}", "--version", rejected.name,
                      "--output", str(tmp_path / "onnx"))  # fmt: skip
    assert exported.exit_code != 0
    assert f"version {rejected.name} never passed the promotion gate" in exported.output
    assert not (tmp_path / "onnx").exists()


def _breast_cancer_frame():
    return load_dataset(DataSourceConfig())


def _every_problem_at_once(f: pd.DataFrame) -> pd.DataFrame:
    """One file with each problem the data gate names: one pipeline run checks them all
    (the gate lists every violation; tests/unit/test_checks.py has each one alone)."""
    broken = f.drop(columns=["mean radius"]).assign(
        diagnosis_code=(f["target"] == "malignant").astype(int),
        visit=pd.date_range("2024-01-01", periods=len(f), freq="D").strftime("%Y-%m-%d"),
        **{
            "worst area": np.nan,
            "mean perimeter": f["mean perimeter"] * 1000,
            "mean texture": f["mean texture"].where(f.index % 7 != 0, "n/a"),
            "worst perimeter": f["worst perimeter"].where(f.index % 100 != 5, np.inf),
        },
    )
    return pd.concat([broken, broken.head(100), broken.head(100)], ignore_index=True)


@pytest.mark.parametrize(
    ("corrupt", "messages"),
    [
        (
            _every_problem_at_once,
            [
                "[column_removed] column 'mean radius': the reference (the production model's "
                "training data) has it, this data does not",
                "[label_leak] column 'diagnosis_code': predicts 'target' on its own with "
                "balanced accuracy 1.000 (out of fold; limit 0.99)",
                "[duplicate_rows] dataset: 26.0% of rows (200) repeat an earlier row exactly",
                "[date_column] column 'visit': values are dates or times (e.g. '2024-01-01')",
                "[not_all_missing] column 'worst area': all 769 values are missing",
                "[median_shift] column 'mean perimeter': median 8.75e+04, reference 86.21: "
                "3.0 orders of magnitude (a unit change?)",
                "[missing_increase] column 'mean texture': 14.6% missing, reference 0.0% "
                "(allowed +5% points)",
                "[infinite] column 'worst perimeter': 8 rows hold an infinite value (first at "
                "row 5)",
            ],
        ),
        (
            lambda f: f.assign(target=(f["target"] == "benign").astype(int)),
            [
                "[categorical] column 'target': expected categorical (string) values, got dtype "
                "int64"
            ],
        ),
        (
            lambda f: f.assign(**{c: f[c] + f[c].std() for c in f.columns if c != "target"}),
            ["of columns drifted (allowed 50%): "],
        ),
    ],
    ids=["every-check-at-once", "wrong-label-type", "drift"],
)
def test_bad_data_fails_the_gate_and_leaves_production(first_run, tmp_path, corrupt, messages):
    from zenml.client import Client

    path = write_csv(corrupt(_breast_cancer_frame()), tmp_path / "bad.csv")
    result = invoke(
        "train",
        "--set", f"model.name={MODEL}",
        "--set", "parameters.data.source=file",
        "--set", f"parameters.data.path={path}",
    )  # fmt: skip
    assert result.exit_code == 1
    assert "step 'validate_data'" in result.output
    assert "DataValidationError" in result.output
    for message in messages:
        assert message in result.output, result.output
    assert "\n→ step 'validate_data' failed (DataValidationError): " in result.output
    assert production_version() == "1"
    run = Client().list_pipeline_runs(sort_by="desc:created", size=1).items[0]
    assert run.steps["validate_data"].status.value == "failed"
    assert "train_model" not in run.steps or run.steps["train_model"].status.value != "completed"


def test_a_leak_let_through_the_data_gate_is_stopped_as_too_good_to_be_true(first_run, tmp_path):
    frame = _breast_cancer_frame()
    leaked = frame.assign(diagnosis_code=(frame["target"] == "malignant").astype(int))
    path = write_csv(pd.concat([leaked] * 2, ignore_index=True), tmp_path / "leaked.csv")
    result = invoke(
        "train",
        "--set", f"model.name={MODEL}",
        "--set", "parameters.data.source=file",
        "--set", f"parameters.data.path={path}",
        "--set", "parameters.validation.accept_column_changes=[diagnosis_code]",
        "--set", "parameters.validation.accept_predictive_columns=[diagnosis_code]",
        "--set", "parameters.validation.max_duplicate_share=1",
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    assert (
        "not promoted: accuracy = 1.0000 on 285 test rows is at or above the plausibility "
        "ceiling 1.0: a leak (a column that carries the label) is likelier" in result.output
    )
    assert production_version() == "1"


def test_accepted_drift_passes_the_gate_and_is_recorded(first_run, tmp_path):
    from zenml.client import Client

    frame = _breast_cancer_frame()
    shifted = frame.assign(**{c: frame[c] + frame[c].std() for c in frame.columns if c != "target"})
    path = write_csv(shifted, tmp_path / "drifted.csv")
    result = invoke(
        "train",
        "--accept-drift", "--reason", "the new instrument reads higher",
        "--set", f"model.name={MODEL}",
        "--set", "parameters.data.source=file",
        "--set", f"parameters.data.path={path}",
        "--set", "parameters.promotion.min_metrics={}",
        "--set", "parameters.promotion.max_regression=1",
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    run = Client().list_pipeline_runs(sort_by="desc:created", size=1).items[0]
    accepted = run.model_version.run_metadata["drift_accepted"]
    assert accepted["drift_share"] > 0.5
    assert "mean radius" in accepted["columns"]


def test_user_csv_with_categoricals_and_missing_values_trains_and_promotes(dev_stack, tmp_path):
    path: Path = write_csv(customer_churn_frame(rows=600), tmp_path / "churn.csv")
    result = invoke(
        "train",
        "--set", "model.name=it_churn",
        "--set", "parameters.data.source=file",
        "--set", f"parameters.data.path={path}",
        "--set", "parameters.data.target=churn",
        "--set", "parameters.evaluation.slice_column=contract",
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    assert "Model 'it_churn' version 1: promoted to production" in result.output
    assert production_version("it_churn") == "1"


def test_two_trainings_at_once_never_promote_a_version_gated_against_a_stale_champion(
    dev_stack,
):
    """Each promotion replaces the very version it was gated against: of two concurrent
    runs, the one that finds a newer champion than it was gated against is gated again.
    (Two, not three: each is a fresh interpreter and a whole training, and two started
    together always overlapped.)"""
    import subprocess
    import sys

    from zenml.client import Client

    from tabular_mlops.adapters.paths import PROJECT_ROOT

    race = "it_race"
    assert invoke("train", "--set", f"model.name={race}").exit_code == 0

    def train(seed: int) -> subprocess.Popen[str]:
        return subprocess.Popen(
            [sys.executable, "run.py", "train", "--set", f"model.name={race}",
             "--set", f"parameters.split.random_state={seed}"],
            cwd=PROJECT_ROOT, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
        )  # fmt: skip

    runs = [train(seed) for seed in (1, 2)]
    outputs = [run.communicate(timeout=600)[0] for run in runs]
    assert all(run.returncode == 0 for run in runs), "\n".join(o[-3000:] for o in outputs)

    replaced: dict[str, str] = {}
    regated = 0
    for version in Client().list_model_versions(race, size=50).items:
        metadata = version.run_metadata
        regated += metadata.get("first_gated_against") != metadata.get("gated_against")
        if str(metadata.get("promotion", "")).startswith("promoted"):
            against = str(metadata["gated_against"])
            assert against not in replaced, (
                f"versions {replaced[against]} and {version.name} both replaced {against}"
            )
            replaced[against] = version.name
    # a chain from version 1 to today's production, each link gated against the one before
    production = production_version(race)
    chain, current = [], "1"
    while current in replaced:
        current = replaced[current]
        chain.append(current)
    assert chain and chain[-1] == production, (replaced, production)
    assert regated >= 1  # the runs did overlap: some candidate met a newer champion


def test_a_training_killed_mid_run_is_marked_failed_by_the_next_command(dev_stack):
    """kill -9 of a `run.py train` in the middle of training: the next command marks its
    ZenML run and its MLflow run failed, and says so."""
    import os
    import signal
    import subprocess
    import sys
    import time

    import mlflow
    from mlflow import MlflowClient
    from zenml.client import Client

    from tabular_mlops.adapters.paths import PROJECT_ROOT

    killed = "it_killed"
    client = Client()
    mlflow.set_tracking_uri(client.active_stack.experiment_tracker.get_tracking_uri())
    MlflowClient().search_experiments()  # the store exists before two processes open it
    process = subprocess.Popen(
        [sys.executable, "run.py", "train", "--set", f"model.name={killed}",
         "--set", "parameters.training.search={param_grid: {C: [0.01, 0.1, 1, 10, 100, 1000]},"
                  " cv: 5}"],
        cwd=PROJECT_ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        start_new_session=True,
    )  # fmt: skip

    def tracked(name: str) -> list:
        return MlflowClient().search_runs(
            [e.experiment_id for e in MlflowClient().search_experiments()],
            filter_string=f"tags.mlflow.runName = '{name}'",
        )

    deadline, run = time.monotonic() + 120, None
    while time.monotonic() < deadline and process.poll() is None:
        runs = client.list_pipeline_runs(sort_by="desc:created", size=5).items
        mine = [r for r in runs if r.model_version and r.model_version.model.name == killed]
        if mine and "train_model" in mine[0].steps and tracked(mine[0].name):
            run = mine[0]
            break
        time.sleep(0.05)
    assert run is not None, "the training never reached its MLflow run"
    os.killpg(process.pid, signal.SIGKILL)
    process.wait()
    assert client.get_pipeline_run(run.id).status.value == "running"

    result = invoke("stack", "register", "--env", "dev")
    assert result.exit_code == 0, result.output
    assert f"Run '{run.name}' marked failed: its process ({process.pid}) died" in result.output
    after = client.get_pipeline_run(run.id)
    assert after.status.value == "failed"
    assert all(step.status.value != "running" for step in after.steps.values())
    assert all(r.info.status == "FAILED" for r in tracked(run.name))


def test_never_promoted_versions_are_pruned_and_their_runs_stay(dev_stack):
    """Reruns and rejected candidates leave at most `keep_unpromoted_versions` versions;
    the runs that made the pruned ones, with their gate decisions, remain."""
    from zenml.client import Client

    pruned_model = "it_prune"
    for _ in range(4):
        result = invoke(
            "train",
            "--set", f"model.name={pruned_model}",
            "--set", "parameters.promotion.keep_unpromoted_versions=1",
        )  # fmt: skip
        assert result.exit_code == 0, result.output
    client = Client()
    versions = client.list_model_versions(pruned_model, size=100).items
    assert sorted(v.number for v in versions if v.stage is None) == [3, 4]  # kept, and own
    assert production_version(pruned_model) == "1"
    runs = [
        r
        for r in client.list_pipeline_runs(pipeline="training_pipeline", size=200).items
        if "validate_model" in r.steps
    ]
    assert len(runs) >= 4  # every run's evidence is still there


def test_a_failure_ends_with_one_line_and_the_traceback_only_with_verbose(first_run, tmp_path):
    import subprocess
    import sys

    from tabular_mlops.adapters.paths import PROJECT_ROOT

    frame = _breast_cancer_frame()
    path = write_csv(frame.assign(**{"worst area": np.nan}), tmp_path / "bad.csv")
    args = ["train", "--set", f"model.name={MODEL}", "--set", "parameters.data.source=file",
            "--set", f"parameters.data.path={path}"]  # fmt: skip

    def run(*flags: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [sys.executable, "run.py", *flags, *args],
            cwd=PROJECT_ROOT,
            capture_output=True,
            text=True,
        )

    quiet = run()
    assert quiet.returncode == 1
    output = quiet.stdout + quiet.stderr
    assert "Traceback" not in output
    last = [line for line in output.splitlines() if line.strip()][-1]
    assert last.startswith("→ step 'validate_data' failed (DataValidationError): ")
    assert "first [not_all_missing] column 'worst area'" in last
    assert "Fix: fix the data, or the thresholds under parameters.validation" in last
    verbose = run("--verbose")
    assert verbose.returncode == 1
    assert "Traceback" in verbose.stdout + verbose.stderr


def test_failures_and_rejections_reach_the_stacks_alerter(dev_stack, tmp_path):
    """dev's alerter (the local-file flavor) gets a line for a failed run and for a
    rejected candidate, each naming what happened."""
    import json

    from tabular_mlops.adapters.paths import LOCAL_DIR

    alerted = "it_alerts"
    assert invoke("train", "--set", f"model.name={alerted}").exit_code == 0
    alerts = LOCAL_DIR / "alerts" / "dev.jsonl"
    seen = alerts.read_text().count("\n") if alerts.exists() else 0
    path = write_csv(_breast_cancer_frame().drop(columns=["mean radius"]), tmp_path / "bad.csv")
    failed = invoke(
        "train", "--set", f"model.name={alerted}", "--set", "parameters.data.source=file",
        "--set", f"parameters.data.path={path}",
    )  # fmt: skip
    assert failed.exit_code == 1
    rejected = invoke("train", "--set", f"model.name={alerted}",
                      "--set", "parameters.training.params={C: 0.0001, max_iter: 5}",
                      "--set", "parameters.split.random_state=7")  # fmt: skip
    assert rejected.exit_code == 0, rejected.output
    new = [json.loads(line)["message"] for line in alerts.read_text().splitlines()[seen:]]
    assert any(
        "failed at step 'validate_data': DataValidationError: data validation failed" in m
        for m in new
    ), new
    assert any(f"model '{alerted}' version" in m and "not promoted: " in m for m in new), new


def test_a_new_store_records_the_commit_from_its_first_run(dev_stack, tmp_path):
    """ZenML remembers "no code repository here" per path from the first source it
    resolves; registering this checkout's repository must make it look again."""
    import subprocess

    from zenml.client import Client
    from zenml.utils import code_repository_utils

    from tabular_mlops.adapters import code_repository
    from tabular_mlops.adapters.compat import forget_code_repositories

    subprocess.run(["git", "init", "-q", str(tmp_path)], check=True)
    (tmp_path / "run.py").write_text("")
    subprocess.run(["git", "-C", str(tmp_path), "add", "."], check=True)
    subprocess.run(["git", "-C", str(tmp_path), "-c", "user.name=t", "-c", "user.email=t@t",
                    "commit", "-qm", "one"], check=True)  # fmt: skip
    client = Client()
    with contextlib.suppress(KeyError):
        client.delete_code_repository(code_repository.NAME)
    forget_code_repositories()
    assert code_repository_utils.find_active_code_repository(str(tmp_path)) is None  # cached
    code_repository.register(client)
    code_repository.forget_cached()  # as every stack activation does after registering
    found = code_repository_utils.find_active_code_repository(str(tmp_path))
    assert found is not None and found.code_repository.name == code_repository.NAME
    head = subprocess.run(["git", "-C", str(tmp_path), "rev-parse", "HEAD"], check=True,
                          capture_output=True, text=True).stdout.strip()  # fmt: skip
    assert found.current_commit == head and not found.is_dirty
