"""``python -m embedded EXPORT_DIR [ROWS]``: score rows from a CSV or JSON file (or stdin)
and print one JSON line per row: label and probabilities (a regressor: its value, interval
and decision)."""

from __future__ import annotations

import argparse
import csv
import io
import json
import os
import re
import sys
from pathlib import Path
from typing import Any

from embedded.scorer import EmbeddedModel, InvalidRowError


class InvalidFileError(ValueError):
    """A file that cannot be read as rows; the message names it and the line."""


def read_file(path: Path) -> str:
    """The file's text: UTF-8, a byte-order mark dropped; a byte that is not UTF-8 is
    named with its line, as training's and the batch reader name it."""
    data = path.read_bytes()
    try:
        return data.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        line, line_start = data.count(b"\n", 0, exc.start) + 1, data.rfind(b"\n", 0, exc.start) + 1
        raise InvalidFileError(
            f"{path}: line {line} is not UTF-8 text (byte "
            f"0x{data[exc.start]:02x}, character {exc.start - line_start + 1}): save the file "
            "as UTF-8 (a spreadsheet's 'CSV UTF-8')"
        ) from None


class Rows(list[dict[str, Any]]):
    """The rows of a file, with the line each ends on (None: not from a CSV)."""

    lines: list[int] | None = None


def read_csv(text: str, features: list[str], numeric: set[str], name: str) -> Rows:
    """The rows of a CSV, read as training's reader and the batch reader read it: a number
    as a number, an empty cell missing, any other text as written (the scorer takes the
    training data's missing markers and refuses the rest, naming row and feature). A file
    with no rows, a header naming a column twice or lacking a feature, or a line with more
    or fewer fields than the header is refused, naming it."""
    reader = csv.reader(io.StringIO(text, newline=""))
    header = next(reader, None)
    if header is None:
        raise InvalidFileError(f"{name}: the file is empty; expected a header and rows")
    repeated = sorted({column for column in header if header.count(column) > 1})
    if repeated:
        raise InvalidFileError(
            f"{name}: column(s) {repeated} appear more than once in the header, and which "
            "copy is meant is not known: rename or drop the copies"
        )
    missing = [feature for feature in features if feature not in header]
    if missing:
        near = {c.strip().casefold(): c for c in header}
        hints = [f"{near[f.casefold()]!r} for {f!r}" for f in missing if f.casefold() in near]
        hint = f"; the file has {', '.join(hints)}" if hints else ""
        separator = next((c for c in ";\t|" if len(header) == 1 and c in header[0]), None)
        if separator is not None:
            hint = (f"; its header is one column holding {separator!r}: write the file with "
                    "',' between fields")  # fmt: skip
        raise InvalidFileError(f"{name}: missing column(s) {missing}{hint}")
    rows = Rows()
    rows.lines = []
    for record in reader:
        if not record:  # a blank line
            continue
        if len(record) != len(header):
            if len(record) == 1 and not record[0].strip():  # as the batch reader says it
                fix = "delete the line of spaces"
            elif len(record) > len(header):
                fix = "quote a value that holds a comma, or remove the extra field"
            else:
                fix = "add the missing field (empty when it is not known)"
            raise InvalidFileError(
                f"{name}: line {reader.line_num} has {len(record)} fields and the header "
                f"{len(header)}: {fix}"
            )
        rows.append({
            column: _cell(value, column in numeric)
            for column, value in zip(header, record, strict=True)
        })  # fmt: skip
        rows.lines.append(reader.line_num)
    if not rows:
        raise InvalidFileError(f"{name}: a header and no rows: nothing to score")
    return rows


def _cell(value: str, numeric: bool) -> Any:
    """An empty cell is missing; a numeric feature's number a float (ASCII digits only:
    float() also takes "1_0" and full-width digits, which training's reader and the
    batch reader refuse); any other text as written, for the scorer to judge."""
    if value == "":
        return None
    if numeric and value.isascii() and "_" not in value:
        try:
            return float(value)
        except ValueError:
            pass
    return value


def read_json(text: str, name: str) -> list[dict[str, Any]]:
    """Rows from JSON: a list of objects, ``{"rows": [...]}``, or one object per line."""
    try:
        try:
            document = json.loads(text)
        except json.JSONDecodeError:  # JSON Lines
            document = [json.loads(line) for line in text.splitlines() if line.strip()]
    except json.JSONDecodeError as exc:
        raise InvalidFileError(
            f"{name}: not JSON ({exc}); a file whose name ends in .csv is read as CSV, and "
            "stdin with --csv"
        ) from None
    if isinstance(document, dict):
        document = document.get("rows", [document])
    if not isinstance(document, list):
        document = [document]
    for number, row in enumerate(document):
        if not isinstance(row, dict):
            raise InvalidFileError(
                f"{name}: row {number}: {row!r} is not an object of feature values"
            )
    return document


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m embedded", description=__doc__)
    parser.add_argument("export", type=Path, help="the folder with model.onnx and manifest.json")
    parser.add_argument("rows", nargs="?", default="-", help="a .csv or .json file, or - (stdin)")
    parser.add_argument("--csv", action="store_true", help="stdin is CSV (default: JSON)")
    arguments = parser.parse_args(argv)
    try:
        model = EmbeddedModel.load(arguments.export)
        if arguments.rows == "-":
            text, is_csv, name = sys.stdin.read().removeprefix("\ufeff"), arguments.csv, "<stdin>"
        else:
            path = Path(arguments.rows)
            if path.suffix.lower() not in (".csv", ".json", ".jsonl"):
                raise InvalidFileError(
                    f"{path}: a .csv, .json or .jsonl file is scored (or - for stdin); "
                    "another (a Parquet file) goes through `python run.py infer --input`"
                )
            text, is_csv, name = read_file(path), path.suffix.lower() == ".csv", str(path)
        numeric = {f["name"] for f in model.features if f["kind"] == "numeric"}
        features = [f["name"] for f in model.features]
        rows = read_csv(text, features, numeric, name) if is_csv else read_json(text, name)
        try:
            answers = model.answers(rows)
        except InvalidRowError as exc:  # a CSV's row is said by its file and line
            raise InvalidRowError(_at_line(str(exc), name, rows)) from None
    except (OSError, ValueError) as exc:  # InvalidRowError, bad JSON, a wrong checksum
        print(f"error: {exc}", file=sys.stderr)
        return 2
    try:
        for answer in answers:
            print(json.dumps(answer))
        sys.stdout.flush()
    except BrokenPipeError:  # `| head`: the reader has what it wanted
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
    return 0


def _at_line(message: str, name: str, rows: list[dict[str, Any]]) -> str:
    """The scorer's "row N: ..." said as the CSV's file and line (as the batch reader says
    it); a JSON file's rows keep their numbers."""
    found = re.match(r"row (\d+): ", message)
    lines = getattr(rows, "lines", None)
    if found is None or not lines:
        return message
    return f"{name}: line {lines[int(found.group(1))]}: {message[found.end() :]}"


if __name__ == "__main__":
    sys.exit(main())
