"""Test isolation: every session gets its own ZenML config, store and repository.

The environment is set before anything imports ZenML, so no test reads or
writes the developer's ~/.config/zenml, and no telemetry leaves the machine.
"""

from __future__ import annotations

import os
import shutil
import signal
import tempfile
from pathlib import Path

import pytest

from tabular_mlops.core.threads import THREAD_POOL_ENVS  # imports nothing else

#: `--cpu-times` and `--module-times`: what each module costs in CPU (the processes it
#: starts included) and in wall time, the order LONGEST_FIRST keeps
pytest_plugins = ("tests.cpu_accounting",)

SESSION_DIR = Path(tempfile.mkdtemp(prefix="mlops-tests-"))

os.environ.update(
    {
        "ZENML_CONFIG_PATH": str(SESSION_DIR / "zenml-config"),
        "ZENML_REPOSITORY_PATH": str(SESSION_DIR / "zenml-repo"),
        "ZENML_ANALYTICS_OPT_IN": "false",
        "ZENML_LOGGING_VERBOSITY": "WARN",
        "ZENML_ENABLE_RICH_TRACEBACK": "false",
        "ZENML_AUTO_OPEN_DASHBOARD": "false",
        "MLFLOW_DISABLE_TELEMETRY": "true",
        "DO_NOT_TRACK": "true",
        "BENTOML_DO_NOT_TRACK": "true",
        "BENTOML_HOME": str(SESSION_DIR / "bentoml"),
        # logs, services' state, alerts: the session's own (each xdist worker's), not the
        # checkout's .local that a developer's own runs use
        "TABULAR_MLOPS_STATE_DIR": str(SESSION_DIR / "local"),
        "EVIDENTLY_DISABLE_TELEMETRY": "1",
        # each command a test starts runs in its own process: a warm command server
        # (cli/warm.py) per test's environment would outlive it; test_warm.py and the
        # walkthrough start theirs, and stop them
        "TABULAR_MLOPS_WARM": "0",
        "GIT_PYTHON_REFRESH": "quiet",
        # One thread per process for OpenBLAS and OpenMP (numpy, scikit-learn's histogram
        # gradient boosting), in the tests and the servers and commands they start: each
        # xdist worker is a process, as is each server, and their thread pools on top
        # fought over two cores (the unit suite: 58.7 CPU-s and 32.9 s with them, 37.2
        # CPU-s and 21.5 s without). Set before anything imports numpy.
        **dict.fromkeys((*THREAD_POOL_ENVS, "NUMBA_NUM_THREADS"), "1"),
    }
)
(SESSION_DIR / "zenml-repo").mkdir()

# The commands the tests interrupt with SIGINT start as from a terminal, where Ctrl-C
# interrupts: a suite started in the background of a script (`make test &`) ignores
# SIGINT, every process it starts inherits that, and a command that ignores
# Ctrl-C goes on to the end (by design: cli/warm.py, adapters/interrupts.py). A handler,
# unlike an ignored signal, is not inherited across exec.
if signal.getsignal(signal.SIGINT) is signal.SIG_IGN:
    signal.signal(signal.SIGINT, signal.default_int_handler)


#: the longest modules first, by their wall time in a quiet `make test` (2026-12-06, later): `make
#: test` hands whole modules to its workers in this order (pytest-xdist's --dist loadfile
#: with --no-loadscope-reorder; without it xdist orders modules by their number of tests,
#: and the walkthrough, one test of four minutes, started last), so the rest fills in
#: around the long ones and the workers finish together
LONGEST_FIRST = (
    "test_rollout.py",
    "test_walkthrough.py",
    "test_training.py",
    "test_serving.py",
    "test_regression.py",
    "test_continuous_training.py",
    "test_staging.py",
    "test_warm.py",
    "test_estimators.py",
    "test_streaming.py",
    "test_explanations.py",
    "test_dashboard.py",
    "test_blank_stores.py",
    "test_loop.py",
    "test_one_reading.py",
    "test_governance.py",
    "test_prod_plan.py",
    "test_store_contracts.py",
    "test_stacks.py",
    "test_packaging.py",
    "test_data_reports.py",
    # `make test-unit` (test_regression.py and test_governance.py are named above): its
    # longest modules by their wall time (2026-12-06), so that neither worker is left with
    # one of them at the end
    "test_architecture.py",
    "test_explain.py",
    "test_serving_logic.py",
    "test_embedded.py",
    "test_training_logic.py",
    "test_rollout_logic.py",
    "test_stable_address.py",  # its servers' waits overlap the other worker's work
    "test_compat.py",
    "test_selection.py",
    "test_cli.py",
)


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    def rank(item: pytest.Item) -> int:
        name = item.path.name
        return LONGEST_FIRST.index(name) if name in LONGEST_FIRST else len(LONGEST_FIRST)

    items.sort(key=rank)  # stable: each module's tests keep their order


def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    shutil.rmtree(SESSION_DIR, ignore_errors=True)


@pytest.fixture(scope="session")
def zenml_repo() -> Path:
    """A ZenML repository in the session's temporary directory, sources from this checkout."""
    from zenml.utils import source_utils

    from cli.common import zenml_client

    repo = SESSION_DIR / "zenml-repo"  # $ZENML_REPOSITORY_PATH: the client initializes it
    zenml_client()  # the store made as a command makes it (a copy of the blank one)
    from tabular_mlops.adapters.paths import PROJECT_ROOT

    source_utils.set_custom_source_root(str(PROJECT_ROOT))
    return repo


@pytest.fixture(scope="session")
def dev_stack(zenml_repo: Path) -> str:
    """The dev environment's stack, registered from its YAML and active."""
    from zenml.client import Client

    from tabular_mlops.adapters import blank_stores, stacks
    from tabular_mlops.adapters.config_files import load_environment

    environment = load_environment("dev")
    stacks.activate(Client(), environment, "configs/environments/dev.yaml")
    blank_stores.seed_tracking_store(Client().active_stack)  # as cli.common.activate_stack
    return environment.stack.name


#: the model the serving and loop tests share: trained once per test session
SHARED_MODEL = "it_shared"


@pytest.fixture(scope="session")
def trained_model(dev_stack: str) -> str:
    """The default training config's model (breast cancer), trained and promoted once for
    every test that needs a production model and does not care which version it is."""
    from tests.helpers import invoke

    result = invoke("train", "--set", f"model.name={SHARED_MODEL}")
    assert result.exit_code == 0, result.output
    return SHARED_MODEL


@pytest.fixture
def free_port() -> int:
    """A port on 127.0.0.1 for the test to configure (``tests.helpers.free_port``)."""
    from tests.helpers import free_port

    return free_port()


@pytest.fixture(scope="session")
def churn():
    """A fitted churn model (categoricals, missing values, string labels), its data and
    its serving spec (model version "3")."""
    from tabular_mlops.core.config import TrainingConfig
    from tabular_mlops.core.model_factory import fit_model
    from tabular_mlops.core.spec import ServingSpec
    from tests.helpers import customer_churn_frame

    frame = customer_churn_frame(rows=300)
    model, _ = fit_model(frame, "churn", TrainingConfig())
    spec = ServingSpec.from_training_data("churn", "3", frame, "churn", list(model.classes_))
    return frame, model, spec
