"""What is wrong with a user's table file, said with its name and line: a header that
names a column twice, and the line a CSV parser stopped at (its fields, its encoding).

Every reader of a file (training's, the batch pipeline's, the stream's replay) asks
these, so a file is refused the same way whichever command reads it.
"""

from __future__ import annotations

import csv
from collections.abc import Sequence
from pathlib import Path

import pandas as pd

from tabular_mlops.core.problems import some


def repeated_names(columns: Sequence[str]) -> list[str]:
    """The names that appear more than once, in the order they first repeat."""
    seen: set[str] = set()
    repeated: list[str] = []
    for name in columns:
        if name in seen and name not in repeated:
            repeated.append(name)
        seen.add(name)
    return repeated


def repeated_header(path: Path, columns: Sequence[str]) -> str | None:
    """Why ``path`` cannot be read, when its header names a column twice; else None.
    (pandas renames the copy ``age.1``, Arrow keeps both and a lookup by name finds one:
    either way a model would read one copy without a word.)"""
    repeated = repeated_names(columns)
    if not repeated:
        return None
    return (
        f"{path}: column(s) {some(repeated)} appear more than once in the header, and "
        "which copy is meant is not known: rename or drop the copies"
    )


def csv_header(path: Path) -> list[str]:
    """The first record of a CSV file as written (no name made unique)."""
    with path.open(encoding="utf-8-sig", errors="replace", newline="") as handle:
        return next(csv.reader(handle), [])


def where_csv_breaks(path: Path) -> str | None:
    """The first line of ``path`` that is not UTF-8 text, or whose fields are more or
    fewer than the header's, and what to do about it; None when there is none."""
    with path.open("rb") as handle:
        for number, line in enumerate(handle, 1):
            try:
                line.decode("utf-8")
            except UnicodeDecodeError as exc:
                return (
                    f"line {number} is not UTF-8 text (byte 0x{line[exc.start]:02x}, "
                    f"character {exc.start + 1}): save the file as UTF-8 (a spreadsheet's "
                    "'CSV UTF-8')"
                )
    return _ragged_line(path)


def _ragged_line(path: Path) -> str | None:
    """The first line of the CSV ``path`` with more or fewer fields than its header."""
    with path.open(encoding="utf-8-sig", newline="") as handle:
        reader = csv.reader(handle)
        header = next(reader, [])
        for row in reader:
            if row and len(row) != len(header):
                if len(row) == 1 and not row[0].strip():
                    fix = "delete the line of spaces"
                elif len(row) > len(header):
                    fix = "quote a value that holds a comma, or remove the extra field"
                else:
                    fix = "add the missing field (empty when it is not known)"
                return (
                    f"line {reader.line_num} has {len(row)} fields and the header "
                    f"{len(header)}: {fix}"
                )
    return None


def refuse_ragged(path: Path, frame: pd.DataFrame, error: type[Exception]) -> None:
    """``error`` naming the first line of the CSV ``path`` (read by pandas into ``frame``)
    with fewer fields than its header, which pandas reads as missing values (or as the
    empty text) without a word, or more. The file is read again only when ``frame`` hints
    at one: a missing or empty last column, or a row label pandas took from a field too
    many."""
    if len(frame.columns) and isinstance(frame.index, pd.RangeIndex):
        last = frame.iloc[:, -1]
        if not last.isna().any() and not (last.dtype == object and (last == "").any()):
            return
    broken = _ragged_line(path)
    if broken:
        raise error(f"{path}: {broken}")


def unreadable(path: Path, error: BaseException, as_what: str, csv_file: bool) -> str:
    """Why ``path`` could not be read: a CSV's first broken line when one is found (what
    to do included), else the reader's own ``error``."""
    where = where_csv_breaks(path) if csv_file else None
    return f"{path}: {where}" if where else f"{path}: cannot be read as {as_what}: {error}"
