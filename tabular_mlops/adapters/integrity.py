"""What is loaded is what the gates approved.

A pickled model is code: whoever can write the artifact store could otherwise
run code in every batch run, stream consumer and monitor. ZenML records the
SHA-256 of each pickled artifact when it is saved (``content_hash``); the
registration step copies the model's onto its model version when the gates
approve it (``model_sha256``). Every load of a model artifact here reads the
file's bytes first and refuses a file whose hash is not that one, naming the
model, the version and both hashes; only then is it deserialized. The copy a
service serves (in BentoML's store) is checked the same way against the hash
its package recorded (``ServingSettings.model_sha256``, ``serving/app.py``).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from tabular_mlops.adapters.compat import is_pickled, pickled_file_of
from tabular_mlops.core.files import ModelFileChangedError, check_model_file

if TYPE_CHECKING:
    from zenml.models import ArtifactVersionResponse

#: the model version's metadata key: the approved model file's SHA-256
MODEL_HASH_KEY = "model_sha256"


def load_checked(artifact: ArtifactVersionResponse, what: str, recorded: str | None = None) -> Any:
    """``artifact`` loaded, a pickled one (code: a model) once its bytes hash to
    ``recorded`` (the approved hash) or, without one, to the hash ZenML recorded when it
    saved them. Artifacts of other materializers (a data frame as Parquet: data, not
    code) are loaded by ZenML as they are."""
    from zenml.io import fileio

    if not is_pickled(artifact):
        return artifact.load()
    expected = recorded or artifact.content_hash
    if expected is None:
        raise ModelFileChangedError(
            f"{what}: no content hash was recorded for its pickled file at {artifact.uri}, "
            "so it cannot be checked and is not loaded; train the model again "
            "(python run.py train)"
        )
    path = pickled_file_of(artifact.uri)
    with fileio.open(path, "rb") as stream:
        check_model_file(stream, expected, what, path)
    return artifact.load()
