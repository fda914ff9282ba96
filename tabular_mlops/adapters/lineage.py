"""Which code trained a model: the git commit of the working tree, if it is one."""

from __future__ import annotations

import subprocess
from pathlib import Path

from tabular_mlops.adapters.paths import PROJECT_ROOT


def code_version(root: Path = PROJECT_ROOT) -> dict[str, str | bool]:
    def git(*args: str) -> str:
        return subprocess.run(
            ["git", *args], cwd=root, capture_output=True, text=True, check=True
        ).stdout.strip()

    try:
        return {
            "git_commit": git("rev-parse", "HEAD"),
            "git_dirty": bool(git("status", "--porcelain")),
        }
    except (OSError, subprocess.CalledProcessError):
        return {"git_commit": "unknown", "git_dirty": True}
