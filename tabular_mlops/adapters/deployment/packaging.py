"""Package a trained model as a Bento: the service code, the model, pinned requirements."""

from __future__ import annotations

import logging
import os
import re
import shutil
import sys
import tempfile
import time
from collections.abc import Iterable
from importlib.metadata import PackageNotFoundError, requires, version
from pathlib import Path

import joblib
import pandas as pd
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name
from sklearn.pipeline import Pipeline

from tabular_mlops.core.files import sha256_of
from tabular_mlops.core.locks import LockError, hashed_requirements
from tabular_mlops.core.log_policy import LogPolicy
from tabular_mlops.core.scoring import FastModel, scorer_for
from tabular_mlops.core.spec import SETTINGS_ENV, ServingSettings, ServingSpec

logger = logging.getLogger(__name__)

#: the directory that holds the ``tabular_mlops`` package: the served modules are copied
#: from here into the bento's build context
PACKAGE_PARENT = Path(__file__).resolve().parents[3]
#: what `bentoml serve` imports: the service, whose settings come from the environment
SERVICE_MODULE = "tabular_mlops.serving.service"
#: the only modules a server imports: the service, and the pure core it scores with
SERVED_MODULES = [
    "tabular_mlops/__init__.py",
    "tabular_mlops/core/__init__.py",
    "tabular_mlops/core/columns.py",
    "tabular_mlops/core/explain.py",
    "tabular_mlops/core/files.py",
    "tabular_mlops/core/log_policy.py",
    "tabular_mlops/core/problems.py",
    "tabular_mlops/core/rollout.py",
    "tabular_mlops/core/scoring.py",
    "tabular_mlops/core/spec.py",
    "tabular_mlops/core/threads.py",
    "tabular_mlops/core/transformers.py",
    "tabular_mlops/serving/*.py",
]
#: what the service imports at run time; pinned to the versions installed here
SERVING_PACKAGES = (
    "aiohttp",
    "bentoml",
    "fastapi",
    "joblib",
    "numpy",
    "pandas",
    "prometheus-client",
    "pydantic",
    "scikit-learn",
    "shap",  # a tree ensemble's explanations (TreeSHAP); a linear model's need none
    "uvicorn",
    # the HTTP parser and event loop the servers run with here, in the image too (and
    # the header timeout, serving/http.py, is built on httptools' protocol)
    "httptools",
    "uvloop",
)


def bento_model_name(model_name: str) -> str:
    """BentoML names allow lowercase letters, digits, '_', '-' and '.'."""
    return re.sub(r"[^a-z0-9_.-]", "_", model_name.lower())


def pinned_closure(packages: Iterable[str]) -> dict[str, str]:
    """The installed version of ``packages`` and of everything they require."""
    pinned: dict[str, str] = {}
    pending = list(packages)
    while pending:
        name = canonicalize_name(pending.pop())
        if name in pinned:
            continue
        try:
            pinned[name] = version(name)
        except PackageNotFoundError:  # an optional extra's package that is not installed
            continue
        for line in requires(name) or []:
            requirement = Requirement(line)
            if requirement.marker is None or requirement.marker.evaluate({"extra": ""}):
                pending.append(requirement.name)
    return pinned


def serving_requirements(lock: Path = PACKAGE_PARENT / "requirements.lock") -> list[str]:
    """The served packages' closure as installed here (the versions the tests ran against,
    resolved offline), each with the lock's hashes: the image's install refuses a changed
    wheel."""
    if not lock.is_file():
        raise LockError(
            f"{lock} is missing: the serving image's requirements take their hashes from it. "
            "Fix: run from the project's checkout (or `make lock`)."
        )
    return hashed_requirements(lock.read_text(), pinned_closure(SERVING_PACKAGES), lock.name)


def served_modules_in(directory: Path) -> Path:
    """``directory`` holding copies of ``SERVED_MODULES`` where the checkout has them."""
    for pattern in SERVED_MODULES:
        for source in PACKAGE_PARENT.glob(pattern):
            target = directory / source.relative_to(PACKAGE_PARENT)
            target.parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(source, target)
    return directory


def fast_path_works(model: Pipeline, spec: ServingSpec, sample: pd.DataFrame) -> bool:
    return isinstance(scorer_for(model, [f.name for f in spec.features], sample), FastModel)


def build_bento(
    model: Pipeline,
    spec: ServingSpec,
    sample: pd.DataFrame,
    workers: int,
    max_batch_rows: int,
    inference_log_dir: Path,
    log_columns: dict[str, LogPolicy] | None = None,
    require_api_key: bool = False,
) -> tuple[str, ServingSettings]:
    """Save the model in BentoML's model store and build a bento around it.

    Returns the bento tag and the settings a server of it must be started with.
    """
    import bentoml

    from tabular_mlops.adapters.compat import bento_env_schema, bento_yaml_through_libyaml

    bento_yaml_through_libyaml()
    BentoEnvSchema = bento_env_schema()  # noqa: N806 (a class)

    name = bento_model_name(spec.model_name)
    labels = {"zenml_model": name, "zenml_model_version": spec.model_version}
    with bentoml.models.create(name, labels=labels, metadata=labels) as stored:
        joblib.dump(model, stored.path_of("model.pkl"))
        with Path(stored.path_of("model.pkl")).open("rb") as written:
            model_sha256 = sha256_of(written)
        Path(stored.path_of("spec.json")).write_text(spec.model_dump_json(indent=2))
    settings = ServingSettings(
        model_tag=str(stored.tag),
        model_sha256=model_sha256,
        log_columns=log_columns or {},
        require_api_key=require_api_key,
        workers=workers,
        max_batch_rows=max_batch_rows,
        inference_log_dir=str(inference_log_dir.resolve()),
        fast_path=fast_path_works(model, spec, sample),
    )
    # Building imports the service module, which reads its settings from the environment
    # when it is first imported: a process that built a bento before (a loop that
    # retrains and redeploys, a test session) would otherwise describe the new bento
    # with the old settings and the old model.
    previous = os.environ.get(SETTINGS_ENV)
    os.environ[SETTINGS_ENV] = settings.model_dump_json()
    sys.modules.pop(SERVICE_MODULE, None)
    try:
        with tempfile.TemporaryDirectory(prefix="bento-context-") as context:
            requirements = Path(context) / "requirements.txt"
            requirements.write_text("\n".join(serving_requirements()) + "\n")
            bento = bentoml.bentos.build(
                f"{SERVICE_MODULE}:TabularClassifierService",
                name=f"{name}_service",
                labels=labels,
                # only the served modules: BentoML walks its whole build context, and the
                # checkout (with its .venv) holds some 80,000 files (7 s of a deploy)
                build_ctx=str(served_modules_in(Path(context))),
                include=SERVED_MODULES,
                # Pinned here from the installed closure and the hashed lock: BentoML's
                # own locking would resolve against PyPI on every deploy (network,
                # seconds) and write no hashes.
                python={"requirements_txt": requirements.name, "lock_packages": False},
                envs=[BentoEnvSchema(name=SETTINGS_ENV, value=settings.model_dump_json())],
                models=[str(stored.tag)],
            )
    finally:
        sys.modules.pop(SERVICE_MODULE, None)
        if previous is None:
            os.environ.pop(SETTINGS_ENV, None)
        else:
            os.environ[SETTINGS_ENV] = previous
    return str(bento.tag), settings


#: a version directory without its YAML this much older than now was left by a delete cut
#: short (a Ctrl-C, a kill); a younger one may be a save in progress (BentoML makes the
#: directory first and writes the YAML last)
TORN_AFTER_SECONDS = 60.0


def remove_torn_entries(model_name: str, older_than: float = TORN_AFTER_SECONDS) -> list[Path]:
    """Remove the version directories of this model's bentos and models that a delete cut
    short left without their ``model.yaml``/``bento.yaml``: BentoML refuses to list a
    store holding one ("does not contain a 'model.yaml'"), so every later deploy failed
    after its switch. What was removed."""
    from tabular_mlops.adapters.compat import bento_store_dirs

    models, bentos = bento_store_dirs()
    name = bento_model_name(model_name)
    stores = [(models / name, "model.yaml"), (bentos / f"{name}_service", "bento.yaml")]
    torn = [
        entry
        for folder, yaml_name in stores
        if folder.is_dir()
        for entry in folder.iterdir()
        if entry.is_dir()
        and not (entry / yaml_name).is_file()
        and time.time() - entry.stat().st_mtime > older_than
    ]
    for entry in torn:
        logger.warning("removing %s: a delete cut short left it without its YAML", entry)
        shutil.rmtree(entry, ignore_errors=True)
    return torn


def prune_bentos(model_name: str, keep: int, served: set[str]) -> list[str]:
    """Delete this model's bentos beyond the ``keep`` newest, and the models in BentoML's
    store only they used; a served bento is never deleted. Returns the deleted tags.

    Every deploy builds a bento: without this the store grows by one per release."""
    import bentoml

    from tabular_mlops.adapters.compat import bento_yaml_through_libyaml

    bento_yaml_through_libyaml()

    from bentoml.exceptions import BentoMLException

    name = bento_model_name(model_name)
    try:
        listed = bentoml.bentos.list(f"{name}_service")
        models = bentoml.models.list(name)
    except BentoMLException:  # a torn entry, left by a delete cut short: removed, listed again
        remove_torn_entries(model_name)
        listed = bentoml.bentos.list(f"{name}_service")
        models = bentoml.models.list(name)
    bentos = sorted(listed, key=lambda b: b.creation_time, reverse=True)
    kept = [b for i, b in enumerate(bentos) if i < keep or str(b.tag) in served]
    deleted = [str(b.tag) for b in bentos if b not in kept]
    for tag in deleted:
        bentoml.bentos.delete(tag)
    if not kept:
        return deleted
    used = {str(model.tag) for bento in kept for model in bento.info.all_models}
    for model in models:
        if str(model.tag) not in used and model.creation_time < kept[-1].creation_time:
            bentoml.models.delete(model.tag)
            deleted.append(str(model.tag))
    return deleted
