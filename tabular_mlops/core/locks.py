"""The hashed lock file (``requirements.lock``, written by ``make lock``): each package's
pinned version with the hashes of its files, so that an install given these lines fails
on a changed wheel instead of running it."""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass

from packaging.markers import Marker
from packaging.utils import canonicalize_name
from packaging.version import Version

_PIN = re.compile(
    r"^(?P<name>[A-Za-z0-9][A-Za-z0-9._-]*)(\[[^\]]*\])?\s*==(?!=)\s*(?P<version>[^\s;\\]+)"
    r"\s*(;(?P<marker>[^\\]*?))?\s*(--hash|$)"
)
_HASH = re.compile(r"--hash=(\S+)")


class LockError(ValueError):
    """A package is missing from the lock, or pinned there to another version."""


@dataclass(frozen=True)
class LockedPackage:
    name: str
    version: str
    hashes: tuple[str, ...]

    def requirement(self) -> str:
        """One requirements-file line: ``name==version --hash=... --hash=...``."""
        return " ".join([f"{self.name}=={self.version}", *(f"--hash={h}" for h in self.hashes)])


def read_lock(text: str) -> dict[str, LockedPackage]:
    """The lock's packages by canonical name (continuation lines joined, comments left out)."""
    entries: list[str] = []
    current = ""
    for raw in text.splitlines():
        line = raw.split(" #", 1)[0].strip() if not raw.lstrip().startswith("#") else ""
        if not line:
            continue
        current += " " + line.rstrip("\\").strip()
        if not line.endswith("\\"):
            entries.append(current.strip())
            current = ""
    if current.strip():
        entries.append(current.strip())
    locked: dict[str, LockedPackage] = {}
    for entry in entries:
        pin = _PIN.match(entry)
        if pin is None:
            continue
        if pin["marker"] and not Marker(pin["marker"].strip()).evaluate():
            continue  # a line for another platform or Python: not this installation's
        name = canonicalize_name(pin["name"])
        locked[name] = LockedPackage(name, pin["version"], tuple(_HASH.findall(entry)))
    return locked


def hashed_requirements(
    lock_text: str, pins: Mapping[str, str], lock_name: str = "requirements.lock"
) -> list[str]:
    """The lock's hashed line for each ``name -> version`` in ``pins``; a package the lock
    does not hold, holds without hashes or pins to another version is an error that names
    it, both versions and the fix."""
    locked = read_lock(lock_text)
    lines = []
    for name, wanted in sorted(pins.items()):
        entry = locked.get(canonicalize_name(name))
        if entry is None:
            raise LockError(
                f"{lock_name} has no line for {name!r}, so it would be installed unhashed. "
                "Fix: declare it in pyproject.toml and run `make lock`."
            )
        if Version(entry.version) != Version(wanted):
            raise LockError(
                f"{name} is {wanted} here but {entry.version} in {lock_name}. "
                "Fix: `make` installs the lock's versions again (or `make lock` after "
                "changing pyproject.toml)."
            )
        if not entry.hashes:
            raise LockError(
                f"{lock_name} pins {name}=={wanted} without a hash. "
                "Fix: `make lock` writes it with --generate-hashes."
            )
        lines.append(entry.requirement())
    return lines
