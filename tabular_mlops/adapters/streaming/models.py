"""The consumer's model: the version at the stage in the ZenML store, with the serving
spec and the verified scoring path the online service uses."""

from __future__ import annotations

import logging

from tabular_mlops.adapters.champion import load_version, version_at_stage
from tabular_mlops.core.events import EventScorer
from tabular_mlops.core.log_policy import LOG_COLUMNS_KEY, LogPolicy
from tabular_mlops.core.scoring import scorer_for

logger = logging.getLogger(__name__)


class StagedModels:
    """:class:`~tabular_mlops.adapters.streaming.consumer.ModelSource` over ZenML's stages."""

    def __init__(
        self, model_name: str, stage: str, log_columns: dict[str, LogPolicy] | None = None
    ) -> None:
        self.model_name, self.stage = model_name, stage
        #: for a version never deployed: the environment's serving policy
        self.log_columns = log_columns or {}

    def current_version(self) -> str | None:
        """The number of the version at the stage (what the serving spec calls it)."""
        found = version_at_stage(self.model_name, self.stage)
        return str(found.number) if found else None

    def load(self, version: str) -> EventScorer:
        """The version's scorer: the numpy path when it reproduces the pipeline on the
        version's own test rows (as the service checks at packaging), else the pipeline."""
        found = version_at_stage(self.model_name, self.stage)
        if found is None or str(found.number) != version:
            raise LookupError(f"model '{self.model_name}' has no version {version} at "
                              f"'{self.stage}' any more")  # fmt: skip
        staged = load_version(found.id)
        scorer = scorer_for(staged.model, staged.features, staged.test_set[staged.features])
        logger.info("loaded model '%s' version %s (%s scoring path)", self.model_name, version,
                    type(scorer).__name__)  # fmt: skip
        # what its service logs: the policy the deployment recorded on the version
        recorded = found.run_metadata.get(LOG_COLUMNS_KEY)
        policy = dict(recorded) if isinstance(recorded, dict) else self.log_columns
        return EventScorer(staged.spec, scorer, policy)
