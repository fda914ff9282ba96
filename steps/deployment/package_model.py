from __future__ import annotations

from typing import Annotated

from zenml import get_step_context, log_metadata, step
from zenml.client import Client

from tabular_mlops.adapters.champion import load_staged_model
from tabular_mlops.adapters.deployment.model_deployer import serving_target
from tabular_mlops.adapters.deployment.packaging import build_bento
from tabular_mlops.adapters.deployment.target import BentoPackage
from tabular_mlops.core.config import ServingConfig
from tabular_mlops.core.latency import LatencyBudgetError, measure, over_budget
from tabular_mlops.core.log_policy import LOG_COLUMNS_KEY, check_policy
from tabular_mlops.core.rollout import ERROR_TESTED, planned
from tabular_mlops.core.scoring import rows_of_frame, scorer_for


@step(enable_cache=False)
def package_model(serving: ServingConfig) -> Annotated[BentoPackage, "bento_package"]:
    """Build a Bento from the model version at the deployment's stage, and publish
    it where the stack serves: the local bento store, or an image in the stack's
    container registry (built here, where the bento is).

    The deployment gate comes first: the scoring path the service will run is
    timed on the model's test rows (single-row p99, batch rows/s) and a model over
    the budget in ``serving`` is refused before anything is built. The request
    schema is derived from the model's own training data, and the numpy scoring
    path is checked against the pipeline on its test rows.
    """
    model = get_step_context().model
    staged = load_staged_model(model)
    strategy = serving.rollout.strategy
    if staged.spec.task == "regression" and strategy in ERROR_TESTED:
        # names min_error_reduction before anything is built (decided on errors, not labels)
        planned(serving.rollout, None, 1.0)
    sample = staged.test_set[staged.features]
    scorer = scorer_for(staged.model, staged.features, sample)
    latency = measure(scorer, staged.spec.decide, rows_of_frame(sample))
    log_metadata(metadata={"scoring_latency": latency.model_dump()}, infer_model=True)
    problems = over_budget(latency, serving)
    if problems:  # before anything is built: the live service is not touched
        raise LatencyBudgetError(
            f"model '{model.name}' version {model.number} is over the latency budget: "
            + "; ".join(problems)
        )
    check_policy(serving.log_columns, staged.features)  # a misspelt column: before building
    # the version's own record of what its service logs: every writer of its rows follows it
    log_metadata(metadata={LOG_COLUMNS_KEY: dict(serving.log_columns)}, infer_model=True)
    target = serving_target(Client().active_stack, serving)
    bento_tag, settings = build_bento(
        staged.model,
        staged.spec,
        staged.test_set[staged.features],
        target.workers,
        serving.max_batch_rows,
        target.inference_log_dir,
        serving.log_columns,
        serving.require_api_key,
    )
    published = target.publish(bento_tag)
    log_metadata(
        metadata={"bento_tag": bento_tag, "published": published, "fast_path": settings.fast_path}
    )
    return BentoPackage(
        model_name=model.name,
        model_version=str(model.number),
        bento_tag=bento_tag,
        published=published,
        settings=settings,
    )
