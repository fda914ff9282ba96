"""The deployment's supervisor: ``python -m tabular_mlops.adapters.deployment.supervisor
STATE_DIR MODEL PORT [STARTUP_TIMEOUT]``, one process per served model on this machine.

Started by the ``tabular_local`` model deployer with the model's first switch
(and by any later ``deploy``, if it is not running), it looks every
``POLL_SECONDS`` at what the deployment's records say should run, the
router, the live version, a rollout's candidate, and starts again whatever
died, on the port it had, so the routes stay as they are and clients keep
the address (``LocalProcessTarget.heal``). What it did is in the model's
``.supervisor.json`` and shown by ``deploy --status``. A process that keeps
dying is given up on after ``MAX_RESTARTS`` in ``WINDOW_SECONDS``. It leaves
when its record names another process or is gone (``deploy --stop``).

On a cluster Kubernetes does this for the pods; no supervisor runs there.
"""

from __future__ import annotations

import logging
import os
import signal
import sys
import time
from collections import defaultdict, deque
from pathlib import Path

from tabular_mlops.adapters.deployment.local import LocalProcessTarget
from tabular_mlops.core.config import LocalServingConfig, ServingConfig

logger = logging.getLogger(__name__)

POLL_SECONDS = 0.25
MAX_RESTARTS = 5
WINDOW_SECONDS = 60.0


class RestartBudget:
    """At most ``limit`` restarts of one process in ``window`` seconds."""

    def __init__(self, limit: int = MAX_RESTARTS, window: float = WINDOW_SECONDS) -> None:
        self.limit, self.window = limit, window
        self.times: defaultdict[str, deque[float]] = defaultdict(deque)
        self.refused: set[str] = set()

    def worth_trying(self, what: str, now: float | None = None) -> bool:
        """Whether ``what`` may be restarted now, without counting a restart."""
        now = time.monotonic() if now is None else now
        recent = self.times[what]
        while recent and now - recent[0] > self.window:
            recent.popleft()
        return len(recent) < self.limit

    def allow(self, what: str, now: float | None = None) -> bool:
        """Count a restart of ``what``, or refuse one over the limit (said once)."""
        now = time.monotonic() if now is None else now
        if not self.worth_trying(what, now):
            if what not in self.refused:
                self.refused.add(what)
                logger.error(
                    "%s died %s times in %.0f s: not restarted", what, self.limit, self.window
                )
            return False
        self.refused.discard(what)
        self.times[what].append(now)
        return True


def supervise(target: LocalProcessTarget, model_name: str) -> None:
    budget = RestartBudget()
    me = os.getpid()
    while True:
        time.sleep(POLL_SECONDS)
        record = target.supervisor(model_name)
        if record is None or record.pid != me:
            logger.info("no longer the supervisor of %s: leaving", model_name)
            return
        try:
            target.heal(model_name, budget.allow, budget.worth_trying)
        except Exception:  # a bad moment (a record half-replaced) must not end supervision
            logger.exception("looking after %s failed; trying again", model_name)


def main() -> None:
    state_dir, model_name, port = Path(sys.argv[1]), sys.argv[2], int(sys.argv[3])
    # how long a version it starts again may take to answer: the deployment's own bound
    # (an earlier version's supervisor command has none: the default)
    serving = (
        ServingConfig(startup_timeout_seconds=float(sys.argv[4]))
        if len(sys.argv) > 4
        else ServingConfig()
    )
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(message)s")
    # the processes it starts are its children: collected by the kernel when they exit
    signal.signal(signal.SIGCHLD, signal.SIG_IGN)
    local = LocalServingConfig(port=port, state_dir=state_dir)
    supervise(LocalProcessTarget(serving, local), model_name)


if __name__ == "__main__":
    main()
