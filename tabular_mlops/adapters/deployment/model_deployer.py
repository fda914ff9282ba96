"""This project's model deployers: ZenML stack components that serve bentos.

Every environment's stack declares one (``stack.components.model_deployer``):

- ``tabular_local`` (dev, staging): a process per model version on 127.0.0.1,
  on the model's stable address, handed to the live one (``local.py``);
- ``tabular_kubernetes`` (prod): a Deployment per model version and a stable
  Service on the cluster, the image built and pushed by the stack's image
  builder and container registry (``kubernetes.py``).

Their configuration is the serving infrastructure; ``configs/deployment.yaml``
keeps the policy (stage, gates, smoke rows, rollout). Steps reach serving only
through the active stack's model deployer (``serving_target``), and the live
version of each model is a ZenML service, linked to its model version, so
``zenml model-deployer models list`` and the dashboard see what is served.

Why a flavor of this project's and not ZenML's BentoML model deployer: ZenML
0.98's drives the pre-1.2 ``bentoml.Service`` API and its local daemon dies on
start with bentoml 1.4 (docs/decisions.md). A release here is a pipeline of
steps (package, start beside the live version, smoke-test, switch), not one
``deploy_model`` call, so ``deploy_model`` points at ``run.py deploy``.
"""

from __future__ import annotations

import logging
from collections import deque
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar, cast
from uuid import UUID

from pydantic import BaseModel
from zenml.model_deployers import BaseModelDeployer, BaseModelDeployerFlavor
from zenml.model_deployers.base_model_deployer import BaseModelDeployerConfig
from zenml.services import ServiceConfig, ServiceState, ServiceStatus, ServiceType
from zenml.services.service import BaseDeploymentService

from tabular_mlops.adapters.config_files import local_serving
from tabular_mlops.adapters.deployment.target import (
    Rollout,
    RunningService,
    ServingTarget,
    UnsupportedStackError,
)
from tabular_mlops.adapters.net import answers
from tabular_mlops.core.config import ContainerServingConfig, LocalServingConfig, ServingConfig

if TYPE_CHECKING:
    from collections.abc import Generator

    from zenml.stack import Stack

logger = logging.getLogger(__name__)

#: this module's flavors, registered with ZenML before a stack that names them
CUSTOM_FLAVORS = (
    "tabular_mlops.adapters.deployment.model_deployer.LocalModelDeployerFlavor",
    "tabular_mlops.adapters.deployment.model_deployer.KubernetesModelDeployerFlavor",
)
LOCAL_FLAVOR = "tabular_local"
KUBERNETES_FLAVOR = "tabular_kubernetes"


# --------------------------------------------------------------------------- #
# The served version as a ZenML service
# --------------------------------------------------------------------------- #
class ServedModelConfig(ServiceConfig):
    """What ZenML records of a live version: the model's stable address and what runs it."""

    url: str = ""
    bento_tag: str = ""
    runs_as: str = ""
    #: the live version's own log on this machine (local processes); none on a cluster
    log_file: str = ""


class ServedModel(BaseDeploymentService):
    """A model's live version at its stable address; its status is whether it answers."""

    SERVICE_TYPE: ClassVar[ServiceType] = ServiceType(
        name="tabular-model",
        type="model-serving",
        flavor="tabular",
        description="a model version served at the model's stable address",
    )
    config: ServedModelConfig

    def check_status(self) -> tuple[ServiceState, str]:
        if answers(f"{self.config.url}/readyz"):
            return ServiceState.ACTIVE, ""
        return ServiceState.INACTIVE, f"{self.config.url}/readyz does not answer"

    def get_logs(self, follow: bool = False, tail: int | None = None) -> Generator[str, bool, None]:
        """The last ``tail`` (100) lines of the live version's log (``zenml model-deployer
        models logs``); on a cluster, where they are (the pods')."""
        path = Path(self.config.log_file) if self.config.log_file else None
        if path is None or not path.is_file():
            yield f"no log on this machine for {self.config.runs_as}"
            return
        with path.open(encoding="utf-8", errors="replace") as handle:
            yield from (line.rstrip("\n") for line in deque(handle, maxlen=tail or 100))

    @property
    def prediction_url(self) -> str:
        return f"{self.config.url}/predict"

    @property
    def healthcheck_url(self) -> str:
        return f"{self.config.url}/readyz"

    def get_prediction_url(self) -> str:
        return self.prediction_url

    def get_healthcheck_url(self) -> str:
        return self.healthcheck_url


# --------------------------------------------------------------------------- #
# The deployers
# --------------------------------------------------------------------------- #
class TabularModelDeployer(BaseModelDeployer):
    """What both flavors share: the ZenML service records of live versions."""

    NAME: ClassVar[str] = "tabular"

    def serving_target(self, serving: ServingConfig) -> ServingTarget:
        """Where this deployer serves, with the deployment's policy."""
        raise NotImplementedError

    def record_live(self, live: RunningService) -> None:
        """Make ``live`` the model's one ZenML service record (any earlier one goes). The
        switch has happened by then: a store that cannot record it is logged, and the
        release stands (the next deploy records it again)."""
        try:
            self._record_live(live)
        except Exception as exc:  # the store's trouble must not undo a finished switch
            logger.warning(
                "version %s of '%s' serves at %s, but ZenML's service record was not "
                "written: %s", live.model_version, live.model_name, live.url, exc,
            )  # fmt: skip

    def _record_live(self, live: RunningService) -> None:
        from zenml.client import Client

        client = Client()
        self.forget_live(live.model_name)
        pipeline, step = _running_step()
        config = ServedModelConfig(
            name=live.model_name,
            service_name=f"{live.model_name}-served",
            model_name=live.model_name,
            model_version=live.model_version,
            pipeline_name=pipeline,
            pipeline_step_name=step,
            url=live.url,
            bento_tag=live.bento_tag,
            runs_as=live.describe(),
            log_file=str(getattr(live.runs_as, "log_file", "")),
        )
        response = client.create_service(
            config=config,
            service_type=ServedModel.SERVICE_TYPE,
            model_version_id=_model_version_id(live.model_name, live.model_version),
        )
        service = ServedModel(
            uuid=response.id,
            config=config,
            admin_state=ServiceState.ACTIVE,
            status=ServiceStatus(),
        )
        service.update_status()
        client.update_service(
            id=response.id,
            name=config.service_name,
            service_source=service.model_dump().get("type"),
            admin_state=ServiceState.ACTIVE,
            status=service.status.model_dump(),
            prediction_url=service.prediction_url,
            health_check_url=service.healthcheck_url,
        )

    def forget_live(self, model_name: str) -> None:
        """Remove the model's ZenML service records (it is no longer served)."""
        from zenml.client import Client

        client = Client()
        for record in client.list_services(
            service_name=f"{model_name}-served", type=ServedModel.SERVICE_TYPE.type, size=100
        ).items:
            client.delete_service(record.id)

    # --- ZenML's interface: a release is `run.py deploy`, a pipeline of steps -----------------
    def perform_deploy_model(self, id: UUID, config: ServiceConfig, timeout: int = 0) -> Any:
        raise NotImplementedError(
            "a release packages, starts, smoke-tests and switches in steps: "
            "run `python run.py deploy` (the deployment pipeline)"
        )

    @staticmethod
    def get_model_server_info(service: Any) -> dict[str, str | None]:
        config = cast(ServedModelConfig, service.config)
        return {
            "PREDICTION_URL": f"{config.url}/predict",
            "HEALTH_CHECK_URL": f"{config.url}/readyz",
            "MODEL_VERSION": config.model_version,
            "BENTO": config.bento_tag,
            "RUNS_AS": config.runs_as,
        }

    def perform_stop_model(self, service: Any, timeout: int = 0, force: bool = False) -> Any:
        raise NotImplementedError("stop a served model with `python run.py deploy --stop`")

    def perform_start_model(self, service: Any, timeout: int = 0) -> Any:
        raise NotImplementedError("serve a model with `python run.py deploy`")

    def perform_delete_model(self, service: Any, timeout: int = 0, force: bool = False) -> None:
        raise NotImplementedError("stop a served model with `python run.py deploy --stop`")


def _running_step() -> tuple[str, str]:
    """(pipeline, step) of the step recording the live version: go_live after a release,
    apply_rollout_decision after an experiment."""
    from zenml import get_step_context

    try:
        context = get_step_context()
    except RuntimeError:  # outside a step
        return "deployment_pipeline", "go_live"
    return context.pipeline.name, context.step_run.name


def _fields(config: Any, settings: type[BaseModel]) -> dict[str, Any]:
    """The values of ``settings``' fields in a flavor's configuration (which adds ZenML's)."""
    return {name: getattr(config, name) for name in settings.model_fields}


def _model_version_id(model_name: str, version: str) -> UUID | None:
    from zenml.client import Client

    try:
        return Client().get_model_version(model_name, int(version)).id
    except (KeyError, ValueError):
        return None


class LocalModelDeployerConfig(BaseModelDeployerConfig, LocalServingConfig):
    """``tabular_local``: port, workers, state and inference-log directories."""

    @property
    def is_local(self) -> bool:
        return True


class LocalModelDeployer(TabularModelDeployer):
    @property
    def config(self) -> LocalModelDeployerConfig:
        return cast(LocalModelDeployerConfig, self._config)

    def serving_target(self, serving: ServingConfig) -> ServingTarget:
        from tabular_mlops.adapters.deployment.local import LocalProcessTarget

        return LocalProcessTarget(
            serving, local_serving(_fields(self.config, LocalServingConfig), self.name)
        )


class KubernetesModelDeployerConfig(BaseModelDeployerConfig, ContainerServingConfig):
    """``tabular_kubernetes``: the cluster and the pods."""

    @property
    def is_local(self) -> bool:
        return False


class KubernetesModelDeployer(TabularModelDeployer):
    @property
    def config(self) -> KubernetesModelDeployerConfig:
        return cast(KubernetesModelDeployerConfig, self._config)

    def serving_target(self, serving: ServingConfig) -> ServingTarget:
        from zenml.integrations.kubernetes import kube_utils
        from zenml.integrations.kubernetes.k8s_applier import KubernetesApplier

        from tabular_mlops.adapters.deployment.kubernetes import KubernetesTarget

        stack = _active_stack()
        builder, registry = stack.image_builder, stack.container_registry
        if builder is None or registry is None:
            missing = "an image_builder" if builder is None else "a container_registry"
            raise UnsupportedStackError(
                f"the '{stack.name}' stack serves containers ({KUBERNETES_FLAVOR}) and needs "
                f"{missing} to build and push the bento's image: add it to the environment's "
                "stack.components"
            )
        container = ContainerServingConfig.model_validate(
            _fields(self.config, ContainerServingConfig)
        )

        def connect() -> KubernetesApplier:
            from kubernetes import client as k8s_client

            # Steps run in pods on prod, where the submitting machine's kube context
            # does not exist: there the pod's own service account connects.
            incluster = container.incluster or kube_utils.is_inside_kubernetes()
            kube_utils.load_kube_config(incluster=incluster, context=container.kubernetes_context)
            return KubernetesApplier(api_client=k8s_client.ApiClient())

        return KubernetesTarget(connect, builder, registry, serving, container)


def _active_stack() -> Stack:
    from zenml.client import Client

    return Client().active_stack


def serving_deployer(stack: Stack) -> TabularModelDeployer:
    """The stack's model deployer, one of this project's flavors."""
    deployer = stack.model_deployer
    if not isinstance(deployer, TabularModelDeployer):
        have = f"flavor '{deployer.flavor}'" if deployer is not None else "none"
        raise UnsupportedStackError(
            f"the '{stack.name}' stack's model deployer is {have}; this project serves "
            f"through its own '{LOCAL_FLAVOR}' or '{KUBERNETES_FLAVOR}' flavor: declare one "
            "under stack.components.model_deployer in configs/environments/<env>.yaml"
        )
    return deployer


def serving_target(stack: Stack, serving: ServingConfig) -> ServingTarget:
    """The stack's model deployer's target: steps serve only through it."""
    return serving_deployer(stack).serving_target(serving)


def rollout_in_progress(stack: Stack, model_name: str) -> Rollout | None:
    """The model's online experiment under way on the stack's model deployer (None when
    none runs, or the stack's deployer is not one of this project's)."""
    if not isinstance(stack.model_deployer, TabularModelDeployer):
        return None
    return serving_target(stack, ServingConfig()).rollout(model_name)


class LocalModelDeployerFlavor(BaseModelDeployerFlavor):
    @property
    def name(self) -> str:
        return LOCAL_FLAVOR

    @property
    def config_class(self) -> type[LocalModelDeployerConfig]:
        return LocalModelDeployerConfig

    @property
    def implementation_class(self) -> type[LocalModelDeployer]:
        return LocalModelDeployer


class KubernetesModelDeployerFlavor(BaseModelDeployerFlavor):
    @property
    def name(self) -> str:
        return KUBERNETES_FLAVOR

    @property
    def config_class(self) -> type[KubernetesModelDeployerConfig]:
        return KubernetesModelDeployerConfig

    @property
    def implementation_class(self) -> type[KubernetesModelDeployer]:
        return KubernetesModelDeployer
