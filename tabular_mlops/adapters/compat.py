"""The one place that reaches into ZenML's, BentoML's, skl2onnx's and psutil's private parts.

Each function names what it needs and why; ``tests/unit/test_compat.py`` imports
every private symbol used here, so an upgrade that moves one fails by name.
"""

from __future__ import annotations

import functools
import os
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import psutil


def dynamic_run_name() -> str | None:
    """The name of the dynamic pipeline run whose entrypoint is executing here, if any.

    In a dynamic run a step call runs the step at once and returns its outputs
    (not a future), so ordering by ``after=`` means nothing there; and a run's
    failure hook fires outside any step, where ``get_step_context()`` raises.
    ZenML 0.98 exposes neither fact publicly.
    """
    from zenml.execution.pipeline.dynamic.run_context import DynamicPipelineRunContext

    context = DynamicPipelineRunContext.get()
    return None if context is None else str(context.run.name)


def use_global_config(directory: str) -> bool:
    """Point this process's ZenML client at the global config in ``directory`` (its server
    URL, active project and stack); whether anything changed.

    ZenML keeps one global config per ``ZENML_CONFIG_PATH``, read once into process-wide
    singletons; an environment with a ZenML server of its own keeps its client state
    apart, so a dead staging server never stands between dev and dev's store. The
    singletons are dropped so that the next ``Client()`` reads the new place (ZenML
    0.98 offers no public way to switch a running process).
    """
    import os

    current = os.environ.get(ZENML_CONFIG_PATH_ENV)
    if current == directory or (current is None and directory == default_global_config()):
        return False  # before importing ZenML: `deploy --status` on dev never does
    os.environ[ZENML_CONFIG_PATH_ENV] = directory
    _read_global_config_again()
    return True


def _read_global_config_again() -> None:
    """Drop ZenML's process-wide global config and client: the next ``Client()`` reads the
    global config file again."""
    from zenml.client import Client
    from zenml.config.global_config import GlobalConfiguration

    GlobalConfiguration._reset_instance()
    Client._reset_instance()


#: ZenML's variable for its global config directory (``zenml.constants``)
ZENML_CONFIG_PATH_ENV = "ZENML_CONFIG_PATH"


def default_global_config() -> str:
    """ZenML's global config directory as this process was started with it: what
    ``zenml.utils.io_utils.get_global_config_directory`` returns, without importing ZenML
    (1.7 s), so that commands that never open a store start at once."""
    import os
    from pathlib import Path

    import click

    configured = os.environ.get(ZENML_CONFIG_PATH_ENV)
    return str(Path(configured).resolve()) if configured else click.get_app_dir("zenml")


def forget_cached_stacks() -> None:
    """Drop ZenML's process-wide cache of stack objects.

    ZenML 0.98 caches a ``Stack`` by the stack's id and update time; updating one of
    its *components* (a new tracking URI) leaves that time as it was, so the process
    kept using the old component configuration (seen: a reaper talking to the MLflow
    server of an earlier staging, dead, for minutes)."""
    from zenml.stack import stack

    stack._STACK_CACHE.clear()


def forget_code_repositories() -> None:
    """Make ZenML look for the active code repository again: it keeps its answer per
    path for the whole process (``code_repository_utils._CODE_REPOSITORY_CACHE``)."""
    from zenml.utils import code_repository_utils

    code_repository_utils._CODE_REPOSITORY_CACHE.clear()


@contextmanager
def no_code_repository_lookup(source_root: str) -> Iterator[None]:
    """Within the block, ZenML resolves sources under ``source_root`` as if no code
    repository were registered, without opening a store.

    ZenML 0.98 resolves a pipeline's failure hook when the ``@pipeline`` decorator runs,
    and resolving asks the store for code repositories: importing a pipeline module
    opened the ZenML store (creating one where none was). The warm command server
    imports the pipelines before any command has named its environment, and so its
    store; each command looks again when it activates its stack
    (:func:`forget_code_repositories`)."""
    from zenml.utils import code_repository_utils

    cache = code_repository_utils._CODE_REPOSITORY_CACHE
    key = os.path.abspath(source_root)  # noqa: PTH100 (ZenML keys by abspath, not resolve)
    cache[key] = None
    try:
        yield
    finally:
        cache.pop(key, None)


# --------------------------------------------------------------------------- ZenML
def cache_source_package_lookup() -> None:
    """Compute ZenML's package-of-a-module answer once per module name.

    ZenML 0.98 resolves the source of every artifact's type each time it saves one,
    and for a type from an installed distribution (pandas, scikit-learn) it scans the
    file lists of every installed distribution to name its package: about 0.1 s per
    artifact here, five to six times a run. The answer cannot change while a process
    runs."""
    from zenml.utils import source_utils

    lookup = source_utils._get_package_for_module
    if not hasattr(lookup, "cache_info"):
        source_utils._get_package_for_module = functools.cache(lookup)


@contextmanager
def step_options_for_a_while(step: Any, options: dict[str, Any]) -> Iterator[None]:
    """``step.configure(**options)`` for the duration of a block of a dynamic run, then
    the step's configuration as it was: a dynamic pipeline's child runs configure the
    module-level steps they share, and ZenML 0.98 keeps what a dynamic run configures
    in ``BaseStep._dynamic_configuration``, with no public way to undo it."""
    saved = step._dynamic_configuration
    try:
        step.configure(**options)
        yield
    finally:
        step._dynamic_configuration = saved


def compile_pipeline(pipeline: Any) -> tuple[Any, Any]:
    """(snapshot, schedule) of a prepared pipeline, as ZenML compiles it before a run,
    without running it (for ``--dry-run``): ZenML 0.98's ``_compile`` and its
    ``_run_args``, build reuse left out."""
    arguments = {k: v for k, v in pipeline._run_args.items() if k != "prevent_build_reuse"}
    snapshot, schedule, _ = pipeline._compile(**arguments)
    return snapshot, schedule


def write_yaml_atomically() -> None:
    """Make ZenML's ``yaml_utils.write_yaml`` replace local files in one step.

    ZenML 0.98 rewrites ``.zen/config.yaml`` whenever a client starts (it sanitises
    the active stack and project) by truncating the file and writing it again. A
    second command starting at that moment reads an empty file and dies in ZenML's
    own config validator (``'NoneType' object has no attribute 'update'``): seen with
    two ``run.py train`` started together. Writing a temporary file beside it and
    renaming it over the old one means a reader sees the old or the new file."""
    import yaml
    from zenml.utils import io_utils, yaml_utils

    original = yaml_utils.write_yaml
    if getattr(original, "atomic", False):
        return

    def write_yaml(file_path: str, contents: Any, sort_keys: bool = True) -> None:
        if io_utils.is_remote(file_path):
            original(file_path, contents, sort_keys=sort_keys)
            return
        path = Path(file_path)
        if not path.parent.is_dir():
            raise FileNotFoundError(f"Directory {path.parent} does not exist.")
        temporary = path.with_name(f".{path.name}.{os.getpid()}.tmp")
        temporary.write_text(yaml.dump(contents, sort_keys=sort_keys))
        temporary.replace(path)

    write_yaml.atomic = True  # type: ignore[attr-defined]
    yaml_utils.write_yaml = write_yaml


def skip_bentoml_integration() -> None:
    """Leave ZenML's BentoML integration out of ZenML's activation of integrations.

    ZenML 0.98 activates every installed integration whenever it compiles a pipeline
    (``integration_registry.activate_integrations``, from ``Pipeline._compile``), and
    BentoML's imports ZenML's pre-1.2 BentoML service and model deployer: 0.4-0.8 s of
    every command that runs a pipeline, for modules this project never uses (it serves
    with a model deployer flavor of its own and stores no BentoML artifact). The
    integration stays registered (its flavors list as before); only its ``activate``
    becomes a no-op. Importing the integration's package alone (a few milliseconds)
    registers the class the registry activates; the registry's own start, which
    imports all of ZenML's integrations, stays with the commands that compile."""
    from zenml.integrations.bentoml import BentoMLIntegration

    BentoMLIntegration.activate = classmethod(lambda cls: None)  # type: ignore[method-assign,assignment]


def activate_integrations_once() -> None:
    """Activate ZenML's installed integrations once per process, not at every compile.

    ZenML 0.98 activates them each time it compiles a pipeline (``Pipeline._compile``
    calls ``integration_registry.activate_integrations``), and that checks the installed
    packages' metadata for each of its integrations again: 0.35 s a pipeline, though
    what was imported and registered the first time stays so in the process. ``run.py
    all`` compiles three pipelines, a warm server's commands fork from a process that
    activated them (``cli/warm.py``), and a test worker compiles dozens."""
    from zenml.integrations.registry import integration_registry

    original = integration_registry.activate_integrations
    if getattr(original, "once", False):
        return
    done: list[bool] = []

    def activate_integrations() -> None:
        if not done:
            original()
            done.append(True)

    activate_integrations.once = True  # type: ignore[attr-defined]
    integration_registry.activate_integrations = activate_integrations  # type: ignore[method-assign]


def ctrl_c_without_the_store() -> None:
    """Ctrl-C (SIGINT) raises ``KeyboardInterrupt`` as in any Python program, outside any
    database call (``deferred_interrupt``), also during a step, where ZenML 0.98's
    ``SignalHandler._handle`` would read the run and the step, and write their status,
    from within the handler: in the middle of whatever the step was doing.

    Interrupting `train` at a given step 0.05-0.3 s after it started, before: of 25
    interrupts, one hung three minutes on ZenML's database and failed with "database
    is locked"; four went on to the end (the interrupt was lost in a weak reference's
    clean-up). ZenML's step launcher still marks the step failed, after
    the interrupted code has rolled its transaction back. An ignored SIGINT (``nohup``,
    ``cmd &`` in a script) stays ignored during steps, which ZenML's handler did not
    honour. SIGTERM (how an orchestrator stops a step, and ZenML's stopped-run
    protocol) keeps ZenML's handler."""
    import signal
    import threading

    from zenml.orchestrators.signal_handler import SignalHandler

    from tabular_mlops.adapters.interrupts import deferred_interrupt

    if (
        threading.current_thread() is threading.main_thread()
        and signal.getsignal(signal.SIGINT) is signal.default_int_handler
    ):
        signal.signal(signal.SIGINT, deferred_interrupt)
    original = SignalHandler._handle
    if getattr(original, "without_the_store", False):
        return

    def _handle(self: Any, signum: int, frame: Any) -> None:
        if signum != signal.SIGINT:
            original(self, signum, frame)
            return None
        previous = self._previous.get(signum)
        if previous is signal.SIG_IGN:
            return None
        if callable(previous) and previous not in (deferred_interrupt, signal.default_int_handler):
            previous(signum, frame)  # a handler of the command's own
        deferred_interrupt(signum, frame)
        return None

    _handle.without_the_store = True  # type: ignore[attr-defined]
    SignalHandler._handle = _handle  # type: ignore[method-assign]


def mark_run_failed(run: Any, reason: str) -> None:
    """Mark ``run`` (a ``PipelineRunResponse``) and its unfinished steps failed.

    ZenML 0.98 has no public call for a run whose process died (``kill -9``): its
    orchestrator marks runs through the store's ``update_run`` and ``update_run_step``,
    which is what this does, with the same update models."""
    from datetime import UTC, datetime

    from zenml.client import Client
    from zenml.enums import ExecutionStatus
    from zenml.models import PipelineRunUpdate, StepRunUpdate

    store = Client().zen_store
    now = datetime.now(UTC).replace(tzinfo=None)
    for step in run.steps.values():
        if not step.status.is_finished:
            store.update_run_step(
                step.id, StepRunUpdate(status=ExecutionStatus.FAILED, end_time=now)
            )
    store.update_run(run.id, PipelineRunUpdate(status=ExecutionStatus.FAILED, status_reason=reason))


def finish_onboarding_survey(url: str) -> None:
    """Answer the dashboard's first-visit survey on the local server at ``url``: no
    e-mail, no newsletter, survey finished.

    The dashboard shows the survey while the user's ``email_opted_in`` is unset or its
    metadata lacks ``finished_onboarding_survey``; this is the request the survey itself
    sends (``PUT /api/v1/current-user``), which the local server takes without a login.
    ZenML's client cannot do it: its ``update_user`` goes through ``/users/{id}``, which
    drops ``email_opted_in`` (ZenML 0.98). Raises ``httpx.HTTPError`` when the server
    refuses and ``KeyError`` when the user's shape has changed."""
    import httpx
    from zenml.constants import API, CURRENT_USER, VERSION_1

    endpoint = f"{url}{API}{VERSION_1}{CURRENT_USER}"
    current = httpx.get(endpoint, timeout=10).json()
    answer = {
        "name": current["name"],
        "email_opted_in": False,
        "user_metadata": {
            **current["metadata"]["user_metadata"],
            "finished_onboarding_survey": True,
        },
    }
    httpx.put(endpoint, json=answer, timeout=10).raise_for_status()


def start_local_zenml_server(host: str, port: int) -> str:
    """What ``zenml login --local --ip-address HOST --port PORT`` does
    (``zenml/cli/login.py:start_local_server``), in this process: the local server as
    ZenML's daemon over this machine's store, and this client connected to it. Its URL.

    The CLI in a process of its own paid its imports again (3-4 CPU-s and as many
    seconds of every `stack up` and `dashboard`, measured 2026-12-05)."""
    from zenml.enums import ServerProviderType
    from zenml.zen_server.deploy import LocalServerDeployer, LocalServerDeploymentConfig

    deployer = LocalServerDeployer()
    url = f"http://{host}:{port}"
    # as the CLI passes them: the daemon's own fields, validated by its provider
    fields: dict[str, Any] = {"provider": ServerProviderType.DAEMON, "ip_address": host,
                              "port": port}  # fmt: skip
    config = LocalServerDeploymentConfig(**fields)
    server = deployer.deploy_server(config)
    deployer.connect_to_server()
    return str(server.status.url) if server.status and server.status.url else url


def stop_local_zenml_server() -> None:
    """``zenml logout --local``, in this process: the local server stopped (if ZenML
    records one, running or dead), and this client back on its own store."""
    from zenml.zen_server.deploy import LocalServerDeployer

    LocalServerDeployer().remove_server()


# --------------------------------------------------------------------------- BentoML
def bento_env_schema() -> Any:
    """BentoML 1.4's schema of a bento's baked environment variables (``envs`` in its
    build config), which its public ``bentoml.bentos.build`` takes only as these."""
    from bentoml._internal.bento.build_config import BentoEnvSchema

    return BentoEnvSchema


class _Libyaml:
    """PyYAML as BentoML's bento module sees it, ``safe_load`` and ``safe_dump`` through
    libyaml."""

    libyaml = True

    def __init__(self, yaml: Any) -> None:
        self._yaml = yaml

    def safe_load(self, stream: Any) -> Any:
        return self._yaml.load(stream, Loader=self._yaml.CSafeLoader)

    def safe_dump(self, data: Any, stream: Any = None, **kwargs: Any) -> Any:
        return self._yaml.dump(data, stream, Dumper=self._yaml.CSafeDumper, **kwargs)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._yaml, name)


def bento_yaml_through_libyaml() -> None:
    """Have BentoML 1.4 read and write each ``bento.yaml`` with libyaml, not PyYAML's pure
    Python loader and dumper (``Bento.from_path`` -> ``BaseBentoInfo.from_yaml_file`` ->
    ``yaml.safe_load``; ``Bento.flush_info`` -> ``BaseBentoInfo.dump`` ->
    ``yaml.safe_dump``; through the ``yaml`` global of ``bentoml._internal.bento.bento``).

    A bento's YAML holds the image's hashed requirements (190 KB here): BentoML parsed
    each one in 81 ms against 2 ms (the same objects), and a deploy reads a bento about
    20 times (listing, pruning, starting), 1.3 s of a 9 s deploy; each build wrote it
    with the pure Python dumper (0.14 s of a build's 0.6 s in the test suite's profile).
    Without libyaml (PyYAML built without it) nothing changes."""
    import yaml
    from bentoml._internal.bento import bento as bento_module

    if getattr(bento_module.yaml, "libyaml", False) or not yaml.__with_libyaml__:
        return
    bento_module.yaml = _Libyaml(bento_module.yaml)  # type: ignore[assignment]


def bento_store_dirs() -> tuple[Path, Path]:
    """BentoML's model store and bento store directories (under ``BENTOML_HOME``): where
    a torn entry (a version directory without its YAML) is looked for. BentoML 1.4 offers
    the stores' paths only through its private container (``Store._path`` behind it)."""
    from bentoml._internal.configuration.containers import BentoMLContainer

    return Path(BentoMLContainer.model_store_dir.get()), Path(
        BentoMLContainer.bento_store_dir.get()
    )


@contextmanager
def bento_containerfile(bento: Any) -> Iterator[tuple[str, str]]:
    """(build context root, Dockerfile path) of a bento, as ``bentoml containerize``
    writes them, without a Docker daemon (the stack's image builder builds it)."""
    from bentoml._internal.container import construct_containerfile

    with construct_containerfile(bento, enable_buildkit=False) as (root, dockerfile):
        yield root, dockerfile


def is_pickled(artifact: Any) -> bool:
    """Whether ZenML's cloudpickle materializer (or a subclass: the scikit-learn one) wrote
    ``artifact``: loading it runs code."""
    from zenml.materializers.cloudpickle_materializer import CloudpickleMaterializer
    from zenml.utils import source_utils

    materializer = source_utils.load(artifact.materializer)
    return isinstance(materializer, type) and issubclass(materializer, CloudpickleMaterializer)


def pickled_file_of(artifact_uri: str) -> str:
    """Where ZenML's cloudpickle materializer (the scikit-learn one is a subclass) keeps an
    artifact's bytes: the bytes its recorded ``content_hash`` is the SHA-256 of."""
    from zenml.materializers.cloudpickle_materializer import DEFAULT_FILENAME

    return f"{artifact_uri.rstrip('/')}/{DEFAULT_FILENAME}"  # a remote store's too (s3://)


def cached_zenml_user() -> str | None:
    """The name of the ZenML user this process's client already fetched (what a pipeline
    run or a store lookup leaves in ZenML 0.98's ``Client._active_user``); None when it
    has not. Never asks the store: an audit entry must not wait on a dead server."""
    import sys

    if "zenml.client" not in sys.modules:
        return None
    from zenml.client import Client

    user = getattr(Client(), "_active_user", None)
    name = getattr(user, "name", None)
    return str(name) if name else None


def skl2onnx_tree_missing_as_ints() -> None:
    """Let skl2onnx export histogram gradient boosting under onnx 1.23.

    skl2onnx 1.20's converter gives each leaf's ``nodes_missing_value_tracks_true`` as
    Python ``False`` beside the branches' integers, and onnx 1.23 refuses the mixed
    list ("Field onnx.AttributeProto.ints: Expected an int, got a boolean"), so no such
    model was ever converted. Its module-level ``tree_ensemble.add_node`` (private) is
    wrapped to hand it an integer, what the attribute holds anyway. The export's check
    still decides: ONNX's tree ensembles compare in float32, which may move a histogram
    model's probabilities by more than its tolerance (then it names that instead)."""
    from skl2onnx.common import tree_ensemble

    original = tree_ensemble.add_node
    if getattr(original, "ints", False):
        return

    def add_node(*args: Any, nodes_missing_value_tracks_true: Any = 0, **kwargs: Any) -> Any:
        return original(
            *args, nodes_missing_value_tracks_true=int(nodes_missing_value_tracks_true), **kwargs
        )

    add_node.ints = True  # type: ignore[attr-defined]
    tree_ensemble.add_node = add_node


def process_start(process: psutil.Process) -> float:
    """When ``process`` started, in seconds since the machine booted: what psutil itself
    tells a process from a later one given the same pid (``Process._get_ident``), which no
    change of the system clock moves.

    The public ``create_time()`` is that plus the boot time as the clock puts it now
    (``/proc/stat``'s ``btime`` on Linux), which moves by a whole second whenever the clock
    is stepped, or slewed across a second by NTP: measured on 2026-12-04, every 20-40 s on
    one machine, where every live server then looked like another process given its pid
    (psutil 7.2 offers the start since boot only through the private method)."""
    _, started = process._get_ident()
    return float(started)


def create_blank_zenml_store(directory: Path) -> Path:
    """A ZenML SQLite store in ``directory`` (its file's path) as ZenML's first start
    leaves it before its defaults: the tables, the migration stamp, the server settings
    and the flavors of every integration, and no project, stack or user
    (``blank_stores``).

    Registering the flavors is 2.2 of the 3.4 s ZenML 0.98 takes to create a store; ZenML
    offers no public way to create a store apart from the global config's."""
    from zenml.zen_stores.base_zen_store import BaseZenStore
    from zenml.zen_stores.sql_zen_store import SqlZenStoreConfiguration

    directory.mkdir(parents=True, exist_ok=True)
    config = SqlZenStoreConfiguration(url=SqlZenStoreConfiguration.get_local_url(str(directory)))
    store = BaseZenStore.create_store(config, skip_default_registrations=True)
    store.engine.dispose()  # type: ignore[attr-defined]
    return Path(str(config.database))


def local_zenml_store_path() -> Path | None:
    """The SQLite file of this process's ZenML store (made or not yet), or None: a
    server, a database other than SQLite. Read from the URL: a store configuration
    read from ZenML's config file or ``ZENML_STORE_URL`` is ZenML's base class, which
    has no ``database``."""
    from sqlalchemy.engine import make_url
    from zenml.config.global_config import GlobalConfiguration
    from zenml.enums import StoreType

    config = GlobalConfiguration().store_configuration
    if config.type != StoreType.SQL or not config.url.startswith("sqlite"):
        return None
    database = make_url(config.url).database
    return Path(database) if database else None


def read_global_config_again_if_stale() -> None:
    """Drop this process's ZenML global config and client if they were read before another
    process created the store and wrote the config file (it names no store): the next
    ``Client()`` reads the file, with that process's user id and store."""
    from zenml.config.global_config import GlobalConfiguration

    if GlobalConfiguration().store is None:
        _read_global_config_again()


def own_zenml_server_settings(database: Path) -> None:
    """Give a copied blank store the server settings ZenML writes when it creates a store
    (``SqlZenStore.migrate_database``, the empty-database branch): this global config's
    id, name, analytics and announcement choices, not those of the store it was copied
    from."""
    from sqlalchemy import create_engine
    from sqlmodel import Session, delete
    from zenml.config.global_config import GlobalConfiguration
    from zenml.config.server_config import ServerConfiguration
    from zenml.zen_stores.schemas.server_settings_schemas import ServerSettingsSchema

    server_config = ServerConfiguration.get_server_config()
    engine = create_engine(f"sqlite:///{database}")
    try:
        with Session(engine) as session:
            session.exec(delete(ServerSettingsSchema))
            session.add(
                ServerSettingsSchema(
                    id=server_config.external_server_id or GlobalConfiguration().user_id,
                    server_name=server_config.server_name,
                    active=False,
                    enable_analytics=GlobalConfiguration().analytics_opt_in,
                    display_announcements=server_config.display_announcements,
                    display_updates=server_config.display_updates,
                    logo_url=None,
                    onboarding_state=None,
                )
            )
            session.commit()
    finally:
        engine.dispose()


def create_blank_mlflow_store(database: Path) -> None:
    """An MLflow SQLite tracking store at ``database`` with its tables, migrated to the
    head, and no experiment: MLflow creates the default one when it first opens it, with
    the artifact root of whoever opens it (``blank_stores``). The migrations take MLflow
    3 about 1.9 s on a fresh store; ``_initialize_tables`` is the step its store runs on
    an empty database."""
    import sqlalchemy
    from mlflow.store.db.utils import _initialize_tables

    engine = sqlalchemy.create_engine(f"sqlite:///{database}")
    try:
        _initialize_tables(engine)
    finally:
        engine.dispose()
