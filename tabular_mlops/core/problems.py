"""What is wrong with an input, field by field: the one vocabulary of the service's 4xx
answers, batch rejections and the stream's dead letters."""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import TYPE_CHECKING, Any

from pydantic import BaseModel, ValidationError

if TYPE_CHECKING:
    from tabular_mlops.core.spec import ServingSpec

#: problems listed in one answer; the rest are counted, not listed
MAX_LISTED_PROBLEMS = 20


class Problem(BaseModel):
    field: str
    problem: str


class DuplicateKeyError(ValueError):
    """A JSON object names a key twice: which value was meant is a guess."""

    def __init__(self, key: str) -> None:
        super().__init__(f"duplicate key {key!r}")


def unique_keys(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    """``json.loads(..., object_pairs_hook=unique_keys)``: objects with a key twice are
    refused with :class:`DuplicateKeyError`."""
    keys = [key for key, _ in pairs]
    if len(set(keys)) != len(keys):
        raise DuplicateKeyError(next(key for key in keys if keys.count(key) > 1))
    return dict(pairs)


def capped(problems: list[Problem]) -> list[Problem]:
    """At most ``MAX_LISTED_PROBLEMS``, then one entry counting the rest."""
    if len(problems) <= MAX_LISTED_PROBLEMS:
        return problems
    rest = len(problems) - MAX_LISTED_PROBLEMS
    return [
        *problems[:MAX_LISTED_PROBLEMS],
        Problem(field="(body)", problem=f"{rest} more problems"),
    ]


def describe_errors(error: ValidationError, prefix: str = "") -> list[Problem]:
    """One entry per problem, each naming the field (``rows.0.mean radius``) and what is
    wrong; capped."""
    return capped(
        [
            Problem(
                field=prefix + (".".join(str(part) for part in item["loc"]) or "(body)"),
                problem=MISSING
                if item["input"] is None and item["type"] in ("float_type", "string_type")
                else item["msg"],
            )
            for item in error.errors(include_url=False)
        ]
    )


#: a value missing (null, or a missing marker of ``data.na_values``) where training had none
MISSING = "missing, never missing in training"


def out_of_range(spec: ServingSpec, row: list[Any], prefix: str) -> list[Problem]:
    """The features of a row the model could not score that lie outside the range training
    covered (the usual cause: far-out values overflow once scaled), as ``prefix + name``."""
    return [
        Problem(
            field=f"{prefix}{feature.name}",
            problem=f"{value!r} is far outside the range training covered "
            f"[{feature.minimum:g}, {feature.maximum:g}]: the model's answer overflows",
        )
        for feature, value in zip(spec.features, row, strict=True)
        if isinstance(value, float)
        and feature.minimum is not None
        and feature.maximum is not None
        and not feature.minimum <= value <= feature.maximum
    ]


#: separators a CSV written by a spreadsheet or a database tool may use instead of ','
OTHER_SEPARATORS = (";", "\t", "|")


def some(names: list[str], listed: int = 5) -> str:
    """``['a', 'b', ...] and N more``: a long list of names in an error's one line."""
    more = f" and {len(names) - listed} more" if len(names) > listed else ""
    return f"{names[:listed]}{more}"


def columns_hint(missing: list[str], columns: list[str]) -> str:
    """The likely cause of ``missing`` columns in a file with ``columns``, for the error
    that names them (training's reader and the batch reader say it the same way): a CSV
    read as one column whose name holds another separator, or names that differ only in
    case or surrounding spaces; empty when neither."""
    if len(columns) == 1:
        found = next((sep for sep in OTHER_SEPARATORS if sep in columns[0]), None)
        if found is not None:
            return (
                f"; it was read as one column, whose header holds {found!r}: the file must "
                "be comma-separated (e.g. pandas: df.to_csv(path, index=False))"
            )
    loose = {column.strip().casefold(): column for column in columns}
    near = [(name, loose[key]) for name in missing if (key := name.strip().casefold()) in loose]
    if not near:
        return ""
    pairs = ", ".join(f"{found!r} for {name!r}" for name, found in near[:3])
    spaced = any(found != found.strip() for _, found in near)
    quoting = (
        " (in a --set value, a name with spaces at its ends goes in quotes: --set 'KEY=\" name \"')"
        if spaced
        else ""
    )
    return f"; the file has {pairs}: names must match exactly (case and spaces){quoting}"


#: a value further than this many spans of the training range (max - min) outside it is not
#: the world's data (the data gate's ``range_margin`` default): answered, but flagged
FAR_OUTSIDE_SPANS = 1.0


def unseen_category_check(
    known: Mapping[str, frozenset[str]], names: Sequence[str]
) -> Callable[[Sequence[Any]], list[str] | None]:
    """For a row of values (in ``names``' order), the categorical features holding a value
    training never saw (``core/scoring.known_categories``), or None."""
    positions = [(i, name, known[name]) for i, name in enumerate(names) if name in known]

    def unseen(row: Sequence[Any]) -> list[str] | None:
        found = [n for i, n, cats in positions if row[i] is not None and str(row[i]) not in cats]
        return found or None

    return unseen


def far_outside_check(
    spec: ServingSpec, spans: float = FAR_OUTSIDE_SPANS
) -> Callable[[Sequence[Any]], list[str] | None]:
    """For a row of values (in the spec's feature order), the names of the features
    further than ``spans`` training spans outside the range training covered, or None."""
    bounds = [
        (index, feature.name, feature.minimum - spans * (feature.maximum - feature.minimum),
         feature.maximum + spans * (feature.maximum - feature.minimum))
        for index, feature in enumerate(spec.features)
        if feature.minimum is not None and feature.maximum is not None
    ]  # fmt: skip

    def outside(row: Sequence[Any]) -> list[str] | None:
        names = [
            name
            for index, name, low, high in bounds
            if isinstance(value := row[index], (int, float))
            and not isinstance(value, bool)
            and not low <= value <= high
        ]
        return names or None

    return outside
