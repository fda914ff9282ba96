from __future__ import annotations

from typing import Annotated

import mlflow
import pandas as pd
from zenml import log_metadata, step

from materializers.leaderboard_materializer import LeaderboardMaterializer
from tabular_mlops.core.config import TrainingConfig, as_task
from tabular_mlops.core.selection import Leaderboard, Trial, ranking_metric, select


@step(experiment_tracker=True, output_materializers=LeaderboardMaterializer)
def select_model(
    train_set: pd.DataFrame,
    training: TrainingConfig,
    target: str,
    assessment_columns: list[str],
    primary_metric: str,
    task: str = "classification",
    date_columns: list[str] | None = None,
) -> Annotated[Leaderboard, "leaderboard"]:
    """Model selection (``training.candidates``): every trial cross-validated on the
    training split, each a nested MLflow run under the training run, ranked in the
    ``leaderboard`` artifact the dashboard shows and recorded on the model version;
    ``train_model`` trains the winner. One candidate: nothing is compared."""
    if not training.candidates:
        return Leaderboard(metric=primary_metric, folds=0, trials=[])
    number = iter(range(1, 10_000))
    shown = ranking_metric(primary_metric)  # WAPE's trials are ranked and shown by MAE

    def track(trial: Trial) -> None:
        name = f"trial {next(number)}: {trial.estimator.rsplit('.', 1)[-1]}"
        with mlflow.start_run(run_name=name, nested=True):
            mlflow.log_params({"estimator": trial.estimator, **trial.params})
            mlflow.log_metrics({
                f"cv_{shown}_mean": trial.mean, f"cv_{shown}_std": trial.std,
                "fit_seconds": trial.fit_seconds,
            })  # fmt: skip

    board = select(
        train_set, target, training, as_task(task), primary_metric, assessment_columns,
        date_columns or (), on_trial=track,
    )  # fmt: skip
    log_metadata(
        metadata={"leaderboard": [t.model_dump() for t in board.trials],
                  "selection_stopped_by": board.stopped_by or "none"},
        infer_model=True,
    )  # fmt: skip
    return board
