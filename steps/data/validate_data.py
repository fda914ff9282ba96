from __future__ import annotations

from typing import Annotated

import pandas as pd
from zenml import log_metadata, step
from zenml.types import HTMLString

from configs.schema import DataValidationConfig
from materializers.dataframe_materializer import ContentHashedDataFrameMaterializer
from steps.data.checks import check_dataset
from steps.data.drift import build_report
from steps.promotion.champion import Champion, load_artifact


@step(output_materializers={"validated_dataset": ContentHashedDataFrameMaterializer})
def validate_data(
    dataset: pd.DataFrame,
    champion: Champion,
    rules: DataValidationConfig,
    target: str,
) -> tuple[
    Annotated[pd.DataFrame, "validated_dataset"],
    Annotated[HTMLString, "data_report"],
]:
    """The data gate: schema and quality checks, then an Evidently report.

    The reference is the data the production model was trained on, so a new
    dataset must still fit the model that serves today. On any violation the
    step raises and nothing downstream runs.
    """
    reference = (
        load_artifact(champion.train_set_artifact_id) if champion.train_set_artifact_id else None
    )
    check_dataset(dataset, target, rules, reference)
    summary, html = build_report(dataset, reference, target=target)
    log_metadata(
        metadata={"data_drift": summary.model_dump(exclude={"column_scores"})},
        artifact_name="data_report",
        infer_artifact=True,
    )
    return dataset, HTMLString(html)
