from __future__ import annotations

from typing import Annotated

from zenml import get_step_context, step
from zenml.client import Client
from zenml.types import HTMLString

from tabular_mlops.adapters.model_cards import model_card
from tabular_mlops.core.config import DataSourceConfig, ModelCardConfig
from tabular_mlops.core.gate import PromotionDecision, PromotionOutcome
from tabular_mlops.core.model_card import describe_source, render_model_card
from tabular_mlops.core.report import EvaluationReport


@step(enable_cache=False)  # it reads the version's stage and metadata as they are now
def write_model_card(
    outcome: PromotionOutcome,
    decision: PromotionDecision,
    report: EvaluationReport,
    data: DataSourceConfig,
    card_config: ModelCardConfig,
) -> Annotated[HTMLString, "model_card"]:
    """The model version's card, as the dashboard shows it: stage, both gates' decisions
    with their figures, and the lineage (datasets with content hashes, hyperparameters,
    MLflow run and registry entry, code commit).

    ZenML's Models tab is a ZenML Pro page in the open-source dashboard; this artifact
    is the open-source way to see a version, and ``python run.py models --card`` writes
    the production version's to a file. Intended use, population and limitations come
    from ``parameters.card``."""
    context = get_step_context()
    client = Client()
    version = client.get_model_version(context.model.name, context.model.number)
    tracker = client.active_stack.experiment_tracker
    tracking_uri = getattr(tracker, "get_tracking_uri", lambda: None)()
    card = model_card(
        version, outcome, decision, context.pipeline_run.name, tracking_uri, report,
        purpose=card_config, source=describe_source(data),
    )  # fmt: skip
    return HTMLString(render_model_card(card))
