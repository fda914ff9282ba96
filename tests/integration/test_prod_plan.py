"""`train --env prod --dry-run`: every pipeline compiled for the Kubernetes stack, nothing run."""

from __future__ import annotations

import json

import pytest
import yaml

from tests.helpers import invoke

pytestmark = pytest.mark.integration

SECRETS = {
    "mlflow_prod": {"token": "not-a-real-token"},
    "s3_artifacts": {"aws_access_key_id": "x", "aws_secret_access_key": "y"},
}


@pytest.fixture
def prod_plan(dev_stack):
    from zenml.client import Client

    client = Client()
    for name, values in SECRETS.items():
        client.create_secret(name, values)
    runs_before = client.list_pipeline_runs(size=1, project="default").total
    try:
        result = invoke("train", "--env", "prod", "--dry-run")
        assert result.exit_code == 0, result.output
        # nothing ran, in prod's project or dev's
        assert client.list_pipeline_runs(size=1, project="prod").total == 0
        assert client.list_pipeline_runs(size=1, project="default").total == runs_before
        yield yaml.safe_load(result.output[result.output.index("training_pipeline:") :])
    finally:
        invoke("stack", "register", "--env", "dev")
        for name in SECRETS:
            client.delete_secret(name)


def test_every_pipeline_compiles_for_the_cluster(prod_plan):
    assert list(prod_plan) == [
        "training_pipeline",
        "deployment_pipeline",
        "batch_inference_pipeline",
        "continuous_training_pipeline",
    ]
    for plan in prod_plan.values():
        assert plan["stack"]["name"] == "prod"
        assert plan["stack"]["needs_images"] is True
    components = prod_plan["training_pipeline"]["stack"]["components"]
    assert components["orchestrator"] == "kubernetes"
    assert components["artifact_store"] == "s3"
    assert components["image_builder"] == "kaniko"
    assert components["container_registry"] == "default"
    assert components["model_deployer"] == "tabular_kubernetes"  # containers on the cluster


def test_settings_and_overlays_are_resolved(prod_plan):
    training = prod_plan["training_pipeline"]
    train_step = training["steps"]["train_model"]
    assert train_step["settings"]["resources"] == {"cpu_count": 2.0, "memory": "4GB"}
    assert train_step["experiment_tracker"] is True
    gate = training["steps"]["validate_model"]["parameters"]["promotion"]
    assert gate["min_metrics"] == {"accuracy": 0.9, "roc_auc": 0.95}  # prod's stricter overlay
    governance = training["steps"]["validate_model"]["parameters"]["evaluation"]
    assert governance["calibration"]["max_expected_calibration_error"] == 0.08
    assert governance["robustness"]["max_flip_share"] == 0.02  # dev: 0.05
    assert governance["fairness"]["max_demographic_parity_difference"] == 0.1
    budget = prod_plan["deployment_pipeline"]["steps"]["package_model"]["parameters"]["serving"]
    assert budget["max_single_row_p99_ms"] == 2  # dev: 5
    requirements = training["docker"]["requirements_files"]
    integration = requirements[".zenml_stack_integration_requirements"]
    assert any(r.startswith("kubernetes") for r in integration)
    assert any(r.startswith("s3fs") for r in integration)
    pins = [line.split()[0] for line in requirements[".zenml_user_requirements"] if "==" in line]
    assert "zenml==0.98.0" in pins
    assert training["steps"]["validate_data"]["upstream"] == ["ingest_data", "resolve_champion"]


def test_the_deployment_serves_containers_on_the_cluster(prod_plan):
    serving = prod_plan["deployment_pipeline"]["serving"]
    assert serving["target"].startswith("kubernetes")
    assert serving["namespace"] == "mlops-serving"  # the deployer's own setting
    assert serving["image"].startswith(
        "123456789012.dkr.ecr.eu-west-1.amazonaws.com/tabular-classifier-service:"
    )
    deployment, candidate, stable = serving["manifests"]
    assert deployment["spec"]["replicas"] == 3  # prod's model deployer
    pod = deployment["spec"]["template"]["spec"]
    # the server the suite measures on a laptop, not `bentoml serve`
    assert pod["containers"][0]["command"][:3] == ["python", "-m", "tabular_mlops.serving.server"]
    volumes = {volume["name"]: volume for volume in pod["volumes"]}
    assert volumes["inference-log"]["persistentVolumeClaim"]["claimName"] == "inference-log"
    # the tokens are a mounted Secret: the printed plan names it, it holds no token
    assert volumes["tokens"]["secret"]["secretName"] == "tabular-classifier-tokens"
    assert "Bearer" not in json.dumps(prod_plan) and '"tokens.json":' not in json.dumps(prod_plan)
    assert stable["spec"]["type"] == "LoadBalancer"
    assert candidate["spec"]["selector"] == stable["spec"]["selector"]
    # the loop is a dynamic pipeline: it configures its steps as it invokes them
    collect = prod_plan["continuous_training_pipeline"]["step_options"]["collect_predictions"]
    pod_settings = collect["settings"]["orchestrator"]["pod_settings"]
    mounts = pod_settings["volume_mounts"]
    assert mounts == [{"name": "inference-log", "mountPath": "/var/log/inference"}]


def test_a_rollout_on_the_cluster_is_shown_with_the_router_in_front(prod_plan):
    from tests.unit.test_kubernetes_serving import _as_client_model

    rollout = prod_plan["deployment_pipeline"]["serving"]["rollout_manifests"]
    assert rollout["strategy"] == "canary"  # prod's plan is replace: a canary is shown
    config_map, router, stable = rollout["manifests"]
    for manifest, kind in ((config_map, "V1ConfigMap"), (router, "V1Deployment"),
                           (stable, "V1Service")):  # fmt: skip
        assert _as_client_model(manifest, kind) == manifest
    assert router["spec"]["replicas"] == 2  # the address outlives one rescheduled router
    routes = json.loads(config_map["data"]["routes.json"])
    assert routes["plan"]["strategy"] == "canary"
    assert routes["evidence_dir"] == "/var/log/inference/evidence/tabular_classifier"
    assert [u["model_version"] for u in routes["upstreams"]] == ["1", "2"]
    assert stable["spec"]["selector"] == router["spec"]["selector"]["matchLabels"]
