"""Bad flags and bad config fail before any pipeline starts, with the file and key named."""

from __future__ import annotations

from pathlib import Path

from tests.helpers import invoke, serving_env


def test_help_lists_the_commands():
    result = invoke("--help")
    assert result.exit_code == 0
    for command in ("train", "stack", "dashboard"):
        assert command in result.output


def test_unknown_environment():
    result = invoke("train", "--env", "qa")
    assert result.exit_code == 1
    assert "unknown environment 'qa'" in result.output
    assert "available: " in result.output


def test_misspelt_config_key_from_the_command_line():
    result = invoke("train", "--set", "parameters.split.test_sise=0.3")
    assert result.exit_code == 1
    assert "configs/training.yaml" in result.output
    assert "parameters.split.test_sise: unknown key (misspelt?)" in result.output


def test_bad_value_in_a_config_file(tmp_path):
    config = tmp_path / "training.yaml"
    config.write_text("model: {name: m}\nparameters:\n  data: {source: file, path: data.xlsx}\n")
    result = invoke("train", "--config", str(config))
    assert result.exit_code == 1
    assert f"{config}" in result.output
    assert "parameters.data: path 'data.xlsx' has suffix '.xlsx'" in result.output


def test_missing_config_file(tmp_path):
    result = invoke("train", "--config", str(tmp_path / "nope.yaml"))
    assert result.exit_code == 1
    assert "nope.yaml: no such config file" in result.output


def test_unknown_flag_is_a_usage_error():
    result = invoke("train", "--no-cahce")
    assert result.exit_code == 2
    assert "No such option '--no-cahce'. Did you mean '--no-cache'?" in result.output


def test_stack_show_prints_the_declared_components():
    result = invoke("stack", "show", "--env", "dev")
    assert result.exit_code == 0
    assert "experiment_tracker   dev-mlflow-tracker (mlflow)" in result.output


def test_status_reads_the_state_file_without_zenml_and_names_a_broken_one(tmp_path):
    (tmp_path / "tabular_classifier.json").write_text('{"broken')
    result = invoke("deploy", "--status", "--env", serving_env(tmp_path / "env", 3999, tmp_path))
    assert result.exit_code == 1
    assert f"{tmp_path / 'tabular_classifier.json'}: not a service record" in result.output
    assert "delete the file" in result.output
    empty = serving_env(tmp_path / "env2", 3999, tmp_path / "empty")
    result = invoke("deploy", "--status", "--env", empty)
    assert result.exit_code == 3  # nothing served: a probe or a script can tell
    assert "No live service for model 'tabular_classifier'." in result.output


def test_a_decision_cut_short_is_named_by_status_and_stop(tmp_path):
    """A rollout decision whose command died is noted where `deploy --status` reads without
    ZenML: it names the decision and the command that carries it out."""
    from tabular_mlops.adapters.deployment.local import LocalProcessTarget
    from tabular_mlops.core.config import LocalServingConfig, ServingConfig

    state = tmp_path / "state"
    state.mkdir()
    target = LocalProcessTarget(ServingConfig(), LocalServingConfig(state_dir=state))
    env = serving_env(tmp_path / "env", 3999, state)
    target.note_decision("tabular_classifier", {"decision": "abort", "experiment": "e1",
                                                "candidate": "7"})  # fmt: skip
    status = invoke("deploy", "--status", "--env", env)
    assert status.exit_code == 3, status.output
    assert (
        "the abort of rollout e1 (candidate version 7) is not carried out to its end (its "
        "command died, or is still at it): `python run.py rollout --env "
        f"{env} --set model.name=tabular_classifier` carries it out"
    ) in status.output
    # no experiment's record left: the traffic has moved, only the bookkeeping waits, and
    # a stop (the emergency lever) goes ahead, saying so (test_rollout.py: one refused)
    stop = invoke("deploy", "--stop", "--env", env)
    assert stop.exit_code == 0 and "The abort of rollout e1" in stop.output, stop.output
    (state / "tabular_classifier.decision.json").write_text("{torn")  # still named
    assert "is not carried out" in invoke("deploy", "--status", "--env", env).output
    target.note_decision("tabular_classifier", None)
    assert target.noted_decision("tabular_classifier") is None


def test_a_model_name_nothing_serves_is_answered_with_the_models_served_and_not_audited(
    tmp_path,
):
    """A typo in ``--set model.name`` stopped nothing, said only "no live service" and wrote
    a "stop" into the audit trail as if something had been stopped."""
    from datetime import UTC, datetime

    from tabular_mlops.adapters.audit import read_trail
    from tabular_mlops.adapters.deployment.local import record_live
    from tabular_mlops.adapters.deployment.target import LocalProcess, RunningService

    state = tmp_path / "state"
    state.mkdir()
    served = RunningService(
        model_name="it_churn", model_version="4", bento_tag="it_churn_service:abc",
        url="http://127.0.0.1:3999", started_at=datetime.now(UTC),
        runs_as=LocalProcess(pid=2**22 + 1, port=41234, log_file=str(state / "log")),
    )  # fmt: skip
    record_live(state, served)
    env = serving_env(tmp_path / "env", 3999, state)
    before = len(read_trail(env)[0])
    for flag in ("--stop", "--status"):
        result = invoke("deploy", flag, "--env", env, "--set", "model.name=it_chrun")
        assert "No live service for model 'it_chrun'" in result.output, result.output
        assert (
            "Served here: 'it_churn' (version 4, http://127.0.0.1:3999); "
            "`--set model.name=NAME` chooses one." in result.output
        )
    assert len(read_trail(env)[0]) == before


def test_status_and_stop_on_dev_load_no_zenml_nor_a_web_framework(tmp_path):
    """Why `deploy --status` and `--stop` answer in half a second on any machine: the
    local model deployer's state is files, read without ZenML (1.7 s to import), FastAPI
    or BentoML; checked by module, not by a clock."""
    import subprocess
    import sys

    env = serving_env(tmp_path / "env", 3999, tmp_path / "state")
    probe = (
        "import sys\nfrom click.testing import CliRunner\nfrom cli.main import cli\n"
        f"for flag in ('--status', '--stop'):\n"
        f"    CliRunner().invoke(cli, ['deploy', flag, '--env', {env!r}])\n"
        "print(sorted(n for n in ('zenml', 'mlflow', 'bentoml', 'fastapi', 'evidently') "
        "if n in sys.modules))"
    )
    result = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip().splitlines()[-1] == "[]", result.stdout


def test_a_serving_key_of_the_model_deployer_in_deployment_yaml_says_where_it_lives():
    result = invoke("deploy", "--status", "--set", "parameters.serving.port=3001")
    assert result.exit_code == 1
    assert "configs/deployment.yaml (with --set flags applied)" in result.output
    assert "stack.components.model_deployer.configuration.port" in result.output


def test_a_crash_ends_with_a_failing_exit_status():
    """The fast exit must not turn a traceback into success."""
    import subprocess
    import sys

    from tabular_mlops.adapters.paths import PROJECT_ROOT

    probe = (
        "import sys, click\n"
        "import cli.main as entry\n"
        "entry.cli.add_command(click.Command('boom', callback=lambda: 1 / 0))\n"
        "sys.argv = ['run.py', 'boom']\n"
        "entry.main()\n"
    )
    result = subprocess.run(
        [sys.executable, "-c", probe], cwd=PROJECT_ROOT, capture_output=True, text=True
    )
    assert result.returncode == 1
    assert "ZeroDivisionError" in result.stderr
    usage = subprocess.run(
        [sys.executable, "run.py", "train", "--no-cahce"],
        cwd=PROJECT_ROOT,
        capture_output=True,
        text=True,
    )
    assert usage.returncode == 2


def test_an_unexpected_error_still_ends_with_its_cause_and_a_fix(monkeypatch):
    import errno

    from cli import common
    from cli.common import cause_and_fix

    monkeypatch.setattr(common, "_ACTIVE_ENV", [])  # no environment activated yet

    read_only = OSError(errno.EROFS, "Read-only file system", "/mnt/store/x")
    assert cause_and_fix(read_only) == (
        "→ failed (OSError) (/mnt/store/x): Read-only file system. Fix: the file system is "
        "read-only: point the state (.local, ZENML_CONFIG_PATH, the artifact store's path) at "
        "a writable directory, or remount it read-write."
    )
    full = cause_and_fix(OSError(errno.ENOSPC, "No space left on device", "/x"))
    assert "Fix: the disk is full" in full
    lost = cause_and_fix(RuntimeError("Error connecting to URL http://127.0.0.1:8238/api/v1"))
    assert lost.startswith("→ failed (ConnectionError): Error connecting to URL")
    assert "python run.py stack up --env ENV" in lost
    monkeypatch.setattr(common, "_ACTIVE_ENV", ["staging"])  # the one this command activated
    lost = cause_and_fix(RuntimeError("Error connecting to URL http://127.0.0.1:8238/api/v1"))
    assert "python run.py stack up --env staging` starts" in lost
    assert cause_and_fix(ValueError("odd")).endswith("Fix: rerun with --verbose for the traceback.")
    # a lock a killed command left, a rollout another command decided: what to do, not --verbose
    from cli.common import one_line

    locked = one_line("promote_model", "tabular_mlops.adapters.promotion_lock."
                      "PromotionLockTimeoutError: another promotion of 'm' ...")  # fmt: skip
    assert "on this machine is taken over at once" in locked
    assert "one held from another machine 10 minutes after it was taken" in locked
    decided = one_line("apply_rollout_decision", "builtins.LookupError: no rollout of 'm' ...")
    assert "`python run.py rollout --status` shows what runs now" in decided


def test_an_empty_batch_file_is_named(tmp_path):
    empty = tmp_path / "batch.csv"
    empty.write_text("")
    result = invoke("infer", "--input", str(empty))
    assert result.exit_code == 1
    assert f"{empty}: the file is empty" in result.output


def test_an_error_zenml_only_logged_is_kept_for_the_last_line():
    """A step failing before ZenML records why (a read-only artifact store fails on the
    step's log file) is known only from ZenML's logged traceback: it is kept."""
    import errno
    import logging

    from cli.common import cause_and_fix, logged_errors

    with logged_errors() as raised:
        try:
            raise OSError(errno.EROFS, "Read-only file system", "/store/logs/x.log")
        except OSError:
            logging.getLogger("zenml.orchestrators.step_launcher").exception("step failed")
    assert len(raised) == 1
    assert cause_and_fix(raised[-1]).startswith(
        "→ failed (OSError) (/store/logs/x.log): Read-only file system. Fix: the file system is "
        "read-only"
    )


def test_stop_reaches_what_a_killed_server_left_in_its_group(tmp_path):
    """kill -9 of a server's leader (`mlflow server`) leaves its children (uvicorn)
    serving: `stack down` stops what is left of the recorded group."""
    import os
    import signal
    import subprocess
    import time

    import psutil

    from tabular_mlops.adapters.processes import record_process, stop_recorded_process

    leader = subprocess.Popen(["sh", "-c", "sleep 300 & wait"], start_new_session=True)
    record = tmp_path / "server.pid"
    record_process(record, leader.pid)
    deadline = time.monotonic() + 10
    while not psutil.Process(leader.pid).children() and time.monotonic() < deadline:
        time.sleep(0.05)
    (child,) = psutil.Process(leader.pid).children()
    os.kill(leader.pid, signal.SIGKILL)
    leader.wait()
    assert child.is_running()
    assert stop_recorded_process(record, grace=5) is True
    assert not child.is_running() or child.status() == psutil.STATUS_ZOMBIE
    assert not record.exists()


def test_status_prints_a_degraded_inference_log_and_nothing_when_it_is_fine(capsys):
    from cli.deploy import _print_log_health

    _print_log_health({"ready": True, "inference_log": "dropping lines: 3 dropped so far"})
    _print_log_health({"ready": True, "inference_log": "ok"})
    _print_log_health(None)  # not answering: said on the status line
    assert capsys.readouterr().out == (
        "  inference log: dropping lines: 3 dropped so far "
        "(see /metrics: tabular_inference_log_rows_total)\n"
    )


def test_a_version_no_deployment_recorded_streams_by_its_environments_policy(tmp_path):
    """The stream consumer's fallback for a version never deployed: the environment's
    `parameters.serving.log_columns` (its deployment config and overrides)."""
    import yaml

    from cli.stream import deployment_log_columns

    env = yaml.safe_load((Path(__file__).parents[2] / "configs/environments/dev.yaml").read_text())
    env["overrides"] = {"deployment": {"parameters": {"serving": {"log_columns": {"sex": "hash"}}}}}
    path = tmp_path / "dev.yaml"  # a copy of dev's, as docs/environments.md says
    path.write_text(yaml.safe_dump(env))
    assert deployment_log_columns(str(path)) == {"sex": "hash"}
    assert deployment_log_columns("dev") == {}


def test_an_estimator_of_the_other_task_is_named_before_anything_runs():
    result = invoke(
        "train", "--dry-run", "--set", "parameters.task=regression",
        "--set", "parameters.training.estimator=sklearn.ensemble.RandomForestClassifier",
    )  # fmt: skip
    assert result.exit_code != 0
    assert "training.yaml: parameters.training.estimator: 'sklearn.ensemble." in result.output
    assert "is not a scikit-learn regressor (parameters.task is regression)" in result.output


def test_another_environments_reports_and_exports_go_to_a_folder_of_its_own(tmp_path):
    """dev's export never overwrites staging's: named, or given as its YAML file."""
    from cli.common import per_environment

    assert per_environment(tmp_path / "embedded", "dev") == tmp_path / "embedded"
    assert per_environment(tmp_path / "embedded", "/x/y/dev.yaml") == tmp_path / "embedded"
    assert per_environment(tmp_path / "reports", "staging") == tmp_path / "reports" / "staging"
    assert per_environment(tmp_path / "reports", "/x/prod.yml") == tmp_path / "reports" / "prod"
    assert "--env" in invoke("report", "--help").output
