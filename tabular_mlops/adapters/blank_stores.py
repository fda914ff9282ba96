"""Blank stores made once at install: a new ZenML or MLflow store starts as a copy.

ZenML 0.98 takes 3.4 s to create its SQLite store, 2.2 s of it registering the flavors
of every integration; MLflow 3 takes 1.9 s to run its migrations on a new tracking
database. Both happen on a user's first command, and again on each new store (another
checkout, another ``ZENML_CONFIG_PATH``). ``make`` runs this module once per installed
set of packages; it writes each store as its library leaves it before anything of a
user's is in it, under the virtual environment, named by the library's version:

* ZenML: the tables, the migration stamp and the flavors, with no project, stack or
  user. A copy gets the server settings ZenML gives a new store (this global config's
  id, analytics choice); ZenML then creates the default project, stack and user in it
  as it always does.
* MLflow: the tables, migrated to the head, with no experiment; MLflow creates its
  default experiment when it first opens the copy.

A store that exists is never touched, and without a blank store (installed some other
way, another version) each library creates its store itself, as before. A copy is put
in place only whole (a hard link of a finished file), so that two commands starting
together on a new store see no store or a whole one.

    python -m tabular_mlops.adapters.blank_stores       # what `make` runs
"""

from __future__ import annotations

import contextlib
import logging
import os
import shutil
import sys
import tempfile
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from importlib.metadata import version
from pathlib import Path
from typing import Any

from tabular_mlops.adapters import file_locks

logger = logging.getLogger(__name__)

#: where the blank stores are: the virtual environment's, gone with it
BLANK_DIR = Path(sys.prefix) / "share" / "tabular-mlops"


def blank_store(library: str) -> Path:
    """The blank store of ``library`` ("zenml" or "mlflow") at its installed version."""
    return BLANK_DIR / f"{library}-{version(library)}.sqlite"


def _put_in_place(blank: Path, target: Path, own: Callable[[Path], None] | None) -> bool:
    """Copy ``blank`` to ``target`` unless ``target`` exists; whether it was copied. A copy
    that fails (a full disk, a file system without hard links, a blank store that
    cannot be opened) leaves nothing behind, and the library creates its store itself,
    as without a blank one."""
    if target.exists() or not blank.is_file():
        return False
    _remove_dead_partials(target)
    partial = target.with_name(f".{target.name}.{os.getpid()}.partial")
    try:
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(blank, partial)
        if own is not None:
            own(partial)
        os.link(partial, target)  # fails, leaving the other's, if another process won
    except FileExistsError:
        return False
    except Exception as exc:  # OSError, or SQLite's own error in ``own``: nothing is lost
        logger.warning("a new store at %s is created from scratch: copying %s failed: %s",
                       target, blank, exc)  # fmt: skip
        return False
    finally:
        partial.unlink(missing_ok=True)
    logger.debug("a new store at %s, copied from %s", target, blank)
    return True


def _remove_dead_partials(target: Path) -> None:
    """The partial copies a process killed mid-copy (``kill -9``) left beside ``target``:
    each is named after its process, and removed once that process is gone."""
    from tabular_mlops.adapters.processes import is_alive

    for partial in target.parent.glob(f".{target.name}.*.partial"):
        pid = partial.name.removeprefix(f".{target.name}.").removesuffix(".partial")
        # another user's, or a pid no process can have: left, the copy goes on
        with contextlib.suppress(OSError, OverflowError):
            if pid.isdigit() and not is_alive(int(pid)):
                partial.unlink(missing_ok=True)


#: the local ZenML stores this process has seen created and opened
_SETTLED: set[Path] = set()


@contextmanager
def new_zenml_store() -> Iterator[bool]:
    """Around this process's ZenML client first opening its store: whether the block
    holds the store's lock and is to open the store in it. It does when the store is new
    (then started as a copy of the blank one) or still being made by another command,
    which it then waits for; the command that made it removes the lock once the store
    is open, so that later commands take no turn.

    Two commands started together on a new store raced through ZenML's creation of it:
    one failed ("The ZenML database has never been migrated with alembic", or, from a
    copy, "No user account with the 'default' name" while another was creating it). The
    second now waits for the first, then reads the global config the first wrote."""
    from tabular_mlops.adapters.compat import (
        local_zenml_store_path,
        own_zenml_server_settings,
        read_global_config_again_if_stale,
    )

    target = local_zenml_store_path()
    if target is None or target in _SETTLED:
        yield False
        return
    lock = target.with_name(f".{target.name}.creating")
    if target.exists() and not lock.exists():  # made, and opened by its maker
        _SETTLED.add(target)
        yield False
        return
    with file_locks.exclusive(lock):
        making = not target.exists()
        if making:
            _put_in_place(blank_store("zenml"), target, own_zenml_server_settings)
        else:  # made by another command, maybe while this one waited
            read_global_config_again_if_stale()
        yield True
        _SETTLED.add(target)
        if making:  # made and opened: later commands take no turn (one waiting still does)
            lock.unlink(missing_ok=True)


def seed_mlflow_store(tracking_uri: str) -> bool:
    """Before MLflow first opens ``tracking_uri``: if that is a new SQLite file, start it
    as a copy of the blank MLflow store."""
    prefix = "sqlite:///"
    if not tracking_uri.startswith(prefix):
        return False
    return _put_in_place(blank_store("mlflow"), Path(tracking_uri[len(prefix) :]), None)


def seed_tracking_store(stack: Any) -> bool:
    """``seed_mlflow_store`` for the tracking store of ``stack``'s MLflow experiment tracker
    (a local one: ZenML's SQLite file in the artifact store)."""
    tracker = stack.experiment_tracker
    if tracker is None or tracker.flavor != "mlflow":
        return False
    return seed_mlflow_store(str(tracker.get_tracking_uri()))


def make() -> list[Path]:
    """Write the blank stores of the installed ZenML and MLflow (again, if they exist);
    in a scratch ZenML config, so that the user's is never read or written."""
    from tabular_mlops.adapters.compat import create_blank_mlflow_store, create_blank_zenml_store

    BLANK_DIR.mkdir(parents=True, exist_ok=True)
    made = []
    # beside the blank stores: each is renamed into place whole, which works within one
    # file system only (the temporary directory may be another)
    with tempfile.TemporaryDirectory(prefix=".making-", dir=BLANK_DIR) as scratch:
        zenml_file = create_blank_zenml_store(Path(scratch) / "zenml")
        mlflow_file = Path(scratch) / "mlflow.db"
        create_blank_mlflow_store(mlflow_file)
        for library, made_file in (("zenml", zenml_file), ("mlflow", mlflow_file)):
            target = blank_store(library)
            made_file.replace(target)
            made.append(target)
            for older in BLANK_DIR.glob(f"{library}-*.sqlite"):  # of versions replaced
                if older != target:
                    older.unlink(missing_ok=True)
    return made


def main() -> int:
    """``python -m tabular_mlops.adapters.blank_stores``: the environment is set before
    ZenML is imported (it reads its config path and analytics choice then)."""
    environment: dict[str, Any] = {
        "ZENML_CONFIG_PATH": tempfile.mkdtemp(prefix="blank-stores-config-"),
        "ZENML_ANALYTICS_OPT_IN": "false",
        "ZENML_LOGGING_VERBOSITY": "ERROR",
    }
    os.environ.update(environment)
    try:
        for made in make():
            print(f"blank store: {made}")
    finally:
        with contextlib.suppress(OSError):
            shutil.rmtree(environment["ZENML_CONFIG_PATH"])
    return 0


if __name__ == "__main__":
    sys.exit(main())
