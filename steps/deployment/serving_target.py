"""Where a bento is served, chosen by the active stack, never by the pipeline's code.

The deployment pipeline asks a target to publish the bento, start it beside
the live service, make it live and stop the one it replaces. Two targets:

- ``LocalProcessTarget`` (dev, staging): ``bentoml serve`` processes on
  127.0.0.1, recorded in a state file per model;
- ``KubernetesTarget`` (prod, when the stack has a ``kubernetes`` deployer):
  the bento as an image built by the stack's image builder and pushed to its
  container registry, one Deployment per model version, and a stable Service
  whose selector is switched to the smoke-tested version.
"""

from __future__ import annotations

from datetime import datetime
from typing import TYPE_CHECKING, Any, Literal, Protocol

from pydantic import BaseModel

from configs.schema import ServingConfig
from service.spec import ServingSettings

if TYPE_CHECKING:
    from zenml.stack import Stack


class RunningService(BaseModel):
    model_name: str
    model_version: str
    bento_tag: str
    url: str
    started_at: datetime
    target: Literal["local", "kubernetes"] = "local"
    #: local: the server's process group, port and log
    pid: int | None = None
    port: int | None = None
    log_file: str | None = None
    #: kubernetes: the Deployment that serves this version, and its image
    namespace: str | None = None
    deployment: str | None = None
    image: str | None = None

    @property
    def instance(self) -> str:
        """What distinguishes two services of one model: process or Deployment."""
        return f"deployment {self.deployment}" if self.target == "kubernetes" else f"pid {self.pid}"

    def describe(self) -> str:
        if self.target == "kubernetes":
            return f"deployment {self.namespace}/{self.deployment}, image {self.image}"
        return f"bento {self.bento_tag}, pid {self.pid}, log {self.log_file}"


class BentoPackage(BaseModel):
    """A built bento, published where the target starts it from."""

    model_name: str
    model_version: str
    bento_tag: str
    #: what the target starts: the bento tag (local store) or the pushed image
    published: str
    settings: ServingSettings


class ServingTarget(Protocol):
    def publish(self, bento_tag: str) -> str:
        """Make the bento startable where it will run; returns what ``start`` takes."""

    def start(self, package: BentoPackage) -> RunningService:
        """Start the candidate beside the live service and wait until it is ready."""

    def live(self, model_name: str) -> RunningService | None: ...

    def switch(self, candidate: RunningService) -> RunningService:
        """Send the model's traffic to ``candidate``; returns the live record."""

    def stop(self, service: RunningService) -> None: ...

    def forget(self, model_name: str) -> None:
        """Stop routing traffic for the model (after its live service was stopped)."""

    def is_answering(self, service: RunningService) -> bool: ...

    def plan(self, model_name: str) -> dict[str, Any]:
        """Where and how a deployment of the model would serve, for ``--dry-run``."""


class UnsupportedStackError(RuntimeError):
    """The active stack has no component this pipeline can serve through."""


SUPPORTED_MODEL_DEPLOYERS = ("bentoml",)


def target_for(stack: Stack, serving: ServingConfig) -> ServingTarget:
    """The stack decides: a ``kubernetes`` deployer serves containers on the cluster;
    otherwise the ``bentoml`` model deployer serves local processes."""
    deployer = stack.deployer
    if deployer is not None and deployer.flavor == "kubernetes":
        from steps.deployment.kubernetes_target import KubernetesTarget

        return KubernetesTarget.from_stack(stack, serving)
    if deployer is not None and deployer.flavor != "local":
        raise UnsupportedStackError(
            f"the '{stack.name}' stack's deployer has flavor '{deployer.flavor}'; "
            "this pipeline serves containers through a 'kubernetes' deployer, or local "
            "processes without one (see configs/environments/)"
        )
    model_deployer = stack.model_deployer
    if model_deployer is None or model_deployer.flavor not in SUPPORTED_MODEL_DEPLOYERS:
        raise UnsupportedStackError(
            f"the '{stack.name}' stack's model deployer is "
            f"{model_deployer.flavor if model_deployer else 'missing'}; this pipeline "
            f"deploys with {', '.join(SUPPORTED_MODEL_DEPLOYERS)} (see configs/environments/)"
        )
    from steps.deployment.local_server import LocalProcessTarget

    return LocalProcessTarget(serving)
