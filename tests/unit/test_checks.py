from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from tabular_mlops.core.checks import DataValidationError, check_dataset, find_violations
from tabular_mlops.core.config import DataValidationConfig

RULES = DataValidationConfig(min_rows=10, min_class_count=2)


@pytest.fixture
def reference() -> pd.DataFrame:
    rng = np.random.default_rng(0)
    return pd.DataFrame(
        {
            "age": rng.integers(20, 60, 40).astype(float),
            "plan": rng.choice(["basic", "pro"], 40),
            "label": rng.choice(["yes", "no"], 40),
        }
    )


def found(frame, reference=None, rules=RULES):
    return {
        (v.check, v.column): v.detail for v in find_violations(frame, "label", rules, reference)
    }


def test_clean_data_passes(reference):
    check_dataset(reference, "label", RULES, reference)


def test_missing_column_is_named(reference):
    assert found(reference.drop(columns=["plan"]), reference) == {
        ("required_column", "plan"): "missing from the data"
    }


def test_all_null_column_is_reported_once(reference):
    frame = reference.assign(age=np.nan)
    assert found(frame, reference) == {("not_all_missing", "age"): "all 40 values are missing"}


def test_mostly_missing_column_reports_the_fraction(reference):
    frame = reference.copy()
    frame.loc[:29, "plan"] = None
    assert "75.0% of values missing" in found(frame, reference)[("max_missing_fraction", "plan")]


def test_wrong_label_type_against_the_reference(reference):
    frame = reference.assign(label=np.where(reference["label"] == "yes", 1, 0))
    assert found(frame, reference)[("categorical", "label")] == (
        "expected categorical (string) values, got dtype int64"
    )


def test_wrong_feature_type_against_the_reference(reference):
    frame = reference.assign(age=reference["age"].astype(str) + " years")
    assert (
        "expected numeric values, got dtype object" in found(frame, reference)[("numeric", "age")]
    )


def test_continuous_label_without_a_reference(reference):
    frame = reference.assign(label=np.linspace(0, 1, 40))
    assert ("discrete_labels", "label") in found(frame)


def test_constant_column_shows_its_value(reference):
    frame = reference.assign(plan="pro")
    assert (
        found(frame, reference)[("not_constant", "plan")] == "constant column, every value is 'pro'"
    )


def test_too_few_rows_and_rare_classes(reference):
    frame = reference.head(5).assign(label=["yes", "yes", "yes", "yes", "no"])
    violations = found(frame, reference)
    assert violations[("min_rows", None)] == "5 rows; need at least 10"
    assert "{'no': 1}" in violations[("min_class_count", "label")]


def test_null_label_names_the_row(reference):
    frame = reference.copy()
    frame.loc[3, "label"] = None
    assert found(frame, reference)[("not_nullable", "label")] == "missing value at row 3"


def test_error_message_lists_every_violation(reference):
    frame = reference.drop(columns=["plan"]).assign(age=np.nan)
    with pytest.raises(DataValidationError) as error:
        check_dataset(frame, "label", RULES, reference)
    message = str(error.value)
    assert "2 violation(s)" in message
    assert "[required_column] column 'plan': missing from the data" in message
    assert "[not_all_missing] column 'age': all 40 values are missing" in message


# Against the reference: what the production model was trained on.
def test_a_unit_change_is_out_of_range_and_a_median_shift(reference):
    frame = reference.assign(age=reference["age"] * 1000)
    problems = found(frame, reference)
    assert problems[("out_of_range", "age")].startswith("100.0% of values outside [")
    assert "candidate range [2e+04, 5.8e+04]" in problems[("out_of_range", "age")]
    assert "3.0 orders of magnitude (a unit change?)" in problems[("median_shift", "age")]


def test_a_missing_rate_jump_is_named_with_both_rates(reference):
    frame = reference.copy()
    frame.loc[:5, "age"] = np.nan  # 15% where the reference had none
    assert found(frame, reference)[("missing_increase", "age")] == (
        "15.0% missing, reference 0.0% (allowed +5% points)"
    )


def test_infinities_are_named_with_their_rows(reference):
    frame = reference.copy()
    frame.loc[[3, 7], "age"] = np.inf
    assert found(frame)[("infinite", "age")] == "2 rows hold an infinite value (first at row 3)"


def test_new_and_vanished_categories(reference):
    frame = reference.assign(plan=np.where(reference.index < 10, "enterprise", "pro"))
    problems = found(frame, reference)
    assert (
        "25.0% of rows hold categories the reference never had (allowed 5%), e.g. "
        in (problems[("new_categories", "plan")])
    )
    assert "['enterprise']" in problems[("new_categories", "plan")]
    assert "absent (allowed 20%), e.g. ['basic']" in problems[("vanished_categories", "plan")]


def test_a_label_shift_names_each_share(reference):
    frame = reference.assign(label=np.where(reference.index < 36, "yes", "no"))
    detail = found(frame, reference)[("label_shift", "label")]
    assert detail.startswith("label distribution moved by ")
    assert "yes 90% (reference " in detail


def test_an_identifier_column_is_named_with_the_fix(reference):
    frame = reference.assign(customer=[f"c{i}" for i in range(len(reference))])
    assert found(frame)[("id_like", "customer")] == (
        "100% of values are distinct: an identifier, not a feature "
        "(leave it out with data.drop_columns)"
    )


def test_drift_blocks_unless_accepted():
    from tabular_mlops.core.checks import drift_violations

    [violation] = drift_violations(0.8, ["age", "plan"], RULES)
    assert str(violation).startswith("[drift] dataset: 80% of columns drifted (allowed 50%): ")
    assert "rerun with --accept-drift" in str(violation)
    accepting = RULES.model_copy(update={"accept_drift": True})
    assert drift_violations(0.8, ["age"], accepting) == []
    assert drift_violations(0.4, ["age"], RULES) == []
