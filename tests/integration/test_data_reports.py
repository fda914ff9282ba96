"""Evidently reports through ZenML's Evidently data validator: figures, a static page, the
snapshot that rebuilds Evidently's own page. The validator is the real flavor's class."""

from __future__ import annotations

from types import SimpleNamespace
from typing import Any

import numpy as np
import pandas as pd
import pytest

from tabular_mlops.adapters.evidently_reports import (
    NoDataValidatorError,
    build_report,
    interactive_html,
)


@pytest.fixture(scope="module")
def validator() -> Any:
    """ZenML's EvidentlyDataValidator, as the stack hands it to the steps."""
    from zenml.integrations.evidently.data_validators import EvidentlyDataValidator
    from zenml.utils import source_utils

    from tabular_mlops.adapters.paths import PROJECT_ROOT

    # ZenML loads Evidently's metric classes by source; under pytest-xdist the main
    # module has no file to find the source root from
    source_utils.set_custom_source_root(str(PROJECT_ROOT))
    profiler = EvidentlyDataValidator.__new__(EvidentlyDataValidator)
    profiler.__dict__["flavor"] = "evidently"
    return profiler


def frame(shift: float, rows: int = 300, seed: int = 0) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    return pd.DataFrame(
        {
            "income": rng.normal(50 + shift, 10, rows),
            "age": rng.normal(40, 8, rows),
            "region": rng.choice(["north", "south"], rows),
        }
    )


def test_drifted_columns_are_named_on_a_page_without_scripts(validator):
    summary, page, snapshot = build_report(
        validator,
        frame(shift=25, seed=1),
        frame(shift=0),
        title="Batch <drift>",
        artifact="batch_drift_evidently",
    )
    assert summary.compared_with_reference
    assert summary.drifted_columns == ["income"]
    assert {c.column for c in summary.columns} == {"income", "age", "region"}
    assert "<script" not in page.lower()
    assert "Batch &lt;drift&gt;" in page  # names are escaped
    assert "1 of 3 columns drifted (33%)" in page
    assert "python run.py report batch_drift_evidently" in page
    assert '<tr class="bad"><td>income</td>' in page  # drifted: first, shaded
    assert page.count("<svg") == 3  # each column's reference and current distributions
    assert "<script" in interactive_html(snapshot).lower()  # Evidently's own, interactive


def test_without_a_reference_only_quality_is_reported(validator):
    summary, page, _ = build_report(
        validator, frame(shift=0), None, title="First model", artifact="data_report_evidently"
    )
    assert not summary.compared_with_reference
    assert summary.columns == []
    assert summary.quality["number_of_rows"] == 300
    assert "no reference to compare with" in page


def test_a_stack_without_an_evidently_validator_is_named():
    with pytest.raises(NoDataValidatorError, match=r"stack\.components\.data_validator"):
        build_report(
            SimpleNamespace(flavor="great_expectations"), frame(0), None, title="x", artifact="x"
        )
