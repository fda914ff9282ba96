from __future__ import annotations

from typing import Annotated

from zenml import get_step_context, step

from configs.schema import PromotionConfig
from steps.promotion.champion import Champion, find_champion


# Never cached: it reads the current state of the model registry.
@step(enable_cache=False)
def resolve_champion(promotion: PromotionConfig) -> Annotated[Champion, "champion"]:
    """Look up the model version currently at the promotion stage, to compare against."""
    model = get_step_context().model
    return find_champion(model.name, promotion.stage)
