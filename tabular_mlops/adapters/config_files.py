"""Load, overlay and validate the YAML configs.

Precedence, lowest first: the pipeline config file, the environment's
``overrides`` for that pipeline, then ``--set key.path=value`` flags.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any, TypeVar

import yaml
from pydantic import BaseModel, ValidationError

from tabular_mlops.adapters.paths import CONFIG_DIR, ENVIRONMENTS_DIR, anchor
from tabular_mlops.core.config import EnvironmentConfig, LocalServingConfig, RunConfig

ModelT = TypeVar("ModelT", bound=BaseModel)
RunT = TypeVar("RunT", bound=RunConfig)


class ConfigError(ValueError):
    """A config file or flag is wrong; the message names the file and the key."""


def environment_name(env: str) -> str:
    """``dev``, also when the environment was given as the path of its YAML file: the name
    of its stack (checked when it is loaded), its audit trail and its folders."""
    return Path(env).stem if env.endswith((".yaml", ".yml")) else env


def available_environments() -> list[str]:
    return sorted(path.stem for path in ENVIRONMENTS_DIR.glob("*.yaml"))


def read_yaml(path: Path) -> dict[str, Any]:
    if not path.is_file():
        raise ConfigError(f"{path}: no such config file")
    try:
        data = yaml.safe_load(path.read_text())
    except yaml.YAMLError as exc:
        raise ConfigError(f"{path}: not valid YAML: {exc}") from exc
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise ConfigError(f"{path}: the top level must be a mapping, got {type(data).__name__}")
    return data


def deep_merge(base: Mapping[str, Any], overlay: Mapping[str, Any]) -> dict[str, Any]:
    """Merge ``overlay`` into ``base``: mappings merge key by key, anything else replaces."""
    merged = dict(base)
    for key, value in overlay.items():
        if isinstance(value, Mapping) and isinstance(merged.get(key), Mapping):
            merged[key] = deep_merge(merged[key], value)
        else:
            merged[key] = value
    return merged


def apply_overrides(data: Mapping[str, Any], overrides: Iterable[str]) -> dict[str, Any]:
    """Set ``dotted.key=value`` overrides; values are parsed as YAML (scalars, lists, mappings).

    The value replaces what the key held, so ``--set parameters.training.params={}``
    clears the estimator's parameters rather than merging nothing into them.
    """
    result = dict(data)
    for override in overrides:
        key, sep, raw_value = override.partition("=")
        if not sep or not key.strip():
            raise ConfigError(f"--set '{override}': expected KEY.PATH=VALUE")
        try:
            value = yaml.safe_load(raw_value)
        except yaml.YAMLError as exc:
            raise ConfigError(f"--set '{override}': value is not valid YAML: {exc}") from exc
        result = set_key(result, key.strip(), value)
    return result


def set_key(data: Mapping[str, Any], key: str, value: Any) -> dict[str, Any]:
    """A copy of ``data`` whose dotted ``key`` holds ``value`` (replaced, not merged)."""
    result = dict(data)
    *parents, leaf = key.split(".")
    node = result
    for part in parents:
        child = node.get(part)
        node[part] = dict(child) if isinstance(child, Mapping) else {}
        node = node[part]
    node[leaf] = value
    return result


#: the task a config without ``parameters.task`` has
DEFAULT_TASK = "classification"


def split_task_blocks(data: Mapping[str, Any], source: str) -> tuple[dict[str, Any], dict]:
    """``data`` without its ``tasks:`` block, and the block: per task, dotted keys set
    like ``--set`` flags when the run's ``parameters.task`` is that task (what a config
    says differently for a regressor: its estimator, metrics, floors)."""
    data = dict(data)
    blocks = data.pop("tasks", None) or {}
    if not isinstance(blocks, Mapping):
        raise ConfigError(f"{source}: tasks: expected a mapping of task -> settings")
    for task, settings in blocks.items():
        if task not in ("classification", "regression"):
            raise ConfigError(
                f"{source}: tasks.{task}: unknown task; choose classification or regression"
            )
        if not isinstance(settings, Mapping):
            raise ConfigError(f"{source}: tasks.{task}: expected a mapping of key.path -> value")
    return data, dict(blocks)


def apply_task_block(
    data: Mapping[str, Any], blocks: Mapping[str, Any], task: str
) -> dict[str, Any]:
    """``data`` with the settings of ``task``'s block applied."""
    result = dict(data)
    for key, value in (blocks.get(task) or {}).items():
        result = set_key(result, str(key), value)
    return result


def validate(model: type[ModelT], data: Mapping[str, Any], source: str) -> ModelT:
    """Validate ``data`` against ``model``; errors name ``source`` and each bad key."""
    try:
        return model.model_validate(data)
    except ValidationError as exc:
        problems = []
        for error in exc.errors():
            key = ".".join(str(part) for part in error["loc"]) or "<top level>"
            message = error["msg"].removeprefix("Value error, ")
            shown = "input" in error and not isinstance(error["input"], (dict, list))
            if error["type"] not in ("missing", "extra_forbidden") and shown:
                message += f" (got {error['input']!r})"  # a value, not a whole section
            if error["type"] == "extra_forbidden":
                message = "unknown key (misspelt?)"
            problems.append(f"  {key}: {message}")
        raise ConfigError(f"{source}: invalid config\n" + "\n".join(problems)) from None


def environment_path(env: str) -> Path:
    """``configs/environments/<env>.yaml``, or ``env`` itself when it names a YAML file."""
    if env.endswith((".yaml", ".yml")):
        if not Path(env).is_file():
            raise ConfigError(f"{env}: no such environment file")
        return Path(env)
    path = ENVIRONMENTS_DIR / f"{env}.yaml"
    if not path.is_file():
        raise ConfigError(
            f"unknown environment '{env}': no {path.relative_to(CONFIG_DIR.parent)}; "
            f"available: {', '.join(available_environments())}"
        )
    return path


def load_environment(env: str) -> EnvironmentConfig:
    """The environment's YAML, checked; its stack is named as its file, since the steps
    record under the stack's name what the commands record under the file's (a copy
    named otherwise split the audit trail in two)."""
    path = environment_path(env)
    environment = validate(EnvironmentConfig, read_yaml(path), str(path))
    if environment.stack.name != path.stem:
        raise ConfigError(
            f"{path}: stack.name: '{environment.stack.name}' is not the file's name "
            f"'{path.stem}': an environment has one name (its steps record under the "
            "stack's, its commands under the file's); rename the stack or the file"
        )
    return environment


def load_run_config(
    model: type[RunT],
    config_path: Path,
    environment: EnvironmentConfig,
    overrides: Iterable[str] = (),
) -> RunT:
    """The pipeline config at ``config_path``, overlaid by the environment's overrides for
    that pipeline (whatever the file is called) and by ``--set`` flags."""
    overrides = list(overrides)
    file_data, file_tasks = split_task_blocks(read_yaml(config_path), str(config_path))
    overlay, env_tasks = split_task_blocks(
        environment.overrides.for_pipeline(model.PIPELINE),
        f"the environment's overrides.{model.PIPELINE}",
    )
    # the task is the one every layer leaves; each layer's task block applies right
    # after that layer, so the environment and --set flags still win over a file's block
    parameters = apply_overrides(deep_merge(file_data, overlay), overrides).get("parameters")
    task = str((parameters or {}).get("task", DEFAULT_TASK))
    data = apply_task_block(file_data, file_tasks, task)
    data = apply_task_block(deep_merge(data, overlay), env_tasks, task)
    data = apply_overrides(data, overrides)
    applied = [f"the environment's overrides.{model.PIPELINE}"] if overlay else []
    applied += ["--set flags"] if overrides else []
    source = str(config_path) + (f" (with {' and '.join(applied)} applied)" if applied else "")
    return anchor_paths(validate(model, data, source))


#: the user's own files (training data, labels, a batch): taken as given, relative to
#: where the command runs, so that a file inside the checkout travels with the code to
#: a cluster instead of becoming this machine's absolute path
USER_FILE_FIELDS = frozenset({"path", "labels_path", "input_path"})


def anchor_paths(config: ModelT) -> ModelT:
    """Every relative state path in ``config`` (logs, predictions, servers' stores) taken
    from the checkout (``.local/…`` from the state directory), not from wherever the
    command was started:
    ``.local/serving`` is the same directory for ``deploy``, its steps and ``--status``."""
    updates: dict[str, Any] = {}
    for name in type(config).model_fields:
        value = getattr(config, name)
        if isinstance(value, Path) and not value.is_absolute() and name not in USER_FILE_FIELDS:
            updates[name] = anchor(value)
        elif isinstance(value, BaseModel):
            anchored = anchor_paths(value)
            if anchored is not value:
                updates[name] = anchored
    return config.model_copy(update=updates) if updates else config


def with_model_deployer(env: str, directory: Path, **configuration: Any) -> Path:
    """A copy of the environment's YAML in ``directory`` (same file name, so the same
    stack and client state) whose model deployer has ``configuration`` merged in: a
    second service of the same stack on another port, with its own state (tests,
    benchmarks)."""
    data = read_yaml(environment_path(env))
    data["stack"]["components"]["model_deployer"].setdefault("configuration", {}).update(
        {
            key: str(value) if isinstance(value, Path) else value
            for key, value in configuration.items()
        }
    )
    directory.mkdir(parents=True, exist_ok=True)
    path = directory / environment_path(env).name
    path.write_text(yaml.safe_dump(data, sort_keys=False))
    return path


def local_serving(configuration: Mapping[str, Any], source: str) -> LocalServingConfig:
    """A ``tabular_local`` model deployer's configuration, checked (errors name ``source``
    and the key) and its state paths anchored like a pipeline config's."""
    where = f"{source}: stack.components.model_deployer.configuration"
    return anchor_paths(validate(LocalServingConfig, configuration, where))
