"""Stack registration from YAML against a real (temporary) ZenML store."""

from __future__ import annotations

import contextlib

import pytest

from tabular_mlops.adapters import stacks
from tabular_mlops.adapters.config_files import ConfigError, load_environment
from tabular_mlops.core.config import ComponentSpec, EnvironmentConfig
from tests.helpers import invoke


def _variant(environment: EnvironmentConfig, kind: str, **changes) -> EnvironmentConfig:
    components = environment.stack.components.model_copy(
        update={kind: getattr(environment.stack.components, kind).model_copy(update=changes)}
    )
    return environment.model_copy(
        update={"stack": environment.stack.model_copy(update={"components": components})}
    )


def _experiment_named(environment: EnvironmentConfig, name: str) -> EnvironmentConfig:
    """``environment`` with its tracker's experiment renamed: a YAML edit to apply."""
    return _variant(environment, "experiment_tracker", configuration={"experiment_name": name})


def test_registration_is_idempotent(dev_stack):
    from zenml.client import Client

    client = Client()
    environment = load_environment("dev")
    # registered from the YAML here: a module before this one on the same worker may
    # have applied another file of the dev stack (its deployer on a port of its own)
    stacks.activate(client, environment, "dev.yaml")
    assert client.active_stack_model.name == dev_stack
    again = stacks.plan(client, environment, "dev.yaml")
    assert again.is_current, again.describe()


def test_changed_configuration_is_shown_then_applied(dev_stack):
    from zenml.client import Client

    client = Client()
    environment = _variant(
        load_environment("dev"),
        "experiment_tracker",
        configuration={"experiment_name": "churn-experiments"},
    )
    change = stacks.plan(client, environment, "dev.yaml")
    [tracker] = [c for c in change.components if c.kind == "experiment_tracker"]
    assert tracker.action == "update"
    assert tracker.changes == {"experiment_name": (None, "churn-experiments")}
    assert "experiment_name: None -> 'churn-experiments'" in change.describe()
    try:
        stacks.apply(client, change)
        assert stacks.plan(client, environment, "dev.yaml").is_current
    finally:  # back to the YAML as shipped: other tests share this store
        stacks.apply(client, stacks.plan(client, load_environment("dev"), "dev.yaml"))
    assert stacks.plan(client, load_environment("dev"), "dev.yaml").is_current


@pytest.mark.parametrize(
    ("kind", "spec", "message"),
    [
        (
            "orchestrator",
            ComponentSpec(name="dev-local-orchestrator", flavor="locall"),
            r"env.yaml: stack.components.orchestrator.flavor: no orchestrator flavor 'locall'; "
            r"available: .*local",
        ),
        (
            "experiment_tracker",
            ComponentSpec(
                name="dev-mlflow-tracker", flavor="mlflow", configuration={"tracking_url": "x"}
            ),
            r"stack.components.experiment_tracker.configuration.tracking_url: unknown key "
            r"for flavor 'mlflow'",
        ),
        (
            "experiment_tracker",
            ComponentSpec(
                name="dev-mlflow-tracker", flavor="mlflow", configuration={"nested": "sometimes"}
            ),
            r"stack.components.experiment_tracker.configuration.nested: Input should be a valid "
            r"boolean",
        ),
        (
            "artifact_store",
            ComponentSpec(
                name="dev-local-artifact-store", flavor="s3", configuration={"path": "s3://bucket"}
            ),
            r"component 'dev-local-artifact-store' is registered with flavor 'local', the YAML "
            r"says 's3'",
        ),
    ],
)
def test_bad_stack_yaml_names_file_and_key(dev_stack, kind, spec, message):
    from zenml.client import Client

    environment = load_environment("dev")
    components = environment.stack.components.model_copy(update={kind: spec})
    bad = environment.model_copy(
        update={"stack": environment.stack.model_copy(update={"components": components})}
    )
    with pytest.raises(ConfigError, match=message):
        stacks.plan(Client(), bad, "env.yaml")


def test_staging_and_prod_register_against_the_real_flavors(dev_stack):
    from zenml.client import Client

    client = Client()
    secrets = {
        "mlflow_staging": {"username": "ci", "password": "ci"},
        "mlflow_prod": {"token": "not-a-real-token"},
        "s3_artifacts": {"aws_access_key_id": "x", "aws_secret_access_key": "y"},
    }
    for name, values in secrets.items():
        client.create_secret(name, values)
    try:
        for env in ("staging", "prod"):
            environment = load_environment(env)
            stacks.activate(client, environment, f"{env}.yaml")
            stack = client.get_stack(environment.stack.name)
            flavors = {kind.value: comps[0].flavor_name for kind, comps in stack.components.items()}
            expected = {k: s.flavor for k, s in environment.stack.components.declared().items()}
            assert flavors == expected
            assert stacks.plan(client, environment, f"{env}.yaml").is_current
            registered = client.get_stack_component(
                _type("experiment_tracker"), environment.stack.components.experiment_tracker.name
            )
            # secrets stay references in the store, never values
            assert "{{" in str(registered.configuration)
    finally:
        stacks.activate(client, load_environment("dev"), "dev.yaml")
        for name in secrets:
            client.delete_secret(name)


def test_a_secret_deleted_after_its_yaml_was_checked_is_named_at_the_next_command(dev_stack):
    """The flavor checks (which resolve some flavors' secrets) are skipped for a YAML that
    passed them; every secret it references is still looked up, by its exact name, and
    one gone (or short of a key) is named with the command that fixes it."""
    from zenml.client import Client

    client = Client()
    client.create_secret("mlflow_staging", {"username": "ci", "password": "ci"})
    client.create_secret("mlflow_staging_old", {"username": "u", "password": "p"})
    staging = load_environment("staging")
    try:
        stacks.activate(client, staging, "staging.yaml")  # checked, and remembered
        client.delete_secret("mlflow_staging")
        where = "staging.yaml: stack.components.experiment_tracker.configuration: "
        with pytest.raises(ConfigError) as raised:
            stacks.activate(client, staging, "staging.yaml")
        assert str(raised.value) == (
            where + "secret 'mlflow_staging' is not in the ZenML store. Create it first: "
            "`zenml secret create mlflow_staging --password=VALUE --username=VALUE`."
        )
        client.create_secret("mlflow_staging", {"username": "ci"})
        with pytest.raises(ConfigError) as raised:
            stacks.activate(client, staging, "staging.yaml")
        assert str(raised.value) == (
            where + "secret 'mlflow_staging' has no key 'password'. Add it: "
            "`zenml secret update mlflow_staging --password=VALUE`."
        )
    finally:
        stacks.activate(client, load_environment("dev"), "dev.yaml")
        for name in ("mlflow_staging", "mlflow_staging_old"):
            with contextlib.suppress(KeyError):
                client.delete_secret(name)


def test_a_missing_secret_is_named(dev_stack):
    from zenml.client import Client

    # the artifact store's S3 keys, whose flavor does not resolve them when checked
    where = "prod.yaml: stack.components.artifact_store.configuration"
    with pytest.raises(ConfigError, match=where + ": secret 's3_artifacts' is not in the ZenML"):
        stacks.plan(Client(), load_environment("prod"), "prod.yaml")


def _type(kind: str):
    from zenml.enums import StackComponentType

    return StackComponentType(kind)


def test_a_schedule_on_the_local_orchestrator_names_the_cron_line_instead(dev_stack):
    for command in ("train", "monitor"):
        result = invoke(command, "--schedule", "0 3 * * *", "--set", "model.name=it_schedule")
        assert result.exit_code == 1, result.output
        assert "the 'dev' stack's orchestrator cannot run schedules; use cron:" in result.output
        assert "`0 3 * * * cd " in result.output
        assert f".venv/bin/python run.py {command} --env dev`" in result.output


def test_a_model_without_a_production_version_is_named(dev_stack, tmp_path):
    batch = tmp_path / "batch.csv"
    batch.write_text("a,b\n1,2\n")
    for args in (("infer", "--input", str(batch)), ("deploy",), ("monitor",)):
        result = invoke(*args, "--set", "model.name=it_never_trained")
        assert result.exit_code == 1, result.output
        assert "model 'it_never_trained' has no version in production yet" in result.output


def test_a_component_no_longer_declared_leaves_the_stack(dev_stack):
    """Stacks registered by earlier versions carry ZenML's BentoML model deployer and a
    pipeline deployer the YAML no longer declares; registering from the YAML puts this
    project's model deployer in the first's place and takes the second off the stack."""
    from zenml.client import Client
    from zenml.enums import StackComponentType

    client = Client()
    for name, flavor, kind in (
        ("it-old-bentoml-deployer", "bentoml", StackComponentType.MODEL_DEPLOYER),
        ("it-old-deployer", "local", StackComponentType.DEPLOYER),
    ):
        client.create_stack_component(
            name=name, flavor=flavor, component_type=kind, configuration={}
        )
        client.update_stack(dev_stack, component_updates={kind: [name]})
    change = stacks.plan(client, load_environment("dev"), "dev.yaml")
    assert change.component_changes == {
        "model_deployer": ("it-old-bentoml-deployer", "dev-local-serving"),
        "deployer": ("it-old-deployer", None),
    }
    assert "deployer: it-old-deployer -> <removed>" in change.describe()
    stacks.apply(client, change)
    components = client.get_stack(dev_stack).components
    assert StackComponentType.DEPLOYER not in components
    assert components[StackComponentType.MODEL_DEPLOYER][0].flavor_name == "tabular_local"
    assert stacks.plan(client, load_environment("dev"), "dev.yaml").is_current


def test_a_checked_yaml_is_not_checked_again_and_the_store_still_follows_it(dev_stack, monkeypatch):
    """A command whose environment YAML passed the flavor checks on this store skips them
    (each flavor's integration import) but still compares the YAML with the store: a YAML
    edit is checked again; a component changed by another command of another YAML of the
    same stack (two commands at once), or with ZenML's own CLI, is put back."""
    from zenml.client import Client
    from zenml.enums import StackComponentType

    client = Client()
    environment = load_environment("dev")
    stacks.activate(client, environment, "dev.yaml")  # the stamp, whatever came before
    checked: list[str] = []
    real_check = stacks.check_component

    def counting_check(client, kind, spec, source):
        checked.append(kind)
        return real_check(client, kind, spec, source)

    def tracker_name() -> object:
        component = client.get_stack_component(
            StackComponentType.EXPERIMENT_TRACKER, "dev-mlflow-tracker"
        )
        return component.configuration.get("experiment_name")

    monkeypatch.setattr(stacks, "check_component", counting_check)
    assert stacks.activate(client, environment, "dev.yaml").is_current
    assert checked == []
    edited = _experiment_named(environment, "edited")
    try:
        stacks.activate(client, edited, "dev.yaml")  # a YAML edit: checked and applied
        assert "experiment_tracker" in checked and tracker_name() == "edited"
        checked.clear()
        stacks.activate(client, edited, "dev.yaml")
        assert checked == []
    finally:
        stacks.activate(client, environment, "dev.yaml")
    assert tracker_name() is None
    checked.clear()
    # another command applied another YAML of the same stack in between (a race), or
    # `zenml experiment-tracker update ...`: the next command puts the YAML back
    for outside in ("race", "cli"):
        client.update_stack_component(
            "dev-mlflow-tracker", StackComponentType.EXPERIMENT_TRACKER,
            configuration={"experiment_name": outside},
        )  # fmt: skip
        assert not stacks.activate(client, environment, "dev.yaml").is_current
        assert tracker_name() is None
    assert stacks.activate(client, environment, "dev.yaml").is_current
    assert checked == []  # put back without the checks this YAML passed on this store
    # back to the other YAML, checked before: applied, not checked again; a component
    # to register is checked (its flavor must be on this store)
    stacks.activate(client, edited, "dev.yaml")
    assert checked == [] and tracker_name() == "edited"
    renamed = _variant(environment, "experiment_tracker", name="it-checked-tracker")
    try:
        stacks.activate(client, renamed, "dev.yaml")  # checked, and remembered
        stacks.activate(client, environment, "dev.yaml")
        client.delete_stack_component("it-checked-tracker", StackComponentType.EXPERIMENT_TRACKER)
        checked.clear()
        stacks.activate(client, renamed, "dev.yaml")  # checked before, but to be registered
        assert "experiment_tracker" in checked
    finally:
        stacks.activate(client, environment, "dev.yaml")
        with contextlib.suppress(KeyError):
            client.delete_stack_component(
                "it-checked-tracker", StackComponentType.EXPERIMENT_TRACKER
            )
    assert tracker_name() is None


def test_a_change_is_applied_under_the_registration_lock_and_a_current_yaml_takes_none(
    dev_stack, monkeypatch
):
    """Two commands that find the stack to change take turns (each applies under the lock,
    planning again inside it); a command whose YAML the store already follows takes no
    turn. (Two processes racing for it fail only sometimes: this names the lock.)"""
    from zenml.client import Client

    from tabular_mlops.adapters import file_locks

    client = Client()
    environment = load_environment("dev")
    stacks.activate(client, environment, "dev.yaml")
    events: list[str] = []
    real_exclusive, real_apply = file_locks.exclusive, stacks.apply

    @contextlib.contextmanager
    def recording_exclusive(path):
        events.append(f"lock {path.name}")
        with real_exclusive(path):
            yield
        events.append("unlock")

    def recording_apply(client, stack_plan):
        events.append("apply")
        return real_apply(client, stack_plan)

    monkeypatch.setattr(file_locks, "exclusive", recording_exclusive)
    monkeypatch.setattr(stacks, "apply", recording_apply)
    assert stacks.activate(client, environment, "dev.yaml").is_current
    assert events == []
    try:
        stacks.activate(client, _experiment_named(environment, "locked"), "dev.yaml")
        assert events == ["lock tabular_mlops_stacks.lock", "apply", "unlock"], events
    finally:
        stacks.activate(client, environment, "dev.yaml")
