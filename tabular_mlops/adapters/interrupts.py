"""Blocks a Ctrl-C must not cut in two: it waits until the block is done."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

_held: list[int] = []
_pending: list[int] = []


def held() -> bool:
    """Whether a Ctrl-C now waits for a block to end (and one is then noted as pending)."""
    if _held:
        _pending.append(1)
    return bool(_held)


@contextmanager
def ctrl_c_held() -> Iterator[None]:
    """Ctrl-C during the block is raised as ``KeyboardInterrupt`` once it is done (unless
    the block failed of its own). For a switch of the model's address: interrupted
    half-way, the new version held the address while the records still named the old
    one, and the clean-up after the interrupt stopped the version that was answering."""
    _held.append(1)
    try:
        yield
    except BaseException:  # the block's own failure is what the command reports
        _held.pop()
        if not _held:
            _pending.clear()
        raise
    _held.pop()
    if not _held and _pending:
        _pending.clear()
        raise KeyboardInterrupt
