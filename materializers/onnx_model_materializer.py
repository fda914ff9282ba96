"""Stores an exported ONNX model as the two files an application embeds, ``model.onnx``
and ``manifest.json``, and shows the manifest in the dashboard."""

from __future__ import annotations

import html
import json
from typing import Any, ClassVar

from zenml.enums import ArtifactType, VisualizationType
from zenml.io import fileio
from zenml.materializers.base_materializer import BaseMaterializer

from materializers import html_page
from tabular_mlops.adapters.onnx_export import OnnxModel
from tabular_mlops.core.pages import badge, number, page, table


class OnnxModelMaterializer(BaseMaterializer):
    ASSOCIATED_TYPES: ClassVar[tuple[type, ...]] = (OnnxModel,)
    ASSOCIATED_ARTIFACT_TYPE: ClassVar[ArtifactType] = ArtifactType.MODEL

    def load(self, data_type: type[Any]) -> OnnxModel:
        with fileio.open(f"{self.uri}/model.onnx", "rb") as handle:
            onnx = handle.read()
        with fileio.open(f"{self.uri}/manifest.json", "r") as handle:
            manifest = json.loads(handle.read())
        return OnnxModel(onnx, manifest)

    def save(self, data: OnnxModel) -> None:
        with fileio.open(f"{self.uri}/model.onnx", "wb") as handle:
            handle.write(data.onnx)
        with fileio.open(f"{self.uri}/manifest.json", "w") as handle:
            handle.write(json.dumps(data.manifest, indent=2))

    def save_visualizations(self, data: OnnxModel) -> dict[str, VisualizationType]:
        return html_page(self.uri, "onnx_model.html", render_html(data.manifest))

    def extract_metadata(self, data: OnnxModel) -> dict[str, Any]:
        if data.skipped:
            return {"skipped": data.skipped}
        return {"sha256": data.manifest["sha256"], "bytes": data.manifest["bytes"]}


def render_html(manifest: dict[str, Any]) -> str:
    if manifest.get("skipped"):
        name = html.escape(f"{manifest['model_name']} v{manifest['model_version']}")
        return page(
            f"ONNX export of {name}",
            f"<h2>ONNX export: {name} {badge('not exported', False)}</h2>"
            f"<p>{html.escape(manifest['skipped'])}</p><p>The services, batch scoring and "
            "the stream score this version with its scikit-learn pipeline.</p>",
        )
    check = manifest["check"]
    rule = (
        f"'{manifest['positive_label']}' when its probability is at least "
        f"{number(manifest['decision_threshold'])}"
        if manifest.get("decision_threshold") is not None
        else "the most probable class"
    )
    name = html.escape(f"{manifest['model_name']} v{manifest['model_version']}")
    return page(
        f"ONNX export of {name}",
        "".join(
            [
                f"<h2>ONNX export: {name} {badge('checked', True)}</h2>",
                f"<p>{manifest['bytes']:,} bytes, opset {manifest['opset']}, sha256 "
                f"<code>{manifest['sha256'][:16]}…</code>. {agreement(check)} "
                f"Decides: {html.escape(rule)}.</p>",
                "<p>Embed it: <code>python run.py export --format onnx</code> writes model.onnx "
                "and manifest.json; <code>embedded/</code> scores them with onnxruntime and "
                "numpy only.</p>",
                table(
                    ["feature", "kind", "ONNX input", "missing becomes"],
                    [feature_row(f) for f in manifest["features"]],
                    numeric_from=4,
                ),
            ]
        ),
    )


def feature_row(feature: dict) -> list[str]:
    """One manifest feature as the table shows it: its ONNX input (a date's, one per part:
    an unreadable date takes each part's fill) and what a missing value becomes."""
    if feature["kind"] == "date":
        inputs = ", ".join(part["input"] for part in feature["parts"])
        fill = ", ".join(f"{part['part']} {part['fill']}" for part in feature["parts"])
        if not feature["nullable"]:  # a missing date is refused, one that is not a date filled
            fill = f"refused (not a date: {fill})"
        return [feature["name"], feature["kind"], inputs, fill]
    inputs, fill = feature["input"], feature.get("fill", "NaN (imputed in the graph)")
    return [feature["name"], feature["kind"], inputs, fill if feature["nullable"] else "refused"]


def agreement(check: dict) -> str:
    """How the file agreed with the pipeline on the test rows, as the check measured it."""
    if "max_relative_value_difference" in check:
        return (
            f"Values within {check['max_relative_value_difference']:.1e} of their size of the "
            f"scikit-learn pipeline's on {check['rows']} test rows."
        )
    return (
        f"Labels identical to the scikit-learn pipeline on {check['rows']} test rows; "
        f"probabilities within {check['max_probability_difference']:.1e}."
    )
