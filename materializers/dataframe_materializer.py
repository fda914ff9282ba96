"""ZenML's pandas materializer, plus a content hash of the frame.

ZenML caches a step on its inputs' content hashes when the materializer
provides one, and on artifact IDs otherwise. Ingestion re-reads its source on
every run (the file behind a path can change), so each run yields a new
artifact; hashing the content lets everything downstream stay cached for as
long as the data is the same, and no longer.
"""

from __future__ import annotations

import hashlib

import pandas as pd
from zenml.integrations.pandas.materializers.pandas_materializer import PandasMaterializer


class ContentHashedDataFrameMaterializer(PandasMaterializer):
    def compute_content_hash(self, data: pd.DataFrame | pd.Series) -> str | None:
        digest = hashlib.sha256(usedforsecurity=False)
        digest.update(self.__class__.__name__.encode())
        frame = data.to_frame() if isinstance(data, pd.Series) else data
        digest.update(repr(list(frame.columns)).encode())
        digest.update(repr([str(t) for t in frame.dtypes]).encode())
        digest.update(pd.util.hash_pandas_object(frame, index=True).to_numpy().tobytes())
        return digest.hexdigest()
