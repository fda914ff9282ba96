"""The container serving target's logic: manifests, blue/green switch, rollback.

No cluster here: the manifests are checked against the Kubernetes client's own
models, and the switch runs against an in-memory stand-in for ZenML's
``KubernetesApplier`` (the few calls the target makes).
"""

from __future__ import annotations

import json
import re
from typing import Any

import pytest

from tabular_mlops.adapters.deployment.container_image import image_name
from tabular_mlops.adapters.deployment.kubernetes import (
    LIVE_RECORD,
    CandidateNotReadyError,
    KubernetesTarget,
    deployment_manifest,
    release_name,
    service_manifest,
)
from tabular_mlops.adapters.deployment.target import BentoPackage
from tabular_mlops.core.config import ContainerServingConfig, ServingConfig
from tabular_mlops.core.spec import SETTINGS_ENV, ServingSettings
from tabular_mlops.serving.server import command

SETTINGS = ServingSettings(
    model_tag="tabular_classifier:abc", inference_log_dir="/home/me/.local/log"
)
DEFAULTS = ContainerServingConfig(
    namespace="mlops-serving",
    labels={"team": "ml"},
    image_pull_secrets=["ecr"],
    service_account_name="serving",
)


def _as_client_model(manifest: dict[str, Any], kind: str) -> dict[str, Any]:
    """Through the client's typed models and back: a key it does not know is lost."""
    from kubernetes import client as k8s  # imported by the worker that runs these tests only

    api = k8s.ApiClient()

    class Response:
        data = json.dumps(manifest)

    return dict(api.sanitize_for_serialization(api.deserialize(Response(), kind)))


def test_manifests_are_valid_kubernetes_objects():
    container = DEFAULTS.model_copy(update={"inference_log_claim": "inference-log"})
    release = release_name("tabular_classifier", "3", "tabular_classifier_service:Xy12ab34cd")
    assert release == "tabular-classifier-v3-xy12ab34"
    deployment = deployment_manifest(
        release, "tabular_classifier", "registry/img@sha256:1", SETTINGS, container, DEFAULTS
    )
    service = service_manifest(release, "tabular_classifier", release, container)
    assert _as_client_model(deployment, "V1Deployment") == deployment
    assert _as_client_model(service, "V1Service") == service

    pod = deployment["spec"]["template"]["spec"]
    (bento,) = pod["containers"]
    env = {e["name"]: e["value"] for e in bento["env"]}
    assert json.loads(env[SETTINGS_ENV])["model_tag"] == "tabular_classifier:abc"
    # the local services' server, on the bento's own copy of the model in the image
    assert bento["command"] == command("python", "0.0.0.0", container.port)
    assert json.loads(env[SETTINGS_ENV])["model_dir"] == "models/tabular_classifier/abc"
    assert bento["readinessProbe"]["httpGet"]["path"] == "/readyz"
    assert bento["livenessProbe"]["httpGet"]["path"] == "/livez"
    assert pod["serviceAccountName"] == "serving"
    assert pod["imagePullSecrets"] == [{"name": "ecr"}]
    volumes = {volume["name"]: volume for volume in pod["volumes"]}
    assert volumes["inference-log"]["persistentVolumeClaim"]["claimName"] == "inference-log"
    # the tokens: a mounted Secret's file, never a value in the manifest
    assert volumes["tokens"]["secret"]["secretName"] == "tabular-classifier-tokens"
    assert json.loads(env[SETTINGS_ENV])["tokens_file"].startswith("/etc/tabular-mlops-tokens/")
    assert deployment["spec"]["template"]["metadata"]["labels"]["team"] == "ml"


def test_names_fit_kubernetes_rules():
    name = release_name("A Very_Long Model Name " * 5, "12", "svc:ABCDEFGHIJ")
    assert len(name) <= 63 and re.fullmatch(r"[a-z0-9]([-a-z0-9]*[a-z0-9])?", name)
    assert name.endswith("-v12-abcdefgh")
    assert image_name("123.dkr.ecr.eu-west-1.amazonaws.com/", "tabular_classifier_service:x1") == (
        "123.dkr.ecr.eu-west-1.amazonaws.com/tabular-classifier-service:x1"
    )


class InMemoryApplier:
    """The calls KubernetesTarget makes, on a dict of (kind, name) -> manifest."""

    def __init__(self) -> None:
        self.objects: dict[tuple[str, str], dict[str, Any]] = {}
        self.unready: set[str] = set()

    def provision(self, objs, default_namespace, **_: Any):
        for obj in objs:
            obj["metadata"]["namespace"] = default_namespace
            self.objects[(obj["kind"], obj["metadata"]["name"])] = obj
        return list(objs), []

    def wait_for_deployment_ready(self, name, namespace, timeout):
        if name in self.unready:
            raise RuntimeError(f"Deployment '{name}' not ready within {timeout}s")
        self.objects[("Deployment", name)]["status"] = {"readyReplicas": 2}

    def get_resource(self, name, namespace, kind, api_version):
        return self.objects.get((kind, name))

    def list_resources(self, kind, api_version, namespace=None, label_selector=None):
        return [
            obj for (k, _), obj in self.objects.items()
            if k == kind and label_selector in obj["metadata"].get("labels", {})
        ]  # fmt: skip

    def delete_from_inventory(self, inventory):
        for item in inventory:
            self.objects.pop((item.kind, item.name), None)


class RecordingImageBuilder:
    def __init__(self) -> None:
        self.built: list[str] = []

    def build(self, image_name, build_context, container_registry):
        self.built.append(image_name)
        return f"{image_name}@sha256:0"


@pytest.fixture
def cluster():
    applier = InMemoryApplier()
    target = KubernetesTarget(
        lambda: applier,
        RecordingImageBuilder(),
        None,  # publish and plan are covered by the serving and prod-plan tests
        ServingConfig(),
        DEFAULTS,
    )
    return applier, target


def _start(target: KubernetesTarget, version: str, build: str):
    return target.start(
        BentoPackage(
            model_name="tabular_classifier",
            model_version=version,
            bento_tag=f"svc:{build}",
            published=f"registry/img:{build}",
            settings=SETTINGS,
        )
    )


def test_candidate_runs_beside_the_live_release_until_the_switch(cluster):
    applier, target = cluster
    assert target.live("tabular_classifier") is None
    first = _start(target, "1", "aaaaaaaa")
    assert first.url == "http://tabular-classifier-v1-aaaaaaaa.mlops-serving.svc.cluster.local:3000"
    pod = applier.objects[("Deployment", first.runs_as.deployment)]["spec"]["template"]["spec"]
    settings = json.loads(pod["containers"][0]["env"][0]["value"])
    assert settings["inference_log_dir"] == "/var/log/inference"  # the pod's path, not ours
    live = target.switch(first)
    assert live.url == "http://tabular-classifier.mlops-serving.svc.cluster.local:3000"
    assert target.live("tabular_classifier") == live

    second = _start(target, "2", "bbbbbbbb")
    stable = applier.objects[("Service", "tabular-classifier")]
    assert stable["spec"]["selector"] == {"app.kubernetes.io/instance": first.runs_as.deployment}
    previous = target.live("tabular_classifier")
    target.switch(second)
    assert previous is not None and previous.instance != second.instance
    target.stop(previous)

    assert stable is not applier.objects[("Service", "tabular-classifier")]
    stable = applier.objects[("Service", "tabular-classifier")]
    assert stable["spec"]["selector"] == {"app.kubernetes.io/instance": second.runs_as.deployment}
    assert json.loads(stable["metadata"]["annotations"][LIVE_RECORD])["model_version"] == "2"
    # what `deploy --status` names when asked for a model the cluster does not serve
    assert target.served() == [target.live("tabular_classifier")]
    assert ("Deployment", first.runs_as.deployment) not in applier.objects
    assert ("Service", first.runs_as.deployment) not in applier.objects
    assert target.problems(second) == []


def test_a_candidate_that_never_gets_ready_is_removed_and_the_live_one_kept(cluster):
    applier, target = cluster
    live = target.switch(_start(target, "1", "aaaaaaaa"))
    applier.unready.add("tabular-classifier-v2-bbbbbbbb")
    with pytest.raises(CandidateNotReadyError, match=r"tabular-classifier-v2-bbbbbbbb.*untouched"):
        _start(target, "2", "bbbbbbbb")
    assert ("Deployment", "tabular-classifier-v2-bbbbbbbb") not in applier.objects
    assert target.live("tabular_classifier") == live
    assert target.problems(live) == []


def test_stop_and_forget_remove_every_resource(cluster):
    applier, target = cluster
    live = target.switch(_start(target, "1", "aaaaaaaa"))
    target.stop(live)
    target.forget("tabular_classifier")
    # only the tokens stay: clients keep theirs across a stop (as the local file does)
    assert list(applier.objects) == [("Secret", "tabular-classifier-tokens")]


def test_the_stack_serves_only_through_a_model_deployer_of_this_project():
    from types import SimpleNamespace

    from tabular_mlops.adapters.deployment.model_deployer import serving_target
    from tabular_mlops.adapters.deployment.target import UnsupportedStackError

    def stack(deployer: Any) -> Any:
        return SimpleNamespace(name="s", model_deployer=deployer)

    with pytest.raises(UnsupportedStackError, match="model deployer is flavor 'bentoml'"):
        serving_target(stack(SimpleNamespace(flavor="bentoml")), ServingConfig())
    with pytest.raises(UnsupportedStackError, match=r"model deployer is none.*tabular_local"):
        serving_target(stack(None), ServingConfig())


def test_the_router_manifests_are_valid_kubernetes_objects():
    from tabular_mlops.adapters.deployment.kubernetes import router_manifests
    from tabular_mlops.core.rollout import RolloutPlan
    from tabular_mlops.serving.router import Routes, Upstream

    container = DEFAULTS.model_copy(update={"inference_log_claim": "inference-log"})
    routes = Routes(
        model_name="tabular_classifier",
        upstreams=[Upstream(url="http://a:3000", model_version="1"),
                   Upstream(url="http://b:3000", model_version="2")],
        plan=RolloutPlan(strategy="ab"),
        experiment="e1",
        evidence_dir="/var/log/inference/evidence/tabular_classifier",
    )  # fmt: skip
    config_map, deployment = router_manifests(
        "tabular_classifier", routes, "registry/img@sha256:1", container, DEFAULTS
    )
    assert _as_client_model(config_map, "V1ConfigMap") == config_map
    assert _as_client_model(deployment, "V1Deployment") == deployment
    assert Routes.model_validate_json(config_map["data"]["routes.json"]) == routes
    (router,) = deployment["spec"]["template"]["spec"]["containers"]
    assert router["command"][:3] == ["python", "-m", "tabular_mlops.serving.router"]
    assert router["readinessProbe"]["httpGet"]["path"] == "/-/ready"  # needs no token
    mounts = {m["mountPath"] for m in router["volumeMounts"]}
    # routes, the evidence, and the tokens Secret
    assert mounts == {"/etc/tabular-mlops", "/var/log/inference", "/etc/tabular-mlops-tokens"}


def test_a_rollout_puts_the_router_in_front_until_it_is_decided(cluster):
    from tabular_mlops.core.rollout import RolloutPlan
    from tabular_mlops.serving.router import Routes

    applier, target = cluster
    champion = target.switch(_start(target, "1", "aaaaaaaa"))
    candidate = _start(target, "2", "bbbbbbbb")
    rollout = target.begin_rollout(champion, candidate, RolloutPlan(strategy="canary"))
    stable = applier.objects[("Service", "tabular-classifier")]
    assert stable["spec"]["selector"] == {"app.kubernetes.io/instance": "tabular-classifier-router"}
    assert target.rollout("tabular_classifier") == rollout
    routes = Routes.model_validate_json(
        applier.objects[("ConfigMap", "tabular-classifier-router-routes")]["data"]["routes.json"]
    )
    assert [u.model_version for u in routes.upstreams] == ["1", "2"]
    assert routes.upstreams[1].url == candidate.url
    # no token in the routes (a ConfigMap): every pod mounts the tokens Secret instead
    tokens = target.tokens("tabular_classifier")
    secret = applier.objects[("Secret", "tabular-classifier-tokens")]
    for kind, name in applier.objects:
        if kind != "Secret":
            text = json.dumps(applier.objects[(kind, name)])
            assert not any(token in text for token in tokens.current.values()), (kind, name)
    router_pod = applier.objects[("Deployment", "tabular-classifier-router")]["spec"]["template"]
    volumes = {v["name"]: v for v in router_pod["spec"]["volumes"]}
    assert volumes["tokens"]["secret"]["secretName"] == secret["metadata"]["name"]

    live = target.finish_rollout("tabular_classifier", promote=True)
    assert live.model_version == "2"
    stable = applier.objects[("Service", "tabular-classifier")]
    assert stable["spec"]["selector"] == {
        "app.kubernetes.io/instance": candidate.runs_as.deployment
    }
    assert target.rollout("tabular_classifier") is None
    assert ("Deployment", "tabular-classifier-router") not in applier.objects
    assert ("Deployment", champion.runs_as.deployment) not in applier.objects


def test_a_rollout_end_that_fails_after_the_switch_says_the_traffic_moved(cluster):
    """The cluster's API fails while the router is removed: the Service already selects
    the winner (and no longer holds the experiment's record), so the failure is said as
    a TrafficMovedError, never taken for a refusal before anything moved."""
    from tabular_mlops.adapters.deployment.target import TrafficMovedError
    from tabular_mlops.core.rollout import RolloutPlan

    applier, target = cluster
    champion = target.switch(_start(target, "1", "aaaaaaaa"))
    candidate = _start(target, "2", "bbbbbbbb")
    target.begin_rollout(champion, candidate, RolloutPlan(strategy="canary"))

    def api_down(inventory):
        raise RuntimeError("503 from the API server")

    applier.delete_from_inventory = api_down
    with pytest.raises(TrafficMovedError, match=r"all traffic moved to version 2, then .*503") \
            as failed:  # fmt: skip
        target.finish_rollout("tabular_classifier", promote=True)
    assert str(failed.value).endswith(
        "remove what is left: `kubectl -n mlops-serving delete deployment/"
        "tabular-classifier-router configmap/tabular-classifier-router-routes deployment/"
        f"{champion.runs_as.deployment}`"
    )
    selector = applier.objects[("Service", "tabular-classifier")]["spec"]["selector"]
    assert selector == {"app.kubernetes.io/instance": candidate.runs_as.deployment}
    assert target.rollout("tabular_classifier") is None
    assert ("Deployment", "tabular-classifier-router") in applier.objects  # left behind


def test_zenml_shows_the_live_versions_log_tail(tmp_path):
    """`zenml model-deployer models logs <UUID>`: the last lines of the live version's log
    on this machine; a pointer where there is none (a cluster's pods)."""
    from uuid import uuid4

    from zenml.services import ServiceStatus

    from tabular_mlops.adapters.deployment.model_deployer import ServedModel, ServedModelConfig

    log = tmp_path / "v1.log"
    log.write_text("".join(f"line {n}\n" for n in range(300)))

    def served(log_file: str) -> ServedModel:
        config = ServedModelConfig(model_name="m", url="http://x", runs_as="pid 1",
                                   log_file=log_file)  # fmt: skip
        return ServedModel(uuid=uuid4(), config=config, status=ServiceStatus())

    assert list(served(str(log)).get_logs(tail=2)) == ["line 298", "line 299"]
    assert len(list(served(str(log)).get_logs())) == 100
    assert list(served("").get_logs()) == ["no log on this machine for pid 1"]
