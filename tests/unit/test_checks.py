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
            "age": rng.uniform(20, 60, 40).round(1),
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


def test_a_column_the_reference_had_is_named_and_needs_accepting(reference):
    assert found(reference.drop(columns=["plan"]), reference) == {
        ("column_removed", "plan"): "the reference (the production model's training data) has "
        "it, this data does not; if the change is meant, name it in "
        "validation.accept_column_changes"
    }
    accepting = RULES.model_copy(update={"accept_column_changes": ["plan"]})
    assert found(reference.drop(columns=["plan"]), reference, accepting) == {}


def test_a_required_column_is_named_without_a_reference(reference):
    rules = RULES.model_copy(update={"required_columns": ["plan"]})
    assert found(reference.drop(columns=["plan"]), None, rules) == {
        ("required_column", "plan"): "missing from the data"
    }


#: without their one varying column the fixture's rows repeat: not these tests' point
ANY_DUPLICATES = RULES.model_copy(update={"max_duplicate_share": 1.0})


def test_all_null_column_is_reported_once(reference):
    frame = reference.assign(age=np.nan)
    assert found(frame, reference, ANY_DUPLICATES) == {
        ("not_all_missing", "age"): "all 40 values are missing"
    }


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
        check_dataset(frame, "label", ANY_DUPLICATES, reference)
    message = str(error.value)
    assert "2 violation(s)" in message
    assert "[column_removed] column 'plan': the reference" in message
    assert "[not_all_missing] column 'age': all 40 values are missing" in message


# Against the reference: what the production model was trained on.
def test_a_unit_change_is_out_of_range_and_a_median_shift(reference):
    frame = reference.assign(age=reference["age"] * 1000)
    problems = found(frame, reference)
    assert problems[("out_of_range", "age")].startswith("100.0% of values outside [")
    assert "candidate range [2.01e+04, 5.99e+04]" in problems[("out_of_range", "age")]
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


# A column that gives the label away, text that is really dates or numbers, duplicates.
def breast_cancer():
    from tabular_mlops.adapters.sources import load_dataset
    from tabular_mlops.core.config import DataSourceConfig

    return load_dataset(DataSourceConfig(dataset="breast_cancer"))


def test_a_label_leak_is_named_with_its_score_and_the_next_best_column():
    frame = breast_cancer()
    leaked = frame.assign(diagnosis_code=(frame["target"] == "malignant").astype(int))
    problems = {
        (v.check, v.column): v.detail for v in find_violations(leaked, "target", RULES, frame)
    }
    assert problems[("label_leak", "diagnosis_code")].startswith(
        "predicts 'target' on its own with balanced accuracy 1.000 (out of fold; limit 0.99); "
        "the next best column, 'worst perimeter', scores 0.9"
    )
    assert ("column_added", "diagnosis_code") in problems
    accepted = RULES.model_copy(
        update={
            "accept_predictive_columns": ["diagnosis_code"],
            "accept_column_changes": ["diagnosis_code"],
        }
    )
    assert find_violations(leaked, "target", accepted, frame) == []


@pytest.mark.parametrize("dataset", ["breast_cancer", "wine", "iris"])
def test_the_bundled_datasets_have_no_leak(dataset):
    from tabular_mlops.adapters.sources import load_dataset
    from tabular_mlops.core.checks import leaking_columns
    from tabular_mlops.core.config import DataSourceConfig

    frame = load_dataset(DataSourceConfig(dataset=dataset))
    assert leaking_columns(frame, "target", DataValidationConfig()) == []


def test_a_label_that_is_a_function_of_a_category_is_a_leak(reference):
    rows = pd.concat([reference] * 5, ignore_index=True)
    rows = rows.assign(age=np.arange(len(rows)) * 0.5, status=rows["label"].map(
        {"yes": "closed-won", "no": "closed-lost"}))  # fmt: skip
    assert ("label_leak", "status") in found(rows, rules=ANY_DUPLICATES)
    assert ("label_leak", "status") not in {
        (v.check, v.column)
        for v in find_violations(rows, "label", ANY_DUPLICATES, not_features=["status"])
    }  # an assessment-only column is no model input: it cannot leak into the model


def test_dates_and_times_as_text_are_named_not_called_identifiers(reference):
    days = pd.date_range("2015-02-04", periods=40, freq="h")
    frame = reference.assign(
        Date=days.strftime("%Y-%m-%d %H:%M:%S"),
        Time=days.strftime("%H:%M"),
        Day=days.strftime("%d/%m/%Y"),
    )
    problems = found(frame)
    for column in ("Date", "Time", "Day"):
        assert problems[("date_column", column)].startswith("values are dates or times")
        assert ("id_like", column) not in problems


def test_decimal_commas_are_named_as_such(reference):
    frame = reference.assign(age=reference["age"].map(lambda v: f"{v:.1f}".replace(".", ",")))
    problems = found(frame, reference)
    assert problems[("decimal_comma", "age")].startswith(
        "numbers written with a decimal comma (e.g. "
    )
    assert ("id_like", "age") not in problems
    assert ("numeric", "age") in problems  # the kind the reference had, named too


def test_a_column_the_configuration_names_and_the_data_lacks_stops_the_gate(reference):
    """The default slice column is the example dataset's: a user's own file without it is
    refused by the data gate, before training, naming the key to set."""
    from tabular_mlops.core.checks import DataValidationError, check_dataset
    from tabular_mlops.core.config import EvaluationConfig, FairnessConfig

    evaluation = EvaluationConfig(
        slice_column="mean radius", fairness=FairnessConfig(sensitive_columns=["Plan", "age"])
    )
    with pytest.raises(DataValidationError) as refused:
        check_dataset(reference, "label", RULES, named_columns=evaluation.named_columns())
    said = str(refused.value)
    assert (
        "[configured_column] column 'mean radius': parameters.evaluation.slice_column names "
        "it, and the data has no such column: set parameters.evaluation.slice_column to "
        "columns of this data (or null, [] for none)" in said
    )
    assert (
        "[configured_column] column 'Plan': parameters.evaluation.fairness.sensitive_columns "
        "names it, and the data has no such column; the file has 'plan' for 'Plan'" in said
    )
    assert "[configured_column] column 'age'" not in said  # it has that one


def test_thousands_separators_are_named_as_such_not_as_decimal_commas(reference):
    frame = reference.assign(age=reference["age"].map(lambda v: f"{v * 1000:,.0f}"))
    assert frame["age"].str.contains(",").all()
    problems = found(frame, reference)
    said = problems[("thousands_separator", "age")]
    assert said.startswith("numbers written with commas between thousands (e.g. ")
    assert "write them without" in said and "decimal points instead" in said
    assert ("decimal_comma", "age") not in problems


def test_grouped_numbers_among_plain_ones_are_named_not_trained_as_categories(reference):
    """Only numbers of 1,000 and more have a comma to write: a column where a sixth of the
    values are grouped is numbers all the same, never one category per value."""
    from tabular_mlops.core.checks import MOSTLY

    area = reference["age"] * 25  # 500-1,500: the smaller ones have no comma
    frame = reference.assign(
        area=area.map(lambda v: f"{v:,.1f}"),
        # whole numbers plain, the others with a decimal comma
        gap=area.map(lambda v: f"{v:.0f}" if v == int(v) else f"{v:.1f}".replace(".", ",")),
    )
    for column in ("area", "gap"):
        assert 0 < frame[column].str.contains(",").mean() < MOSTLY, column
    problems = found(frame, reference)
    said = problems[("thousands_separator", "area")]
    assert said.startswith("numbers written with commas between thousands (e.g. '1,")
    assert ("numbers_as_text", "area") not in problems
    assert problems[("decimal_comma", "gap")].startswith("numbers written with a decimal comma")
    assert problems[("decimal_comma", "gap")].endswith(
        "codes meant as text: validation.text_columns"
    )
    # codes such as "1,2" are text when the configuration says so
    codes = RULES.model_copy(update={"text_columns": ["area", "gap"]})
    named = found(frame, None, codes)
    assert not [key for key in named if key[1] in ("area", "gap")], named


def test_a_column_of_booleans_is_named_before_a_model_is_trained_on_it(reference):
    """A served model's readers disagree on True/False (JSON true, the service's text, a
    batch reader's boolean): refused by the gate, never promoted to refuse its rows."""
    import io

    csv = reference.assign(flag=["True", "false", ""] * 13 + ["TRUE"]).to_csv(index=False)
    frame = pd.read_csv(io.StringIO(csv))
    problems = found(frame)
    assert problems[("boolean_column", "flag")] == (
        "values are True/False booleans (e.g. True): write them as text categories (yes/no) "
        "or as numbers (1/0) in the file"
    )
    assert not [key for key in problems if key[1] != "flag"], problems


def test_a_replayed_partition_is_named_with_its_largest_group(reference):
    frame = pd.concat([reference, *[reference.head(20)] * 2], ignore_index=True)
    assert found(frame, reference)[("duplicate_rows", None)] == (
        "50.0% of rows (40) repeat an earlier row exactly (allowed 10%); 20 distinct rows "
        "are repeated, the largest 3 times (first at row 0): a partition read twice?"
    )


def test_an_empty_file_is_named_with_its_path(tmp_path):
    from tabular_mlops.adapters.batch import BatchSchemaError, file_columns
    from tabular_mlops.adapters.sources import DataSourceError, load_dataset
    from tabular_mlops.core.config import DataSourceConfig

    empty = tmp_path / "empty.csv"
    empty.write_text("")
    with pytest.raises(DataSourceError, match=f"{empty}: the file is empty"):
        load_dataset(DataSourceConfig(source="file", path=empty))
    with pytest.raises(BatchSchemaError, match=f"{empty}: the file is empty"):
        file_columns(empty)


def test_numbers_with_a_stray_text_are_named_with_the_text(reference):
    ages = reference["age"].astype(object)
    ages[[2, 9]] = "unknown"
    problems = found(reference.assign(age=ages))
    assert problems[("numbers_as_text", "age")].startswith(
        "97.3% of distinct values are numbers, the rest text (['unknown']): "
    )


def test_a_parquet_column_of_numbers_as_text_is_read_as_numbers_as_a_csvs_is(reference, tmp_path):
    """A CSV's parser reads numbers as numbers; a Parquet file may store them as text:
    training's reader takes them as numbers too (as text, each value would be a category,
    and every new one unseen), markers first; one it cannot take is named by the gate."""
    from tabular_mlops.adapters.sources import load_dataset
    from tabular_mlops.core.config import DataSourceConfig

    ages = reference["age"].astype(str).astype(object)
    ages[3] = "NA"
    path = tmp_path / "text.parquet"
    reference.assign(age=ages, plan=reference["plan"]).to_parquet(path)
    read = load_dataset(DataSourceConfig(source="file", path=path, target="label"))
    assert read["age"].dtype == float and read["age"].isna().sum() == 1
    assert read["plan"].dtype == object  # text stays text
    zips = tmp_path / "zips.parquet"  # codes stored as text on purpose keep their zeros
    reference.assign(zip=["02134", "10001"] * 20).to_parquet(zips)
    read = load_dataset(DataSourceConfig(source="file", path=zips, target="label"))
    assert read["zip"].tolist()[:2] == ["02134", "10001"]
    overflowing = reference.assign(age=["1e400", *reference["age"].astype(str)[1:]])
    assert found(overflowing)[("numbers_as_text", "age")].startswith(
        "every value is a number written as text, and one the reader could not take as a "
        "number ('1e400')"
    )
