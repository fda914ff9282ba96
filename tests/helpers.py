"""Helpers shared by the tests: invoking the CLI in-process and making small datasets."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
from click.testing import CliRunner, Result


def invoke(*args: str) -> Result:
    """Run ``python run.py ARGS`` in this process, against the session's ZenML store."""
    from cli.main import cli

    return CliRunner().invoke(cli, list(args), catch_exceptions=False)


def customer_churn_frame(rows: int = 400, seed: int = 0) -> pd.DataFrame:
    """A small tabular dataset with categorical columns, missing values and string labels."""
    rng = np.random.default_rng(seed)
    tenure = rng.integers(1, 72, rows).astype(float)
    monthly = rng.normal(70, 20, rows).round(2)
    contract = rng.choice(["month-to-month", "one-year", "two-year"], rows, p=[0.5, 0.3, 0.2])
    region = rng.choice(["north", "south", "east", "west"], rows)
    risk = -0.05 * tenure + 0.03 * monthly + np.where(contract == "month-to-month", 1.5, -1.0)
    churn = np.where(risk + rng.normal(0, 0.7, rows) > 0.6, "yes", "no")
    frame = pd.DataFrame(
        {
            "tenure_months": tenure,
            "monthly_charges": monthly,
            "contract": contract,
            "region": region,
            "churn": churn,
        }
    )
    frame.loc[rng.choice(rows, rows // 10, replace=False), "monthly_charges"] = np.nan
    frame.loc[rng.choice(rows, rows // 10, replace=False), "region"] = None
    return frame


def write_csv(frame: pd.DataFrame, path: Path) -> Path:
    frame.to_csv(path, index=False)
    return path
