"""Static HTML pages that read well inside the ZenML dashboard.

The open-source dashboard shows an HTML visualization in ``<iframe
sandbox="">``: no scripts run, and the panel is narrow and short (about 384 px
high, scrolling). So every page this project writes is plain HTML with inline
CSS, inline SVG or PNG, stacked sections and tables that never need a script;
``tests/unit/test_pages.py`` checks that none of them has one.
"""

from __future__ import annotations

import html
import math
from collections.abc import Mapping, Sequence
from typing import Any

#: a histogram as Evidently gives it: (bin edges, densities) or (categories, counts)
Distribution = tuple[Sequence[Any], Sequence[float]]

STYLE = """
body { font-family: system-ui, sans-serif; font-size: 14px; margin: 0.6em; color: #1f2328; }
h2 { font-size: 1.25em; margin: 0.2em 0 0.4em; } h3 { font-size: 1.05em; margin: 1em 0 0.3em; }
table { border-collapse: collapse; margin: 0.3em 0 0.6em; max-width: 100%; }
td, th { border: 1px solid #d0d7de; padding: 3px 8px; text-align: left; vertical-align: top; }
th { background: #f6f8fa; } td.num { text-align: right; font-variant-numeric: tabular-nums; }
tr.bad td { background: #ffebe9; }
code { font-size: 0.92em; word-break: break-all; }
img, svg { max-width: 100%; height: auto; }
.badge { display: inline-block; padding: 1px 8px; border-radius: 10px; font-weight: 600; }
.ok { background: #dafbe1; color: #116329; } .no { background: #ffebe9; color: #a40e26; }
.muted { color: #59636e; }
"""


def number(value: float | None, digits: int = 4) -> str:
    """A figure as a person reads it: ``digits`` significant digits, ``n/a`` for a
    missing or undefined one (NaN, e.g. ROC AUC on a slice with one class)."""
    if value is None or math.isnan(value):
        return "n/a"
    if value != 0 and abs(value) < 1e-4:
        return f"{value:.2e}"
    return f"{value:.{digits}g}"


def badge(text: str, good: bool) -> str:
    return f'<span class="badge {"ok" if good else "no"}">{html.escape(text)}</span>'


def table(
    header: Sequence[str],
    rows: Sequence[Sequence[str]],
    numeric_from: int = 1,
    bad_rows: Sequence[bool] = (),
) -> str:
    """An HTML table of escaped cells; columns from ``numeric_from`` on align right,
    rows flagged in ``bad_rows`` are shaded."""
    head = "".join(f"<th>{html.escape(h)}</th>" for h in header)
    body = []
    for index, row in enumerate(rows):
        cells = "".join(
            f'<td class="num">{html.escape(cell)}</td>'
            if column >= numeric_from
            else f"<td>{html.escape(cell)}</td>"
            for column, cell in enumerate(row)
        )
        bad = index < len(bad_rows) and bad_rows[index]
        body.append(f'<tr class="bad">{cells}</tr>' if bad else f"<tr>{cells}</tr>")
    return f"<table><thead><tr>{head}</tr></thead><tbody>{''.join(body)}</tbody></table>"


def page(title: str, body: str) -> str:
    """A whole static page: no scripts, no external resources, fits a narrow panel."""
    return (
        '<!doctype html><html><head><meta charset="utf-8">'
        '<meta name="viewport" content="width=device-width, initial-scale=1">'
        f"<title>{html.escape(title)}</title><style>{STYLE}</style></head>"
        f"<body>{body}</body></html>"
    )


def distributions_svg(reference: Distribution, current: Distribution, width: int = 130,
                      height: int = 30) -> str:  # fmt: skip
    """The reference (grey) and current (blue) distributions of one column as one small
    inline SVG. Numeric: Evidently's histograms (bin edges, densities), each on its own
    bins, placed on one shared axis; categorical: counts per category, side by side."""
    (ref_x, ref_y), (cur_x, cur_y) = reference, current
    numeric = len(ref_x) == len(ref_y) + 1 and all(isinstance(v, int | float) for v in ref_x)
    bars: list[tuple[float, float, float, str]] = []  # x, width, share of the tallest, colour
    if numeric:
        low = min(min(ref_x), min(cur_x))
        span = (max(max(ref_x), max(cur_x)) - low) or 1.0
        for (edges, heights), colour in (((ref_x, ref_y), "#afb8c1"), ((cur_x, cur_y), "#0969da")):
            top = max(heights) or 1.0
            for i, h in enumerate(heights):
                start, end = (edges[i] - low) / span, (edges[i + 1] - low) / span
                bars.append((start * width, (end - start) * width, h / top, colour))
    else:
        categories = list(dict.fromkeys([*map(str, ref_x), *map(str, cur_x)]))
        step = width / max(len(categories), 1)
        for (names, counts), colour, offset in (
            ((ref_x, ref_y), "#afb8c1", 0.0), ((cur_x, cur_y), "#0969da", step / 2)
        ):  # fmt: skip
            total = float(sum(counts)) or 1.0
            shares = {str(n): c / total for n, c in zip(names, counts, strict=False)}
            top = max(shares.values(), default=1.0) or 1.0
            for i, category in enumerate(categories):
                bars.append((i * step + offset, step / 2, shares.get(category, 0.0) / top, colour))
    rects = "".join(
        f'<rect x="{x:.1f}" y="{height - share * (height - 1):.1f}" '
        f'width="{max(w - 0.4, 0.6):.1f}" height="{share * (height - 1):.1f}" '
        f'fill="{colour}" fill-opacity="0.75"/>'
        for x, w, share, colour in bars
    )
    return (
        f'<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" '
        f'viewBox="0 0 {width} {height}" role="img"><title>reference (grey) and current '
        f"(blue)</title>{rects}</svg>"
    )


def line_svg(series: Mapping[str, Sequence[float | None]], labels: Sequence[str],
             width: int = 560, height: int = 160, maximum: float = 1.0) -> str:  # fmt: skip
    """Lines over runs (x: ``labels``, y from 0 to ``maximum``) as an inline SVG with
    a legend; a missing value breaks its line."""
    colours = ["#0969da", "#cf222e", "#1a7f37", "#8250df"]
    left, bottom, top_pad = 34, 22, 8
    plot_w, plot_h = width - left - 8, height - bottom - top_pad
    n = max(len(labels), 1)

    def x(i: int) -> float:
        return left + (plot_w * i / (n - 1) if n > 1 else plot_w / 2)

    def y(v: float) -> float:
        return top_pad + plot_h * (1 - min(max(v / maximum, 0.0), 1.0))

    parts = [
        f'<line x1="{left}" y1="{y(0):.1f}" x2="{left + plot_w}" y2="{y(0):.1f}" '
        'stroke="#d0d7de"/>',
        f'<line x1="{left}" y1="{y(maximum):.1f}" x2="{left + plot_w}" y2="{y(maximum):.1f}" '
        'stroke="#eaeef2"/>',
        f'<text x="2" y="{y(maximum) + 4:.1f}" font-size="10">{maximum:g}</text>',
        f'<text x="2" y="{y(0) + 4:.1f}" font-size="10">0</text>',
    ]
    for i, label in enumerate(labels):
        # the end labels lean inwards, so the panel's edge does not cut them
        anchor = "start" if i == 0 and n > 1 else "end" if i == n - 1 and n > 1 else "middle"
        parts.append(
            f'<text x="{x(i):.1f}" y="{height - 6}" font-size="10" text-anchor="{anchor}">'
            f"{html.escape(label)}</text>"
        )
    for k, (name, values) in enumerate(series.items()):
        colour = colours[k % len(colours)]
        segment: list[str] = []
        segments = [segment]
        for i, value in enumerate(values):
            if value is None or math.isnan(value):
                segment = []
                segments.append(segment)
                continue
            segment.append(f"{x(i):.1f},{y(value):.1f}")
            parts.append(f'<circle cx="{x(i):.1f}" cy="{y(value):.1f}" r="2.5" fill="{colour}"/>')
        parts.extend(
            f'<polyline fill="none" stroke="{colour}" stroke-width="1.5" points="{" ".join(s)}"/>'
            for s in segments
            if len(s) > 1
        )
        parts.append(
            f'<text x="{left + 6 + 150 * k}" y="{top_pad + 10}" font-size="11" '
            f'fill="{colour}">■ {html.escape(name)}</text>'
        )
    return (
        f'<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" '
        f'viewBox="0 0 {width} {height}" role="img">{"".join(parts)}</svg>'
    )


def reliability_svg(curve: Sequence[tuple[float, float, int]], size: int = 180) -> str:
    """A reliability diagram: observed share of positives against the mean predicted
    probability per bin (dot size by rows), with the diagonal of perfect calibration."""
    pad = 22
    span = size - 2 * pad

    def at(v: float) -> float:
        return pad + span * min(max(v, 0.0), 1.0)

    def up(v: float) -> float:
        return size - pad - span * min(max(v, 0.0), 1.0)

    biggest = max((rows for _, _, rows in curve), default=1)
    points = " ".join(f"{at(p):.1f},{up(o):.1f}" for p, o, _ in curve)
    dots = "".join(
        f'<circle cx="{at(p):.1f}" cy="{up(o):.1f}" r="{2 + 4 * (rows / biggest) ** 0.5:.1f}" '
        'fill="#0969da" fill-opacity="0.7"/>'
        for p, o, rows in curve
    )
    return (
        f'<svg xmlns="http://www.w3.org/2000/svg" width="{size}" height="{size}" '
        f'viewBox="0 0 {size} {size}" role="img"><title>reliability: observed vs predicted'
        f'</title><rect x="{pad}" y="{pad}" width="{span}" height="{span}" fill="none" '
        f'stroke="#d0d7de"/><line x1="{at(0)}" y1="{up(0)}" x2="{at(1)}" y2="{up(1)}" '
        f'stroke="#afb8c1" stroke-dasharray="4 3"/>'
        f'<polyline fill="none" stroke="#0969da" points="{points}"/>{dots}'
        f'<text x="{pad}" y="{size - 6}" font-size="10">predicted P(positive)</text>'
        f'<text x="2" y="{pad - 8}" font-size="10">observed</text></svg>'
    )
