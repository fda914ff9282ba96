"""The ``run.py`` command group: one entry point for every pipeline and environment."""

from __future__ import annotations

import logging

import click

from cli.deploy import deploy
from cli.infer import infer
from cli.loop import all_stages
from cli.monitor import monitor, simulate
from cli.report import report
from cli.stack import dashboard, stack
from cli.train import train


@click.group(context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 100})
def cli() -> None:
    """Train, gate and promote a tabular model with ZenML, on the stack of the environment
    you name. Every environment is a YAML file under configs/environments/; switching from
    a laptop to a cluster is `--env`, never a code edit."""
    # ZenML's handler prints every request httpx makes (health checks included)
    logging.getLogger("httpx").setLevel(logging.WARNING)


for command in (all_stages, train, deploy, infer, monitor, simulate, report, stack, dashboard):
    cli.add_command(command)
