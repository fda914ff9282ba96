"""Serve bentos as containers on Kubernetes, blue/green: the ``tabular_kubernetes``
model deployer's target.

The deployer's configuration (the environment's YAML) gives the cluster (kube
context, namespace, labels, annotations, pull secrets, service account) and the
pods (replicas, workers, resources, inference-log claim); the stack's image
builder and container registry build and push the bento's image, and the
resources are applied with ZenML's own ``KubernetesApplier``:

- one Deployment and one Service per candidate, named after model version and
  bento build, so a candidate never touches the live pods;
- one stable Service per model, ``<model>``, whose selector the switch moves to
  the smoke-tested candidate; it carries the live record as an annotation, so
  the cluster itself says what is served;
- during an online experiment (``deploy --strategy shadow|canary|ab|bandit``),
  the same router as on a laptop (``serving/router.py``, shipped in every bento
  image) runs as ``<model>-router``, its routes a ConfigMap it reloads when the
  kubelet updates it, its evidence on the inference-log claim; the stable
  Service selects the router until the rollout pipeline promotes or rolls back.

The smoke test reaches the candidate's in-cluster address: on prod the step
runs in a pod of the same cluster (Kubernetes orchestrator).
"""

from __future__ import annotations

import base64
import functools
import re
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

from tabular_mlops.adapters.deployment.container_image import build_bento_image, image_name
from tabular_mlops.adapters.deployment.packaging import bento_model_name
from tabular_mlops.adapters.deployment.target import (
    BentoPackage,
    KubernetesRelease,
    Rollout,
    RunningService,
    UnsupportedStackError,
    after_the_switch,
)
from tabular_mlops.core.config import ContainerServingConfig, ServingConfig
from tabular_mlops.core.rollout import RolloutPlan
from tabular_mlops.core.spec import SETTINGS_ENV, ServingSettings
from tabular_mlops.serving.credentials import (
    TOKENS_FILE_ENV,
    Tokens,
    TokensFileError,
    new_tokens,
    rotated,
)
from tabular_mlops.serving.router import READY_PATH, ROUTES_PATH, Routes, Upstream
from tabular_mlops.serving.server import command as server_command

if TYPE_CHECKING:
    from zenml.container_registries import BaseContainerRegistry
    from zenml.image_builders import BaseImageBuilder
    from zenml.integrations.kubernetes.k8s_applier import KubernetesApplier

LIVE_RECORD = "tabular-mlops/live-service"
ROLLOUT_RECORD = "tabular-mlops/rollout"
#: where a bento image keeps the bento's code (BentoML's Dockerfile template)
BENTO_SOURCE = "/home/bentoml/bento/src"
ROUTES_MOUNT = "/etc/tabular-mlops"
#: the model's tokens Secret, mounted read-only in every pod (``serving/credentials.py``)
TOKENS_MOUNT = "/etc/tabular-mlops-tokens"
TOKENS_KEY = "tokens.json"
TOKENS_FILE = f"{TOKENS_MOUNT}/{TOKENS_KEY}"
TOKENS_VOLUME_MOUNT = {"name": "tokens", "mountPath": TOKENS_MOUNT, "readOnly": True}
ROUTER_REPLICAS = 2
MODEL_LABEL = "app.kubernetes.io/name"
RELEASE_LABEL = "app.kubernetes.io/instance"
FIELD_MANAGER = "tabular-mlops"


class CandidateNotReadyError(RuntimeError):
    """The candidate's pods did not become ready; its resources were removed."""


def dns_name(text: str, limit: int = 63) -> str:
    """A Kubernetes object name (RFC 1123 label) from free text."""
    name = re.sub(r"[^a-z0-9-]+", "-", text.lower()).strip("-")
    return name[:limit].rstrip("-")


def release_name(model_name: str, model_version: str, bento_tag: str) -> str:
    """``<model>-v<version>-<bento build>``: a redeploy of one version is a new release."""
    build = bento_tag.partition(":")[2][:8] or "latest"
    suffix = dns_name(f"-v{model_version}-{build}")
    return f"{dns_name(model_name, 62 - len(suffix))}-{suffix}"


def deployment_manifest(
    release: str,
    model_name: str,
    image: str,
    settings: ServingSettings,
    container: ContainerServingConfig,
    defaults: ContainerServingConfig,
) -> dict[str, Any]:
    """The pod runs the same server as a local service (``serving/server.py`` under
    uvicorn, not ``bentoml serve``) from the bento's code and model in the image, and
    logs requests to the inference log mount, a volume when a claim is set."""
    labels = {**defaults.labels, MODEL_LABEL: dns_name(model_name), RELEASE_LABEL: release}
    name, _, version = settings.model_tag.partition(":")
    in_pod = settings.model_copy(
        update={
            "inference_log_dir": container.inference_log_mount,
            "tokens_file": TOKENS_FILE,
            # relative: from $BENTO_PATH, where the image keeps the bento and its models
            "model_dir": f"models/{name}/{version}",
        }
    )
    pod: dict[str, Any] = {
        "containers": [
            {
                "name": "bento",
                "image": image,
                "imagePullPolicy": defaults.image_pull_policy,
                "command": server_command("python", "0.0.0.0", container.port),
                "workingDir": BENTO_SOURCE,
                "ports": [{"name": "http", "containerPort": container.port}],
                "env": [
                    {"name": SETTINGS_ENV, "value": in_pod.model_dump_json()},
                    {"name": "PYTHONPATH", "value": BENTO_SOURCE},
                ],
                "volumeMounts": [dict(TOKENS_VOLUME_MOUNT)],
                "resources": {
                    "requests": {"cpu": container.cpu, "memory": container.memory},
                    "limits": {"memory": container.memory},
                },
                "readinessProbe": _probe("/readyz", container.port),
                "livenessProbe": {**_probe("/livez", container.port), "initialDelaySeconds": 30},
            }
        ],
        "volumes": [tokens_volume(model_name)],
    }
    if defaults.service_account_name:
        pod["serviceAccountName"] = defaults.service_account_name
    if defaults.image_pull_secrets:
        pod["imagePullSecrets"] = [{"name": s} for s in defaults.image_pull_secrets]
    if container.inference_log_claim:
        pod["volumes"].append(
            {
                "name": "inference-log",
                "persistentVolumeClaim": {"claimName": container.inference_log_claim},
            }
        )
        pod["containers"][0]["volumeMounts"].append(
            {"name": "inference-log", "mountPath": container.inference_log_mount}
        )
    return {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {"name": release, "labels": labels, "annotations": dict(defaults.annotations)},
        "spec": {
            "replicas": container.replicas,
            "selector": {"matchLabels": {RELEASE_LABEL: release}},
            "template": {"metadata": {"labels": dict(labels)}, "spec": pod},
        },
    }


def tokens_secret_name(model_name: str) -> str:
    return f"{dns_name(model_name, 55)}-tokens"


def tokens_volume(model_name: str) -> dict[str, Any]:
    """The model's tokens Secret as a volume: the pods read the file, never an env value,
    and see a rotation without a restart (the kubelet swaps the file)."""
    return {
        "name": "tokens",
        "secret": {"secretName": tokens_secret_name(model_name), "defaultMode": 0o400},
    }


def tokens_secret(model_name: str, tokens: Tokens, labels: dict[str, str]) -> dict[str, Any]:
    """Applied by the target only, never printed (``plan`` shows the volume, not this)."""
    return {
        "apiVersion": "v1",
        "kind": "Secret",
        "metadata": {"name": tokens_secret_name(model_name), "labels": labels},
        "type": "Opaque",
        "data": {TOKENS_KEY: base64.b64encode(tokens.model_dump_json().encode()).decode()},
    }


def _probe(path: str, port: int) -> dict[str, Any]:
    return {"httpGet": {"path": path, "port": port}, "periodSeconds": 5, "timeoutSeconds": 3}


def service_manifest(
    name: str,
    model_name: str,
    release: str,
    container: ContainerServingConfig,
    service_type: str = "ClusterIP",
    annotations: dict[str, str] | None = None,
) -> dict[str, Any]:
    return {
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": {
            "name": name,
            "labels": {MODEL_LABEL: dns_name(model_name)},
            "annotations": annotations or {},
        },
        "spec": {
            "type": service_type,
            "selector": {RELEASE_LABEL: release},
            "ports": [{"name": "http", "port": container.port, "targetPort": "http"}],
        },
    }


def router_manifests(
    model_name: str,
    routes: Routes,
    image: str,
    container: ContainerServingConfig,
    defaults: ContainerServingConfig,
) -> list[dict[str, Any]]:
    """The model's router during a rollout: its routes as a ConfigMap, and a Deployment
    running ``python -m tabular_mlops.serving.router`` from the champion's image."""
    name = f"{dns_name(model_name, 55)}-router"
    labels = {**defaults.labels, MODEL_LABEL: dns_name(model_name), RELEASE_LABEL: name}
    config_map = {
        "apiVersion": "v1",
        "kind": "ConfigMap",
        "metadata": {"name": f"{name}-routes", "labels": labels},
        "data": {"routes.json": routes.model_dump_json(indent=2)},
    }
    mounts = [{"name": "routes", "mountPath": ROUTES_MOUNT, "readOnly": True},
              dict(TOKENS_VOLUME_MOUNT)]  # fmt: skip
    volumes: list[dict[str, Any]] = [
        {"name": "routes", "configMap": {"name": f"{name}-routes"}},
        tokens_volume(model_name),
    ]
    if container.inference_log_claim:
        mounts.append({"name": "inference-log", "mountPath": container.inference_log_mount})
        volumes.append(
            {
                "name": "inference-log",
                "persistentVolumeClaim": {"claimName": container.inference_log_claim},
            }
        )
    pod: dict[str, Any] = {
        "containers": [
            {
                "name": "router",
                "image": image,
                "imagePullPolicy": defaults.image_pull_policy,
                "command": ["python", "-m", "tabular_mlops.serving.router",
                            f"{ROUTES_MOUNT}/routes.json", "0.0.0.0", str(container.port)],
                "workingDir": BENTO_SOURCE,
                "env": [{"name": "PYTHONPATH", "value": BENTO_SOURCE},
                        {"name": TOKENS_FILE_ENV, "value": TOKENS_FILE}],
                "ports": [{"name": "http", "containerPort": container.port}],
                "resources": {"requests": {"cpu": "250m", "memory": "256Mi"},
                              "limits": {"memory": "256Mi"}},
                "readinessProbe": _probe(READY_PATH, container.port),
                "volumeMounts": mounts,
            }
        ],
        "volumes": volumes,
    }  # fmt: skip
    if defaults.service_account_name:
        pod["serviceAccountName"] = defaults.service_account_name
    if defaults.image_pull_secrets:
        pod["imagePullSecrets"] = [{"name": s} for s in defaults.image_pull_secrets]
    deployment = {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {"name": name, "labels": labels, "annotations": dict(defaults.annotations)},
        "spec": {
            # two: the model keeps its address while one is rescheduled. Each replica
            # rebuilds the experiment (step, counters, posteriors, verdict) from every
            # replica's evidence on the claim when it starts, then applies the plan and
            # its guardrails to the traffic it routes; the rollout pipeline decides on
            # the evidence of both
            "replicas": ROUTER_REPLICAS,
            "selector": {"matchLabels": {RELEASE_LABEL: name}},
            "template": {"metadata": {"labels": dict(labels)}, "spec": pod},
        },
    }
    return [config_map, deployment]


class KubernetesTarget:
    """Releases on a cluster; ``serving`` is the deployment's policy, ``container`` the
    ``tabular_kubernetes`` model deployer's configuration."""

    def __init__(
        self,
        connect: Callable[[], KubernetesApplier],
        image_builder: BaseImageBuilder,
        container_registry: BaseContainerRegistry,
        serving: ServingConfig,
        container: ContainerServingConfig,
    ) -> None:
        self._connect = connect
        self.image_builder = image_builder
        self.container_registry = container_registry
        #: namespace, labels, annotations, pull policy and secrets, service account
        self.defaults = container
        self.namespace = container.namespace
        self.serving = serving
        self.container = container
        self.workers = container.workers
        self.inference_log_dir = Path(container.inference_log_mount)

    @functools.cached_property
    def applier(self) -> KubernetesApplier:
        """Connected on first use: publishing the image needs no cluster access."""
        return self._connect()

    def url(self, name: str) -> str:
        return f"http://{name}.{self.namespace}.svc.cluster.local:{self.container.port}"

    def publish(self, bento_tag: str) -> str:
        return build_bento_image(bento_tag, self.image_builder, self.container_registry)

    def start(self, package: BentoPackage) -> RunningService:
        model_name, image = package.model_name, package.published
        release = release_name(model_name, package.model_version, package.bento_tag)
        self.tokens(model_name)  # the Secret its pods mount
        self.applier.provision(
            [
                deployment_manifest(
                    release, model_name, image, package.settings, self.container, self.defaults
                ),
                service_manifest(release, model_name, release, self.container),
            ],
            default_namespace=self.namespace,
            field_manager=FIELD_MANAGER,
        )
        try:
            self.applier.wait_for_deployment_ready(
                release, self.namespace, timeout=self.container.ready_timeout_seconds
            )
        except Exception as exc:
            self._delete(release)
            raise CandidateNotReadyError(
                f"deployment {self.namespace}/{release} (image {image}) did not "
                f"become ready within {self.container.ready_timeout_seconds} s: {exc}; "
                "its resources were removed, the live service is untouched"
            ) from exc
        return RunningService(
            model_name=model_name,
            model_version=package.model_version,
            bento_tag=package.bento_tag,
            url=self.url(release),
            started_at=datetime.now(UTC),
            runs_as=KubernetesRelease(namespace=self.namespace, deployment=release, image=image),
        )

    def live(self, model_name: str) -> RunningService | None:
        stable = self._get("v1", "Service", dns_name(model_name))
        annotations = (stable["metadata"].get("annotations") or {}) if stable else {}
        record = annotations.get(LIVE_RECORD)
        return None if record is None else RunningService.model_validate_json(record)

    def served(self) -> list[RunningService]:
        from zenml.integrations.kubernetes.serialization_utils import (
            normalize_resource_to_dict,
        )

        services = self.applier.list_resources("Service", "v1", self.namespace, MODEL_LABEL)
        records = (
            (normalize_resource_to_dict(found)["metadata"].get("annotations") or {}).get(
                LIVE_RECORD
            )
            for found in services
        )
        return [RunningService.model_validate_json(record) for record in records if record]

    def switch(self, candidate: RunningService) -> RunningService:
        release = candidate.runs_as
        if not isinstance(release, KubernetesRelease):
            raise TypeError(f"{candidate.instance} is not a Kubernetes release")
        return self._point_stable(candidate, release.deployment, {})

    def _point_stable(
        self, live: RunningService, selected: str, annotations: dict[str, str]
    ) -> RunningService:
        """The model's stable Service, selecting the pods of ``selected`` (a release, or the
        router), annotated with the live record (and the rollout's, during one)."""
        stable = dns_name(live.model_name)
        record = live.model_copy(update={"url": self.url(stable)})
        self.applier.provision(
            [
                service_manifest(
                    stable,
                    live.model_name,
                    selected,
                    self.container,
                    self.container.service_type,
                    {
                        **self.defaults.annotations,
                        LIVE_RECORD: record.model_dump_json(),
                        **annotations,
                    },
                )
            ],
            default_namespace=self.namespace,
            field_manager=FIELD_MANAGER,
        )
        return record

    def stop(self, service: RunningService) -> None:
        if isinstance(service.runs_as, KubernetesRelease):
            self._delete(service.runs_as.deployment)

    def forget(self, model_name: str) -> None:
        router = f"{dns_name(model_name, 55)}-router"
        self._delete_items(
            [
                ("apps/v1", "Deployment", router),
                ("v1", "ConfigMap", f"{router}-routes"),
                ("v1", "Service", dns_name(model_name)),
            ]
        )

    # --- online experiments ---------------------------------------------------------------
    def note_decision(self, model_name: str, decision: dict[str, Any] | None) -> None:
        """Nothing: on a cluster a decision cut short is read from ZenML (``rollout
        --status``); pods have no state directory ``deploy --status`` reads."""

    def noted_decision(self, model_name: str) -> dict[str, Any] | None:
        return None

    def evidence_dir(self, model_name: str) -> Path:
        """On the inference-log claim, where the router pod writes and pipeline pods read."""
        return Path(self.container.inference_log_mount) / "evidence" / model_name

    def routes_for(
        self, champion: RunningService, candidate: RunningService, plan: RolloutPlan,
        experiment: str,
    ) -> Routes:  # fmt: skip
        """The router's routes: each release's own Service, in-cluster."""

        def release(service: RunningService) -> str:
            if not isinstance(service.runs_as, KubernetesRelease):
                raise TypeError(f"{service.instance} is not a Kubernetes release")
            return self.url(service.runs_as.deployment)

        return Routes(
            model_name=candidate.model_name,
            generation=1,
            upstreams=[
                Upstream(url=release(champion), model_version=champion.model_version),
                Upstream(url=release(candidate), model_version=candidate.model_version),
            ],
            plan=plan,
            experiment=experiment,
            evidence_dir=str(self.evidence_dir(candidate.model_name)),
        )  # fmt: skip

    def rollout(self, model_name: str) -> Rollout | None:
        stable = self._get("v1", "Service", dns_name(model_name))
        annotations = (stable["metadata"].get("annotations") or {}) if stable else {}
        record = annotations.get(ROLLOUT_RECORD)
        return None if record is None else Rollout.model_validate_json(record)

    def begin_rollout(
        self, champion: RunningService, candidate: RunningService, plan: RolloutPlan
    ) -> Rollout:
        """Start the router beside both releases, then point the stable Service at it."""
        if self.rollout(candidate.model_name) is not None:
            self.stop(candidate)
            raise UnsupportedStackError(
                f"a rollout of '{candidate.model_name}' is in progress: decide it first"
            )
        started = datetime.now(UTC)
        rollout = Rollout(
            experiment=f"{candidate.model_name}-v{candidate.model_version}-{started:%Y%m%dT%H%M%S}",
            plan=plan, champion=champion, candidate=candidate, started_at=started,
        )  # fmt: skip
        routes = self.routes_for(champion, candidate, plan, rollout.experiment)
        image = champion.runs_as.image if isinstance(champion.runs_as, KubernetesRelease) else ""
        manifests = router_manifests(
            candidate.model_name, routes, image, self.container, self.defaults
        )
        self.applier.provision(manifests, default_namespace=self.namespace,
                               field_manager=FIELD_MANAGER)  # fmt: skip
        router = manifests[1]["metadata"]["name"]
        self.applier.wait_for_deployment_ready(
            router, self.namespace, timeout=self.container.ready_timeout_seconds
        )
        self._point_stable(champion, router, {ROLLOUT_RECORD: rollout.model_dump_json()})
        return rollout

    def finish_rollout(self, model_name: str, promote: bool) -> RunningService:
        rollout = self.rollout(model_name)
        if rollout is None:
            raise UnsupportedStackError(f"no rollout of '{model_name}' is in progress")
        winner, loser = (
            (rollout.candidate, rollout.champion)
            if promote
            else (rollout.champion, rollout.candidate)
        )
        live = self.switch(winner)  # the stable Service selects the winner, no rollout record
        router = f"{dns_name(model_name, 55)}-router"

        def end() -> None:
            self._delete_items(
                [("apps/v1", "Deployment", router), ("v1", "ConfigMap", f"{router}-routes")]
            )
            self.stop(loser)

        left = " ".join(
            [f"deployment/{router}", f"configmap/{router}-routes"]
            + ([f"deployment/{loser.runs_as.deployment}"]
               if isinstance(loser.runs_as, KubernetesRelease) else [])
        )  # fmt: skip
        after_the_switch(winner, end, f"remove what is left: `kubectl -n {self.namespace} "
                         f"delete {left}`")  # fmt: skip
        return live

    def router_view(self, model_name: str) -> dict[str, Any] | None:
        """The router's own report, at its in-cluster address (from a pod of the cluster)."""
        import httpx

        admin = {"authorization": f"Bearer {self.tokens(model_name).current['admin']}"}
        try:
            answer = httpx.get(
                f"{self.url(dns_name(model_name))}{ROUTES_PATH}", timeout=5, headers=admin
            )
            return answer.json() if answer.status_code == 200 else None
        except (httpx.HTTPError, ValueError):
            return None

    def problems(self, service: RunningService) -> list[str]:
        """Ready replicas as the cluster reports them: its address is in-cluster only."""
        if not isinstance(service.runs_as, KubernetesRelease):
            return [f"{service.instance} is not a Kubernetes release"]
        deployment = self._get("apps/v1", "Deployment", service.runs_as.deployment)
        if deployment is None:
            return [f"deployment {self.namespace}/{service.runs_as.deployment} does not exist"]
        if int((deployment.get("status") or {}).get("readyReplicas") or 0) == 0:
            return [f"deployment {self.namespace}/{service.runs_as.deployment} has no ready pod"]
        return []

    def plan(self, model_name: str) -> dict[str, Any]:
        """The image and the manifests of an example release (version 1, build 'example')."""
        bento = f"{bento_model_name(model_name)}_service:example"
        release = release_name(model_name, "1", bento)
        image = image_name(self.container_registry.config.uri, bento)
        settings = ServingSettings(
            model_tag=f"{bento_model_name(model_name)}:example",
            workers=self.workers,
            max_batch_rows=self.serving.max_batch_rows,
        )
        return {
            "target": "kubernetes (one Deployment per release, stable Service switched)",
            "namespace": self.namespace,
            "image": f"{image}, built by the '{self.image_builder.flavor}' image builder",
            "stable_url": self.url(dns_name(model_name)),
            "manifests": [
                deployment_manifest(
                    release, model_name, image, settings, self.container, self.defaults
                ),
                service_manifest(release, model_name, release, self.container),
                service_manifest(
                    dns_name(model_name),
                    model_name,
                    release,
                    self.container,
                    self.container.service_type,
                    dict(self.defaults.annotations),
                ),
            ],
            "rollout_manifests": self._example_rollout(model_name, release, image),
        }

    def _example_rollout(self, model_name: str, champion: str, image: str) -> dict[str, Any]:
        """What ``deploy --strategy`` adds beside version 1 for a version 2 (the configured
        plan, or a canary when the plan is ``replace``)."""
        plan = self.serving.rollout
        if plan.strategy == "replace":
            plan = plan.model_copy(update={"strategy": "canary"})
        candidate = release_name(model_name, "2", f"{bento_model_name(model_name)}_service:next")

        def release(name: str, version: str) -> RunningService:
            return RunningService(
                model_name=model_name, model_version=version, bento_tag="example",
                url=self.url(name), started_at=datetime(2026, 1, 1, tzinfo=UTC),
                runs_as=KubernetesRelease(namespace=self.namespace, deployment=name, image=image),
            )  # fmt: skip

        routes = self.routes_for(release(champion, "1"), release(candidate, "2"), plan, "example")
        router = router_manifests(model_name, routes, image, self.container, self.defaults)
        stable = service_manifest(
            dns_name(model_name), model_name, router[1]["metadata"]["name"], self.container,
            self.container.service_type, dict(self.defaults.annotations),
        )  # fmt: skip
        return {"strategy": plan.strategy, "manifests": [*router, stable]}

    # --- credentials ------------------------------------------------------------------------
    def tokens(self, model_name: str) -> Tokens:
        """The model's tokens from its Secret, which is created with the first deploy."""
        secret = self._get("v1", "Secret", tokens_secret_name(model_name))
        if secret is not None:
            raw = base64.b64decode((secret.get("data") or {}).get(TOKENS_KEY, ""))
            try:
                return Tokens.model_validate_json(raw)
            except ValueError:
                raise TokensFileError(
                    f"Secret {self.namespace}/{tokens_secret_name(model_name)}: key "
                    f"{TOKENS_KEY} is not a tokens file; delete the Secret to have new ones made"
                ) from None
        return self._write_tokens(model_name, new_tokens())

    def rotate_tokens(self, model_name: str) -> Tokens:
        return self._write_tokens(model_name, rotated(self.tokens(model_name), datetime.now(UTC)))

    def prune_logs(self, model_name: str, days: int | None) -> list[Path]:
        """Nothing from here: the logs are on the pods' volume (the monitor run there
        prunes the inference log it reads)."""
        return []

    def set_api_keys(self, model_name: str, change: Callable[[Tokens], Tokens]) -> Tokens:
        return self._write_tokens(model_name, change(self.tokens(model_name)))

    def tokens_location(self, model_name: str) -> str:
        return f"Secret {self.namespace}/{tokens_secret_name(model_name)}, key {TOKENS_KEY}"

    def _write_tokens(self, model_name: str, tokens: Tokens) -> Tokens:
        labels = {**self.defaults.labels, MODEL_LABEL: dns_name(model_name)}
        self.applier.provision([tokens_secret(model_name, tokens, labels)],
                               default_namespace=self.namespace,
                               field_manager=FIELD_MANAGER)  # fmt: skip
        return tokens

    def _get(self, api_version: str, kind: str, name: str) -> dict[str, Any] | None:
        """The object as a plain dict, or None when the cluster has none of that name."""
        from zenml.integrations.kubernetes.serialization_utils import (
            normalize_resource_to_dict,
        )

        found = self.applier.get_resource(name, self.namespace, kind, api_version)
        return None if found is None else normalize_resource_to_dict(found)

    def _delete(self, release: str) -> None:
        self._delete_items([("apps/v1", "Deployment", release), ("v1", "Service", release)])

    def _delete_items(self, items: list[tuple[str, str, str]]) -> None:
        from zenml.integrations.kubernetes.k8s_applier import ResourceInventoryItem

        self.applier.delete_from_inventory(
            [
                ResourceInventoryItem(
                    api_version=api_version, kind=kind, namespace=self.namespace, name=name
                )
                for api_version, kind, name in items
            ]
        )
