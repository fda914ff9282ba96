"""Pipeline runs whose process died: found and marked failed the next time the CLI starts.

With a local orchestrator the run lives in the command's own process; ``kill -9``
of it leaves the ZenML run ``running`` and its MLflow run ``RUNNING`` forever. So
each command that runs a pipeline tags the run with a tag naming its process,
and leaves a record of itself (pid, the process's start time, that tag) for as
long as the call lasts. A record whose process is gone, or whose pid now names
another process, marks the runs carrying its tag (and their child runs) failed,
in ZenML and in the stack's MLflow; runs of other commands are never touched.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import uuid
from collections.abc import Iterator
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from tabular_mlops.adapters.net import answers
from tabular_mlops.adapters.processes import identity, is_same_process

if TYPE_CHECKING:
    from zenml.models import PipelineRunResponse

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class InFlight:
    pid: int
    #: when the process started (``processes.identity``): a pid reused by another process
    #: does not match it
    process_started: float
    pipeline: str
    #: the ZenML tag on every run this call started
    tag: str

    def is_alive(self) -> bool:
        return is_same_process(self.pid, self.process_started)


@contextlib.contextmanager
def in_flight(state_dir: Path, pipeline: str) -> Iterator[str]:
    """Leave a record of this process running ``pipeline`` while the block runs; yields
    the tag the run must carry."""
    state_dir.mkdir(parents=True, exist_ok=True)
    started = identity(os.getpid())
    record = InFlight(
        pid=os.getpid(),
        process_started=started,
        pipeline=pipeline,
        # one tag per call: a process may make several (`run.py all`, a test session)
        tag=f"cli-process-{os.getpid()}-{int(started * 1000)}-{uuid.uuid4().hex[:8]}",
    )
    path = state_dir / f"{record.pid}-{pipeline}.json"
    path.write_text(json.dumps(asdict(record)))
    yield record.tag
    # Only a call that returned forgets its record. One that raised may have left its
    # run `running` (its store went away mid-run): the next command of the environment
    # finds the record, the process gone, and marks whatever still runs failed.
    path.unlink(missing_ok=True)
    _delete_tag(record.tag)


def dead_calls(state_dir: Path) -> list[tuple[Path, InFlight]]:
    """The records left by processes that died during their pipeline call."""
    found = []
    for path in sorted(state_dir.glob("*.json")) if state_dir.is_dir() else []:
        try:
            record = InFlight(**json.loads(path.read_text()))
        except (ValueError, TypeError):
            logger.warning("%s: not an in-flight record; removed", path)
            path.unlink(missing_ok=True)
            continue
        if not record.is_alive():
            found.append((path, record))
    return found


def mark_failed(record: InFlight, reason: str) -> list[str]:
    """Mark the unfinished ZenML runs of ``record``'s call (and their MLflow runs) failed;
    the names of the runs marked."""
    from zenml.enums import ExecutionStatus

    from tabular_mlops.adapters.compat import mark_run_failed

    marked = []
    for run in runs_of(record.tag):
        if run.status in (ExecutionStatus.RUNNING, ExecutionStatus.INITIALIZING):
            mark_run_failed(run, reason)
            marked.append(run.name)
            _fail_mlflow_runs(run.name)
    _delete_tag(record.tag)
    return marked


def _delete_tag(tag: str) -> None:
    """Two commands started together may both reap one dead command's tag."""
    from zenml.client import Client

    from tabular_mlops.adapters.tags import delete_tag

    delete_tag(Client(), tag)


def runs_of(tag: str) -> list[PipelineRunResponse]:
    """The runs a command tagged, and their child runs (the continuous-training loop's)."""
    from zenml.client import Client

    client = Client()
    tagged = client.list_pipeline_runs(tags=tag, size=50).items
    return tagged + [
        child
        for run in tagged
        for child in client.list_pipeline_runs(parent_run_id=run.id, size=50).items
    ]


def _fail_mlflow_runs(run_name: str) -> None:
    """The stack's MLflow runs of a ZenML run (ZenML names them after it), marked failed:
    those still running, and those an earlier step of the dead run had finished (each
    tracked step resumes the one run; the process may die between two of them)."""
    from zenml.client import Client

    tracker = Client().active_stack.experiment_tracker
    if tracker is None or tracker.flavor != "mlflow":
        return
    import mlflow
    from mlflow import MlflowClient

    uri = tracker.get_tracking_uri()  # type: ignore[attr-defined]
    mlflow.set_tracking_uri(uri)
    client = MlflowClient()
    if uri.startswith(("http://", "https://")) and not answers(f"{uri.rstrip('/')}/health"):
        logger.warning("MLflow runs of %s not marked failed: %s does not answer", run_name, uri)
        return
    for experiment in client.search_experiments():
        for mlflow_run in client.search_runs(
            [experiment.experiment_id],
            filter_string=f"tags.mlflow.runName = '{run_name}'",
        ):
            if mlflow_run.info.status in ("RUNNING", "FINISHED"):
                client.set_terminated(mlflow_run.info.run_id, status="FAILED")
