"""Where this checkout is: the one place that knows the repository's layout on disk.

The package sits at the top of the checkout (installed in editable mode), so
the checkout is two levels up from here; ``TABULAR_MLOPS_ROOT`` points
elsewhere (a test's temporary tree). Relative paths in configs are taken
from here, except ``.local/…``: the machine's state, which
``TABULAR_MLOPS_STATE_DIR`` moves elsewhere as a whole (each test worker has
its own, so that two suites, or two workers of one, never share a log, a
service's state or an alert file).
"""

from __future__ import annotations

import os
from pathlib import Path

PROJECT_ROOT = Path(os.environ.get("TABULAR_MLOPS_ROOT") or Path(__file__).resolve().parents[2])
CONFIG_DIR = PROJECT_ROOT / "configs"
ENVIRONMENTS_DIR = CONFIG_DIR / "environments"
#: what pipelines and servers write on this machine: logs, state, predictions
LOCAL_DIR = Path(os.environ.get("TABULAR_MLOPS_STATE_DIR") or PROJECT_ROOT / ".local")


def anchor(path: Path) -> Path:
    """A path from a config file as this machine reads it: absolute as given, ``.local/…``
    under ``LOCAL_DIR``, anything else relative to the checkout."""
    if path.is_absolute():
        return path
    if path.parts[:1] == (".local",):
        return LOCAL_DIR.joinpath(*path.parts[1:])
    return PROJECT_ROOT / path
