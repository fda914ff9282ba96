"""Every page this project renders is static (the dashboard's iframe runs no scripts) and
says what a person needs in a readable form."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd

from tabular_mlops.core.gate import PromotionDecision, PromotionOutcome
from tabular_mlops.core.metrics import quantile_bins
from tabular_mlops.core.model_card import DatasetLineage, ModelCard, render_model_card
from tabular_mlops.core.pages import distributions_svg, line_svg, number, page, table


def test_figures_read_as_a_person_reads_them():
    assert number(0.96501234) == "0.965"
    assert number(float("nan")) == "n/a"
    assert number(None) == "n/a"
    assert number(3.2e-7) == "3.20e-07"
    assert number(0.0) == "0"


def test_quantile_slices_have_short_labels_in_order():
    values = pd.Series([7.759, 8.1, 9.0, 10.2, 11.665, 12.0, 15.5, 28.11])
    keys, order = quantile_bins(values, 4)
    assert order == ["[7.759, 8.775]", "(8.775, 10.93]", "(10.93, 12.88]", "(12.88, 28.11]"]
    assert keys[0] == "[7.759, 8.775]" and keys[-1] == "(12.88, 28.11]"
    keys, order = quantile_bins(pd.Series([1.0, 2.0, np.nan, 3.0, 4.0]), 2)
    assert order[-1] == "<missing>" and keys[2] == "<missing>"


def _card() -> ModelCard:
    decision = PromotionDecision(
        approved=False,
        reasons=["roc_auc = 0.9000 is below the floor 0.95"],
        primary_metric="roc_auc",
        candidate_metrics={"roc_auc": 0.9, "accuracy": math.nan},
        champion_metrics={"roc_auc": 0.99},
        champion_version="3",
    )
    return ModelCard(
        model_name="m",
        model_version="4",
        stage=None,
        outcome=PromotionOutcome(
            promoted=False,
            stage="production",
            model_version="4",
            reason="rejected by the model gate",
        ),
        decision=decision,
        estimator="sklearn.linear_model.LogisticRegression",
        hyperparameters={"C": "1.0"},
        data_gate={"drift_share": 0.1, "drifted_columns": ["<b>x</b>"]},
        datasets=[
            DatasetLineage(
                role="training split",
                artifact="train_set",
                version="7",
                artifact_id="a1",
                content_hash="f" * 64,
                rows=455,
            )
        ],
        code={"git_commit": "abc123", "git_dirty": True},
        mlflow={"run id": "r1"},
        pipeline_run="training_pipeline-1",
    )


def test_the_model_card_names_the_decision_its_figures_and_the_lineage():
    html = render_model_card(_card())
    for expected in ("m version 4", "rejected", "champion version 3", "below the floor 0.95",
                     "0.99", "n/a", "ffffffffffffffff", "455", "abc123",
                     "uncommitted changes", "&lt;b&gt;x&lt;/b&gt;"):  # fmt: skip
        assert expected in html, expected
    assert "<b>x</b>" not in html  # user text is escaped


def test_no_page_has_a_script():
    pages = [
        render_model_card(_card()),
        page("t", table(["a"], [["<script>alert(1)</script>"]])),
        page(
            "t",
            distributions_svg(([0, 1, 2], [3, 1]), ([1, 2, 3], [1, 3]))
            + distributions_svg((["a", "b"], [3, 1]), (["b", "c"], [2, 2]))
            + line_svg({"s": [0.1, None, 0.3]}, ["a", "b", "c"]),
        ),
    ]
    for html in pages:
        assert "<script" not in html.lower()


def test_this_checkout_is_a_code_repository_that_records_clean_commits(tmp_path):
    """Runs record the commit of a clean work tree (any git checkout, no remote needed)."""
    import subprocess

    from tabular_mlops.adapters.code_repository import GitCheckout

    def git(*args: str) -> str:
        return subprocess.run(["git", "-C", str(tmp_path), *args], check=True,
                              capture_output=True, text=True).stdout.strip()  # fmt: skip

    git("init", "-q")
    (tmp_path / "run.py").write_text("print('hi')\n")
    git("add", ".")
    git("-c", "user.name=t", "-c", "user.email=t@t", "commit", "-qm", "first")
    repository = GitCheckout.__new__(GitCheckout)  # the ZenML record is not needed here
    context = repository.get_local_context(str(tmp_path))
    assert context is not None
    assert context.current_commit == git("rev-parse", "HEAD")
    assert not context.is_dirty
    assert context.has_local_changes  # never offered for code downloads
    (tmp_path / "new.py").write_text("")
    assert context.is_dirty  # an untracked file: the commit would not describe the code
    assert repository.get_local_context(str(tmp_path.parent / "elsewhere")) is None
