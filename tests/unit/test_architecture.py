"""The layers point down only, and nothing imports in a circle (contracts in pyproject.toml)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from tabular_mlops.adapters.paths import PROJECT_ROOT


def test_import_contracts_are_kept():
    lint_imports = Path(sys.executable).parent / "lint-imports"
    result = subprocess.run(
        [str(lint_imports), "--no-cache"], cwd=PROJECT_ROOT, capture_output=True, text=True
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert "0 broken" in result.stdout


@pytest.fixture(scope="module")
def fresh_interpreter() -> dict[str, list]:
    """What a fresh interpreter, whose environment names no thread pool size (as a user's
    shell), loads when it imports every core module and a server worker's module, and how
    many threads each OpenMP and BLAS pool of a server process then runs. One interpreter
    for both: each start imports scikit-learn and NumPy again (about 2 s)."""
    import json
    import os

    from tabular_mlops.core.threads import THREAD_POOL_ENVS

    modules = sorted(
        f"tabular_mlops.core.{p.stem}"
        for p in (PROJECT_ROOT / "tabular_mlops" / "core").glob("*.py")
        if p.stem != "__init__"
    )
    probe = (
        "import json, os, sys\n"
        # before NumPy loads, as the server does it in the process that forks its workers
        "from tabular_mlops.serving.server import one_thread_per_worker\n"
        "one_thread_per_worker(os.environ)\n"
        f"for m in {modules!r}: __import__(m)\n"
        "heavy = sorted(n for n in ('zenml', 'mlflow', 'bentoml', 'evidently', 'httpx') "
        "if n in sys.modules)\n"
        "import numpy, sklearn.ensemble\n"
        "from threadpoolctl import threadpool_info\n"
        "pools = sorted({p['num_threads'] for p in threadpool_info()})\n"
        "print(json.dumps({'heavy': heavy, 'pools': pools}))\n"
    )
    clean = {
        k: v for k, v in os.environ.items() if k not in (*THREAD_POOL_ENVS, "NUMBA_NUM_THREADS")
    }
    result = subprocess.run(
        [sys.executable, "-c", probe], env=clean, capture_output=True, text=True
    )
    assert result.returncode == 0, result.stderr
    loaded: dict[str, list] = json.loads(result.stdout)
    return loaded


def test_the_core_imports_without_zenml_or_serving_frameworks(fresh_interpreter):
    """What the contracts say, checked in a fresh interpreter: importing every core
    module (and a server worker's) loads none of the heavy clients."""
    assert fresh_interpreter["heavy"] == []


def test_a_server_process_runs_one_thread_per_pool_unless_told_otherwise(fresh_interpreter):
    """Each served worker is a process: its OpenMP and BLAS pools are one thread unless
    the environment names a number (a fresh interpreter whose environment names none)."""
    from tabular_mlops.serving.server import one_thread_per_worker

    environ = {"OMP_NUM_THREADS": "4"}
    one_thread_per_worker(environ)
    assert environ == {"OMP_NUM_THREADS": "4", "OPENBLAS_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}
    assert fresh_interpreter["pools"] == [1]


def test_the_suite_runs_one_thread_per_pool_in_each_process():
    """tests/conftest.py limits OpenBLAS and OpenMP to one thread before numpy loads: on
    two cores, pools in every xdist worker and server took a third more CPU."""
    import numpy  # noqa: F401  (loads OpenBLAS)
    import sklearn.ensemble  # noqa: F401  (loads OpenMP)
    from threadpoolctl import threadpool_info

    pools = threadpool_info()
    assert pools and {pool["num_threads"] for pool in pools} == {1}, pools


def test_the_bento_holds_every_project_module_the_served_modules_import():
    """The server runs from the bento, which copies only ``SERVED_MODULES``: a served
    module importing one of the project's modules left out of that list (even inside a
    function) dies on its first start in a deploy, never in a unit test."""
    import ast
    import fnmatch

    from tabular_mlops.adapters.deployment.packaging import PACKAGE_PARENT, SERVED_MODULES

    def served(relative: str) -> bool:
        return any(fnmatch.fnmatch(relative, pattern) for pattern in SERVED_MODULES)

    files = sorted({p for pattern in SERVED_MODULES for p in PACKAGE_PARENT.glob(pattern)})
    assert files
    missing = set()
    for path in files:
        for node in ast.walk(ast.parse(path.read_text())):
            names: list[str] = []
            if isinstance(node, ast.Import):
                names = [alias.name for alias in node.names]
            elif isinstance(node, ast.ImportFrom):
                assert not node.level, f"{path}: a relative import this test does not read"
                # `from a.b import c`: a.b, and a.b.c when c is a module of its own
                names = [node.module or "", *(f"{node.module}.{a.name}" for a in node.names)]
            for name in names:
                if not name.startswith("tabular_mlops"):
                    continue
                module = PACKAGE_PARENT / Path(*name.split("."))
                target = module / "__init__.py" if module.is_dir() else module.with_suffix(".py")
                if not target.exists():  # a name imported from a module, not a module
                    continue
                relative = str(target.relative_to(PACKAGE_PARENT))
                if not served(relative):
                    missing.add(f"{path.relative_to(PACKAGE_PARENT)} imports {relative}")
    assert sorted(missing) == []


def test_the_servers_and_the_router_import_from_the_bentos_files_alone(tmp_path):
    """What a pod runs (the server, the router), imported in a fresh interpreter from a
    copy of ``SERVED_MODULES`` only, as the image holds them (the BentoML service module
    reads its settings when imported: the test above reads its imports)."""
    from tabular_mlops.adapters.deployment.packaging import served_modules_in

    context = served_modules_in(tmp_path)
    probe = (
        "import sys\n"
        "import tabular_mlops.serving.server, tabular_mlops.serving.router\n"
        "import tabular_mlops.serving.app, tabular_mlops.serving.inference_log\n"
        "for name, module in sorted(sys.modules.items()):\n"
        "    if name.startswith('tabular_mlops'):\n"
        "        print(getattr(module, '__file__', None) or list(module.__path__)[0])\n"
    )
    result = subprocess.run(
        [sys.executable, "-c", probe], cwd=context, capture_output=True, text=True,
        env={"PATH": "/usr/bin:/bin", "PYTHONPATH": str(context), "HOME": str(tmp_path)},
    )  # fmt: skip
    assert result.returncode == 0, result.stderr[-3000:]
    files = result.stdout.split()
    assert files and all(f.startswith(str(context)) for f in files), result.stdout
