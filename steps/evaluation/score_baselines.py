from __future__ import annotations

from typing import Annotated

import pandas as pd
from zenml import step

from tabular_mlops.core.baselines import score_baselines as scored
from tabular_mlops.core.config import PromotionConfig, as_task
from tabular_mlops.core.report import BaselineScore


@step
def score_baselines(
    train_set: pd.DataFrame,
    test_set: pd.DataFrame,
    promotion: PromotionConfig,
    target: str,
    assessment_columns: list[str],
    task: str = "classification",
    date_columns: list[str] | None = None,
) -> Annotated[list[BaselineScore], "baselines"]:
    """Is ML worth it? The trivial models (``promotion.baseline``) fitted on the training
    split and scored on the test rows the candidate is: the model gate refuses a
    candidate that does not beat them."""
    if promotion.baseline is None:
        return []
    return scored(
        train_set, test_set, target, as_task(task), promotion.primary_metric,
        promotion.baseline, assessment_columns, date_columns or (),
    )  # fmt: skip
