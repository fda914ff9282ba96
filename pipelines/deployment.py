from __future__ import annotations

from zenml import pipeline

from configs.schema import ServingConfig
from steps.deployment.go_live import go_live
from steps.deployment.package_model import package_model
from steps.deployment.smoke_test_candidate import smoke_test_candidate
from steps.deployment.start_candidate import start_candidate


@pipeline
def deployment_pipeline(serving: ServingConfig) -> None:
    """package -> start beside the live service -> smoke-test -> go live.

    Until the last step the live service is not touched: a failed build, start
    or smoke test leaves it answering, and the production model as it was.
    """
    package = package_model(serving)
    candidate = start_candidate(package, serving)
    smoke = smoke_test_candidate(candidate, serving)
    go_live(candidate, smoke, serving)
