"""The command line: parse options, assemble configs, call a pipeline, print where to look.

Gates, retraining and redeployment are decided in pipelines and steps; what is decided
here is only what to run: whether a deploy has anything to do, and what a retraining
would be given.
"""
