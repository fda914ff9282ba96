"""Progressive delivery, the pure part: how traffic is split and how an experiment is decided.

The router (``serving/router.py``) applies a :class:`RolloutPlan` request by
request: which version answers (canary weight, sticky A/B bucket, Thompson
sampling), which one only shadows, when a canary steps up or is pulled back.
The rollout pipeline reads the evidence both arms left (answers, latencies,
errors, feedback) and :func:`decide` says promote, roll back or keep going,
with the figures that justify it. Nothing here does I/O.
"""

from __future__ import annotations

import functools
import hashlib
import itertools
import math
import random
from collections.abc import Mapping, Sequence
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

Strategy = Literal["replace", "shadow", "canary", "ab", "bandit"]
STRATEGIES: tuple[Strategy, ...] = ("replace", "shadow", "canary", "ab", "bandit")


class RolloutPlan(BaseModel):
    """``parameters.serving.rollout`` in configs/deployment.yaml."""

    model_config = ConfigDict(extra="forbid")

    strategy: Strategy = "replace"
    #: canary: the candidate's share of traffic, step by step
    canary_steps: list[float] = Field(default_factory=lambda: [0.05, 0.25, 0.5, 1.0])
    #: canary: requests the candidate answers at a step before it may step up
    hold_requests: int = Field(default=200, ge=1)
    #: ab: the candidate's share; requests with the same key always go to the same arm
    ab_split: float = Field(default=0.5, gt=0, lt=1)
    #: ab: the request header whose value keeps a user on one arm (hashed)
    sticky_header: str = "x-user-id"
    #: guardrails on the candidate, applied by the router as requests come
    max_error_rate: float = Field(default=0.01, ge=0, le=1)
    #: the candidate is too slow when the p99 of the CPU time its workers spend scoring a
    #: request exceeds both this factor of the champion's (over the same canary step) and
    #: the absolute budget (a cold first request is not a regression). CPU time, not the
    #: time to answer: that grows with whatever else the machine runs
    max_latency_ratio: float = Field(default=1.5, ge=1)
    latency_budget_ms: float = Field(default=25.0, gt=0)
    #: decision (ab, canary, bandit): one one-sided test, once the planned sample is in,
    #: of whether the candidate's accuracy (or reward rate) beats the champion's. A
    #: candidate no better is promoted with probability at most ``significance`` (the
    #: false-promotion rate); one better by ``min_effect`` with about ``power``
    min_effect: float = Field(default=0.05, gt=0, lt=1)
    significance: float = Field(default=0.05, gt=0, lt=0.5)
    power: float = Field(default=0.8, gt=0.5, lt=1)
    #: the champion's success rate the sample is planned on; null: its test accuracy,
    #: read when the experiment starts
    baseline_rate: float | None = Field(default=None, gt=0, lt=1)
    #: ab of a regressor: the test is Welch's one-sided t-test on each labelled row's
    #: absolute error, planned to detect a drop of the mean absolute error by this much
    #: (the target's units)...
    min_error_reduction: float | None = Field(default=None, gt=0)
    #: ...given this standard deviation of a row's absolute error; null: the champion's,
    #: from its recorded test MAE and RMSE (sqrt(RMSE² - MAE²)), when the experiment starts
    error_spread: float | None = Field(default=None, gt=0)
    #: feedback rows per arm the test waits for: fixed when the experiment starts (from
    #: ``baseline_rate``, ``min_effect``, ``significance`` and ``power``), never recomputed
    #: from what the arms show on the way
    sample_size_per_arm: int | None = Field(default=None, ge=1)
    #: bandit: it stops early, never promoting, once P(candidate beats champion) falls to
    #: 1 - this (futility); the traffic it sends each arm follows Thompson sampling
    promote_probability: float = Field(default=0.95, gt=0.5, lt=1)
    #: bandit: the share of requests sent to an arm drawn uniformly at random, whose
    #: feedback alone the test reads: a test on Thompson-sampled traffic promoted a
    #: candidate no better 13.7% of the time at significance 0.05 (tests/unit)
    explore_share: float = Field(default=0.2, gt=0, le=1)
    #: shadow: agreement with the champion needed to promote without feedback
    min_agreement: float = Field(default=0.98, ge=0, le=1)
    #: shadow of a regressor: two values agree when they differ by at most this share of
    #: the larger one's size (at least 1)
    agreement_tolerance: float = Field(default=0.05, ge=0)
    #: shadow: requests mirrored before a decision
    shadow_requests: int = Field(default=500, ge=1)
    #: shadow: the share of live requests mirrored; every mirror is a second scoring on
    #: the same machines (measured on 2 cores: mirroring all of them halved throughput)
    shadow_share: float = Field(default=0.1, gt=0, le=1)

    @model_validator(mode="after")
    def _steps_rise_to_all(self) -> RolloutPlan:
        steps = self.canary_steps
        if not steps or any(b <= a for a, b in itertools.pairwise(steps)):
            raise ValueError("canary_steps must rise strictly, e.g. [0.05, 0.25, 0.5, 1.0]")
        if steps[-1] != 1.0 or steps[0] <= 0:
            raise ValueError("canary_steps must start above 0 and end at 1.0")
        return self


# --- assignment -------------------------------------------------------------------------
def sticky_bucket(key: str, salt: str) -> float:
    """A number in [0, 1) fixed by ``key`` (and the experiment): the same user, the same arm."""
    digest = hashlib.blake2b(f"{salt}:{key}".encode(), digest_size=8).digest()
    return int.from_bytes(digest, "big") / 2**64


def thompson_choice(
    successes: Sequence[float], failures: Sequence[float], rng: random.Random
) -> int:
    """The arm whose draw from Beta(1 + successes, 1 + failures) is highest."""
    draws = [rng.betavariate(1 + s, 1 + f) for s, f in zip(successes, failures, strict=True)]
    return max(range(len(draws)), key=draws.__getitem__)


def answers_agree(first: Sequence[object], second: Sequence[object], tolerance: float) -> bool:
    """Whether two answers to one request agree: the same labels, or values within
    ``tolerance`` of the larger one's size (at least 1), row by row."""
    if len(first) != len(second):
        return False
    for a, b in zip(first, second, strict=True):
        if isinstance(a, float) and isinstance(b, float):  # a regressor's values (JSON floats)
            if abs(a - b) > tolerance * max(abs(a), abs(b), 1.0):
                return False
        elif a != b:
            return False
    return True


def too_slow(candidate_p99: float, champion_p99: float, plan: RolloutPlan) -> bool:
    """Slower than ``max_latency_ratio`` times the champion *and* than the budget."""
    return candidate_p99 > max(plan.max_latency_ratio * champion_p99, plan.latency_budget_ms)


def percentile(values: Sequence[float], q: float) -> float | None:
    """The ``q``-th percentile by rank (no interpolation); None without values."""
    if not values:
        return None
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q / 100 * len(ordered)))]


# --- evidence ---------------------------------------------------------------------------
class AbsoluteErrors(BaseModel):
    """A regressor's labelled rows: how many, the sum of their absolute errors, and the
    sum of squared deviations from their running mean (Welford's update: a variance
    from the sum of squares cancels to nothing for errors like 1e9 +/- 1). A field it
    does not know (an older layout's ``squares``) is refused, never read as zero."""

    model_config = ConfigDict(extra="forbid")

    rows: int = 0
    total: float = 0.0
    deviations: float = 0.0

    def add(self, error: float) -> None:
        before = self.mean
        rows, total = self.rows + 1, self.total + error
        self.rows, self.total, self.deviations = (
            rows,
            total,
            self.deviations + (error - before) * (error - total / rows),
        )

    @property
    def mean(self) -> float:
        return self.total / self.rows if self.rows else 0.0

    @property
    def variance(self) -> float:
        """The sample variance (0 below two rows)."""
        if self.rows < 2:
            return 0.0
        return max(0.0, self.deviations / (self.rows - 1))


def absolute_error(prediction: float, truth: object) -> float | None:
    """|prediction - truth| for a true value fed back as text ("151", "151.0") or a number;
    None when it is not a finite number (it is not evidence)."""
    try:
        value = float(truth)  # type: ignore[arg-type]
    except (TypeError, ValueError):
        return None
    error = abs(prediction - value)
    return error if math.isfinite(error) else None


class ArmEvidence(BaseModel):
    """What one version's answers showed during the experiment."""

    version: str
    requests: int = 0
    errors: int = 0
    #: time to answer, as the router saw it (reported; it grows with the machine's load)
    p50_ms: float | None = None
    p99_ms: float | None = None
    #: CPU time the version's workers spent scoring a request: what the guardrail judges
    scoring_cpu_p99_ms: float | None = None
    #: feedback joined to this arm's answers: labelled rows and how many it got right
    labelled: int = 0
    correct: int = 0
    #: rewards posted for this arm's answers (bandit): count and sum
    rewarded: int = 0
    reward_sum: float = 0.0
    #: bandit: the feedback on the requests sent to this arm at random (the exploration
    #: share): rows and successes, what the bandit's test reads
    randomized: int = 0
    randomized_successes: float = 0.0
    #: a regressor's labelled rows' absolute errors (what Welch's test reads), and the
    #: bandit's: those on the requests it sent to this arm at random
    absolute_errors: AbsoluteErrors = Field(default_factory=AbsoluteErrors)
    randomized_errors: AbsoluteErrors = Field(default_factory=AbsoluteErrors)

    @property
    def error_rate(self) -> float:
        return self.errors / self.requests if self.requests else 0.0

    @property
    def successes(self) -> tuple[float, float]:
        """(successes, failures): correct labels, or rewards, whichever feedback gave."""
        if self.rewarded:
            return self.reward_sum, self.rewarded - self.reward_sum
        return float(self.correct), float(self.labelled - self.correct)


class Evidence(BaseModel):
    strategy: Strategy
    #: a regressor's experiment is judged on errors, a classifier's on correct answers
    task: Literal["classification", "regression"] = "classification"
    champion: ArmEvidence
    candidate: ArmEvidence
    #: shadow: requests both answered, and how many got the same label
    compared: int = 0
    agreed: int = 0
    #: what the router did on its own (e.g. a canary pulled back by a guardrail)
    router_state: str = "running"
    router_reason: str = ""
    #: the plan the experiment started with (its sample size fixed then): what decides it
    plan: RolloutPlan | None = None


Action = Literal["promote", "rollback", "continue"]


class RolloutDecision(BaseModel):
    action: Action
    reasons: list[str]
    figures: dict[str, float] = Field(default_factory=dict)


#: the baseline a plan without ``baseline_rate`` or a champion's accuracy is planned on
DEFAULT_BASELINE = 0.9
#: rows each arm needs before a bandit may stop for futility
MIN_FUTILITY_ROWS = 30


def sample_size(baseline: float, min_effect: float, significance: float, power: float) -> int:
    """Rows per arm for a one-sided two-proportion test at ``significance`` to detect, with
    ``power``, a candidate better than ``baseline`` by ``min_effect`` (or, above 1, a
    difference of ``min_effect`` just below it, the same variance)."""
    from statistics import NormalDist

    normal = NormalDist()
    p1 = min(max(baseline, 0.01), 0.99)
    p2 = p1 + min_effect if p1 + min_effect < 1 else p1 - min_effect
    p2 = min(max(p2, 0.001), 0.999)
    z_alpha, z_beta = normal.inv_cdf(1 - significance), normal.inv_cdf(power)
    mean = (p1 + p2) / 2
    numerator = (
        z_alpha * math.sqrt(2 * mean * (1 - mean))
        + z_beta * math.sqrt(p1 * (1 - p1) + p2 * (1 - p2))
    ) ** 2
    return math.ceil(numerator / (p1 - p2) ** 2)


def error_sample_size(spread: float, reduction: float, significance: float, power: float) -> int:
    """Rows per arm for a one-sided two-sample test of means at ``significance`` to detect,
    with ``power``, a drop of ``reduction`` when each row's value has standard deviation
    ``spread``: ``2 (z_alpha + z_beta)² spread² / reduction²``."""
    from statistics import NormalDist

    normal = NormalDist()
    z = normal.inv_cdf(1 - significance) + normal.inv_cdf(power)
    return math.ceil(2 * z**2 * spread**2 / reduction**2)


def error_spread(metrics: Mapping[str, float]) -> float | None:
    """A regressor's standard deviation of a row's absolute error, from its test MAE and
    RMSE (``sqrt(RMSE² - MAE²)``); None without them (a classifier)."""
    if "mae" not in metrics or "rmse" not in metrics:
        return None
    mae, rmse = metrics["mae"], metrics["rmse"]
    return max(rmse**2 - mae**2, 0.0) ** 0.5 or rmse or 1.0


#: a regressor's experiments decided by a test on absolute errors (Welch's)
ERROR_TESTED: tuple[Strategy, ...] = ("canary", "ab", "bandit")


class PlanError(ValueError):
    """The experiment cannot be planned as configured; the message names the key."""


def planned(
    plan: RolloutPlan, champion_accuracy: float | None, champion_error_spread: float | None = None
) -> RolloutPlan:
    """The plan with its sample size fixed, as an experiment starts: on ``baseline_rate``,
    else the champion's test accuracy, else ``DEFAULT_BASELINE``. A regressor's
    (``champion_error_spread`` given): on ``min_error_reduction`` and ``error_spread``,
    else the champion's."""
    if plan.sample_size_per_arm is not None:
        return plan
    if champion_error_spread is not None:
        if plan.strategy not in ERROR_TESTED:  # a regressor's shadow: on agreement alone
            return plan
        if plan.min_error_reduction is None:
            raise PlanError(
                f"parameters.serving.rollout.min_error_reduction: a regressor's {plan.strategy} "
                "is decided by Welch's test on absolute errors, planned to detect a drop of the "
                "mean absolute error by this much (the target's units); set it in "
                "configs/deployment.yaml"
            )
        spread = plan.error_spread or champion_error_spread
        size = error_sample_size(spread, plan.min_error_reduction, plan.significance, plan.power)
        return plan.model_copy(update={"error_spread": spread, "sample_size_per_arm": size})
    baseline = plan.baseline_rate or champion_accuracy or DEFAULT_BASELINE
    size = sample_size(baseline, plan.min_effect, plan.significance, plan.power)
    return plan.model_copy(update={"baseline_rate": baseline, "sample_size_per_arm": size})


def one_sided_p_value(s1: float, n1: int, s2: float, n2: int) -> float:
    """P-value that the second rate is no better than the first (pooled z-test, one-sided)."""
    from statistics import NormalDist

    if not n1 or not n2:
        return 1.0
    pooled = (s1 + s2) / (n1 + n2)
    spread = math.sqrt(pooled * (1 - pooled) * (1 / n1 + 1 / n2))
    if spread == 0:
        return 1.0
    z = (s2 / n2 - s1 / n1) / spread
    return 1 - NormalDist().cdf(z)


def welch_p_value(champion: AbsoluteErrors, candidate: AbsoluteErrors) -> float:
    """P-value that the candidate's mean absolute error is no lower than the champion's
    (Welch's t-test, one-sided: unequal variances and sizes)."""
    from scipy.stats import t as student

    n1, n2 = champion.rows, candidate.rows
    if n1 < 2 or n2 < 2:
        return 1.0
    v1, v2 = champion.variance / n1, candidate.variance / n2
    if v1 + v2 == 0:
        return 0.0 if candidate.mean < champion.mean else 1.0
    statistic = (champion.mean - candidate.mean) / math.sqrt(v1 + v2)
    freedom = (v1 + v2) ** 2 / (v1**2 / (n1 - 1) + v2**2 / (n2 - 1))
    return float(student.sf(statistic, freedom))


def probability_of_smaller_errors(champion: AbsoluteErrors, candidate: AbsoluteErrors) -> float:
    """P(the candidate's mean absolute error is below the champion's) under the normal
    approximation of each mean (its standard error from its rows); 0.5 below two rows."""
    from statistics import NormalDist

    if champion.rows < 2 or candidate.rows < 2:
        return 0.5
    spread = math.sqrt(champion.variance / champion.rows + candidate.variance / candidate.rows)
    if spread == 0:
        return 0.5 if candidate.mean == champion.mean else float(candidate.mean < champion.mean)
    return NormalDist().cdf((champion.mean - candidate.mean) / spread)


def thompson_error_choice(arms: Sequence[AbsoluteErrors], rng: random.Random) -> int:
    """The arm whose draw of its mean absolute error is lowest: Thompson sampling on
    negative error as the reward, each mean drawn from its normal approximation. An arm
    with fewer than two errors fed back is chosen first (no spread to draw from yet)."""
    unknown = [index for index, arm in enumerate(arms) if arm.rows < 2]
    if unknown:
        return rng.choice(unknown)
    draws = [rng.gauss(arm.mean, math.sqrt(arm.variance / arm.rows)) for arm in arms]
    return min(range(len(draws)), key=draws.__getitem__)


def probability_to_beat(champion: tuple[float, float], candidate: tuple[float, float]) -> float:
    """P(candidate's rate > champion's) under Beta(1 + s, 1 + f) posteriors: the integral of
    the candidate's density times the champion's distribution function, on a fine grid
    (deterministic, and fast enough to call at every look). The density and distribution
    function are scipy.special's, which ``scipy.stats.beta`` wraps in per-call argument
    checks that cost three times the arithmetic."""
    import numpy as np
    from scipy.special import betainc, betaln, xlog1py, xlogy

    a, b = 1 + candidate[0], 1 + candidate[1]
    # where the candidate's posterior has its mass, however narrow: 12 standard
    # deviations either side of its mean
    mean, spread = a / (a + b), math.sqrt(a * b / ((a + b) ** 2 * (a + b + 1)))
    grid = np.linspace(max(0.0, mean - 12 * spread), min(1.0, mean + 12 * spread), 801)
    density = np.exp(xlogy(a - 1, grid) + xlog1py(b - 1, -grid) - betaln(a, b))
    below = betainc(1 + champion[0], 1 + champion[1], grid)
    weights = density * below
    return float(np.clip(np.trapezoid(weights, grid), 0.0, 1.0))


def decide(evidence: Evidence, plan: RolloutPlan) -> RolloutDecision:
    """Promote, roll back or continue, by the plan's rules, with the figures behind it.

    Guardrails first (the router's own verdict, errors, latency), then the
    experiment: agreement for shadow; for A/B and canary one one-sided
    two-proportion test once each arm has the sample planned when the experiment
    started, no sooner (so the false-promotion rate is ``significance``, whatever
    the number of looks); for the bandit the same test on the requests it sent to
    an arm at random (``explore_share``), or an early rollback when it is futile."""
    champion, candidate = evidence.champion, evidence.candidate

    figures = {
        "champion_requests": float(champion.requests),
        "candidate_requests": float(candidate.requests),
        "candidate_error_rate": candidate.error_rate,
        "champion_error_rate": champion.error_rate,
    }

    verdict = functools.partial(_verdict, figures=figures)

    if evidence.router_state == "rolled_back":
        return verdict("rollback", f"the router pulled it back: {evidence.router_reason}")
    if candidate.requests and candidate.error_rate > plan.max_error_rate:
        return verdict(
            "rollback", f"error rate {candidate.error_rate:.2%} over {plan.max_error_rate:.2%}"
        )
    cpu_candidate, cpu_champion = candidate.scoring_cpu_p99_ms, champion.scoring_cpu_p99_ms
    if cpu_candidate is not None and cpu_champion:
        ratio = cpu_candidate / cpu_champion
        figures["scoring_cpu_p99_ratio"] = ratio
        if candidate.requests >= 100 and too_slow(cpu_candidate, cpu_champion, plan):
            return verdict(
                "rollback",
                f"scoring CPU p99 {cpu_candidate:.1f} ms is {ratio:.2f}x the champion's "
                f"and over the {plan.latency_budget_ms:g} ms budget",
            )
    if evidence.strategy == "shadow" and not (candidate.labelled or candidate.rewarded):
        agreement = evidence.agreed / evidence.compared if evidence.compared else 0.0
        figures["agreement"] = agreement
        if evidence.compared < plan.shadow_requests:
            return verdict(
                "continue", f"{evidence.compared} of {plan.shadow_requests} mirrored requests"
            )
        if agreement >= plan.min_agreement and candidate.scoring_cpu_p99_ms is None:
            return verdict("continue", "agrees, but no scoring time of its own measured yet")
        if agreement >= plan.min_agreement:
            return verdict(
                "promote",
                f"agrees with the champion on {agreement:.2%} of {evidence.compared} requests",
            )
        return verdict(
            "rollback",
            f"agrees with the champion on only {agreement:.2%} "
            f"(needs {plan.min_agreement:.0%}) and no feedback says it is better",
        )
    if evidence.task == "regression":
        return _decide_on_errors(evidence, plan, figures)
    s_champion, f_champion = champion.successes
    s_candidate, f_candidate = candidate.successes
    n_champion, n_candidate = int(s_champion + f_champion), int(s_candidate + f_candidate)
    needed = plan.sample_size_per_arm or planned(plan, None).sample_size_per_arm or 0
    figures.update(
        champion_rate=s_champion / n_champion if n_champion else 0.0,
        candidate_rate=s_candidate / n_candidate if n_candidate else 0.0,
        champion_feedback=float(n_champion),
        candidate_feedback=float(n_candidate),
        sample_size_per_arm=float(needed),
    )

    def beat() -> float:  # a figure (and the bandit's futility rule): computed when wanted
        if "probability_to_beat" not in figures:
            figures["probability_to_beat"] = probability_to_beat(
                (s_champion, f_champion), (s_candidate, f_candidate)
            )
        return figures["probability_to_beat"]

    if evidence.strategy == "bandit":
        if beat() <= 1 - plan.promote_probability and min(n_champion, n_candidate) >= (
            MIN_FUTILITY_ROWS
        ):
            return verdict("rollback", f"P(candidate beats champion) = {beat():.3f}: futile")
        # the test reads only the requests sent to an arm at random
        s_champion, n_champion = champion.randomized_successes, champion.randomized
        s_candidate, n_candidate = candidate.randomized_successes, candidate.randomized
        figures.update(
            champion_rate=s_champion / n_champion if n_champion else 0.0,
            candidate_rate=s_candidate / n_candidate if n_candidate else 0.0,
            champion_randomized=float(n_champion),
            candidate_randomized=float(n_candidate),
        )
        complete = min(n_champion, n_candidate) >= needed
        waiting = (
            f"feedback on {n_champion} / {n_candidate} randomly assigned rows of the {needed} "
            f"per arm planned to detect a {plan.min_effect:.0%} improvement"
        )
    else:
        complete = min(n_champion, n_candidate) >= needed
        waiting = (
            f"feedback on {n_champion} / {n_candidate} rows of the {needed} per arm planned "
            f"to detect a {plan.min_effect:.0%} improvement"
        )
    if not complete:
        return verdict("continue", waiting)
    beat()
    p_value = one_sided_p_value(s_champion, n_champion, s_candidate, n_candidate)
    rates = f"candidate {figures['candidate_rate']:.3f} vs champion {figures['champion_rate']:.3f}"
    return _tested(p_value, plan, figures, rates, "one-sided", "improvement")


def _verdict(action: Action, reason: str, figures: dict[str, float]) -> RolloutDecision:
    return RolloutDecision(action=action, reasons=[reason], figures=figures)


def _tested(
    p_value: float, plan: RolloutPlan, figures: dict[str, float], compared: str, test: str,
    change: str,
) -> RolloutDecision:  # fmt: skip
    """Promote on a p-value under ``significance``, else roll back: the test, once the
    planned sample is in."""
    figures["p_value"] = p_value
    if p_value < plan.significance:
        return _verdict("promote", f"{compared}, p = {p_value:.4f} ({test})", figures)
    return _verdict(
        "rollback",
        f"{compared}, p = {p_value:.3f} ({test}, needs < {plan.significance:g}): no "
        f"significant {change} at the planned sample; the champion stays",
        figures,
    )


def _decide_on_errors(
    evidence: Evidence, plan: RolloutPlan, figures: dict[str, float]
) -> RolloutDecision:
    """A regressor's A/B test or bandit: once each arm has the planned labelled rows,
    Welch's one-sided test that the candidate's mean absolute error is lower (the
    bandit's on the rows it sent to an arm at random, after its futility rule)."""
    champion, candidate = evidence.champion, evidence.candidate
    needed = plan.sample_size_per_arm or 0
    tested = (champion.absolute_errors, candidate.absolute_errors)
    figures.update(
        champion_mae=champion.absolute_errors.mean,
        candidate_mae=candidate.absolute_errors.mean,
        champion_feedback=float(champion.absolute_errors.rows),
        candidate_feedback=float(candidate.absolute_errors.rows),
        sample_size_per_arm=float(needed),
    )

    verdict = functools.partial(_verdict, figures=figures)
    rows = "rows"
    if evidence.strategy == "bandit":
        beat = probability_of_smaller_errors(*tested)
        figures["probability_to_beat"] = beat
        if beat <= 1 - plan.promote_probability and min(t.rows for t in tested) >= (
            MIN_FUTILITY_ROWS
        ):
            return verdict("rollback", f"P(candidate's errors are smaller) = {beat:.3f}: futile")
        tested = (champion.randomized_errors, candidate.randomized_errors)
        figures.update(
            champion_randomized=float(tested[0].rows), candidate_randomized=float(tested[1].rows)
        )
        rows = "randomly assigned rows"
    if not needed or min(t.rows for t in tested) < needed:
        return verdict(
            "continue",
            f"true values for {tested[0].rows} / {tested[1].rows} {rows} of the {needed} per "
            "arm planned"
            + (
                f" to detect a drop of {plan.min_error_reduction:g} in mean absolute error"
                if plan.min_error_reduction is not None
                else ""
            ),
        )
    errors = f"MAE candidate {tested[1].mean:.4g} vs champion {tested[0].mean:.4g}"
    return _tested(welch_p_value(*tested), plan, figures, errors, "Welch, one-sided", "drop")
