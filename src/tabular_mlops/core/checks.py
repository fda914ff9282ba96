"""The data gate's checks, as a pandera schema built from the rules and the reference.

The reference is the data the production model was trained on: when it exists,
the new data must have its columns with the same kinds (numeric/categorical)
and the same kind of label, so a model trained on it can serve the same requests.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import pandas as pd
import pandera.pandas as pa
from pandas.api.types import is_float_dtype

from tabular_mlops.core.columns import column_kind
from tabular_mlops.core.config import DataValidationConfig


@dataclass(frozen=True)
class Violation:
    check: str
    column: str | None
    detail: str

    def __str__(self) -> str:
        where = f"column '{self.column}'" if self.column else "dataset"
        return f"[{self.check}] {where}: {self.detail}"


class DataValidationError(ValueError):
    """The data gate failed; the message lists each check, column and value."""

    def __init__(self, violations: list[Violation]) -> None:
        self.violations = violations
        lines = "\n".join(f"  - {v}" for v in violations)
        super().__init__(f"data validation failed with {len(violations)} violation(s):\n{lines}")


def _describe(rules: DataValidationConfig) -> dict[str, Callable[[pd.Series], str]]:
    """Check name -> what the failing column shows, for the error message."""
    return {
        "not_all_missing": lambda s: f"all {len(s)} values are missing",
        "max_missing_fraction": lambda s: (
            f"{s.isna().mean():.1%} of values missing, above the allowed "
            f"{rules.max_missing_fraction:.1%}"
        ),
        "not_constant": lambda s: f"constant column, every value is {s.dropna().tolist()[0]!r}",
        "numeric": lambda s: f"expected numeric values, got dtype {s.dtype}",
        "categorical": lambda s: f"expected categorical (string) values, got dtype {s.dtype}",
        "discrete_labels": lambda s: (
            "label has non-integer float values; is it a regression target?"
        ),
        "class_count": lambda s: f"{s.nunique()} classes; need 2 to {rules.max_classes}",
        "min_class_count": lambda s: (
            f"classes with fewer than {rules.min_class_count} rows: "
            f"{ {k: int(v) for k, v in s.value_counts().items() if v < rules.min_class_count} }"
        ),
    }


def _series_check(test: Callable[[pd.Series], bool], name: str) -> pa.Check:
    """A check on the whole column, nulls included (pandera drops them by default)."""
    return pa.Check(test, element_wise=False, ignore_na=False, name=name)


def _feature_checks(rules: DataValidationConfig, kind: str | None) -> list[pa.Check]:
    checks = [
        _series_check(lambda s: bool(s.notna().any()), "not_all_missing"),
        # An all-missing column is reported once, by the check above.
        _series_check(
            lambda s: bool(s.isna().all() or s.isna().mean() <= rules.max_missing_fraction),
            "max_missing_fraction",
        ),
    ]
    if not rules.allow_constant_columns:
        checks.append(_series_check(lambda s: bool(s.nunique() != 1), "not_constant"))
    if kind is not None:
        checks.append(_series_check(lambda s: bool(s.isna().all()) or column_kind(s) == kind, kind))
    return checks


def _label_checks(rules: DataValidationConfig, kind: str | None) -> list[pa.Check]:
    checks = [
        _series_check(
            lambda s: not (is_float_dtype(s) and bool((s.dropna() % 1 != 0).any())),
            "discrete_labels",
        ),
        _series_check(lambda s: 2 <= s.nunique() <= rules.max_classes, "class_count"),
        _series_check(
            lambda s: bool((s.value_counts() >= rules.min_class_count).all()), "min_class_count"
        ),
    ]
    if kind is not None:
        checks.append(_series_check(lambda s: column_kind(s) == kind, kind))
    return checks


def build_schema(
    frame: pd.DataFrame,
    target: str,
    rules: DataValidationConfig,
    reference: pd.DataFrame | None = None,
) -> pa.DataFrameSchema:
    """The schema ``frame`` must satisfy: every column it has, plus those required of it."""
    expected = set(rules.required_columns) | {target}
    if reference is not None:
        expected |= set(reference.columns)
    columns = {}
    for name in [*frame.columns, *sorted(expected - set(frame.columns))]:
        kind = column_kind(reference[name]) if reference is not None and name in reference else None
        if name == target:
            columns[name] = pa.Column(nullable=False, checks=_label_checks(rules, kind))
        else:
            columns[name] = pa.Column(
                nullable=True, required=name in expected, checks=_feature_checks(rules, kind)
            )
    return pa.DataFrameSchema(
        columns,
        checks=[pa.Check(lambda df: len(df) >= rules.min_rows, name="min_rows")],
    )


def find_violations(
    frame: pd.DataFrame,
    target: str,
    rules: DataValidationConfig,
    reference: pd.DataFrame | None = None,
) -> list[Violation]:
    schema = build_schema(frame, target, rules, reference)
    try:
        schema.validate(frame, lazy=True)
    except pa.errors.SchemaErrors as exc:
        return _to_violations(exc.failure_cases, frame, rules)
    return []


def check_dataset(
    frame: pd.DataFrame,
    target: str,
    rules: DataValidationConfig,
    reference: pd.DataFrame | None = None,
) -> None:
    """Raise :class:`DataValidationError` listing every violation, or return quietly."""
    violations = find_violations(frame, target, rules, reference)
    if violations:
        raise DataValidationError(violations)


def _to_violations(
    failures: pd.DataFrame, frame: pd.DataFrame, rules: DataValidationConfig
) -> list[Violation]:
    describe = _describe(rules)
    violations: dict[tuple[str, str | None], Violation] = {}
    for row in failures.itertuples(index=False):
        check, column = str(row.check), row.column if isinstance(row.column, str) else None
        if check == "column_in_dataframe":
            column, check = str(row.failure_case), "required_column"
            detail = "missing from the data"
        elif check == "min_rows":
            detail = f"{len(frame)} rows; need at least {rules.min_rows}"
        elif check == "not_nullable":
            detail = f"missing value at row {row.index}"
        elif check in describe and column is not None:
            detail = describe[check](frame[column])
        else:
            detail = f"failed on value {row.failure_case!r}"
        # One violation per check and column: a null label on 300 rows is one problem.
        violations.setdefault((check, column), Violation(check, column, detail))
    return list(violations.values())
