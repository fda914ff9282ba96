"""Where this checkout is: the one place that knows the repository's layout on disk.

The package sits at the top of the checkout (installed in editable mode), so
the checkout is two levels up from here; ``TABULAR_MLOPS_ROOT`` points
elsewhere (a test's temporary tree). Relative state paths in configs are
taken from here.
"""

from __future__ import annotations

import os
from pathlib import Path

PROJECT_ROOT = Path(os.environ.get("TABULAR_MLOPS_ROOT") or Path(__file__).resolve().parents[2])
CONFIG_DIR = PROJECT_ROOT / "configs"
ENVIRONMENTS_DIR = CONFIG_DIR / "environments"
#: what pipelines and servers write on this machine: logs, state, predictions
LOCAL_DIR = PROJECT_ROOT / ".local"
