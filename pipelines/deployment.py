from __future__ import annotations

from typing import Any

from pipelines import lifecycle_pipeline
from steps.deployment.export_onnx_model import export_onnx_model
from steps.deployment.go_live import go_live
from steps.deployment.package_model import package_model
from steps.deployment.smoke_test_candidate import smoke_test_candidate
from steps.deployment.start_candidate import start_candidate
from tabular_mlops.adapters.compat import dynamic_run_name
from tabular_mlops.core.audit import ReleaseNote
from tabular_mlops.core.config import ServingConfig


def package_and_switch(serving: ServingConfig, note: ReleaseNote | None = None) -> Any:
    """export for embedding -> package -> start beside the live service -> smoke-test ->
    go live (recording the release with the asking command's ``note``).

    Until the last step the live service is not touched: a failed export, build,
    start or smoke test leaves it answering, and the production model as it was.
    """
    exported = export_onnx_model() if serving.export_onnx else None
    # compiled, `after` orders the steps; in a dynamic (child) run the export has already
    # finished when the call returns, and ZenML refuses its outputs as `after`
    package = package_model(serving, after=None if dynamic_run_name() else exported)
    candidate = start_candidate(package, serving)
    smoke = smoke_test_candidate(package, candidate, serving)
    return go_live(package, candidate, smoke, serving, note)


#: run by `run.py deploy`
deployment_pipeline = lifecycle_pipeline(name="deployment_pipeline")(package_and_switch)
#: the same steps as a child run of the continuous-training loop
redeployment_pipeline = lifecycle_pipeline(dynamic=True, name="redeployment_pipeline")(
    package_and_switch
)
