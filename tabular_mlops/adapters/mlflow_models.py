"""Log a fitted pipeline to the active MLflow run, loadable by MLflow's own tools.

The model ships the one project module it calls at prediction time
(``tabular_mlops.core.transformers``) as code, inside a package tree of its
own: nothing else of the project travels with it.
"""

from __future__ import annotations

import logging
import shutil
import tempfile
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pandas as pd
from pydantic import BaseModel
from sklearn.pipeline import Pipeline

from tabular_mlops.core import transformers

if TYPE_CHECKING:
    from mlflow import MlflowClient

MODEL_ARTIFACT = "model"


class MlflowModel(BaseModel):
    """Where the trained model lives in MLflow: what the model registry points at."""

    run_id: str
    experiment_id: str
    #: MLflow 3's logged model, kept apart from its run's artifacts
    model_id: str
    model_uri: str


def _requirements() -> list[str]:
    # Given explicitly: MLflow's requirement inference imports the model in a
    # subprocess and costs seconds on every training run.
    import sklearn

    return [f"scikit-learn=={sklearn.__version__}", f"pandas=={pd.__version__}"]


def _prediction_time_code(root: Path) -> Path:
    """``root/tabular_mlops`` holding only the modules the fitted model imports."""
    package = root / "tabular_mlops"
    (package / "core").mkdir(parents=True)
    (package / "__init__.py").touch()
    (package / "core" / "__init__.py").touch()
    shutil.copy(transformers.__file__, package / "core" / "transformers.py")
    return package


#: where the types of a model this project fits come from: what skops may load of it
TRUSTED_MODULES = ("sklearn.", "numpy", "scipy.", f"{transformers.__name__}.")


def trusted_types(model: Pipeline) -> list[str]:
    """The types skops must be told to trust to load ``model`` again.

    MLflow 3 stores scikit-learn models with skops, which loads only trusted types;
    a tree's ``sklearn.tree._tree.Tree`` (the README's random-forest example) is not
    trusted by default. This process fitted the model, so the types it is made of
    are listed from its own dump, and only those of scikit-learn, NumPy, SciPy and
    this project's transformers: anything else is named, not trusted blindly."""
    import skops.io

    found = skops.io.get_untrusted_types(data=skops.io.dumps(model))
    foreign = sorted(t for t in found if not t.startswith(TRUSTED_MODULES))
    if foreign:
        raise TypeError(
            f"the model holds types skops will not load without trusting them: {foreign}; "
            "only scikit-learn, NumPy, SciPy and this project's transformers are trusted"
        )
    return sorted(found)


def signature_sample(features: pd.DataFrame, rows: int = 5) -> pd.DataFrame:
    """The rows MLflow infers the model's signature from, integer columns as doubles: a
    value missing at inference arrives as a float, which an integer column's schema
    refuses in MLflow's own serving (MLflow's advice; the contract of this project's
    service already takes any number)."""
    sample = features.head(rows)
    integers = sample.select_dtypes("integer").columns
    return sample.astype(dict.fromkeys(integers, "float64"))


def log_model(model: Pipeline, features: pd.DataFrame) -> MlflowModel:
    """Log ``model`` to the active run; raise if there is none (no tracker on the step)."""
    import mlflow
    from mlflow.models import infer_signature

    run = mlflow.active_run()
    if run is None:
        raise RuntimeError(
            "no active MLflow run: the step needs the stack's experiment tracker "
            "(experiment_tracker=True) and the stack one of flavor mlflow"
        )
    sample = signature_sample(features)
    with tempfile.TemporaryDirectory() as scratch:
        logged = mlflow.sklearn.log_model(
            model,
            name=MODEL_ARTIFACT,
            signature=infer_signature(sample, model.predict(sample)),
            pip_requirements=_requirements(),
            skops_trusted_types=trusted_types(model),
            code_paths=[str(_prediction_time_code(Path(scratch)))],
        )
    return MlflowModel(
        run_id=run.info.run_id,
        experiment_id=run.info.experiment_id,
        model_id=logged.model_id,
        model_uri=logged.model_uri,  # models:/m-…
    )


def register_version(
    client: MlflowClient, name: str, model: MlflowModel, description: str, tags: dict[str, str]
) -> str:
    """A registry version of the logged model, with its run and model id; its number.

    MLflow 3 keeps a logged model apart from its run's artifacts: a version whose
    source is `runs:/<id>/model` does not load (`Could not find an "MLmodel"
    configuration file`), and a tracking server accepts `models:/m-…` only with
    the model's id, which ZenML's registry does not pass. Registered this way the
    version loads by alias (`models:/NAME@champion`) with MLflow's own loader and
    `mlflow models serve`.
    """
    from mlflow.exceptions import MlflowException

    try:
        client.get_registered_model(name)
    except MlflowException:
        client.create_registered_model(name)
    version = client.create_model_version(
        name,
        source=model.model_uri,
        run_id=model.run_id,
        model_id=model.model_id,
        tags=tags,
        description=description,
    )
    return str(version.version)


def drop_alias(registry: Any, name: str, alias: str, version: str) -> bool:
    """Remove ``alias`` from the registry's model ``name`` when it points at ``version``
    (a rolled-back candidate must not load as ``models:/NAME@staging``); True if removed.
    ``registry`` is the stack's model registry; one that is not MLflow's has no aliases."""
    from mlflow.exceptions import MlflowException

    client = getattr(registry, "mlflow_client", None)
    if client is None:
        return False
    try:
        pointed = client.get_model_version_by_alias(name, alias)
    except MlflowException:
        return False  # no such alias
    if str(pointed.version) != str(version):
        return False
    client.delete_registered_model_alias(name, alias)
    return True


def end_leaked_runs() -> int:
    """End the MLflow runs a failed step left active in this process, and say how many.

    ZenML's MLflow tracker ends a step's run when the step ends; a step that fails while
    its outputs are saved (a dynamic pipeline's) left it active, and every tracked step
    of the next pipeline in the same process (``run.py all``, a test session) then failed
    with "Run ... is already active". mlflow is not imported here if nothing has."""
    import sys

    mlflow = sys.modules.get("mlflow")
    ended = 0
    while mlflow is not None and mlflow.active_run() is not None:
        mlflow.end_run(status="FAILED")
        ended += 1
    if ended:
        logging.getLogger(__name__).warning("ended %d MLflow run(s) a failed step left open", ended)
    return ended
