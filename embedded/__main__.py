"""``python -m embedded EXPORT_DIR [ROWS]``: score rows from a CSV or JSON file (or stdin)
and print one JSON line per row: label and probabilities (a regressor: its value, interval
and decision)."""

from __future__ import annotations

import argparse
import csv
import io
import json
import sys
from pathlib import Path
from typing import Any

from embedded.scorer import EmbeddedModel, InvalidRowError


def read_rows(text: str, numeric: set[str], is_csv: bool) -> list[dict[str, Any]]:
    """Rows from JSON (a list of objects, ``{"rows": [...]}``, or one object per line)
    or CSV (numeric features parsed as numbers, an empty cell missing)."""
    if is_csv:
        rows: list[dict[str, Any]] = []
        for number, record in enumerate(csv.DictReader(io.StringIO(text))):
            row: dict[str, Any] = {}
            for name, value in record.items():
                if value == "" or value is None:
                    row[name] = None
                elif name in numeric:
                    try:
                        row[name] = float(value)
                    except ValueError:
                        raise InvalidRowError(
                            f"row {number}: feature '{name}': {value!r} is not a number"
                        ) from None
                else:
                    row[name] = value
            rows.append(row)
        return rows
    try:
        document = json.loads(text)
    except json.JSONDecodeError:  # JSON Lines
        return [json.loads(line) for line in text.splitlines() if line.strip()]
    if isinstance(document, dict):
        return list(document["rows"]) if "rows" in document else [document]
    return list(document)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m embedded", description=__doc__)
    parser.add_argument("export", type=Path, help="the folder with model.onnx and manifest.json")
    parser.add_argument("rows", nargs="?", default="-", help="a .csv or .json file, or - (stdin)")
    parser.add_argument("--csv", action="store_true", help="stdin is CSV (default: JSON)")
    arguments = parser.parse_args(argv)
    try:
        model = EmbeddedModel.load(arguments.export)
        if arguments.rows == "-":
            text, is_csv = sys.stdin.read(), arguments.csv
        else:
            path = Path(arguments.rows)
            text, is_csv = path.read_text(), path.suffix.lower() == ".csv"
        numeric = {f["name"] for f in model.features if f["kind"] == "numeric"}
        rows = read_rows(text, numeric, is_csv)
        answers = model.answers(rows)
    except (OSError, ValueError) as exc:  # InvalidRowError, bad JSON, a wrong checksum
        print(f"error: {exc}", file=sys.stderr)
        return 2
    for answer in answers:
        print(json.dumps(answer))
    return 0


if __name__ == "__main__":
    sys.exit(main())
