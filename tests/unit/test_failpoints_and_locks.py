"""A failpoint kills its process as `kill -9` would; a promotion lock's holder is told
alive or dead from the name it gave itself."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys

from tabular_mlops.adapters import promotion_lock as lock
from tabular_mlops.adapters.failpoints import FAILPOINT_ENV, failpoint
from tabular_mlops.adapters.paths import PROJECT_ROOT
from tabular_mlops.adapters.processes import identity


def test_a_failpoint_kills_only_when_the_environment_names_it():
    failpoint("not-named")  # and this process lives on
    code = "from tabular_mlops.adapters.failpoints import failpoint; failpoint('here'); print(1)"
    env = os.environ | {FAILPOINT_ENV: "here"}
    died = subprocess.run([sys.executable, "-c", code], cwd=PROJECT_ROOT, env=env,
                          capture_output=True, text=True)  # fmt: skip
    assert died.returncode == -signal.SIGKILL and died.stdout == ""


def test_a_holder_is_named_by_machine_pid_and_start_and_told_alive_or_dead():
    name = lock.lock_name("m", "production")
    mine = lock.holder_name(name)
    here = f"{lock.holder_prefix(name)}{socket.gethostname()}-"
    assert mine.startswith(f"{here}{os.getpid()}-{identity(os.getpid())}-")
    assert mine != lock.holder_name(name)  # one-off: never a name this process left
    assert lock._runs(mine.removeprefix(here))
    assert not lock._runs(f"{os.getpid()}-{identity(os.getpid()) + 1}")  # its pid, reused
    assert not lock._runs("1-0.0")  # init did not start at boot's first instant
    assert lock._runs("not-a-name-this-wrote")  # unknown: assumed to run
