"""Stores an :class:`EvaluationReport` as JSON and shows it in the dashboard as HTML:
a metrics table, per-slice metrics, a confusion matrix and ROC curves."""

from __future__ import annotations

import base64
import html
import io
from typing import ClassVar

from zenml.enums import ArtifactType, VisualizationType
from zenml.io import fileio
from zenml.materializers.pydantic_materializer import PydanticMaterializer

from tabular_mlops.core.report import EvaluationReport


class EvaluationReportMaterializer(PydanticMaterializer):
    ASSOCIATED_TYPES: ClassVar[tuple[type, ...]] = (EvaluationReport,)
    ASSOCIATED_ARTIFACT_TYPE: ClassVar[ArtifactType] = ArtifactType.DATA_ANALYSIS

    def save_visualizations(self, data: EvaluationReport) -> dict[str, VisualizationType]:
        path = f"{self.uri}/evaluation_report.html"  # the URI may be remote: no Path
        with fileio.open(path, "w") as handle:
            handle.write(render_html(data))
        return {path: VisualizationType.HTML}


def _table(header: list[str], rows: list[list[str]]) -> str:
    head = "".join(f"<th>{html.escape(h)}</th>" for h in header)
    body = "".join(
        "<tr>" + "".join(f"<td>{html.escape(cell)}</td>" for cell in row) + "</tr>" for row in rows
    )
    return f"<table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"


def _plots_png(report: EvaluationReport) -> str:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    figure, (confusion, roc) = plt.subplots(1, 2, figsize=(11, 4.5))
    confusion.imshow(report.confusion_matrix, cmap="Blues")
    ticks = range(len(report.classes))
    confusion.set_xticks(ticks, report.classes, rotation=45, ha="right")
    confusion.set_yticks(ticks, report.classes)
    confusion.set_xlabel("predicted")
    confusion.set_ylabel("true")
    confusion.set_title("Confusion matrix")
    darkest = max(max(row) for row in report.confusion_matrix)
    for i, row in enumerate(report.confusion_matrix):
        for j, count in enumerate(row):
            color = "white" if count > darkest / 2 else "black"
            confusion.text(j, i, str(count), ha="center", va="center", color=color)
    for cls, (fpr, tpr) in report.roc_curves.items():
        roc.plot(fpr, tpr, label=cls)
    roc.plot([0, 1], [0, 1], linestyle="--", color="grey")
    roc.set_xlabel("false positive rate")
    roc.set_ylabel("true positive rate")
    roc.set_title("ROC (one vs rest)")
    roc.legend(loc="lower right")
    figure.tight_layout()
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png", dpi=90)
    plt.close(figure)
    return base64.b64encode(buffer.getvalue()).decode()


def render_html(report: EvaluationReport) -> str:
    metrics = _table(
        ["metric", "value"], [[name, f"{value:.4f}"] for name, value in report.metrics.items()]
    )
    slices = ""
    if report.slices:
        names = sorted({name for s in report.slices for name in s.metrics})
        slices = f"<h3>By {html.escape(str(report.slice_column))}</h3>" + _table(
            ["slice", "rows", *names],
            [
                [s.value, str(s.rows), *(f"{s.metrics.get(n, float('nan')):.4f}" for n in names)]
                for s in report.slices
            ],
        )
    return f"""<!doctype html><html><head><meta charset="utf-8"><style>
body {{ font-family: sans-serif; margin: 1em; }}
table {{ border-collapse: collapse; margin-bottom: 1em; }}
td, th {{ border: 1px solid #ccc; padding: 4px 10px; text-align: right; }}
</style></head><body>
<h2>Evaluation on {report.rows} held-out rows</h2>
{metrics}{slices}
<img alt="confusion matrix and ROC curves" src="data:image/png;base64,{_plots_png(report)}">
</body></html>"""
