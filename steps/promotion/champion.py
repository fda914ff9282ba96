"""The production champion: the model version at the promotion stage, if any."""

from __future__ import annotations

from typing import Any
from uuid import UUID

from pydantic import BaseModel


class Champion(BaseModel):
    """A reference to the champion's artifacts.

    Steps take it as an input, so their cache key changes exactly when the
    champion does, while they stay cached across runs against the same one.
    """

    model_version_id: UUID | None = None
    version: str | None = None
    model_artifact_id: UUID | None = None
    train_set_artifact_id: UUID | None = None

    @property
    def exists(self) -> bool:
        return self.model_version_id is not None


def find_champion(model_name: str, stage: str) -> Champion:
    from zenml.client import Client
    from zenml.enums import ModelStages

    try:
        version = Client().get_model_version(model_name, ModelStages(stage))
    except KeyError:
        return Champion()
    model = version.get_artifact("model")
    train_set = version.get_artifact("train_set")
    return Champion(
        model_version_id=version.id,
        version=version.name,
        model_artifact_id=model.id if model else None,
        train_set_artifact_id=train_set.id if train_set else None,
    )


def load_artifact(artifact_id: UUID) -> Any:
    from zenml.client import Client

    return Client().get_artifact_version(artifact_id).load()
