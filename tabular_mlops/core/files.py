"""Files written whole (a reader sees the old content or the new, never half of it), and
model files checked against the content hash the gates approved before they are loaded."""

from __future__ import annotations

import hashlib
import os
from pathlib import Path
from typing import BinaryIO


def write_atomically(path: Path, text: str, private: bool = False) -> None:
    """Write ``text`` to ``path`` through a temporary file in the same directory, renamed
    over it. ``private``: the file is its owner's only (0600, from its first byte) and so
    is its directory (0700)."""
    path.parent.mkdir(parents=True, exist_ok=True, mode=0o700 if private else 0o777)
    if private:
        path.parent.chmod(0o700)
    temporary = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        descriptor = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_TRUNC,
                             0o600 if private else 0o666)  # fmt: skip
        with os.fdopen(descriptor, "w", encoding="utf-8") as out:
            out.write(text)
        temporary.replace(path)
    except BaseException:
        temporary.unlink(missing_ok=True)
        raise


def sha256_of(stream: BinaryIO) -> str:
    """The SHA-256 of everything ``stream`` still holds, read in 1 MiB pieces."""
    digest = hashlib.sha256()
    for piece in iter(lambda: stream.read(1 << 20), b""):
        digest.update(piece)
    return digest.hexdigest()


class ModelFileChangedError(RuntimeError):
    """A model file is not the one the gates approved: it is never deserialized."""


def check_model_file(stream: BinaryIO, expected: str, what: str, where: str) -> None:
    """Refuse (:class:`ModelFileChangedError`) a model file whose content hash is not
    ``expected``: ``what`` names the model and version, ``where`` the file. A pickled
    model is code, so this runs before it is loaded, never after; the loader must then
    check again what it reads (ZenML's materializer does), or load :func:`checked_bytes`."""
    _refuse_unless(sha256_of(stream), expected, what, where)


def checked_bytes(stream: BinaryIO, expected: str, what: str, where: str) -> bytes:
    """The bytes of a model file, once they hash to ``expected`` (else as
    :func:`check_model_file`): load these, not the file again. Hashing the file and
    then loading it by its path let a file swapped in between be unpickled unchecked."""
    data = stream.read()
    _refuse_unless(hashlib.sha256(data).hexdigest(), expected, what, where)
    return data


def _refuse_unless(actual: str, expected: str, what: str, where: str) -> None:
    if actual != expected:
        raise ModelFileChangedError(
            f"{what}: the model file {where} has sha256 {actual}, but {expected} was "
            "recorded when the gates approved it; it was changed or corrupted since, and "
            "nothing was loaded from it. Restore the file, or train and approve the model "
            "again (python run.py train)"
        )
