"""The GitHub Actions workflow is valid, and runs what the README says."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import yaml

WORKFLOW = Path(__file__).resolve().parents[2] / ".github" / "workflows" / "ci.yml"


def test_workflow_matches_githubs_schema():
    checker = Path(sys.executable).parent / "check-jsonschema"
    result = subprocess.run(
        [str(checker), "--builtin-schema", "vendor.github-workflows", str(WORKFLOW)],
        capture_output=True,
        text=True,
    )
    assert result.returncode == 0, result.stdout + result.stderr


def test_tests_on_every_push_and_gated_promotion_on_main():
    workflow = yaml.safe_load(WORKFLOW.read_text())
    jobs = workflow["jobs"]
    assert any(step.get("run") == "make test" for step in jobs["test"]["steps"])
    staging = [step.get("run", "") for step in jobs["train-staging"]["steps"]]
    assert ".venv/bin/python run.py train --env staging" in staging
    assert jobs["train-staging"]["needs"] == "test"
    assert jobs["promote-prod"]["needs"] == "train-staging"
    for job in ("train-staging", "promote-prod"):
        assert jobs[job]["if"] == "github.ref == 'refs/heads/main'"
