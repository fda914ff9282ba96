"""The ``run.py`` command group: one entry point for every pipeline and environment."""

from __future__ import annotations

import atexit
import logging
import os
import sys
import traceback
from collections.abc import Callable

import click

from cli.audit import audit
from cli.common import cause_and_fix, keep_logged_error
from cli.data import demand_data
from cli.deploy import deploy
from cli.export import export
from cli.infer import infer
from cli.loop import all_stages
from cli.models import models
from cli.monitor import monitor, simulate
from cli.report import report
from cli.rollout import rollout
from cli.stack import dashboard, stack
from cli.stream import stream
from cli.train import train
from tabular_mlops.adapters.paths import LOCAL_DIR


@click.group(context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 100})
@click.option("--verbose", "-v", is_flag=True, help="Show ZenML's traceback when a step fails.")
def cli(verbose: bool = False) -> None:
    """Train, gate and promote a tabular model with ZenML, on the stack of the environment
    you name. Every environment is a YAML file under configs/environments/; switching from
    a laptop to a cluster is `--env`, never a code edit."""
    # BentoML's store (bentos, the models they carry) in the checkout's state, beside
    # everything else this project writes, unless the user points it elsewhere
    os.environ.setdefault("BENTOML_HOME", str(LOCAL_DIR / "bentoml"))
    # ZenML's handler prints every request httpx makes (health checks included)
    logging.getLogger("httpx").setLevel(logging.WARNING)
    if not verbose:
        # A failed step's traceback, logged by ZenML as it happens; the command ends
        # with the step's own exception and one line naming step, check and fix.
        for name in ZENML_FAILURE_LOGGERS:
            logging.getLogger(name).addFilter(_without_errors)


#: the ZenML loggers that log a failing step's traceback
ZENML_FAILURE_LOGGERS = (
    "zenml.orchestrators.step_launcher",
    "zenml.orchestrators.local.local_orchestrator",
)


def _without_errors(record: logging.LogRecord) -> bool:
    """Drop the traceback and the steps skipped after it (the exception is kept for the
    command's last line); keep the progress lines."""
    keep_logged_error(record)
    return record.levelno < logging.ERROR and not str(record.msg).startswith("Skipping step")


for command in (
    all_stages,
    train,
    deploy,
    rollout,
    models,
    infer,
    monitor,
    simulate,
    stream,
    export,
    report,
    stack,
    dashboard,
    audit,
    demand_data,
):
    cli.add_command(command)


def main(report: Callable[[int], None] | None = None) -> None:
    """Run the command line, then leave without tearing the interpreter down; ``report``
    is told the exit status first (a warm server's child tells its caller, cli/warm.py).

    Finalising an interpreter that has loaded ZenML, MLflow, scikit-learn and
    Evidently took 1.6 s after `infer` and 2.7 s after `all` here, every run,
    after all work and every exit handler were done. The handler registered
    here is the first, so it runs last: after ZenML's, MLflow's and
    OpenTelemetry's, it flushes what is buffered and ends the process.
    """
    status: list[int] = [0]

    def leave_now() -> None:
        logging.shutdown()  # registered by `import logging`, before this handler
        sys.stdout.flush()
        sys.stderr.flush()
        if report is not None:
            report(status[0])
        os._exit(status[0])

    atexit.register(leave_now)
    try:
        cli.main()
    except SystemExit as exc:  # click ends every command with one
        code = exc.code
        status[0] = code if isinstance(code, int) else (0 if code is None else 1)
        raise
    except KeyboardInterrupt:
        status[0] = 130
        raise
    except Exception as exc:  # none of the commands expected it: still one line, and a fix
        status[0] = 1
        if {"-v", "--verbose"} & set(sys.argv[1:]):
            traceback.print_exc()
        click.echo(cause_and_fix(exc), err=True)
