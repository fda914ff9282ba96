from __future__ import annotations

from zenml import pipeline

from configs.schema import (
    DataSourceConfig,
    DataValidationConfig,
    EvaluationConfig,
    PromotionConfig,
    SplitConfig,
    TrainingConfig,
)
from steps.data.ingest_data import ingest_data
from steps.data.split_data import split_data
from steps.data.validate_data import validate_data
from steps.evaluation.evaluate_model import evaluate_model
from steps.promotion.promote_model import promote_model
from steps.promotion.register_model import register_model
from steps.promotion.resolve_champion import resolve_champion
from steps.promotion.validate_model import validate_model
from steps.training.train_model import train_model


@pipeline
def training_pipeline(
    data: DataSourceConfig,
    validation: DataValidationConfig,
    split: SplitConfig,
    training: TrainingConfig,
    evaluation: EvaluationConfig,
    promotion: PromotionConfig,
) -> None:
    """ingest -> validate data -> split -> train -> evaluate -> validate model -> register/promote.

    Both gates stop the line: bad data fails the run before training; a model
    that fails the model gate is registered but never promoted.
    """
    target = data.target
    champion = resolve_champion(promotion)
    raw = ingest_data(data)
    dataset, _ = validate_data(raw, champion, validation, target)
    train_set, test_set = split_data(dataset, split, target)
    model, mlflow_model = train_model(train_set, training, target)
    report = evaluate_model(model, test_set, evaluation, target)
    decision = validate_model(report, test_set, champion, promotion, target)
    registry_version = register_model(model, mlflow_model, report, decision)
    promote_model(decision, champion, registry_version, promotion)
