"""Where a bento is served: the target of the active stack's model deployer
(``model_deployer.py``), never chosen by the pipeline's code.

The deployment pipeline asks a target to publish the bento, start it beside
the live service, make it live and stop the one it replaces. Two targets:

- ``LocalProcessTarget`` (``tabular_local``: dev, staging): a process per
  version on 127.0.0.1, the model's stable address handed to the live one,
  recorded in a state file;
- ``KubernetesTarget`` (``tabular_kubernetes``: prod): the bento as an image
  built by the stack's image builder and pushed to its container registry,
  one Deployment per model version, and a stable Service whose selector is
  switched to the smoke-tested version.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime
from pathlib import Path
from typing import Any, Literal, Protocol

from pydantic import BaseModel, Field, model_validator

from tabular_mlops.core.rollout import RolloutPlan
from tabular_mlops.core.spec import ServingSettings
from tabular_mlops.serving.credentials import Tokens


class LocalProcess(BaseModel):
    """The uvicorn process (and its workers) serving one version on this machine."""

    target: Literal["local"] = "local"
    pid: int
    #: the process's start time: a pid reused by another process is never signalled
    started: float | None = None
    #: the service's own port; clients use the model's stable address (the router's)
    port: int
    log_file: str
    #: how it was started (command, environment beyond this machine's, directory): what
    #: the deployment's supervisor starts again, on the same port, when it dies
    command: list[str] = Field(default_factory=list)
    env: dict[str, str] = Field(default_factory=dict)
    cwd: str | None = None

    @property
    def instance(self) -> str:
        return f"pid {self.pid}"

    @property
    def direct_url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def describe(self, bento_tag: str) -> str:
        return f"bento {bento_tag}, pid {self.pid} on port {self.port}, log {self.log_file}"


class KubernetesRelease(BaseModel):
    """A Deployment (and its Service) of one model version on the cluster."""

    target: Literal["kubernetes"] = "kubernetes"
    namespace: str
    deployment: str
    image: str

    @property
    def instance(self) -> str:
        return f"deployment {self.deployment}"

    def describe(self, bento_tag: str) -> str:
        return f"deployment {self.namespace}/{self.deployment}, image {self.image}"


class RunningService(BaseModel):
    """One served model version: what it is, where it answers, and what runs it."""

    model_name: str
    model_version: str
    bento_tag: str
    url: str
    started_at: datetime
    runs_as: LocalProcess | KubernetesRelease = Field(discriminator="target")

    @model_validator(mode="before")
    @classmethod
    def _flat_record(cls, data: Any) -> Any:
        """Records written before ``runs_as`` kept its fields at the top level; reading
        them keeps the pid of a service an older version started, so it can be stopped."""
        if isinstance(data, dict) and "runs_as" not in data:
            target = data.get("target", "local")
            fields = (
                ("pid", "port", "log_file")
                if target == "local"
                else ("namespace", "deployment", "image")
            )
            data = {k: v for k, v in data.items() if k not in (*fields, "target")} | {
                "runs_as": {"target": target, **{k: data.get(k) for k in fields}}
            }
        return data

    @property
    def instance(self) -> str:
        """What distinguishes two services of one model: process or Deployment."""
        return self.runs_as.instance

    def describe(self) -> str:
        return self.runs_as.describe(self.bento_tag)


class Rollout(BaseModel):
    """An online experiment in progress: the champion keeps the model's address, the
    candidate gets the share of traffic the plan gives it."""

    experiment: str
    plan: RolloutPlan
    champion: RunningService
    candidate: RunningService
    started_at: datetime


class BentoPackage(BaseModel):
    """A built bento, published where the target starts it from."""

    model_name: str
    model_version: str
    bento_tag: str
    #: what the target starts: the bento tag (local store) or the pushed image
    published: str
    settings: ServingSettings


class ServingTarget(Protocol):
    #: server processes per version (per pod on a cluster)
    workers: int
    #: where each version's service logs its predictions
    inference_log_dir: Path

    def publish(self, bento_tag: str) -> str:
        """Make the bento startable where it will run; returns what ``start`` takes."""

    def start(self, package: BentoPackage) -> RunningService:
        """Start the candidate beside the live service and wait until it is ready."""

    def live(self, model_name: str) -> RunningService | None: ...

    def served(self) -> list[RunningService]:
        """Every model this target has a live service of (to name them when a command
        names a model it does not serve)."""

    def switch(self, candidate: RunningService) -> RunningService:
        """Send the model's traffic to ``candidate``; returns the live record."""

    def stop(self, service: RunningService) -> None: ...

    def forget(self, model_name: str) -> None:
        """Stop routing traffic for the model (after its live service was stopped)."""

    def problems(self, service: RunningService) -> list[str]:
        """What is wrong with a live service: nothing when it answers at its address
        with its version and every process it needs is running."""

    def plan(self, model_name: str) -> dict[str, Any]:
        """Where and how a deployment of the model would serve, for ``--dry-run``."""

    # online experiments: the router between the champion and a candidate
    def rollout(self, model_name: str) -> Rollout | None: ...

    def begin_rollout(
        self,
        champion: RunningService,
        candidate: RunningService,
        plan: RolloutPlan,
    ) -> Rollout:
        """Put the candidate beside the champion behind the model's address, by ``plan``."""

    def finish_rollout(self, model_name: str, promote: bool) -> RunningService:
        """All traffic to the candidate (``promote``) or back to the champion; the other
        one stopped; returns what is live."""

    def evidence_dir(self, model_name: str) -> Path:
        """Where the router writes its routing and feedback logs."""

    def note_decision(self, model_name: str, decision: dict[str, Any] | None) -> None:
        """Keep the rollout decision a command wrote down and has not carried out yet
        (``None``: drop it) where ``deploy --status`` and ``--stop`` read without ZenML
        (``adapters/rollout_decisions.py`` keeps the decision itself on the version)."""

    def noted_decision(self, model_name: str) -> dict[str, Any] | None: ...

    def router_view(self, model_name: str) -> dict[str, Any] | None:
        """What the router reports now, when it can be reached from here."""

    # credentials (``serving/credentials.py``)
    def tokens(self, model_name: str) -> Tokens:
        """The model's tokens, created with its first deploy."""

    def rotate_tokens(self, model_name: str) -> Tokens:
        """New tokens; the old ones accepted for a grace period."""

    def tokens_location(self, model_name: str) -> str:
        """Where the tokens are kept (never the tokens themselves)."""

    def set_api_keys(self, model_name: str, change: Callable[[Tokens], Tokens]) -> Tokens:
        """The tokens with ``change`` applied to the clients' API keys, stored."""

    def prune_logs(self, model_name: str, days: int | None) -> list[Path]:
        """Remove the model's logs older than ``days`` that this machine holds."""


class UnsupportedStackError(RuntimeError):
    """The active stack has no component this pipeline can serve through."""


class TrafficMovedError(RuntimeError):
    """A rollout's end moved the traffic, then failed (stopping the other version,
    removing the router): the decision stands and is left for the next command to finish."""


def after_the_switch(winner: RunningService, step: Callable[[], None], left: str) -> None:
    """``step`` of a rollout's end once ``winner`` has all traffic; its failure is a
    :class:`TrafficMovedError` saying what may be ``left`` running and how to remove it,
    never taken for a refusal before anything moved."""
    try:
        step()
    except Exception as exc:
        raise TrafficMovedError(
            f"all traffic moved to version {winner.model_version}, then the rollout's end "
            f"failed: {exc}; {left}"
        ) from exc
