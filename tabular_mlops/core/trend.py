"""Monitoring across runs: the figures each monitoring run decided on, as one static page."""

from __future__ import annotations

from datetime import datetime

from pydantic import BaseModel

from tabular_mlops.core.pages import line_svg, number, page, table


class TrendPoint(BaseModel):
    """One monitoring run's decision figures (its run metadata)."""

    run: str
    created: datetime
    action: str
    rows: int
    drift_share: float
    accuracy: float | None = None
    #: a regressor's mean absolute error on the labelled rows, in the target's units
    mae: float | None = None


def render_trend(points: list[TrendPoint]) -> str:
    """Drift share (and accuracy where labels came) over the runs, oldest first, with a
    table of every run's decision; decisions other than ``none`` are shaded."""
    ordered = sorted(points, key=lambda p: p.created)
    labels = [f"{p.created:%m-%d %H:%M}" for p in ordered]
    series: dict[str, list[float | None]] = {"drift share": [p.drift_share for p in ordered]}
    if any(p.accuracy is not None for p in ordered):
        series["accuracy"] = [p.accuracy for p in ordered]
    regression = any(p.mae is not None for p in ordered)
    if regression:
        series["MAE"] = [p.mae for p in ordered]
    rows = [
        [f"{p.created:%Y-%m-%d %H:%M}", p.action, str(p.rows), number(p.drift_share),
         number(p.mae if regression else p.accuracy)]
        for p in reversed(ordered)
    ]  # fmt: skip
    body = "\n".join(
        [
            f"<h2>Monitoring over the last {len(ordered)} runs</h2>",
            line_svg(series, labels),
            table(
                ["run", "decision", "rows", "drift share", "MAE" if regression else "accuracy"],
                rows,
                numeric_from=2,
                bad_rows=[p.action != "none" for p in reversed(ordered)],
            ),
        ]
    )
    return page("Monitoring trend", body)
