"""What the inference log keeps of each model input: ``keep`` it, ``hash`` it (a salted
SHA-256 prefix: equal values stay equal, so joins and counts still work, but the value
is not written) or ``drop`` it. Assessment-only columns (e.g. for fairness) are never
model inputs, so never logged at all.

Hashing pseudonymises, it does not anonymise: a column of few values (sex, a
region) can be recovered by hashing each candidate value; ``drop`` those.
Monitoring leaves hashed and dropped columns out of drift (``monitoring_data``).
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Mapping, Sequence
from typing import Any, Literal

LogPolicy = Literal["keep", "hash", "drop"]
#: how a hashed value starts in the log: monitoring knows it by this
HASHED_PREFIX = "sha256:"
#: the model version's metadata key for the policy its deployment serves with (the
#: stream consumer logs that version's rows the same way)
LOG_COLUMNS_KEY = "log_columns"


class LogPolicyError(ValueError):
    """A column the policy names is not a model input."""


def check_policy(policy: Mapping[str, LogPolicy], features: Sequence[str]) -> None:
    unknown = sorted(set(policy) - set(features))
    if unknown:
        raise LogPolicyError(
            f"parameters.serving.log_columns names {unknown}, which are not inputs of the "
            f"model (inputs: {list(features)}); assessment-only columns are never logged"
        )


def hashed(value: Any, salt: str) -> str | None:
    if value is None:
        return None
    return HASHED_PREFIX + hashlib.sha256(f"{salt}\x00{value}".encode()).hexdigest()[:16]


def masker(
    names: Sequence[str], policy: Mapping[str, LogPolicy], salt: str
) -> Callable[[Sequence[Any]], dict[str, Any]]:
    """The logged inputs of a row of values (in ``names``' order), by ``policy``; plain
    ``dict(zip(...))`` when every column is kept (the fast path)."""
    columns = list(names)
    if all(policy.get(name, "keep") == "keep" for name in columns):
        return lambda values: dict(zip(columns, values, strict=True))
    plan = [(i, name, policy.get(name, "keep")) for i, name in enumerate(columns)]
    kept = [(i, name, how) for i, name, how in plan if how != "drop"]

    def logged(values: Sequence[Any]) -> dict[str, Any]:
        return {
            name: hashed(values[i], salt) if how == "hash" else values[i] for i, name, how in kept
        }

    return logged
