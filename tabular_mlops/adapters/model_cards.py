"""A model version's card, assembled from what ZenML and MLflow recorded about it."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from tabular_mlops.core.config import ModelCardConfig
from tabular_mlops.core.gate import PromotionDecision, PromotionOutcome
from tabular_mlops.core.model_card import DatasetLineage, ModelCard
from tabular_mlops.core.report import EvaluationReport

if TYPE_CHECKING:
    from zenml.models import ArtifactVersionResponse, ModelVersionResponse

#: the dataset artifacts a version is made from, by role
DATASETS = (
    ("validated data", "validated_dataset"),
    ("training split", "train_set"),
    ("test split", "test_set"),
)


def _lineage(role: str, artifact: ArtifactVersionResponse | None) -> DatasetLineage | None:
    if artifact is None:
        return None
    shape = artifact.run_metadata.get("shape")
    rows = int(shape[0]) if isinstance(shape, list | tuple) and shape else None
    return DatasetLineage(
        role=role,
        artifact=artifact.name,
        version=str(artifact.version),
        artifact_id=str(artifact.id),
        content_hash=artifact.content_hash,
        rows=rows,
    )


def model_card(
    version: ModelVersionResponse,
    outcome: PromotionOutcome,
    decision: PromotionDecision,
    pipeline_run: str,
    tracking_uri: str | None,
    report: EvaluationReport | None = None,
    purpose: ModelCardConfig | None = None,
    source: str = "",
) -> ModelCard:
    """The card of ``version`` (hydrated) as it stands after its promotion decision."""
    metadata: dict[str, Any] = dict(version.run_metadata)
    data_report = version.get_artifact("data_report")
    drift = data_report.run_metadata.get("data_drift") if data_report else None
    data_gate: dict[str, Any] = dict(drift) if isinstance(drift, dict) else {}
    if data_gate and metadata.get("drift_accepted"):
        data_gate["drift_accepted"] = True
    mlflow = {
        "run id": str(metadata.get("mlflow_run_id", "")),
        "experiment id": str(metadata.get("mlflow_experiment_id", "")),
        "model URI": str(metadata.get("mlflow_model_uri", "")),
        "registry version": str(metadata.get("registry_version", "")),
        "tracking URI": tracking_uri or "",
    }
    datasets = [_lineage(role, version.get_artifact(name)) for role, name in DATASETS]
    return ModelCard(
        model_name=version.model.name,
        model_version=str(version.number),
        stage=version.stage,
        outcome=outcome,
        decision=decision,
        estimator=str(metadata.get("estimator", "unknown")),
        hyperparameters={k: str(v) for k, v in (metadata.get("hyperparameters") or {}).items()},
        data_gate=data_gate,
        datasets=[d for d in datasets if d is not None],
        code=dict(metadata.get("code_version") or {}),
        mlflow={k: v for k, v in mlflow.items() if v},
        pipeline_run=pipeline_run,
        slice_column=report.slice_column if report else None,
        slices=report.slices if report else [],
        baselines=report.baselines if report else [],
        purpose=purpose or ModelCardConfig(),
        source=source,
        target=str(metadata.get("target", "")),
        label_counts=label_counts(report) if report else {},
    )


def label_counts(report: EvaluationReport) -> dict[str, int]:
    """Each class's rows in the test split (the confusion matrix's row sums)."""
    return {
        c: int(sum(row)) for c, row in zip(report.classes, report.confusion_matrix, strict=True)
    }
