"""The command line: parse options, assemble configs, call a pipeline, print where to look.

Nothing here decides: gates, retraining and redeployment live in pipelines and steps.
"""
