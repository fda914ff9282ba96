"""Named points at which a test kills this process as ``kill -9`` would, to prove that
what the process was doing is carried out, or undone, by the next command.

``TABULAR_MLOPS_FAILPOINT=<name>`` in a command's environment kills it the moment it
reaches the point of that name; unset (always, outside the suite), a point costs one
look at the environment.
"""

from __future__ import annotations

import os
import signal

#: the environment variable naming the point at which to die
FAILPOINT_ENV = "TABULAR_MLOPS_FAILPOINT"


def failpoint(name: str) -> None:
    """Die here, with no clean-up of any kind, when the environment names this point."""
    if os.environ.get(FAILPOINT_ENV) == name:
        os.kill(os.getpid(), signal.SIGKILL)
