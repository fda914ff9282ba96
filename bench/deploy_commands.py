"""Time the everyday serving commands on dev against a bare interpreter's start-up.

On a private ZenML store and state directory: `run.py train`, then each round
`deploy` (a release), `deploy` again (nothing to do), `deploy --status` and
`deploy --stop` of the running service, each run warm (forked from the warm command
server, cli/warm.py: the default) and cold (``TABULAR_MLOPS_WARM=0``, alternating);
`python -c pass` beside them is the floor any command pays. Prints each command's
median and its ratio to the floor.

    .venv/bin/python bench/deploy_commands.py [--rounds 5]
"""

from __future__ import annotations

import statistics
import sys
from pathlib import Path

import click

sys.path.insert(0, str(Path(__file__).resolve().parent))

from loop_vs_template import ROOT, kill_leftovers, private_home, run

PYTHON = sys.executable


@click.command()
@click.option("--rounds", default=5, show_default=True, type=click.IntRange(1, 50))
def main(rounds: int) -> None:
    with private_home("bench-deploy-") as (home, env, log):
        cli = [PYTHON, "run.py"]
        try:
            click.echo("training once ...", err=True)
            run("train", [*cli, "train"], ROOT, env, log, timeout=600)
            times: dict[str, list[float]] = {}
            times.setdefault("python -c pass", [])
            for index in range(rounds):
                click.echo(f"round {index + 1} of {rounds} ...", err=True)
                times["python -c pass"].append(
                    run("floor", [PYTHON, "-c", "pass"], ROOT, env, log, 60)
                )
                for mode, warm in (("warm", "1"), ("cold", "0")):
                    moded = {**env, "TABULAR_MLOPS_WARM": warm}
                    for label, args in (
                        ("deploy (a release)", [*cli, "deploy", "--force"]),
                        ("deploy (nothing to do)", [*cli, "deploy"]),
                        ("deploy --status", [*cli, "deploy", "--status"]),
                        ("deploy --stop (a running service)", [*cli, "deploy", "--stop"]),
                    ):
                        label = f"{label}, {mode}"
                        times.setdefault(label, []).append(run(label, args, ROOT, moded, log, 600))
        finally:
            run("stop", [*cli, "deploy", "--stop"], ROOT, env, log, timeout=120)
            run("stop the warm server", [*cli, "warm", "--stop"], ROOT, env, log, timeout=120)
            kill_leftovers(str(home))
    floor = statistics.median(times["python -c pass"])
    click.echo(f"\n{'command':<42}{'median (s)':>11}{'min-max (s)':>14}{'x floor':>9}")
    for label, values in sorted(times.items()):
        median = statistics.median(values)
        spread = f"{min(values):.2f}-{max(values):.2f}"
        click.echo(f"{label:<42}{median:>11.2f}{spread:>14}{median / floor:>9.1f}")


if __name__ == "__main__":
    main()
