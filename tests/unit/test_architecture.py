"""The layers point down only, and nothing imports in a circle (contracts in pyproject.toml)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from tabular_mlops.adapters.paths import PROJECT_ROOT


def test_import_contracts_are_kept():
    lint_imports = Path(sys.executable).parent / "lint-imports"
    result = subprocess.run(
        [str(lint_imports), "--no-cache"], cwd=PROJECT_ROOT, capture_output=True, text=True
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert "0 broken" in result.stdout


def test_the_core_imports_without_zenml_or_serving_frameworks():
    """What the contracts say, checked in a fresh interpreter: importing every core
    module loads none of the heavy clients."""
    modules = sorted(
        f"tabular_mlops.core.{p.stem}"
        for p in (PROJECT_ROOT / "tabular_mlops" / "core").glob("*.py")
        if p.stem != "__init__"
    )
    probe = (
        f"import sys\nfor m in {modules!r}: __import__(m)\n"
        "print(sorted(n for n in ('zenml', 'mlflow', 'bentoml', 'evidently', 'httpx') "
        "if n in sys.modules))"
    )
    result = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "[]"
