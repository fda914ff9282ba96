"""Stores a :class:`Leaderboard` as JSON and shows it in the dashboard: every trial of
model selection, best first, with its cross-validated scores and fit time."""

from __future__ import annotations

import html
import json
from typing import ClassVar

from zenml.enums import ArtifactType, VisualizationType
from zenml.materializers.pydantic_materializer import PydanticMaterializer

from materializers import html_page
from tabular_mlops.core.pages import number, page, table
from tabular_mlops.core.selection import Leaderboard


class LeaderboardMaterializer(PydanticMaterializer):
    ASSOCIATED_TYPES: ClassVar[tuple[type, ...]] = (Leaderboard,)
    ASSOCIATED_ARTIFACT_TYPE: ClassVar[ArtifactType] = ArtifactType.DATA_ANALYSIS

    def save_visualizations(self, data: Leaderboard) -> dict[str, VisualizationType]:
        return html_page(self.uri, "leaderboard.html", render_html(data))


def render_html(board: Leaderboard) -> str:
    """The trials as a table, the chosen one marked; or that there was one candidate."""
    if not board.trials:
        body = ("<h2>Model selection</h2><p>One candidate (<code>training.estimator</code>): "
                "nothing was compared. List several under <code>training.candidates</code>."
                "</p>")  # fmt: skip
        return page("Model selection", body)
    metric = html.escape(board.metric)
    rows = [
        [str(t.rank) + (" (chosen)" if t.chosen else ""), t.estimator.rsplit(".", 1)[-1],
         json.dumps(t.params, sort_keys=True), number(t.mean), number(t.std),
         f"{t.fit_seconds:.3f}"]
        for t in board.trials
    ]  # fmt: skip
    stopped = (f" Stopped early by {html.escape(board.stopped_by)}."
               if board.stopped_by else "")  # fmt: skip
    body = (
        f"<h2>Model selection: {len(board.trials)} trials</h2>"
        f"<p>Each cross-validated on the training split only ({board.folds} seeded folds), "
        f"by {metric}; the best mean wins, ties by the faster fit. "
        f"{board.seconds:.1f} s in all.{stopped}</p>"
        + table(
            ["rank", "estimator", "params", f"{metric}, mean", "std", "fit s / fold"],
            rows,
            numeric_from=3,
        )
    )
    return page("Model selection", body)
