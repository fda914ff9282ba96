"""ZenML's and BentoML's private symbols this project uses (tabular_mlops/adapters/
compat.py): an upgrade that moves or renames one fails here, by name."""

from __future__ import annotations

import pytest


def test_the_dynamic_run_context_is_where_it_was():
    from zenml.execution.pipeline.dynamic.run_context import DynamicPipelineRunContext

    assert DynamicPipelineRunContext.get() is None  # outside any run
    assert isinstance(DynamicPipelineRunContext.run, property)


def test_the_global_config_singletons_can_be_reset():
    from zenml.client import Client
    from zenml.config.global_config import GlobalConfiguration
    from zenml.constants import ENV_ZENML_CONFIG_PATH
    from zenml.utils.io_utils import get_global_config_directory

    assert callable(GlobalConfiguration._reset_instance)
    assert callable(Client._reset_instance)
    assert ENV_ZENML_CONFIG_PATH == "ZENML_CONFIG_PATH"
    assert get_global_config_directory()


def test_outside_a_dynamic_run_there_is_no_run_name():
    from tabular_mlops.adapters.compat import dynamic_run_name

    assert dynamic_run_name() is None


def test_the_stack_cache_is_where_it_was():
    from zenml.stack import stack

    assert isinstance(stack._STACK_CACHE, dict)


def test_the_package_lookup_zenml_caches_is_where_it_was():
    from zenml.utils import source_utils

    from tabular_mlops.adapters.compat import cache_source_package_lookup

    assert callable(source_utils._get_package_for_module)
    cache_source_package_lookup()
    assert hasattr(source_utils._get_package_for_module, "cache_info")


def test_a_steps_dynamic_configuration_is_an_attribute_put_back_after_a_block():
    from zenml import step

    from tabular_mlops.adapters.compat import step_options_for_a_while

    @step
    def noop() -> int:
        return 1

    assert "_dynamic_configuration" in vars(noop)  # what a dynamic run's configure sets
    noop._dynamic_configuration = before = object()
    with step_options_for_a_while(noop, {"enable_cache": False}):
        pass
    assert noop._dynamic_configuration is before


def test_a_pipeline_compiles_through_run_args_and_compile():
    import inspect

    from zenml.pipelines.pipeline_definition import Pipeline

    assert "config_path" in inspect.signature(Pipeline._compile).parameters
    assert "self._run_args" in inspect.getsource(Pipeline)


def test_zenmls_yaml_writer_is_a_module_function_we_can_replace():
    import inspect

    from zenml.utils import yaml_utils

    assert list(inspect.signature(yaml_utils.write_yaml).parameters)[:3] == [
        "file_path", "contents", "sort_keys",
    ]  # fmt: skip


def test_bentomls_private_build_helpers_are_where_they_were():
    import inspect

    import attr
    from bentoml._internal.bento.build_config import BentoEnvSchema
    from bentoml._internal.container import construct_containerfile

    assert [field.name for field in attr.fields(BentoEnvSchema)][:2] == ["name", "value"]
    assert "enable_buildkit" in inspect.signature(construct_containerfile).parameters


def test_bentoml_reads_and_writes_a_bento_yaml_through_its_modules_yaml():
    import inspect

    import yaml
    from bentoml._internal.bento import bento as bento_module

    from tabular_mlops.adapters.compat import bento_yaml_through_libyaml

    assert "yaml.safe_load(" in inspect.getsource(bento_module.BaseBentoInfo.from_yaml_file)
    assert "yaml.safe_dump(" in inspect.getsource(bento_module.BaseBentoInfo.dump)
    bento_yaml_through_libyaml()
    assert bento_module.yaml.libyaml and bento_module.yaml.YAMLError is yaml.YAMLError
    text = (
        "name: m\nversion: '1'\nlabels: {a: 1}\nrequirements: \"x==1 \\\\\\n  --hash=sha256:ab\"\n"
    )
    assert bento_module.yaml.safe_load(text) == yaml.safe_load(text)
    info = {"name": "m", "requirements": "x==1 \\\n  --hash=sha256:ab", "labels": {"b": 1, "a": 2}}
    written = bento_module.yaml.safe_dump(info, sort_keys=False)
    assert yaml.safe_load(written) == info and list(yaml.safe_load(written)["labels"]) == ["b", "a"]


def test_the_store_calls_that_fail_a_dead_run_are_where_they_were():
    import inspect

    from zenml.models import PipelineRunUpdate, StepRunUpdate
    from zenml.zen_stores.zen_store_interface import ZenStoreInterface

    assert list(inspect.signature(ZenStoreInterface.update_run).parameters)[1:] == [
        "run_id",
        "run_update",
    ]
    assert list(inspect.signature(ZenStoreInterface.update_run_step).parameters)[1:] == [
        "step_run_id",
        "step_run_update",
    ]
    assert {"status", "status_reason"} <= set(PipelineRunUpdate.model_fields)
    assert {"status", "end_time"} <= set(StepRunUpdate.model_fields)


def test_the_servers_current_user_endpoint_still_takes_the_survey_answer():
    """Read from the server's source, not imported: importing ZenML's server takes seconds."""
    import ast
    import importlib.util
    from pathlib import Path

    from zenml.constants import API, CURRENT_USER, VERSION_1
    from zenml.models import UserUpdate

    assert f"{API}{VERSION_1}{CURRENT_USER}" == "/api/v1/current-user"
    assert {"name", "email_opted_in", "user_metadata"} <= set(UserUpdate.model_fields)
    spec = importlib.util.find_spec("zenml.zen_server.routers.users_endpoints")
    assert spec and spec.origin
    tree = ast.parse(Path(spec.origin).read_text())
    puts = [
        decorator.args[0].value
        for node in ast.walk(tree)
        if isinstance(node, ast.FunctionDef) and node.name == "update_myself"
        for decorator in node.decorator_list
        if isinstance(decorator, ast.Call)
        and isinstance(decorator.func, ast.Attribute)
        and decorator.func.attr == "put"
        and decorator.args
        and isinstance(decorator.args[0], ast.Constant)
    ]
    assert puts == [CURRENT_USER]


def test_the_global_config_directory_is_zenmls_without_importing_it(monkeypatch, tmp_path):
    from zenml.constants import ENV_ZENML_CONFIG_PATH
    from zenml.utils.io_utils import get_global_config_directory

    from tabular_mlops.adapters.compat import ZENML_CONFIG_PATH_ENV, default_global_config

    assert ZENML_CONFIG_PATH_ENV == ENV_ZENML_CONFIG_PATH
    monkeypatch.setenv(ENV_ZENML_CONFIG_PATH, str(tmp_path / "x" / ".." / "config"))
    assert default_global_config() == get_global_config_directory()
    monkeypatch.delenv(ENV_ZENML_CONFIG_PATH)
    assert default_global_config() == get_global_config_directory()


def test_zenml_pickles_a_scikit_learn_model_where_its_content_hash_is_taken():
    """adapters/integrity.py hashes this file before any model is loaded."""
    from zenml.integrations.sklearn.materializers.sklearn_materializer import SklearnMaterializer
    from zenml.materializers.cloudpickle_materializer import CloudpickleMaterializer

    from tabular_mlops.adapters.compat import pickled_file_of

    assert issubclass(SklearnMaterializer, CloudpickleMaterializer)
    assert pickled_file_of("s3://bucket/model/1/") == "s3://bucket/model/1/artifact.pkl"


def test_the_client_has_the_attribute_it_keeps_the_fetched_user_in():
    """``cached_zenml_user`` reads ``Client._active_user``, never the store; that a live
    client keeps its user there is checked against a store in
    tests/integration/test_store_contracts.py."""
    from zenml.client import Client

    assert "_active_user" in Client.__annotations__ or hasattr(Client, "_active_user")


def test_skl2onnx_builds_tree_nodes_through_a_module_function_we_can_wrap():
    """skl2onnx 1.20 passes a leaf's missing-value flag as a bool that onnx 1.23 refuses:
    the wrapped ``tree_ensemble.add_node`` must still be the function its histogram
    gradient boosting converter calls, and with the wrap such a model converts and
    answers as scikit-learn does."""
    import inspect

    import numpy as np
    import onnxruntime
    from skl2onnx import convert_sklearn
    from skl2onnx.common import tree_ensemble
    from skl2onnx.common.data_types import FloatTensorType
    from sklearn.datasets import load_breast_cancer
    from sklearn.ensemble import HistGradientBoostingClassifier

    from tabular_mlops.adapters.compat import skl2onnx_tree_missing_as_ints

    assert "nodes_missing_value_tracks_true" in inspect.signature(tree_ensemble.add_node).parameters
    assert "add_node(" in inspect.getsource(tree_ensemble)  # called through the module
    skl2onnx_tree_missing_as_ints()
    features, labels = load_breast_cancer(return_X_y=True)
    features[::7, 3] = np.nan  # missing values: the flag matters
    model = HistGradientBoostingClassifier(max_iter=100, random_state=0).fit(features, labels)
    graph = convert_sklearn(model, initial_types=[("x", FloatTensorType([None, 30]))],
                            target_opset=18, options={id(model): {"zipmap": False}})  # fmt: skip
    session = onnxruntime.InferenceSession(graph.SerializeToString())
    _, probabilities = session.run(None, {"x": features.astype(np.float32)})
    np.testing.assert_allclose(probabilities, model.predict_proba(features), atol=1e-4)


def test_zenmls_bentoml_integration_is_left_out_of_its_activation(monkeypatch):
    """ZenML's pipeline compile activates every integration through the registry; once
    skipped, BentoML's must be the class the registry holds, import nothing when the
    registry activates it, and still list its flavors. (The other integrations' own
    activation is stood in for: importing them all costs seconds and proves nothing
    here.)"""
    import sys

    from zenml.integrations.bentoml import BentoMLIntegration
    from zenml.integrations.registry import integration_registry

    from tabular_mlops.adapters.compat import skip_bentoml_integration

    integration_registry._initialize()
    others = [i for n, i in integration_registry._integrations.items() if n != "bentoml"]
    activated: list[str] = []
    for integration in others:
        monkeypatch.setattr(
            integration, "activate", classmethod(lambda cls: activated.append(cls.NAME))
        )
    # undone after the test: the worker's other tests see ZenML's own activate
    monkeypatch.setattr(BentoMLIntegration, "activate", vars(BentoMLIntegration)["activate"])
    bentoml_modules = {m for m in sys.modules if m.startswith("zenml.integrations.bentoml.")}

    skip_bentoml_integration()
    # ZenML's own method: a command run earlier in this worker may have wrapped it to run
    # once a process (compat.activate_integrations_once), and it has run
    type(integration_registry).activate_integrations(integration_registry)

    assert integration_registry._integrations["bentoml"] is BentoMLIntegration
    assert "mlflow" in activated, "the registry activated nothing"
    imported = {m for m in sys.modules if m.startswith("zenml.integrations.bentoml.")}
    assert imported <= bentoml_modules, f"activated: {sorted(imported - bentoml_modules)}"
    assert BentoMLIntegration.flavors()


def test_a_process_is_told_apart_by_a_start_no_step_of_the_clock_moves(monkeypatch):
    """``process_start`` reads psutil's private ``Process._get_ident`` (start since boot).
    The public ``create_time()`` adds the boot time as the clock says it now: a clock
    stepped or slewed across a second moved it, and the supervisor took every live server
    for a dead one (2026-12-04). With the boot time a second later, the identity stays;
    a record an earlier version wrote (a wall-clock start) still names its process."""
    import os

    import psutil
    import pytest

    from tabular_mlops.adapters.processes import identity, is_same_process

    me = os.getpid()
    pid, since_boot = psutil.Process(me)._get_ident()
    assert pid == me and 0 < since_boot < 1e9
    started, wall = identity(me), psutil.Process(me).create_time()
    boot = psutil.boot_time()
    monkeypatch.setattr(psutil._psplatform, "boot_time", lambda: boot + 1.0)
    assert psutil.Process(me).create_time() == pytest.approx(wall + 1.0)  # what moved
    assert identity(me) == started and is_same_process(me, started)
    assert is_same_process(me, wall)  # an earlier version's record
    assert not is_same_process(me, started - 0.5) and not is_same_process(me, wall - 60)


def test_zenmls_code_repository_answers_are_a_per_path_cache_we_can_seed(tmp_path):
    """What the warm command server imports the pipelines under: a path whose answer is
    "no code repository", so resolving a source there opens no store."""
    from zenml.utils import code_repository_utils

    from tabular_mlops.adapters.compat import forget_code_repositories, no_code_repository_lookup

    assert isinstance(code_repository_utils._CODE_REPOSITORY_CACHE, dict)
    with no_code_repository_lookup(str(tmp_path)):
        assert code_repository_utils.find_active_code_repository(str(tmp_path)) is None
    assert str(tmp_path) not in code_repository_utils._CODE_REPOSITORY_CACHE
    forget_code_repositories()
    assert code_repository_utils._CODE_REPOSITORY_CACHE == {}


def _frame(filename: str, back: object = None) -> object:
    from types import SimpleNamespace

    code = SimpleNamespace(co_filename=filename, co_name="run")
    return SimpleNamespace(f_code=code, f_back=back)


def test_a_ctrl_c_inside_a_database_call_is_raised_once_the_call_is_over(monkeypatch):
    """Raised inside ZenML's or MLflow's SQLite store, the interrupt left a transaction
    open and the command waited out SQLite's timeout ("database is locked"); raised in
    a weak reference's clean-up, it was lost. There it is handed back a moment later."""
    import os
    import signal
    import time

    from tabular_mlops.adapters import interrupts

    store = _frame("/x/site-packages/sqlalchemy/engine/base.py", _frame("/x/steps/register.py"))
    in_step = _frame("/x/steps/train.py", _frame("/x/zenml/orchestrators/step_runner.py"))
    callback = _frame("/usr/lib/python3.11/weakref.py")
    previous = signal.signal(signal.SIGINT, interrupts.deferred_interrupt)
    try:
        with pytest.raises(KeyboardInterrupt):
            interrupts.deferred_interrupt(signal.SIGINT, in_step)
        for frame in (store, callback):
            started = time.monotonic()
            with pytest.raises(KeyboardInterrupt):
                assert interrupts.deferred_interrupt(signal.SIGINT, frame) is None
                time.sleep(5)  # the signal comes back, out of the database call: here
            assert time.monotonic() - started < 2
        # a database call that does not end within the bound is interrupted all the same
        # (the re-delivery of a key press that long ago)
        waited = interrupts.INTERRUPT_DEFER_SECONDS + 1
        monkeypatch.setattr(interrupts, "_first_deferred", [time.monotonic() - waited])
        monkeypatch.setattr(interrupts, "_redelivery", [1])
        with pytest.raises(KeyboardInterrupt):
            interrupts.deferred_interrupt(signal.SIGINT, store)
        assert interrupts._first_deferred == [] and interrupts._redelivery == []
        # but never inside a callback, where it would be lost: handed back again
        cleanup = _frame("/usr/lib/python3.11/weakref.py", store)
        monkeypatch.setattr(interrupts, "_first_deferred", [time.monotonic() - waited])
        monkeypatch.setattr(interrupts, "_redelivery", [1])
        with pytest.raises(KeyboardInterrupt):
            assert interrupts.deferred_interrupt(signal.SIGINT, cleanup) is None
            time.sleep(5)
        # a fresh key press has its own clock, however long ago an earlier one came
        monkeypatch.setattr(interrupts, "_first_deferred", [time.monotonic() - waited])
        with pytest.raises(KeyboardInterrupt):
            assert interrupts.deferred_interrupt(signal.SIGINT, store) is None
            time.sleep(5)
        assert f"{os.sep}zen_stores{os.sep}" in interrupts._STORE_CODE
    finally:
        signal.signal(signal.SIGINT, previous)


def test_zenmls_step_signal_handler_leaves_ctrl_c_to_python_and_sigterm_to_zenml(monkeypatch):
    """``SignalHandler._handle`` (private) is where ZenML 0.98 queries its store inside
    the handler; ``_previous`` holds the handlers it replaced."""
    import inspect
    import signal
    from types import SimpleNamespace

    from zenml.orchestrators.signal_handler import SignalHandler

    from tabular_mlops.adapters import compat

    assert list(inspect.signature(SignalHandler._handle).parameters) == ["self", "signum", "frame"]
    monkeypatch.setattr(SignalHandler, "_handle", SignalHandler._handle)  # put back after
    previous = signal.getsignal(signal.SIGINT)
    compat.ctrl_c_without_the_store()
    signal.signal(signal.SIGINT, previous)  # the worker's own, as it was
    queried: list[int] = []

    def finalize(self):
        queried.append(1)
        return RuntimeError("ZenML's own path")

    monkeypatch.setattr(SignalHandler, "_finalize_shutdown", finalize)
    handler = SignalHandler.__new__(SignalHandler)
    here = _frame(__file__)
    handler._step_run = SimpleNamespace(name="train_model")  # ZenML logs its name
    handler._previous = {signal.SIGINT: signal.default_int_handler, signal.SIGTERM: signal.SIG_DFL}
    with pytest.raises(KeyboardInterrupt):
        handler._handle(signal.SIGINT, here)
    assert queried == []
    handler._previous[signal.SIGINT] = signal.SIG_IGN  # nohup: stays ignored during a step
    assert handler._handle(signal.SIGINT, here) is None
    with pytest.raises(RuntimeError, match="ZenML's own path"):
        handler._handle(signal.SIGTERM, here)
    assert queried == [1]


def test_a_ctrl_c_during_a_held_block_is_raised_when_the_block_is_done():
    """The switch of the model's address (go_live) holds Ctrl-C: cut in two, the new
    version held the address while the records named the old one."""
    import signal
    import time

    from tabular_mlops.adapters import interrupts
    from tabular_mlops.adapters.interrupts import ctrl_c_held

    previous = signal.signal(signal.SIGINT, interrupts.deferred_interrupt)
    done = []
    try:
        with pytest.raises(KeyboardInterrupt), ctrl_c_held():
            signal.raise_signal(signal.SIGINT)
            done.append("the rest of the block")
        assert done == ["the rest of the block"]
        with pytest.raises(ValueError), ctrl_c_held():  # the block's own failure first,
            signal.raise_signal(signal.SIGINT)
            raise ValueError("the switch failed")
        with pytest.raises(KeyboardInterrupt):
            time.sleep(5)  # and the Ctrl-C right after
        with ctrl_c_held():
            pass  # no Ctrl-C of its own: nothing raised
        with pytest.raises(KeyboardInterrupt), ctrl_c_held():  # pressed twice: stops at once
            signal.raise_signal(signal.SIGINT)
            signal.raise_signal(signal.SIGINT)
            done.append("never")
        assert done == ["the rest of the block"]
    finally:
        signal.signal(signal.SIGINT, previous)


def test_what_a_blank_store_is_made_and_owned_with_is_where_it_was():
    import inspect

    from mlflow.store.db.utils import _all_tables_exist, _initialize_tables
    from zenml.config.server_config import ServerConfiguration
    from zenml.zen_stores.base_zen_store import BaseZenStore
    from zenml.zen_stores.schemas.server_settings_schemas import ServerSettingsSchema
    from zenml.zen_stores.sql_zen_store import SqlZenStoreConfiguration

    assert callable(_initialize_tables) and callable(_all_tables_exist)
    assert "skip_default_registrations" in inspect.signature(BaseZenStore.create_store).parameters
    url = SqlZenStoreConfiguration.get_local_url("/somewhere")
    assert SqlZenStoreConfiguration(url=url).database == "/somewhere/zenml.db"
    assert ServerSettingsSchema.__tablename__ == "server_settings"
    fields = set(ServerSettingsSchema.model_fields)
    assert {"id", "server_name", "active", "enable_analytics", "display_announcements",
            "display_updates", "logo_url", "onboarding_state"} <= fields  # fmt: skip
    server = ServerConfiguration.get_server_config()
    assert hasattr(server, "external_server_id") and server.server_name


def test_zenml_activates_integrations_at_each_compile_and_they_are_activated_once(monkeypatch):
    import inspect

    from zenml.integrations.registry import integration_registry
    from zenml.pipelines.pipeline_definition import Pipeline

    from tabular_mlops.adapters import compat

    # what the wrapper is for: drop it when ZenML no longer activates at each compile
    assert "integration_registry.activate_integrations()" in inspect.getsource(Pipeline._compile)
    calls: list[int] = []
    monkeypatch.setattr(integration_registry, "activate_integrations", lambda: calls.append(1))
    compat.activate_integrations_once()
    compat.activate_integrations_once()  # wrapped once, not twice
    for _ in range(3):
        integration_registry.activate_integrations()
    assert calls == [1]


def test_the_local_zenml_server_is_started_and_stopped_as_its_cli_does():
    """``compat.start_local_zenml_server`` and ``stop_local_zenml_server`` do in this
    process what ``zenml login --local`` and ``zenml logout --local`` do: the calls,
    the fields and the provider they use are where ZenML's own CLI finds them."""
    import importlib
    import inspect

    from zenml.enums import ServerProviderType
    from zenml.zen_server.deploy import LocalServerDeployer, LocalServerDeploymentConfig

    login = importlib.import_module("zenml.cli.login")  # `zenml.cli.login` is also a command
    assert ServerProviderType.DAEMON.value == "daemon"
    fields: dict = {"provider": ServerProviderType.DAEMON, "ip_address": "127.0.0.1", "port": 8237}
    config = LocalServerDeploymentConfig(**fields)
    assert (str(config.ip_address), config.port) == ("127.0.0.1", 8237)
    for method in ("deploy_server", "connect_to_server", "remove_server", "get_server"):
        assert callable(getattr(LocalServerDeployer, method)), method
    started = inspect.getsource(login.start_local_server)
    assert "deployer.deploy_server(server_config" in started
    assert "deployer.connect_to_server()" in started
    assert "deployer.remove_server()" in inspect.getsource(login.logout.callback)


def test_an_interrupt_in_pydantics_schema_building_is_handed_back_not_raised_there():
    """pydantic-core turned a KeyboardInterrupt raised in pydantic's schema building into
    a SchemaError (a failed step instead of "Aborted!"): such code counts as a callback."""
    import sys
    from pathlib import Path

    from tabular_mlops.adapters.interrupts import _where

    path = Path("/venv/site-packages/pydantic/_internal/_generate.py")
    code = compile("frame = sys._getframe()", str(path), "exec")
    scope: dict = {"sys": sys}
    exec(code, scope)  # a frame whose code lives at that path
    assert _where(scope["frame"]) == (True, False)
    assert _where(sys._getframe()) == (False, False)
