from __future__ import annotations

import logging
from typing import Annotated

from zenml import get_step_context, log_metadata, step

from materializers.onnx_model_materializer import OnnxModelMaterializer
from tabular_mlops.adapters.champion import load_staged_model
from tabular_mlops.adapters.onnx_export import OnnxExportError, OnnxModel, export_onnx

logger = logging.getLogger(__name__)


@step(enable_cache=False, output_materializers=OnnxModelMaterializer)
def export_onnx_model() -> Annotated[OnnxModel, "onnx_model"]:
    """Export the model version being deployed to ONNX, for programs that embed it
    (``embedded/``), as an artifact of that version: ``model.onnx`` and its manifest.

    The file is checked against the scikit-learn pipeline on the version's own test
    split (identical labels, probabilities within 1e-5) and refused otherwise: an
    unchecked file is never shipped. A refused one (e.g. a tree ensemble whose float32
    thresholds move a label) is recorded as skipped, with the reason, and the
    deployment goes on: nothing else serves the ONNX file.
    """
    staged = load_staged_model(get_step_context().model)
    try:
        exported = export_onnx(staged.model, staged.spec, staged.test_set[staged.features])
    except OnnxExportError as exc:
        # The services, batch and stream score the scikit-learn pipeline itself: a model
        # that cannot be embedded is still deployed, and `run.py export` says why not.
        logger.warning("not exported to ONNX (the deployment goes on): %s", exc)
        log_metadata(metadata={"onnx_export": {"skipped": str(exc)}}, infer_model=True)
        return OnnxModel.not_exported(staged.spec, str(exc))
    manifest = exported.manifest
    log_metadata(
        metadata={"onnx_export": {key: manifest[key] for key in ("sha256", "bytes", "check")}},
        infer_model=True,
    )
    return exported
