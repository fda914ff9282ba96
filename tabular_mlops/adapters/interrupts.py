"""Ctrl-C while a command runs: never inside a database call nor a callback the
interpreter calls from C, and never in the middle of a block that must not be cut in two."""

from __future__ import annotations

import _thread
import os
import signal
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

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


def press_again(thread: int, signum: int = signal.SIGINT) -> None:
    """Hand ``signum`` to ``thread`` 10 ms from now (run on a thread of its own)."""
    time.sleep(0.01)
    signal.pthread_kill(thread, signum)


#: where an exception raised by a signal handler is printed as "ignored" and lost: the
#: interrupted Python code is a callback the interpreter calls from C
_CALLBACK_FILES = ("weakref.py", "_weakrefset.py")
#: Python code a native extension calls and whose exceptions it turns into its own: an
#: interrupt raised in pydantic's schema building (which pydantic-core calls) came out as
#: "SchemaError: 'cls' must be valid as the first argument to 'isinstance'", a failed
#: step instead of "Aborted!" (seen once in CI, a Ctrl-C at register_model's start)
_CALLED_FROM_NATIVE = (f"{os.sep}pydantic{os.sep}_internal{os.sep}",)
#: code that may hold a database transaction open: ZenML's and MLflow's stores, SQLAlchemy
_STORE_CODE = tuple(
    f"{os.sep}{part}{os.sep}"
    for part in (
        "sqlalchemy",
        "sqlite3",
        "alembic",
        "sqlmodel",
        "zen_stores",
        f"mlflow{os.sep}store",
    )
)
#: how long a Ctrl-C waits for the database call it landed in to end, at most
INTERRUPT_DEFER_SECONDS = 5.0
#: when the Ctrl-C now deferred arrived; whether its re-delivery is on its way
_first_deferred: list[float] = []
_redelivery: list[int] = []


def _where(frame: Any) -> tuple[bool, bool]:
    """Whether the interrupted code runs inside a callback the interpreter calls from C (a
    weak reference's clean-up, a ``__del__``), and whether inside a database call."""
    in_callback = in_store = False
    while frame is not None:
        code = frame.f_code
        in_callback = in_callback or (
            code.co_filename.endswith(_CALLBACK_FILES)
            or code.co_name == "__del__"
            or any(part in code.co_filename for part in _CALLED_FROM_NATIVE)
        )
        in_store = in_store or any(part in code.co_filename for part in _STORE_CODE)
        frame = frame.f_back
    return in_callback, in_store


def deferred_interrupt(signum: int, frame: Any) -> None:
    """SIGINT's handler while a command runs: ``KeyboardInterrupt``, as Python's own, but
    never inside a database call nor inside a callback the interpreter calls from C.

    Raised inside a call to ZenML's or MLflow's SQLite store, the interrupt left that
    call's transaction open while the clean-up that follows wrote through another
    connection: the command waited out SQLite's timeout (20 s for MLflow's database,
    three minutes for ZenML's) and failed with "database is locked". Raised inside a
    weak reference's clean-up, it was printed as "Exception ignored" and lost, and the
    run went on to the end. In either place the signal is handed to the main thread
    again 10 ms later (a bare thread: no lock of ``threading``'s is taken in a signal
    handler): out of a database call for at most ``INTERRUPT_DEFER_SECONDS`` from the
    key press, out of a callback always (on a loaded machine a store call outlasted the
    bound, and the interrupt raised then landed in SQLAlchemy's clean-up and was lost:
    the run went on to the end, once in a suite run on an overloaded machine). Inside a
    block that holds Ctrl-C (``ctrl_c_held``), it is raised when the block
    ends, or at once when pressed again."""
    redelivered = bool(_redelivery)
    _redelivery.clear()
    if held(fresh=not redelivered):  # raised when the block that holds it ends
        _first_deferred.clear()
        return
    now = time.monotonic()
    if not redelivered or not _first_deferred:
        _first_deferred[:] = [now]  # a key press of its own: its own clock
    main = threading.main_thread().ident
    in_callback, in_store = _where(frame)
    # raised in a callback it is lost, however long ago the key was pressed: handed back
    if main is not None and (
        in_callback or (in_store and now - _first_deferred[0] < INTERRUPT_DEFER_SECONDS)
    ):
        _redelivery.append(1)
        _thread.start_new_thread(press_again, (main, signum))
        return
    _first_deferred.clear()
    raise KeyboardInterrupt


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
            _thread.start_new_thread(press_again, (threading.get_ident(),))
        raise
    _held.pop()
    if not _held and _pending:
        _pending.clear()
        raise KeyboardInterrupt
