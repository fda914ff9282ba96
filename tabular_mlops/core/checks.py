"""The data gate's checks, as a pandera schema built from the rules and the reference.

The reference is the data the production model was trained on: when it exists,
the new data must have its columns with the same kinds (numeric/categorical)
and the same kind of label, so a model trained on it can serve the same requests.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass

import numpy as np
import pandas as pd
import pandera.pandas as pa
from pandas.api.types import is_float_dtype

from tabular_mlops.core.columns import column_kind
from tabular_mlops.core.config import DataValidationConfig, Task
from tabular_mlops.core.problems import columns_hint
from tabular_mlops.core.transformers import read_dates


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
        "numeric_target": lambda s: (
            f"a regression target must be numbers, got dtype {s.dtype} (e.g. "
            f"{not_numbers(s)}); is it a classification label?"
        ),
        "varying_target": lambda s: (
            f"every target value is {s.dropna().tolist()[0]!r}: nothing to learn"
        ),
        "min_class_count": lambda s: (
            f"classes with fewer than {rules.min_class_count} rows: "
            f"{ {k: int(v) for k, v in s.value_counts().items() if v < rules.min_class_count} }"
        ),
    }


def not_numbers(values: pd.Series) -> list[str]:
    """Up to three values of ``values`` that are not numbers, as they are written."""
    text = values.dropna().astype(str)
    return text[pd.to_numeric(text, errors="coerce").isna()].head(3).tolist()


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


def _target_checks() -> list[pa.Check]:
    """A regressor's target: numbers (missing and infinite values are named elsewhere),
    and not one value repeated."""
    return [
        _series_check(lambda s: column_kind(s) == "numeric", "numeric_target"),
        _series_check(lambda s: bool(s.nunique() >= 2), "varying_target"),
    ]


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
    task: Task = "classification",
) -> pa.DataFrameSchema:
    """The schema ``frame`` must satisfy: every column it has, plus those required of it
    (a column of the reference's that is gone is :func:`column_changes`' to name)."""
    expected = set(rules.required_columns) | {target}
    columns = {}
    for name in [*frame.columns, *sorted(expected - set(frame.columns))]:
        kind = column_kind(reference[name]) if reference is not None and name in reference else None
        if name == target:
            checks = _target_checks() if task == "regression" else _label_checks(rules, kind)
            columns[name] = pa.Column(nullable=False, checks=checks)
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
    not_features: Sequence[str] = (),
    task: Task = "classification",
    date_columns: Sequence[str] = (),
    named_columns: Mapping[str, Sequence[str]] | None = None,
) -> list[Violation]:
    """Every violation: columns the run's configuration names (``named_columns``, by
    key) that the data lacks, the schema (pandera), values no model can take, text that
    is really dates or numbers, duplicated rows, a column that gives the label away,
    and, when there is a reference, every way the data left what the production model
    was trained on (columns added or removed first)."""
    schema = build_schema(frame, target, rules, reference, task)
    violations = configured_columns(frame, named_columns or {})
    try:
        schema.validate(frame, lazy=True)
    except pa.errors.SchemaErrors as exc:
        violations += _to_violations(exc.failure_cases, frame, rules)
    violations += infinite_values(frame)
    violations += boolean_columns(frame, target)
    misread = [v for v in misread_text(frame, target)
               if v.column not in date_columns and v.column not in rules.text_columns]  # fmt: skip
    violations += misread
    violations += unreadable_dates(frame, date_columns)
    violations += id_like_columns(
        frame, target, rules, skip={*(v.column for v in misread), *date_columns}
    )
    violations += duplicated_rows(frame, rules)
    violations += leaking_columns(frame, target, rules, not_features, task)
    if reference is not None:
        violations += column_changes(frame, reference, target, rules)
        violations += departures_from_reference(frame, reference, target, rules, task, date_columns)
    return violations


def configured_columns(
    frame: pd.DataFrame, named_columns: Mapping[str, Sequence[str]]
) -> list[Violation]:
    """Columns a key of the run's configuration names that the data does not have: found
    before training, not after it (the default ``evaluation.slice_column`` is the example
    dataset's)."""
    columns = [str(c) for c in frame.columns]
    return [
        Violation(
            "configured_column",
            name,
            f"parameters.{key} names it, and the data has no such column"
            f"{columns_hint([name], columns)}: set parameters.{key} to columns of "
            "this data (or null, [] for none)",
        )
        for key, names in named_columns.items()
        for name in names
        if name not in columns
    ]


#: text that is a date or a time: 2015-02-04, 04/02/2015, 2015-02-04 17:51:00, 17:51, ...
DATE_OR_TIME = (
    r"^\s*(\d{4}[-/.]\d{1,2}[-/.]\d{1,2}|\d{1,2}[-/.]\d{1,2}[-/.]\d{2,4})"
    r"([ T]\d{1,2}:\d{2}(:\d{2}(\.\d+)?)?)?\s*(Z|[+-]\d{2}:?\d{2})?\s*$"
    r"|^\s*\d{1,2}:\d{2}(:\d{2}(\.\d+)?)?\s*$"
)
#: a number written with a decimal comma (and maybe dots between thousands): 3,14; 1.234,5
DECIMAL_COMMA = r"^\s*[-+]?\d{1,3}(\.\d{3})*,\d+\s*$|^\s*[-+]?\d+,\d+\s*$"
#: a number with commas between thousands: 60,711; 1,234,567.8
THOUSANDS = r"^\s*[-+]?\d{1,3}(,\d{3})+(\.\d+)?\s*$"
#: a number as a CSV writes it
NUMBER = r"^\s*[-+]?(\d+\.?\d*|\.\d+)([eE][-+]?\d+)?\s*$"
#: share of a text column's values that must match for it to be called dates or numbers
MOSTLY = 0.9


def misread_text(frame: pd.DataFrame, target: str) -> list[Violation]:
    """Text columns that are really dates or times (a model would learn each day as a
    category, and know nothing of tomorrow) or numbers with decimal commas."""
    violations = []
    for name in frame.columns:
        if name == target or column_kind(frame[name]) != "categorical":
            continue
        values = frame[name].dropna()
        if values.empty:
            continue
        sample = pd.Series(values.unique()[:1000]).astype(str)
        example = str(sample.iloc[0])
        # plain numbers beside grouped or decimal-comma ones: a number below 1,000 has no
        # comma to write (84 % "512.2", 16 % "1,001.0" is one column of numbers)
        numbers = float(sample.str.match(NUMBER).mean())
        grouped, commas = sample.str.match(THOUSANDS), sample.str.match(DECIMAL_COMMA)
        if float(sample.str.match(DATE_OR_TIME).mean()) >= MOSTLY:
            violations.append(
                Violation(
                    "date_column",
                    str(name),
                    f"values are dates or times (e.g. {example!r}): as text, every day is a "
                    "category of its own and a new day is one the model never saw; name it in "
                    "data.date_columns (the model then sees its day of the week and month), "
                    "leave it out (data.drop_columns), or add features derived from it to the "
                    "file (hour, ...)",
                )
            )
        elif grouped.any() and float(grouped.mean()) + numbers >= MOSTLY:
            violations.append(
                Violation(
                    "thousands_separator",
                    str(name),
                    f"numbers written with commas between thousands (e.g. "
                    f"{str(sample[grouped].iloc[0])!r}) were read as text; write them without "
                    "(pandas: to_csv() writes none; a spreadsheet: a number format without "
                    "grouping). Were the commas decimal commas (60,711 meaning 60.711), write "
                    "decimal points instead; codes meant as text: validation.text_columns",
                )
            )
        elif commas.any() and float(commas.mean()) + numbers >= MOSTLY:
            violations.append(
                Violation(
                    "decimal_comma",
                    str(name),
                    f"numbers written with a decimal comma (e.g. "
                    f"{str(sample[commas].iloc[0])!r}) were read as text; write the file with "
                    "decimal points (pandas: to_csv(decimal='.')); codes meant as text: "
                    "validation.text_columns",
                )
            )
        elif numbers >= MOSTLY:
            text = sorted(set(sample[~sample.str.match(NUMBER)]))[:5]
            violations.append(
                Violation(
                    "numbers_as_text",
                    str(name),
                    f"{numbers:.1%} of distinct values are numbers, the rest text ({text}): "
                    "read as text, the column would be one category per number; if that text "
                    "means missing, add it to data.na_values; codes meant as text: "
                    "validation.text_columns"
                    if text
                    else "every value is a number written as text, and one the reader could "
                    f"not take as a number ({_overflowing(sample, example)!r}): as text, the "
                    "column would be one category per number; store it as numbers",
                )
            )
    return violations


def _overflowing(sample: pd.Series, otherwise: str) -> str:
    """The first of ``sample``'s numbers written as text that a float cannot hold (1e400)."""
    with np.errstate(over="ignore"):
        values = pd.to_numeric(sample, errors="coerce")
    beyond = sample[values.isna() | np.isinf(values)]
    return str(beyond.iloc[0]) if len(beyond) else otherwise


def duplicated_rows(frame: pd.DataFrame, rules: DataValidationConfig) -> list[Violation]:
    """Rows that repeat an earlier row exactly (a replayed or twice-appended partition):
    the share, and the largest group of copies."""
    if frame.empty or rules.max_duplicate_share >= 1:
        return []
    repeated = frame.duplicated(keep="first")
    share = float(repeated.mean())
    if share <= rules.max_duplicate_share:
        return []
    copies = frame[frame.duplicated(keep=False)]
    groups = copies.groupby(list(frame.columns), dropna=False, sort=False).size()
    largest = int(groups.max())
    first = int(np.flatnonzero(frame.duplicated(keep=False))[0])
    return [
        Violation(
            "duplicate_rows",
            None,
            f"{share:.1%} of rows ({int(repeated.sum())}) repeat an earlier row exactly "
            f"(allowed {rules.max_duplicate_share:.0%}); {len(groups)} distinct rows are "
            f"repeated, the largest {largest} times (first at row {first}): a partition "
            "read twice?",
        )
    ]


def column_changes(
    frame: pd.DataFrame, reference: pd.DataFrame, target: str, rules: DataValidationConfig
) -> list[Violation]:
    """Columns the reference did not have, and reference columns that are gone: each must
    be accepted by name (``validation.accept_column_changes``)."""
    accepted = set(rules.accept_column_changes)
    added = [c for c in frame.columns if c not in reference.columns and c not in accepted]
    removed = [c for c in reference.columns if c not in frame.columns and c not in accepted]
    hint = "if the change is meant, name it in validation.accept_column_changes"
    return [
        *(
            Violation(
                "column_added",
                str(name),
                f"the reference (the production model's training data) has no such column; {hint}",
            )
            for name in added
        ),
        *(
            Violation(
                "column_removed",
                str(name),
                f"the reference (the production model's training data) has it, this data does "
                f"not{' (the label!)' if name == target else ''}; {hint}",
            )
            for name in removed
            if name != target
        ),
    ]


#: folds of the one-column models; rows needed before the check means anything
LEAK_FOLDS, LEAK_MIN_ROWS, LEAK_BINS = 5, 50, 20


def single_column_scores(
    frame: pd.DataFrame, target: str, not_features: Sequence[str] = ()
) -> dict[str, float]:
    """For each feature, how well it predicts the label on its own: the balanced accuracy
    of a one-column model (each value, or each of up to 20 quantile bins of a numeric
    column, answers its most frequent label), scored out of fold (5 folds, seeded)."""
    labels, classes = pd.factorize(frame[target].astype(str))
    n_classes = len(classes)
    folds = np.random.default_rng(0).permutation(len(frame)) % LEAK_FOLDS
    fallback = int(np.bincount(labels, minlength=n_classes).argmax())
    class_rows = np.bincount(labels, minlength=n_classes)
    scores = {}
    for name in frame.columns:
        if name == target or name in not_features:
            continue
        keys = _column_keys(frame[name], LEAK_BINS)
        n_keys = int(keys.max()) + 1
        correct = np.zeros(n_classes)
        for fold in range(LEAK_FOLDS):
            train, held = folds != fold, folds == fold
            counts = np.bincount(
                keys[train] * n_classes + labels[train], minlength=n_keys * n_classes
            ).reshape(n_keys, n_classes)
            # a value never seen in training answers the most frequent label overall
            majority = np.where(counts.sum(axis=1) > 0, counts.argmax(axis=1), fallback)
            hits = majority[keys[held]] == labels[held]
            correct += np.bincount(labels[held][hits], minlength=n_classes)
        scores[str(name)] = float(np.mean(correct / np.maximum(class_rows, 1)))
    return scores


def single_column_r2(
    frame: pd.DataFrame, target: str, not_features: Sequence[str] = ()
) -> dict[str, float]:
    """For each feature, how well it predicts a numeric target on its own: the R² of a
    one-column model (each value, or each of up to 50 quantile bins of a numeric column,
    answers its mean target), scored out of fold (5 folds, seeded); for a numeric column
    at least the squared rank correlation (a target in other units is a perfect 1, which
    bins of a few hundred rows would blur)."""
    truth = frame[target].to_numpy(dtype=float)
    folds = np.random.default_rng(0).permutation(len(frame)) % LEAK_FOLDS
    spread = float(np.sum((truth - truth.mean()) ** 2)) or 1.0
    bins = max(LEAK_BINS, min(50, len(frame) // 10))
    scores = {}
    for name in frame.columns:
        if name == target or name in not_features:
            continue
        keys = _column_keys(frame[name], bins)
        n_keys = int(keys.max()) + 1
        guess = np.empty(len(frame))
        for fold in range(LEAK_FOLDS):
            train, held = folds != fold, folds == fold
            sums = np.bincount(keys[train], weights=truth[train], minlength=n_keys)
            counts = np.bincount(keys[train], minlength=n_keys)
            means = np.where(counts > 0, sums / np.maximum(counts, 1), truth[train].mean())
            guess[held] = means[keys[held]]
        score = 1.0 - float(np.sum((truth - guess) ** 2)) / spread
        if column_kind(frame[name]) == "numeric" and frame[name].nunique() > 1:  # else no rank
            rank = frame[name].rank().corr(frame[target].rank())
            score = max(score, float(rank) ** 2 if rank == rank else 0.0)
        scores[str(name)] = score
    return scores


def _column_keys(values: pd.Series, bins: int) -> np.ndarray:
    """Each row's key of a one-column model: its quantile bin (numeric), or its value."""
    if column_kind(values) == "numeric" and values.nunique() > bins:
        ranks = values.rank(method="first", pct=True).to_numpy()
        return np.where(np.isnan(ranks), bins + 1, np.floor(ranks * bins)).astype(np.int64)
    keys, _ = pd.factorize(values.astype(str))
    return keys


def leaking_columns(
    frame: pd.DataFrame,
    target: str,
    rules: DataValidationConfig,
    not_features: Sequence[str] = (),
    task: Task = "classification",
) -> list[Violation]:
    """A column that predicts the label almost perfectly on its own: the label leaked in
    (a code derived from it, a column filled in after the outcome), or it is a function
    of another column. Named with its score beside the next best column's."""
    if rules.max_single_column_score >= 1 or target not in frame or len(frame) < LEAK_MIN_ROWS:
        return []
    if frame[target].isna().any() or frame[target].nunique() < 2:
        return []  # the schema names the label's own problems
    regression = task == "regression"
    if regression and (
        column_kind(frame[target]) != "numeric"
        or not np.isfinite(frame[target].to_numpy(dtype=float)).all()
    ):
        return []
    measure = "R²" if regression else "balanced accuracy"
    scores = (single_column_r2 if regression else single_column_scores)(frame, target, not_features)
    ranked = sorted(scores.items(), key=lambda item: -item[1])
    violations = []
    for name, score in ranked:
        if score < rules.max_single_column_score or name in rules.accept_predictive_columns:
            continue
        others = [(n, s) for n, s in ranked if n != name]
        beside = (
            f"; the next best column, '{others[0][0]}', scores {others[0][1]:.3f}"
            if (others)
            else ""
        )
        violations.append(
            Violation(
                "label_leak",
                name,
                f"predicts '{target}' on its own with {measure} {score:.3f} (out of "
                f"fold; limit {rules.max_single_column_score}){beside}: a leak of the label, or "
                "a label that is a function of this column; drop it (data.drop_columns) or, "
                "if it is a real feature, name it in validation.accept_predictive_columns",
            )
        )
    return violations


def infinite_values(frame: pd.DataFrame) -> list[Violation]:
    """±inf in any numeric column: no imputer or scaler can use it."""
    violations = []
    for name in frame.columns:
        if column_kind(frame[name]) == "numeric" and frame[name].dtype != object:
            infinite = np.isinf(frame[name].to_numpy(dtype=float, na_value=np.nan))
            if infinite.any():
                rows = np.flatnonzero(infinite)
                violations.append(
                    Violation(
                        "infinite",
                        str(name),
                        f"{len(rows)} rows hold an infinite value (first at row {rows[0]})",
                    )
                )
    return violations


def boolean_columns(frame: pd.DataFrame, target: str) -> list[Violation]:
    """A feature of True/False values (pandas reads "True", "true" and "TRUE" so): the
    readers of a served model disagree on them (a JSON client sends true, the service
    takes text; a batch reader reads "true" as a boolean, the embedded one as text), so
    the model would be promoted and then refuse or misread its rows."""
    return [
        Violation(
            "boolean_column",
            str(name),
            f"values are True/False booleans (e.g. {frame[name].dropna().iloc[0]}): "
            "write them as text categories (yes/no) or as numbers (1/0) in the file",
        )
        for name in frame.columns
        if name != target and frame[name].notna().any()
        and pd.api.types.infer_dtype(frame[name], skipna=True) == "boolean"
    ]  # fmt: skip


def unreadable_dates(frame: pd.DataFrame, date_columns: Sequence[str]) -> list[Violation]:
    """A date column (``data.date_columns``) whose values are not all ISO dates: the model
    would see their day of the week and month as missing."""
    violations = []
    for name in [c for c in date_columns if c in frame.columns]:
        values = frame[name].dropna()
        bad = values[read_dates(values).isna()]
        if len(bad):
            violations.append(
                Violation(
                    "date",
                    str(name),
                    f"{len(bad)} value(s) are not ISO dates (e.g. {bad.iloc[0]!r}); write them "
                    "as 2024-03-01",
                )
            )
    return violations


def id_like_columns(
    frame: pd.DataFrame,
    target: str,
    rules: DataValidationConfig,
    skip: set[str | None] | None = None,
) -> list[Violation]:
    """Identifiers: a model learns nothing from them that holds for the next row."""
    if rules.max_unique_share >= 1 or len(frame) < 20:
        return []
    violations = []
    for name in frame.columns:
        if name == target or (skip and name in skip):
            continue
        values = frame[name].dropna()
        unique_share = values.nunique() / max(len(values), 1)
        integral = column_kind(values) == "numeric" and bool((values % 1 == 0).all())
        identifier = column_kind(values) == "categorical" or (
            integral and values.is_monotonic_increasing
        )
        if identifier and len(values) >= 20 and unique_share >= rules.max_unique_share:
            violations.append(
                Violation(
                    "id_like",
                    str(name),
                    f"{unique_share:.0%} of values are distinct: an identifier, not a feature "
                    "(leave it out with data.drop_columns)",
                )
            )
    return violations


def departures_from_reference(
    frame: pd.DataFrame,
    reference: pd.DataFrame,
    target: str,
    rules: DataValidationConfig,
    task: Task = "classification",
    date_columns: Sequence[str] = (),
) -> list[Violation]:
    """Where the data left what the production model was trained on: value ranges and
    medians, missing rates, categories, and the label's distribution. A date column's
    days are not categories: new data has new days (the model sees weekday and month)."""
    violations = []
    compared = [c for c in frame.columns if c in reference.columns and c != target]
    for name in [c for c in compared if c not in date_columns]:
        new, old = frame[name], reference[name]
        if new.isna().all() or column_kind(new) != column_kind(old):
            continue  # the schema's own checks name an empty column or a changed kind
        missing_new, missing_old = float(new.isna().mean()), float(old.isna().mean())
        if missing_new > missing_old + rules.max_missing_increase:
            violations.append(
                Violation(
                    "missing_increase",
                    str(name),
                    f"{missing_new:.1%} missing, reference {missing_old:.1%} "
                    f"(allowed +{rules.max_missing_increase:.0%} points)",
                )
            )
        if column_kind(new) == "numeric":
            violations += _numeric_departures(str(name), new, old, rules)
        else:
            violations += _category_departures(str(name), new, old, rules)
    if task == "regression" and target in frame.columns and target in reference.columns:
        violations += target_departures(frame[target], reference[target], target, rules)
    elif target in frame.columns and target in reference.columns:
        new_labels = frame[target].astype(str).value_counts(normalize=True)
        old_labels = reference[target].astype(str).value_counts(normalize=True)
        distance = 0.5 * float(new_labels.sub(old_labels, fill_value=0).abs().sum())
        if distance > rules.max_label_shift:
            shares = ", ".join(
                f"{label} {new_labels.get(label, 0):.0%} (reference {old_labels.get(label, 0):.0%})"
                for label in sorted(set(new_labels.index) | set(old_labels.index))
            )
            violations.append(
                Violation(
                    "label_shift",
                    target,
                    f"label distribution moved by {distance:.2f} (total variation, allowed "
                    f"{rules.max_label_shift}): {shares}",
                )
            )
    return violations


def target_departures(
    new: pd.Series, old: pd.Series, target: str, rules: DataValidationConfig
) -> list[Violation]:
    """A numeric target that left the reference's: its range and median (a change of
    units), then its distribution (the Kolmogorov-Smirnov distance)."""
    from scipy.stats import ks_2samp

    if column_kind(new) != "numeric" or column_kind(old) != "numeric":
        return []  # the schema names a target that is not numbers
    violations = _numeric_departures(target, new, old, rules)
    new, old = new.dropna().astype(float), old.dropna().astype(float)
    new = new[np.isfinite(new.to_numpy())]
    if new.empty or old.empty:
        return violations
    distance = float(ks_2samp(new, old).statistic)
    if distance > rules.max_label_shift:
        violations.append(
            Violation(
                "label_shift",
                target,
                f"target distribution moved by {distance:.2f} (Kolmogorov-Smirnov distance, "
                f"allowed {rules.max_label_shift}): median {float(new.median()):.4g} "
                f"(reference {float(old.median()):.4g}), quartiles "
                f"[{float(new.quantile(0.25)):.4g}, {float(new.quantile(0.75)):.4g}] "
                f"(reference [{float(old.quantile(0.25)):.4g}, {float(old.quantile(0.75)):.4g}])",
            )
        )
    return violations


def _numeric_departures(
    name: str, new: pd.Series, old: pd.Series, rules: DataValidationConfig
) -> list[Violation]:
    new, old = new.dropna(), old.dropna()
    new = new[np.isfinite(new.to_numpy(dtype=float))]  # infinities are named on their own
    if new.empty or old.empty:
        return []
    violations = []
    low, high = float(old.min()), float(old.max())
    margin = rules.range_margin * (high - low)
    outside = float(((new < low - margin) | (new > high + margin)).mean())
    if outside > rules.max_out_of_range_share:
        violations.append(
            Violation(
                "out_of_range",
                name,
                f"{outside:.1%} of values outside [{low - margin:.4g}, {high + margin:.4g}] "
                f"(reference range [{low:.4g}, {high:.4g}] widened by {rules.range_margin:g} "
                f"spans; allowed {rules.max_out_of_range_share:.0%}); candidate range "
                f"[{float(new.min()):.4g}, {float(new.max()):.4g}]",
            )
        )
    median_new, median_old = float(new.median()), float(old.median())
    if median_new and median_old:
        decades = abs(np.log10(abs(median_new) / abs(median_old)))
        if decades >= rules.max_median_shift_decades:
            violations.append(
                Violation(
                    "median_shift",
                    name,
                    f"median {median_new:.4g}, reference {median_old:.4g}: "
                    f"{decades:.1f} orders of magnitude (a unit change?)",
                )
            )
    return violations


def _category_departures(
    name: str, new: pd.Series, old: pd.Series, rules: DataValidationConfig
) -> list[Violation]:
    new, old = new.dropna().astype(str), old.dropna().astype(str)
    if new.empty or old.empty:
        return []
    violations = []
    known, seen = set(old.unique()), set(new.unique())
    unseen = ~new.isin(known)
    if float(unseen.mean()) > rules.max_new_category_share:
        examples = sorted(set(new[unseen]))[:5]
        violations.append(
            Violation(
                "new_categories",
                name,
                f"{float(unseen.mean()):.1%} of rows hold categories the reference never had "
                f"(allowed {rules.max_new_category_share:.0%}), e.g. {examples}",
            )
        )
    gone = ~old.isin(seen)
    if float(gone.mean()) > rules.max_vanished_category_share:
        examples = sorted(set(old[gone]))[:5]
        violations.append(
            Violation(
                "vanished_categories",
                name,
                f"categories covering {float(gone.mean()):.1%} of the reference rows are "
                f"absent (allowed {rules.max_vanished_category_share:.0%}), e.g. {examples}",
            )
        )
    return violations


def drift_violations(
    drift_share: float, drifted_columns: list[str], rules: DataValidationConfig
) -> list[Violation]:
    """Evidently's verdict as a gate: too many drifted columns block, unless accepted."""
    if rules.accept_drift or drift_share <= rules.max_drift_share:
        return []
    return [
        Violation(
            "drift",
            None,
            f"{drift_share:.0%} of columns drifted (allowed {rules.max_drift_share:.0%}): "
            f"{', '.join(drifted_columns)}; if the world changed and this data is right, "
            "rerun with --accept-drift --reason '...' (recorded on the model version)",
        )
    ]


def check_dataset(
    frame: pd.DataFrame,
    target: str,
    rules: DataValidationConfig,
    reference: pd.DataFrame | None = None,
    not_features: Sequence[str] = (),
    task: Task = "classification",
    date_columns: Sequence[str] = (),
    named_columns: Mapping[str, Sequence[str]] | None = None,
) -> None:
    """Raise :class:`DataValidationError` listing every violation, or return quietly."""
    violations = find_violations(
        frame, target, rules, reference, not_features, task, date_columns, named_columns
    )
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
