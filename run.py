#!/usr/bin/env python
"""Command line of the project: one entry point for every pipeline and environment.

python run.py all                  train, deploy, score a batch: the whole loop
python run.py train --env dev      one stage at a time; see `python run.py --help`
"""

from cli.warm import enter

if __name__ == "__main__":
    enter()  # a warm server runs the command when one serves this checkout (cli/warm.py)
