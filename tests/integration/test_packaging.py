"""Bentos as the deployment pipeline builds them, in BentoML's store (the session's own)."""

from __future__ import annotations

import bentoml
import pytest

from tabular_mlops.adapters.deployment.packaging import build_bento

pytestmark = pytest.mark.integration


def test_each_bento_built_in_one_process_carries_its_own_model(churn, tmp_path):
    """A process that deploys twice (a retraining loop, a test session) builds the second
    bento around the second model: the service module, which reads its settings when
    imported, is imported afresh, so nothing of the first build (here pruned) leaks in."""
    frame, model, spec = churn
    sample = frame.drop(columns=["churn"]).head(5)
    first_bento, first = build_bento(model, spec, sample, 1, 100, tmp_path)
    bentoml.bentos.delete(first_bento)
    bentoml.models.delete(first.model_tag)

    newer = spec.model_copy(update={"model_name": "churn_next", "model_version": "4"})
    bento_tag, settings = build_bento(model, newer, sample, 1, 100, tmp_path)

    bento = bentoml.bentos.get(bento_tag)
    assert [str(stored.tag) for stored in bento.info.models] == [settings.model_tag]
    assert settings.model_tag.startswith("churn_next")
    served = {env.name: env.value for env in bento.info.envs}
    assert settings.model_tag in next(iter(served.values()))
