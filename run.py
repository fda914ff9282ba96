#!/usr/bin/env python
"""Command line of the project: one entry point for every pipeline and environment.

python run.py all                  train, deploy, score a batch: the whole loop
python run.py train --env dev      one stage at a time; see `python run.py --help`
"""

from cli.main import main

if __name__ == "__main__":
    main()
