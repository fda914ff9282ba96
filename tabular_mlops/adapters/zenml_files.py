"""ZenML's local YAML files (the repository's client config, the global config), written
atomically.

ZenML 0.98 rewrites ``.zen/config.yaml`` whenever a client starts (it sanitises the
active stack and project) by truncating the file and writing it again. A second
command starting at that moment reads an empty file and dies in ZenML's own
config validator (``'NoneType' object has no attribute 'update'``): seen with two
``run.py train`` started together. Writing a temporary file beside it and
renaming it over the old one means a reader sees the old or the new file, never
half of one.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any


def write_yaml_atomically() -> None:
    """Make ZenML's ``yaml_utils.write_yaml`` replace local files in one step."""
    import yaml
    from zenml.utils import io_utils, yaml_utils

    original = yaml_utils.write_yaml
    if getattr(original, "atomic", False):
        return

    def write_yaml(file_path: str, contents: Any, sort_keys: bool = True) -> None:
        if io_utils.is_remote(file_path):
            original(file_path, contents, sort_keys=sort_keys)
            return
        path = Path(file_path)
        if not path.parent.is_dir():
            raise FileNotFoundError(f"Directory {path.parent} does not exist.")
        temporary = path.with_name(f".{path.name}.{os.getpid()}.tmp")
        temporary.write_text(yaml.dump(contents, sort_keys=sort_keys))
        temporary.replace(path)

    write_yaml.atomic = True  # type: ignore[attr-defined]
    yaml_utils.write_yaml = write_yaml
