from __future__ import annotations

from typing import Any

from pipelines import lifecycle_pipeline
from steps.data.ingest_data import ingest_data
from steps.data.split_data import split_data
from steps.data.validate_data import validate_data
from steps.evaluation.evaluate_model import evaluate_model
from steps.evaluation.score_baselines import score_baselines
from steps.promotion.promote_model import promote_model
from steps.promotion.prune_candidates import prune_candidates
from steps.promotion.register_model import register_model
from steps.promotion.resolve_champion import resolve_champion
from steps.promotion.validate_model import validate_model
from steps.promotion.write_model_card import write_model_card
from steps.training.select_model import select_model
from steps.training.train_model import train_model
from tabular_mlops.core.config import (
    DataSourceConfig,
    DataValidationConfig,
    EvaluationConfig,
    ModelCardConfig,
    PromotionConfig,
    SplitConfig,
    TrainingConfig,
)


def train_and_promote(
    data: DataSourceConfig,
    validation: DataValidationConfig,
    split: SplitConfig,
    training: TrainingConfig,
    evaluation: EvaluationConfig,
    promotion: PromotionConfig,
    card: ModelCardConfig,
    task: str = "classification",
) -> Any:
    """ingest -> validate data -> split -> select (among candidates) -> train -> evaluate
    (beside trivial baselines) -> validate model -> register/promote -> model card.

    Both gates stop the line: bad data fails the run before training; a model
    that fails the model gate is registered but never promoted.
    """
    target = data.target
    champion = resolve_champion(promotion)
    raw = ingest_data(data)
    dataset, _, _ = validate_data(
        raw, champion, validation, target, data.assessment_columns, task, data.date_columns,
        evaluation.named_columns(),
    )  # fmt: skip
    train_set, test_set = split_data(dataset, split, target, task)
    leaderboard = select_model(
        train_set, training, target, data.assessment_columns, promotion.primary_metric, task,
        data.date_columns,
    )  # fmt: skip
    model, mlflow_model = train_model(
        train_set, training, target, evaluation.cost, data.assessment_columns, task,
        evaluation.interval, data.date_columns, leaderboard,
    )  # fmt: skip
    baselines = score_baselines(
        train_set, test_set, promotion, target, data.assessment_columns, task, data.date_columns
    )
    report = evaluate_model(model, test_set, evaluation, target, baselines)
    decision = validate_model(report, test_set, champion, promotion, evaluation, target)
    registry_version = register_model(model, mlflow_model, report, decision, target)
    outcome = promote_model(
        decision, champion, registry_version, promotion, evaluation, test_set, target
    )
    write_model_card(outcome, decision, report, data, card)
    prune_candidates(outcome, promotion)
    return outcome


#: run by `run.py train`, by a schedule, and in the dashboard
training_pipeline = lifecycle_pipeline(name="training_pipeline")(train_and_promote)
#: the same steps as a child run of the continuous-training loop, which branches on them
retraining_pipeline = lifecycle_pipeline(dynamic=True, name="retraining_pipeline")(
    train_and_promote
)
