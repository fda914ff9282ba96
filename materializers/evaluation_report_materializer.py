"""Stores an :class:`EvaluationReport` as JSON and shows it in the dashboard as HTML:
a metrics table, per-slice metrics, and a confusion matrix and ROC curves (a
regressor: predicted against actual and the residuals)."""

from __future__ import annotations

import base64
import io
from typing import ClassVar

from zenml.enums import ArtifactType, VisualizationType
from zenml.materializers.pydantic_materializer import PydanticMaterializer

from materializers import html_page
from tabular_mlops.core.model_card import (
    baseline_sections,
    governance_sections,
    slice_sections,
)
from tabular_mlops.core.pages import number, page, table
from tabular_mlops.core.report import EvaluationReport


class EvaluationReportMaterializer(PydanticMaterializer):
    ASSOCIATED_TYPES: ClassVar[tuple[type, ...]] = (EvaluationReport,)
    ASSOCIATED_ARTIFACT_TYPE: ClassVar[ArtifactType] = ArtifactType.DATA_ANALYSIS

    def save_visualizations(self, data: EvaluationReport) -> dict[str, VisualizationType]:
        return html_page(self.uri, "evaluation_report.html", render_html(data))


def _png(figure: object) -> str:
    import matplotlib.pyplot as plt

    buffer = io.BytesIO()
    figure.savefig(buffer, format="png", dpi=90)  # type: ignore[attr-defined]
    plt.close(figure)  # type: ignore[arg-type]
    return base64.b64encode(buffer.getvalue()).decode()


def _plots_png(report: EvaluationReport) -> tuple[str, str]:
    """The confusion matrix and the ROC curves, each a picture of its own, so the page
    stacks them in the dashboard's narrow panel instead of cutting one off."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    figure, confusion = plt.subplots(figsize=(4.6, 4))
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
    figure.tight_layout()
    confusion_png = _png(figure)
    figure, roc = plt.subplots(figsize=(4.6, 4))
    for cls, (fpr, tpr) in report.roc_curves.items():
        roc.plot(fpr, tpr, label=cls)
    roc.plot([0, 1], [0, 1], linestyle="--", color="grey")
    roc.set_xlabel("false positive rate")
    roc.set_ylabel("true positive rate")
    roc.set_title("ROC (one vs rest)")
    roc.legend(loc="lower right")
    figure.tight_layout()
    return confusion_png, _png(figure)


def _regression_png(report: EvaluationReport) -> tuple[str, str]:
    """Predicted against actual (the diagonal is a perfect model) and the residuals
    against the prediction (a pattern is error the model could have learned)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    truth = [t for t, _ in report.predicted_vs_actual]
    predicted = [p for _, p in report.predicted_vs_actual]
    figure, scatter = plt.subplots(figsize=(4.6, 4))
    scatter.scatter(truth, predicted, s=8, alpha=0.6)
    low, high = min(truth + predicted, default=0), max(truth + predicted, default=1)
    scatter.plot([low, high], [low, high], linestyle="--", color="grey")
    scatter.set_xlabel("actual")
    scatter.set_ylabel("predicted")
    scatter.set_title(f"Predicted vs actual ({len(truth)} test rows)")
    figure.tight_layout()
    versus = _png(figure)
    figure, residual = plt.subplots(figsize=(4.6, 4))
    residual.scatter(predicted, [t - p for t, p in zip(truth, predicted, strict=True)], s=8,
                     alpha=0.6)  # fmt: skip
    residual.axhline(0, linestyle="--", color="grey")
    residual.set_xlabel("predicted")
    residual.set_ylabel("actual - predicted")
    residual.set_title("Residuals")
    figure.tight_layout()
    return versus, _png(figure)


def render_html(report: EvaluationReport) -> str:
    """Metrics, slices (``n/a`` where a metric is undefined, e.g. ROC AUC on a slice with
    one class), then the two plots stacked: a static page for the dashboard's panel."""
    sections = [
        f"<h2>Evaluation on {report.rows} held-out rows</h2>",
        table(["metric", "value"], [[name, number(v)] for name, v in report.metrics.items()]),
    ]
    if report.baselines:  # on the metric the model gate compares them on
        primary = report.baselines[0].primary_metric
        sections.extend(baseline_sections(report.baselines, report.metrics, primary))
    sections.extend(slice_sections(report.slice_column, report.slices))
    if report.governance is not None:
        sections.extend(governance_sections(report.governance))
    if report.task == "regression":
        versus, residuals = _regression_png(report)
        sections.append(f'<img alt="predicted vs actual" src="data:image/png;base64,{versus}">')
        sections.append(f'<img alt="residuals" src="data:image/png;base64,{residuals}">')
    else:
        confusion, roc = _plots_png(report)
        sections.append(f'<img alt="confusion matrix" src="data:image/png;base64,{confusion}">')
        sections.append(f'<img alt="ROC curves" src="data:image/png;base64,{roc}">')
    return page("Evaluation report", "\n".join(sections))
