"""The project's materializers, and the one helper they share."""

from __future__ import annotations

from typing import Any


def html_page(uri: str, name: str, text: str) -> dict[str, Any]:
    """Write ``text`` as the artifact's HTML visualization ``name`` (under ``uri``, which
    may be remote: no Path) and say so, as ``save_visualizations`` returns it."""
    from zenml.enums import VisualizationType
    from zenml.io import fileio

    path = f"{uri}/{name}"
    with fileio.open(path, "w") as handle:
        handle.write(text)
    return {path: VisualizationType.HTML}
