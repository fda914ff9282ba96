"""Register an environment's ZenML stack from its YAML, idempotently.

``plan`` compares the YAML with what the ZenML store holds; ``apply`` makes the
store match (create what is missing, update changed configuration) and never
touches a component whose flavor would have to change, since ZenML cannot
change a flavor in place and deleting shared components is the user's call.
"""

from __future__ import annotations

import hashlib
import json
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

from pydantic import ValidationError

from tabular_mlops.adapters.config_files import ConfigError
from tabular_mlops.core.config import ComponentSpec, EnvironmentConfig

if TYPE_CHECKING:
    from zenml.client import Client

Action = Literal["create", "update", "unchanged"]
#: component kinds ZenML attaches to every stack by itself, which no YAML declares
ZENML_MANAGED_KINDS = frozenset({"log_store"})


@dataclass(frozen=True)
class ComponentPlan:
    kind: str
    spec: ComponentSpec
    action: Action
    #: configuration key -> (registered value, YAML value)
    changes: dict[str, tuple[Any, Any]] = field(default_factory=dict)


@dataclass(frozen=True)
class StackPlan:
    name: str
    action: Action
    components: list[ComponentPlan]
    #: component type -> (registered component name, YAML component name)
    component_changes: dict[str, tuple[str | None, str | None]] = field(default_factory=dict)

    @property
    def is_current(self) -> bool:
        return self.action == "unchanged" and all(c.action == "unchanged" for c in self.components)

    @property
    def creates(self) -> bool:
        """A component is to be registered: its flavor must be known to the store."""
        return any(c.action == "create" for c in self.components)

    def describe(self) -> str:
        lines = [f"stack '{self.name}': {self.action}"]
        for kind, (old, new) in self.component_changes.items():
            lines.append(f"  {kind}: {old or '<none>'} -> {new or '<removed>'}")
        for comp in self.components:
            lines.append(f"  {comp.kind} '{comp.spec.name}' ({comp.spec.flavor}): {comp.action}")
            for key, (old, new) in comp.changes.items():
                lines.append(f"      {key}: {old!r} -> {new!r}")
        return "\n".join(lines)


def _component_type(kind: str) -> Any:
    from zenml.enums import StackComponentType

    return StackComponentType(kind)


def check_component(client: Client, kind: str, spec: ComponentSpec, source: str) -> None:
    """Fail with the file and key when a flavor does not exist or rejects the configuration."""
    from zenml.stack.flavor import Flavor

    key = f"stack.components.{kind}"
    try:
        flavor_model = client.get_flavor_by_name_and_type(spec.flavor, _component_type(kind))
    except KeyError:
        known = sorted(f.name for f in client.get_flavors_by_type(_component_type(kind)))
        raise ConfigError(
            f"{source}: {key}.flavor: no {kind} flavor '{spec.flavor}'; "
            f"available: {', '.join(known)}"
        ) from None
    try:
        config_class = Flavor.from_model(flavor_model).config_class
    except (ImportError, RuntimeError) as exc:
        raise ConfigError(
            f"{source}: {key}.flavor: flavor '{spec.flavor}' needs its ZenML integration "
            f"installed ({exc})"
        ) from exc
    known = sorted(config_class.model_fields)
    unknown = sorted(set(spec.configuration) - set(known))
    if unknown:
        raise ConfigError(
            f"{source}: {key}.configuration.{unknown[0]}: unknown key for flavor "
            f"'{spec.flavor}'; known keys: {', '.join(known) or '(none)'}"
        )
    try:
        config_class(**spec.configuration)
    except KeyError as exc:  # ZenML resolves {{ secret.key }} references while validating
        secrets = sorted(set(re.findall(r"\{\{\s*(\w+)\.", str(spec.configuration))))
        raise ConfigError(
            f"{source}: {key}.configuration: {exc.args[0]} Create the secret(s) "
            f"{', '.join(secrets)} first, e.g. `zenml secret create {secrets[0]} --KEY=VALUE`."
        ) from None
    except ValidationError as exc:
        first = exc.errors()[0]
        where = ".".join(str(p) for p in first["loc"])
        suffix = f".{where}" if where else ""
        raise ConfigError(f"{source}: {key}.configuration{suffix}: {first['msg']}") from None


def check_secrets(client: Client, key: str, spec: ComponentSpec, source: str) -> None:
    """Every secret and key the component's configuration references (a whole value of
    ``{{ name.key }}``, as ZenML resolves them) exists in the store, looked up as ZenML
    does when a component reads the value: exact name, private before public; one
    lookup per secret. Run on every command: the flavor checks are skipped for a YAML
    that passed them, and only some flavors resolve their secrets when checked."""
    from zenml.utils import secret_utils

    wanted: dict[str, set[str]] = {}
    for value in spec.configuration.values():
        if secret_utils.is_secret_reference(value):
            reference = secret_utils.parse_secret_reference(value)
            wanted.setdefault(reference.name, set()).add(reference.key)
    for name, keys in sorted(wanted.items()):
        try:
            held = set(client.get_secret_by_name_and_private_status(name).values)
        except (KeyError, NotImplementedError):  # absent, or the store keeps no secrets
            flags = " ".join(f"--{k}=VALUE" for k in sorted(keys))
            raise ConfigError(
                f"{source}: {key}.configuration: secret '{name}' is not in the ZenML store. "
                f"Create it first: `zenml secret create {name} {flags}`."
            ) from None
        missing = sorted(keys - held)
        if missing:
            flags = " ".join(f"--{k}=VALUE" for k in missing)
            raise ConfigError(
                f"{source}: {key}.configuration: secret '{name}' has no key "
                f"{', '.join(repr(k) for k in missing)}. Add it: "
                f"`zenml secret update {name} {flags}`."
            )


def register_custom_flavors(client: Client) -> None:
    """This project's own flavors (the local-file alerter, the model deployers), known to
    ZenML before any component names them; registered once per store."""
    from zenml.utils import source_utils

    from tabular_mlops.adapters.alerts import CUSTOM_FLAVORS as ALERTERS
    from tabular_mlops.adapters.deployment.model_deployer import CUSTOM_FLAVORS as DEPLOYERS

    for flavor_source in (*ALERTERS, *DEPLOYERS):
        flavor = source_utils.load(flavor_source)()
        try:
            client.get_flavor_by_name_and_type(flavor.name, flavor.type)
        except KeyError:
            client.create_flavor(source=flavor_source, component_type=flavor.type)


def plan(
    client: Client, environment: EnvironmentConfig, source: str, check_flavors: bool = True
) -> StackPlan:
    """What ``apply`` would do, after checking every component against its flavor (unless
    ``check_flavors`` is off: this YAML passed those checks before, see ``activate``)."""
    if check_flavors:
        register_custom_flavors(client)
    declared = environment.stack.components.declared()
    registered_by_kind = _registered_components(client, [spec.name for spec in declared.values()])
    component_plans = []
    for kind, spec in declared.items():
        check_secrets(client, f"stack.components.{kind}", spec, source)
        if check_flavors:
            check_component(client, kind, spec, source)
        registered = registered_by_kind.get((kind, spec.name)) or _looked_up(client, kind, spec)
        if registered is None:
            component_plans.append(ComponentPlan(kind, spec, "create"))
            continue
        if registered.flavor_name != spec.flavor:
            raise ConfigError(
                f"{source}: stack.components.{kind}.flavor: component '{spec.name}' is "
                f"registered with flavor '{registered.flavor_name}', the YAML says "
                f"'{spec.flavor}'. ZenML cannot change a flavor in place: give the "
                f"component a new name, or delete it with "
                f"`zenml {kind.replace('_', '-')} delete {spec.name}`."
            )
        existing = registered.configuration
        keys = set(existing) | set(spec.configuration)
        changes = {
            k: (existing.get(k), spec.configuration.get(k))
            for k in sorted(keys)
            if existing.get(k) != spec.configuration.get(k)
        }
        component_plans.append(
            ComponentPlan(kind, spec, "update" if changes else "unchanged", changes)
        )

    stack_name = environment.stack.name
    try:
        stack = client.get_stack(stack_name, allow_name_prefix_match=False)
    except KeyError:
        return StackPlan(stack_name, "create", component_plans)
    registered_names = {
        str(kind.value): comps[0].name for kind, comps in stack.components.items() if comps
    }
    component_changes: dict[str, tuple[str | None, str | None]] = {
        p.kind: (registered_names.get(p.kind), p.spec.name)
        for p in component_plans
        if registered_names.get(p.kind) != p.spec.name
    }
    # A component the YAML no longer declares leaves the stack (e.g. the BentoML model
    # deployer earlier versions declared); the log store is ZenML's own default.
    for kind, name in registered_names.items():
        if kind not in declared and kind not in ZENML_MANAGED_KINDS:
            component_changes[kind] = (name, None)
    action: Action = "update" if component_changes else "unchanged"
    return StackPlan(stack_name, action, component_plans, component_changes)


def _registered_components(client: Client, names: list[str]) -> dict[tuple[str, str], Any]:
    """The components registered under ``names``, by (kind, name), with their
    configuration: one query, where one lookup per component took 70 ms a command."""
    from zenml.utils.pagination_utils import depaginate

    found = depaginate(
        client.list_stack_components, name=f"oneof:{json.dumps(sorted(set(names)))}", hydrate=True
    )
    return {(str(c.type.value), c.name): c for c in found}


def _looked_up(client: Client, kind: str, spec: ComponentSpec) -> Any:
    """The component the one query did not find, looked up as ZenML looks a name up (a
    MySQL-backed server compares names without case), or None: it is to be registered."""
    try:
        return client.get_stack_component(
            _component_type(kind), spec.name, allow_name_prefix_match=False
        )
    except KeyError:
        return None


def apply(client: Client, stack_plan: StackPlan) -> None:
    """Make the ZenML store match ``stack_plan``."""
    for comp in stack_plan.components:
        if comp.action == "create":
            client.create_stack_component(
                name=comp.spec.name,
                flavor=comp.spec.flavor,
                component_type=_component_type(comp.kind),
                configuration=comp.spec.configuration,
            )
        elif comp.action == "update":
            # ZenML merges the update into the stored configuration and drops
            # keys set to None, which is how a key removed from the YAML goes.
            client.update_stack_component(
                comp.spec.name,
                _component_type(comp.kind),
                configuration={key: new for key, (_, new) in comp.changes.items()},
            )
    components: dict[Any, Any] = {
        _component_type(c.kind): c.spec.name for c in stack_plan.components
    }
    components.update(
        {
            _component_type(kind): []
            for kind, (_, new) in stack_plan.component_changes.items()
            if new is None
        }
    )
    if stack_plan.action == "create":
        client.create_stack(name=stack_plan.name, components=components)
    elif stack_plan.action == "update":
        client.update_stack(stack_plan.name, component_updates=components)


def active_project_name(client: Client) -> str | None:
    """The client's active project, or None when the store has none of that id (the
    repository's config named a project of another environment's store)."""
    try:
        return str(client.active_project.name)
    except RuntimeError:
        return None


def activate(client: Client, environment: EnvironmentConfig, source: str) -> StackPlan:
    """Register (or bring up to date) and activate the environment's stack, in the
    environment's own ZenML project (created the first time).

    Checking every component against its flavor imports each flavor's ZenML
    integration (0.3-0.4 s a command): it is done when this YAML, ZenML's version or
    this project's flavors changed since it last passed on this store
    (``checked_fingerprint``; the last few are kept, so switching between copies of
    one stack's YAML checks each once), and again when a component is to be
    registered. The YAML is compared with what the store holds on every command all
    the same, so a store another command or ``zenml ... update`` changed is brought
    back to the YAML.

    Two commands that find something to register take turns (the second plans again
    once the first is done): both found the stack missing and both registered it, and
    one failed ("Unable to register 'orchestrator' ...: a component with that name
    already exists"). A command that finds the stack as its YAML says takes no turn."""
    from tabular_mlops.adapters import file_locks

    fingerprint = checked_fingerprint(environment)
    checked, stack_plan = _plan_as_checked(
        client, environment, source, fingerprint in checked_before(environment)
    )
    if not stack_plan.is_current or active_project_name(client) != environment.project:
        with file_locks.exclusive(_registration_lock()):
            if not stack_plan.is_current:  # as another command may have left it
                checked, stack_plan = _plan_as_checked(client, environment, source, checked)
            apply(client, stack_plan)
            _use_project(client, environment.project)
    if not checked:
        remember_checked(environment, fingerprint)
    from tabular_mlops.adapters.compat import forget_cached_stacks

    # also when this plan found the store current: another command may have changed a
    # component since this process built the stack (a copy of the YAML with the model
    # deployer elsewhere, applied by another process), which leaves the stack's update
    # time, ZenML's cache key, as it was
    forget_cached_stacks()
    if client.active_stack_model.name != stack_plan.name:
        client.activate_stack(stack_plan.name)
    from tabular_mlops.adapters import code_repository

    if environment.stack.components.orchestrator.flavor == "local":
        code_repository.register(client)
    code_repository.forget_cached()  # the project, and so its repositories, may have changed
    return stack_plan


def _plan_as_checked(
    client: Client, environment: EnvironmentConfig, source: str, checked: bool
) -> tuple[bool, StackPlan]:
    """The plan, without the flavor checks when this YAML passed them on this store
    (``checked``), unless a component is to be registered: its flavor must be on this
    store too. Whether the YAML counts as checked now, and the plan."""
    stack_plan = plan(client, environment, source, check_flavors=not checked)
    if checked and stack_plan.creates:
        return False, plan(client, environment, source)
    return checked, stack_plan


def _registration_lock() -> Path:
    """The lock two commands registering a stack or a project take turns at: beside
    ZenML's global config, one per environment's client state."""
    from zenml.config.global_config import GlobalConfiguration

    return Path(GlobalConfiguration().config_directory) / "tabular_mlops_stacks.lock"


def _use_project(client: Client, project: str) -> None:
    """Make ``project`` the client's active one, created the first time. Only what changes
    is written: the client's config file is rewritten on every activation, and a second
    command starting at the same moment can read it half-written (seen with two
    trainings started together)."""
    if active_project_name(client) == project:
        return
    try:
        client.set_active_project(project)
    except KeyError:
        client.create_project(
            name=project, description=f"models, runs and stages of the '{project}' environment"
        )
        client.set_active_project(project)


#: beside ZenML's own config file: per store and stack, the fingerprint last checked
STAMP_FILE = "tabular_mlops_stacks.json"
#: this project's flavors and their configuration classes: a change checks again
FLAVOR_MODULES = (
    "adapters/stacks.py",
    "adapters/alerts.py",
    "adapters/deployment/model_deployer.py",
    "core/config.py",
)


def checked_fingerprint(environment: EnvironmentConfig) -> str:
    """What the flavor checks of ``environment``'s stack depend on: its YAML and project,
    ZenML's version (its flavors' configuration classes) and this project's flavors."""
    import zenml

    digest = hashlib.sha256(
        json.dumps(
            [environment.stack.model_dump(mode="json"), environment.project, zenml.__version__],
            sort_keys=True,
        ).encode()
    )
    package = Path(__file__).resolve().parents[1]
    for module in FLAVOR_MODULES:
        digest.update((package / module).read_bytes())
    return digest.hexdigest()


def _stamps() -> tuple[Path, str]:
    from zenml.config.global_config import GlobalConfiguration

    config = GlobalConfiguration()
    return Path(config.config_directory) / STAMP_FILE, str(config.store_configuration.url)


def _read_stamps(path: Path) -> dict[str, Any]:
    try:
        stamps = json.loads(path.read_text())
    except (OSError, ValueError):
        return {}
    return stamps if isinstance(stamps, dict) else {}


#: fingerprints kept per stack: switching between a few YAMLs of one stack (a copy with the
#: model deployer on another port, as tests and benchmarks make) checks each once
KEPT_FINGERPRINTS = 8


def checked_before(environment: EnvironmentConfig) -> list[str]:
    """The fingerprints with which this store's stack last passed the flavor checks."""
    path, key = _stamps()
    return _fingerprints(_read_stamps(path).get(key), environment.stack.name)


def _fingerprints(entry: Any, stack_name: str) -> list[str]:
    """A store's stamps entry's fingerprints for ``stack_name``."""
    value = entry.get(stack_name) if isinstance(entry, dict) else None
    if isinstance(value, str):  # one fingerprint, as earlier versions kept it
        value = [value]
    return [v for v in value if isinstance(v, str)] if isinstance(value, list) else []


def remember_checked(environment: EnvironmentConfig, fingerprint: str) -> None:
    from tabular_mlops.core.files import write_atomically

    path, key = _stamps()
    stamps = _read_stamps(path)
    entry = stamps.get(key)
    if not isinstance(entry, dict):
        entry = stamps[key] = {}
    kept = [f for f in _fingerprints(entry, environment.stack.name) if f != fingerprint]
    entry[environment.stack.name] = [*kept, fingerprint][-KEPT_FINGERPRINTS:]
    write_atomically(path, json.dumps(stamps, indent=1, sort_keys=True))
