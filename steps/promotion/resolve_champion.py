from __future__ import annotations

from typing import Annotated

from zenml import get_step_context, step

from tabular_mlops.adapters.champion import Champion, find_champion
from tabular_mlops.core.config import PromotionConfig


# Never cached: it reads the current state of the model registry.
@step(enable_cache=False)
def resolve_champion(promotion: PromotionConfig) -> Annotated[Champion, "champion"]:
    """Look up the model version at the champion's stage (production), to gate against."""
    model = get_step_context().model
    return find_champion(model.name, promotion.champion_stage)
