"""Evidently reports run by the stack's data validator, reduced to figures a gate can use.

The steps hand in the active stack's data validator (ZenML's Evidently flavor),
so the component the environment declares is the one that profiles the data.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Literal

import pandas as pd

from tabular_mlops.core.columns import column_kind
from tabular_mlops.core.drift import DriftSummary, summarize

if TYPE_CHECKING:
    from zenml.data_validators import BaseDataValidator

Preset = Literal["DataDriftPreset", "DataQualityPreset"]


class NoDataValidatorError(RuntimeError):
    """The active stack declares no data validator that can profile data."""


def build_report(
    validator: BaseDataValidator | None,
    current: pd.DataFrame,
    reference: pd.DataFrame | None,
    presets: Sequence[Preset] = ("DataDriftPreset", "DataQualityPreset"),
    target: str | None = None,
    prediction: str | None = None,
) -> tuple[DriftSummary, str]:
    """Profile ``current`` (against ``reference`` when there is one) with the stack's validator.

    Returns the drift summary and the report's HTML. Without a reference (the
    first run of a project) only the presets that need none are run: drift has
    nothing to be measured against.
    """
    if validator is None or validator.flavor != "evidently":
        raise NoDataValidatorError(
            "the active stack has no Evidently data validator; declare one under "
            "stack.components.data_validator (flavor: evidently) in configs/environments/"
        )
    from evidently.legacy.pipeline.column_mapping import ColumnMapping
    from zenml.integrations.evidently.metrics import EvidentlyMetricConfig

    features = [c for c in current.columns if c not in (target, prediction)]
    mapping = ColumnMapping(
        target=target if target in current.columns else None,
        prediction=prediction if prediction in current.columns else None,
        numerical_features=[c for c in features if column_kind(current[c]) == "numeric"],
        categorical_features=[c for c in features if column_kind(current[c]) == "categorical"],
    )
    if reference is None:
        presets = [p for p in presets if p != "DataDriftPreset"] or ["DataQualityPreset"]
    else:
        shared = [c for c in reference.columns if c in current.columns]
        reference, current = reference[shared], current[shared]
    report = validator.data_profiling(
        # ZenML's argument order: ``dataset`` is Evidently's reference data.
        dataset=reference,
        comparison_dataset=current,
        profile_list=[EvidentlyMetricConfig.metric(preset) for preset in presets],
        column_mapping=mapping,
    )
    summary = (
        DriftSummary(compared_with_reference=False)
        if reference is None
        else summarize(report.as_dict())
    )
    return summary, report.get_html()
