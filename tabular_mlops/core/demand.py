"""The project's own demand data: daily units sold per store and product, generated with
a fixed seed, so the regression example needs nothing downloaded and gives the same
rows on every machine.

Units sold follow a product's base demand in a store, scaled by a weekly pattern
(weekends sell more), a yearly season (a summer peak for drinks, a winter one for
soup), public holidays, promotions (a lower price and a display), the price itself
(demand falls as the price rises, with the product's elasticity) and Poisson noise.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

#: product -> (base units a day, reference price, price elasticity, yearly peak month)
PRODUCTS: dict[str, tuple[float, float, float, int]] = {
    "cola": (60.0, 1.80, 1.6, 7),
    "water": (90.0, 0.90, 0.8, 7),
    "soup": (25.0, 2.50, 1.1, 1),
    "bread": (70.0, 1.20, 0.5, 12),
}
#: store -> size (a multiplier of base demand)
STORES: dict[str, float] = {"north": 1.0, "centre": 1.6, "harbour": 0.7}
#: weekday (Monday = 0) -> multiplier
WEEK = (0.85, 0.85, 0.9, 0.95, 1.1, 1.35, 1.0)
#: month-day of the public holidays each year
HOLIDAYS = ("01-01", "05-01", "07-14", "08-15", "11-01", "11-11", "12-25")
#: how much a holiday and a promotion lift demand, and how deep a promotion's discount is
HOLIDAY_LIFT, PROMOTION_LIFT, PROMOTION_DISCOUNT = 1.5, 1.3, 0.2


def demand_frame(
    seed: int = 7, start: str = "2023-01-01", days: int = 730, promotion_share: float = 0.1
) -> pd.DataFrame:
    """One row per day, store and product: ``date`` (ISO text, as a CSV holds it),
    ``store``, ``product``, ``price``, ``promotion`` (0/1), ``holiday`` (0/1) and the target
    ``units_sold``."""
    rng = np.random.default_rng(seed)
    dates = pd.date_range(start, periods=days, freq="D")
    grid = pd.MultiIndex.from_product(
        [dates, list(STORES), list(PRODUCTS)], names=["date", "store", "product"]
    ).to_frame(index=False)
    base, reference, elasticity, peak = (
        grid["product"].map({p: v[i] for p, v in PRODUCTS.items()}).to_numpy(dtype=float)
        for i in range(4)
    )
    when = grid["date"].dt
    promotion = (rng.random(len(grid)) < promotion_share).astype(int)
    holiday = when.strftime("%m-%d").isin(HOLIDAYS).astype(int).to_numpy()
    price = reference * (1 - PROMOTION_DISCOUNT * promotion) * rng.uniform(0.95, 1.05, len(grid))
    season = 1 + 0.3 * np.cos(2 * np.pi * (when.month.to_numpy() - peak) / 12)
    expected = (
        base
        * grid["store"].map(STORES).to_numpy(dtype=float)
        * np.asarray(WEEK)[when.weekday.to_numpy()]
        * season
        * np.where(holiday == 1, HOLIDAY_LIFT, 1.0)
        * np.where(promotion == 1, PROMOTION_LIFT, 1.0)
        * (price / reference) ** -elasticity
    )
    return pd.DataFrame(
        {
            "date": grid["date"].dt.strftime("%Y-%m-%d"),
            "store": grid["store"].astype(str),
            "product": grid["product"].astype(str),
            "price": price.round(2),
            "promotion": promotion,
            "holiday": holiday,
            "units_sold": rng.poisson(expected).astype(float),
        }
    )
