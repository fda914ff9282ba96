"""Blocks a Ctrl-C must not cut in two: it waits until the block is done."""

from __future__ import annotations

import _thread
import os
import signal
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager

#: the main thread's open blocks, and whether a Ctrl-C waits for them (only the main
#: thread gets signals; a block on another thread holds nothing)
_held: list[int] = []
_pending: list[int] = []
NOTICE = b"Ctrl-C: finishing the switch first (press it again to stop at once)\n"


def held(fresh: bool = True) -> bool:
    """Whether a Ctrl-C now waits for a block to end (it is then noted as pending). A
    second key press while one waits is not held: whoever presses twice means it."""
    if not _held:
        return False
    if fresh and _pending:
        _pending.clear()  # this press is raised now; none is owed after the block
        return False
    if not _pending:
        os.write(2, NOTICE)  # no logging in a signal handler: its locks are not reentrant
    _pending.append(1)
    return True


def _press_again(thread: int) -> None:
    time.sleep(0.01)
    signal.pthread_kill(thread, signal.SIGINT)


@contextmanager
def ctrl_c_held() -> Iterator[None]:
    """Ctrl-C during the block is raised as ``KeyboardInterrupt`` once it is done (unless
    the block failed of its own). For a switch of the model's address: interrupted
    half-way, the new version held the address while the records still named the old
    one, and the clean-up after the interrupt stopped the version that was answering."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    _held.append(1)
    try:
        yield
    except BaseException:  # the block's own failure is raised, and the Ctrl-C right after
        _held.pop()
        if not _held and _pending:
            _pending.clear()
            _thread.start_new_thread(_press_again, (threading.get_ident(),))
        raise
    _held.pop()
    if not _held and _pending:
        _pending.clear()
        raise KeyboardInterrupt
