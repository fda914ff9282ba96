"""The champion: the model version at ``promotion.champion_stage`` (production), if any."""

from __future__ import annotations

import functools
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any
from uuid import UUID

import pandas as pd
from pydantic import BaseModel
from sklearn.pipeline import Pipeline

from tabular_mlops.adapters.integrity import MODEL_HASH_KEY, load_checked
from tabular_mlops.core.governance import decision_rule
from tabular_mlops.core.spec import DataContract, ServingSpec

if TYPE_CHECKING:
    from zenml import Model as ZenMLModel
    from zenml.models import ModelVersionResponse


class Champion(BaseModel):
    """A reference to the champion's artifacts.

    Steps take it as an input, so their cache key changes exactly when the
    champion does, while they stay cached across runs against the same one.
    """

    model_version_id: UUID | None = None
    version: str | None = None
    stage: str | None = None
    model_artifact_id: UUID | None = None
    train_set_artifact_id: UUID | None = None
    #: what the version predicts (classification or regression), as its training recorded
    task: str | None = None

    @property
    def exists(self) -> bool:
        return self.model_version_id is not None


class TaskMismatchError(ValueError):
    """A run would gate a model of one task against a version of the other."""


def check_same_task(champion: Champion, model_name: str, task: str) -> None:
    """Refuse a run whose task is not the champion's: its data, metrics and gates would
    be compared with a model of the other kind (every column "removed", no metric shared)."""
    if champion.task is None or champion.task == task:
        return
    kinds = {"classification": "a classifier", "regression": "a regressor"}
    raise TaskMismatchError(
        f"model '{model_name}' version {champion.version} ({champion.stage}) is "
        f"{kinds.get(champion.task, champion.task)}, and this run trains "
        f"{kinds.get(task, task)} (parameters.task: {task}), which would be gated against it"
    )


def version_at_stage(model_name: str, stage: str) -> ModelVersionResponse | None:
    """The model's version at ``stage`` in the ZenML store, if any."""
    from zenml.client import Client
    from zenml.enums import ModelStages

    try:
        return Client().get_model_version(model_name, ModelStages(stage))
    except KeyError:
        return None


def find_champion(model_name: str, stage: str) -> Champion:
    version = version_at_stage(model_name, stage)
    if version is None:
        return Champion()
    return champion_of(version, stage)


def find_version(model_name: str, number: int) -> Champion:
    """A version named by its number (e.g. ``validation.reference_version``), or a
    LookupError naming it."""
    from zenml.client import Client

    try:
        version = Client().get_model_version(model_name, number)
    except KeyError:
        raise LookupError(
            f"model '{model_name}' has no version {number}: set "
            "parameters.validation.reference_version to an existing version, or null for "
            "the production version"
        ) from None
    stage = getattr(version.stage, "value", version.stage)
    return champion_of(version, str(stage) if stage else None)


def champion_of(version: ModelVersionResponse, stage: str | None) -> Champion:
    model = version.get_artifact("model")
    train_set = version.get_artifact("train_set")
    # train_model records the training score as train_r2 (a regressor) or train_accuracy
    recorded = model.run_metadata if model else {}
    task = "regression" if "train_r2" in recorded else None
    return Champion(
        model_version_id=version.id,
        version=version.name,
        stage=stage,
        model_artifact_id=model.id if model else None,
        train_set_artifact_id=train_set.id if train_set else None,
        task=task or ("classification" if "train_accuracy" in recorded else None),
    )


def reference_name(reference: Champion) -> str:
    """How reports and logs name a data reference: which version, at which stage."""
    if reference.train_set_artifact_id is None:
        return "no reference: no production version yet (the first model)"
    at = f" ({reference.stage})" if reference.stage else ""
    return f"the training data of version {reference.version}{at}"


def load_artifact(artifact_id: UUID) -> Any:
    """An artifact by id, its file checked against its recorded hash first (a model's)."""
    from zenml.client import Client

    artifact = Client().get_artifact_version(artifact_id)
    return load_checked(artifact, f"artifact '{artifact.name}' version {artifact.version}")


@dataclass(frozen=True)
class StagedModel:
    """A model version's fitted pipeline with the data and serving spec derived from it."""

    model: Pipeline
    train_set: pd.DataFrame
    test_set: pd.DataFrame
    spec: ServingSpec

    @property
    def features(self) -> list[str]:
        return [f.name for f in self.spec.features]


def load_staged_model(zenml_model: ZenMLModel) -> StagedModel:
    """The artifacts of the run's model version (e.g. the one at `production`).

    Several steps of a run need them; loaded once per version and process, the
    local orchestrator's steps share one copy instead of reading it six times.
    """
    return load_version(zenml_model.id)


@functools.lru_cache(maxsize=4)
def load_version(model_version_id: UUID) -> StagedModel:
    from zenml.client import Client

    version = Client().get_model_version(model_version_name_or_number_or_id=model_version_id)

    def artifact(name: str) -> Any:
        found = version.get_artifact(name)
        if found is None:
            raise LookupError(
                f"model '{version.model.name}' version {version.name} has no '{name}' "
                "artifact: was it made by this project's training pipeline?"
            )
        # the model's file must be the one the gates approved (adapters/integrity.py)
        approved = version.run_metadata.get(MODEL_HASH_KEY) if name == "model" else None
        what = f"model '{version.model.name}' version {version.name}"
        return load_checked(found, what, str(approved) if approved else None)

    model: Pipeline = artifact("model")
    train_set: pd.DataFrame = artifact("train_set")
    test_set: pd.DataFrame = artifact("test_set")
    features = list(model.feature_names_in_)
    others = [c for c in train_set.columns if c not in features]
    # beside the target, the training data may keep assessment-only columns
    target = others[0] if len(others) == 1 else str(version.run_metadata["target"])
    positive, threshold = decision_rule(model)
    recorded = version.run_metadata.get("data_contract")
    # a version trained before contracts were recorded was read with the defaults
    reading = DataContract.model_validate(recorded) if isinstance(recorded, dict) else None
    spec = ServingSpec.from_training_data(
        version.model.name, str(version.number), train_set[[*features, target]], target,
        list(getattr(model, "classes_", [])), positive, threshold, reading,
        **regression_answer(model),
    )  # fmt: skip
    return StagedModel(model, train_set, test_set, spec)


def regression_answer(model: Pipeline) -> dict[str, Any]:
    """What a regressor's answers carry beside the value (its interval and decision), as
    :class:`ServingSpec` fields; nothing for a classifier."""
    from sklearn.base import is_regressor

    from tabular_mlops.core.regression import errors_of

    if not is_regressor(model):
        return {}
    errors = errors_of(model)
    if errors is None:
        return {"task": "regression"}
    return {
        "task": "regression",
        "interval_level": errors.level,
        "interval_half_width": errors.half_width,
        "decision_offset": errors.decision_offset,
        "answer_floor": errors.floor,
    }


def recorded_test_metrics(model_name: str, version: str) -> dict[str, float]:
    """The test metrics the model gate recorded on a version (none recorded: empty)."""
    from zenml.client import Client

    metadata = Client().get_model_version(model_name, int(version)).run_metadata
    metrics = metadata.get("test_metrics")
    if not isinstance(metrics, dict):
        return {}
    return {str(k): float(v) for k, v in metrics.items() if isinstance(v, (int, float))}
