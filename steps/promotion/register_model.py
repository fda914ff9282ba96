from __future__ import annotations

from typing import Annotated

import zenml
from sklearn.pipeline import Pipeline
from zenml import get_step_context, log_metadata, step
from zenml.client import Client
from zenml.integrations.mlflow.model_registries import MLFlowModelRegistry

from tabular_mlops.adapters.integrity import MODEL_HASH_KEY
from tabular_mlops.adapters.lineage import code_version
from tabular_mlops.adapters.mlflow_models import MlflowModel, register_version
from tabular_mlops.core.gate import PromotionDecision
from tabular_mlops.core.governance import governance_metrics
from tabular_mlops.core.model_factory import base_estimator
from tabular_mlops.core.report import EvaluationReport


# Never cached: every run's model version is recorded in the registry.
# The experiment tracker points MLflow at the stack's store for this step; the
# registry's client resolves the model through MLflow's global tracking URI,
# which ZenML resets after each tracked step.
@step(enable_cache=False, experiment_tracker=True)
def register_model(
    model: Pipeline,
    mlflow_model: MlflowModel,
    report: EvaluationReport,
    decision: PromotionDecision,
    target: str,
) -> Annotated[str, "registry_version"]:
    """Record the candidate, approved or not, in the stack's model registry and on its
    ZenML model version, with the lineage needed to reproduce it.

    All model-version metadata is written here, in a step that is never cached:
    a cached upstream step does not run, so metadata it logged would be missing
    from every model version after the first."""
    context = get_step_context()
    model_version = context.model.number
    registry = Client().active_stack.model_registry
    if not isinstance(registry, MLFlowModelRegistry):
        raise RuntimeError(
            "the active stack has no MLflow model registry; see configs/environments/"
        )
    run = context.pipeline_run
    registered = register_version(
        registry.mlflow_client,
        context.model.name,
        mlflow_model,
        description=f"ZenML {context.model.name} version {model_version}",
        tags={
            "zenml_version": zenml.__version__,
            "zenml_run_name": run.name,
            "zenml_pipeline_name": run.pipeline.name if run.pipeline else "",
            "zenml_pipeline_run_uuid": str(run.id),
            "zenml_step_name": context.step_run.name,
            "zenml_model_version": str(model_version),
            "gate": "approved" if decision.approved else "rejected",
        },
    )
    approved_hash = context.inputs["model"][0].content_hash if decision.approved else None
    classifier = base_estimator(model.steps[-1][1])
    governance = report.governance
    log_metadata(
        metadata={
            "code_version": code_version(),
            "target": target,
            "estimator": type(classifier).__module__ + "." + type(classifier).__name__,
            "hyperparameters": {k: str(v) for k, v in classifier.get_params().items()},
            "test_metrics": report.metrics,
            "governance": governance_metrics(governance),
            "feature_importance": governance.importance if governance else {},
            # the governance figures are logged apart, above
            "candidate_vs_champion": decision.model_dump(
                mode="json", exclude={"governance", "champion_governance"}
            ),
            "mlflow_run_id": mlflow_model.run_id,
            "mlflow_experiment_id": mlflow_model.experiment_id,
            "mlflow_model_uri": mlflow_model.model_uri,
            "registry_version": registered,
            "gate": "approved" if decision.approved else "rejected",
            # what every loader checks the model file against (adapters/integrity.py)
            **({MODEL_HASH_KEY: approved_hash} if approved_hash else {}),
            "gate_reasons": decision.reasons,
        },
        infer_model=True,
    )
    return registered
