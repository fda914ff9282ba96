from __future__ import annotations

from typing import Annotated

from zenml import get_step_context, log_metadata, step

from materializers.onnx_model_materializer import OnnxModelMaterializer
from tabular_mlops.adapters.champion import load_staged_model
from tabular_mlops.adapters.onnx_export import OnnxModel, export_onnx


@step(enable_cache=False, output_materializers=OnnxModelMaterializer)
def export_onnx_model() -> Annotated[OnnxModel, "onnx_model"]:
    """Export the model version being deployed to ONNX, for programs that embed it
    (``embedded/``), as an artifact of that version: ``model.onnx`` and its manifest.

    The file is checked against the scikit-learn pipeline on the version's own test
    split (identical labels, probabilities within 1e-5) and refused otherwise, before
    anything is packaged: an unchecked file is never shipped.
    """
    staged = load_staged_model(get_step_context().model)
    exported = export_onnx(staged.model, staged.spec, staged.test_set[staged.features])
    manifest = exported.manifest
    log_metadata(
        metadata={"onnx_export": {key: manifest[key] for key in ("sha256", "bytes", "check")}},
        infer_model=True,
    )
    return exported
