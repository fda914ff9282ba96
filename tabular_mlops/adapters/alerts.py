"""A ZenML alerter that needs nothing installed: alerts appended to a local file.

Failures, gate rejections and monitoring decisions reach the stack's alerter
(`notify`): on dev and staging this flavor, one JSON object a line, which a
person tails or another tool forwards; on prod a real one (Slack) by config.
"""

from __future__ import annotations

import json
import logging
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, cast

from zenml.alerter import BaseAlerter, BaseAlerterConfig, BaseAlerterFlavor
from zenml.alerter.base_alerter import BaseAlerterStepParameters

from tabular_mlops.adapters.paths import anchor

if TYPE_CHECKING:
    from zenml.stack import Stack

logger = logging.getLogger(__name__)

#: this module's flavors, registered with ZenML before a stack that names them
CUSTOM_FLAVORS = ("tabular_mlops.adapters.alerts.LocalFileAlerterFlavor",)


class LocalFileAlerterConfig(BaseAlerterConfig):
    """``path``: the JSON Lines file alerts are appended to (relative to the checkout)."""

    path: str = ".local/alerts.jsonl"


class LocalFileAlerter(BaseAlerter):
    @property
    def config(self) -> LocalFileAlerterConfig:
        return cast(LocalFileAlerterConfig, self._config)

    def post(self, message: str, params: BaseAlerterStepParameters | None = None) -> bool:
        path = anchor(Path(self.config.path))
        path.parent.mkdir(parents=True, exist_ok=True)
        record = {"time": datetime.now(UTC).isoformat(), "message": message}
        with path.open("a", encoding="utf-8") as handle:
            handle.write(json.dumps(record) + "\n")
        return True

    def ask(self, question: str, params: BaseAlerterStepParameters | None = None) -> bool:
        self.post(question, params)
        return False  # nobody answers a file: never an approval


class LocalFileAlerterFlavor(BaseAlerterFlavor):
    @property
    def name(self) -> str:
        return "local_file"

    @property
    def config_class(self) -> type[LocalFileAlerterConfig]:
        return LocalFileAlerterConfig

    @property
    def implementation_class(self) -> type[LocalFileAlerter]:
        return LocalFileAlerter


def notify(stack: Stack, message: str) -> None:
    """Post ``message`` to the stack's alerter, if it has one; an alerter that fails is
    logged, never allowed to fail the pipeline it reports on."""
    alerter = stack.alerter
    if alerter is None:
        return
    try:
        alerter.post(message)
    except Exception as exc:  # a chat service being down must not sink a run
        logger.warning("alerter %s could not post: %s", alerter.name, exc)
