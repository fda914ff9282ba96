"""Progressive delivery, the pure part: how traffic is split and how an experiment is decided.

The router (``serving/router.py``) applies a :class:`RolloutPlan` request by
request: which version answers (canary weight, sticky A/B bucket, Thompson
sampling), which one only shadows, when a canary steps up or is pulled back.
The rollout pipeline reads the evidence both arms left (answers, latencies,
errors, feedback) and :func:`decide` says promote, roll back or keep going,
with the figures that justify it. Nothing here does I/O.
"""

from __future__ import annotations

import hashlib
import itertools
import math
import random
from collections.abc import Sequence
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
    #: the candidate is too slow when its p99 exceeds both this factor of the
    #: champion's p99 and the absolute budget (a cold first request is not a regression)
    max_latency_ratio: float = Field(default=1.5, ge=1)
    latency_budget_ms: float = Field(default=25.0, gt=0)
    #: decision: the smallest accuracy (or reward) difference worth detecting
    min_effect: float = Field(default=0.05, gt=0, lt=1)
    significance: float = Field(default=0.05, gt=0, lt=0.5)
    power: float = Field(default=0.8, gt=0.5, lt=1)
    #: decision: probability the candidate beats the champion needed to promote it
    #: (bandit, and A/B once the sample is complete and no test is significant)
    promote_probability: float = Field(default=0.95, gt=0.5, lt=1)
    #: shadow: agreement with the champion needed to promote without feedback
    min_agreement: float = Field(default=0.98, ge=0, le=1)
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
class ArmEvidence(BaseModel):
    """What one version's answers showed during the experiment."""

    version: str
    requests: int = 0
    errors: int = 0
    p50_ms: float | None = None
    p99_ms: float | None = None
    #: feedback joined to this arm's answers: labelled rows and how many it got right
    labelled: int = 0
    correct: int = 0
    #: rewards posted for this arm's answers (bandit): count and sum
    rewarded: int = 0
    reward_sum: float = 0.0

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
    champion: ArmEvidence
    candidate: ArmEvidence
    #: shadow: requests both answered, and how many got the same label
    compared: int = 0
    agreed: int = 0
    #: what the router did on its own (e.g. a canary pulled back by a guardrail)
    router_state: str = "running"
    router_reason: str = ""


Action = Literal["promote", "rollback", "continue"]


class RolloutDecision(BaseModel):
    action: Action
    reasons: list[str]
    figures: dict[str, float] = Field(default_factory=dict)


def sample_size(baseline: float, min_effect: float, significance: float, power: float) -> int:
    """Rows per arm for a two-sided two-proportion test to detect ``min_effect``."""
    from statistics import NormalDist

    normal = NormalDist()
    p1 = min(max(baseline, 0.01), 0.99)
    p2 = min(max(p1 - min_effect, 0.001), 0.999) if p1 > 0.5 else min(p1 + min_effect, 0.999)
    z_alpha, z_beta = normal.inv_cdf(1 - significance / 2), normal.inv_cdf(power)
    mean = (p1 + p2) / 2
    numerator = (
        z_alpha * math.sqrt(2 * mean * (1 - mean))
        + z_beta * math.sqrt(p1 * (1 - p1) + p2 * (1 - p2))
    ) ** 2
    return math.ceil(numerator / (p1 - p2) ** 2)


def two_proportion_p_value(s1: float, n1: int, s2: float, n2: int) -> float:
    """Two-sided p-value that two success rates are equal (pooled z-test)."""
    from statistics import NormalDist

    if not n1 or not n2:
        return 1.0
    pooled = (s1 + s2) / (n1 + n2)
    spread = math.sqrt(pooled * (1 - pooled) * (1 / n1 + 1 / n2))
    if spread == 0:
        return 1.0
    z = (s2 / n2 - s1 / n1) / spread
    return 2 * (1 - NormalDist().cdf(abs(z)))


def probability_to_beat(
    champion: tuple[float, float], candidate: tuple[float, float], draws: int = 20_000
) -> float:
    """P(candidate's rate > champion's) under Beta(1 + s, 1 + f) posteriors (Monte Carlo,
    fixed seed so a decision is reproducible)."""
    rng = random.Random(0)
    wins = sum(
        rng.betavariate(1 + candidate[0], 1 + candidate[1])
        > rng.betavariate(1 + champion[0], 1 + champion[1])
        for _ in range(draws)
    )
    return wins / draws


def decide(evidence: Evidence, plan: RolloutPlan) -> RolloutDecision:
    """Promote, roll back or continue, by the plan's rules, with the figures behind it.

    Guardrails first (the router's own verdict, errors, latency), then the
    experiment: agreement for shadow, a two-proportion test on accuracy for A/B
    and canary once each arm has the planned sample, the probability to beat the
    champion for the bandit."""
    champion, candidate = evidence.champion, evidence.candidate

    figures = {
        "champion_requests": float(champion.requests),
        "candidate_requests": float(candidate.requests),
        "candidate_error_rate": candidate.error_rate,
        "champion_error_rate": champion.error_rate,
    }

    def verdict(action: Action, reason: str) -> RolloutDecision:
        return RolloutDecision(action=action, reasons=[reason], figures=figures)

    if evidence.router_state == "rolled_back":
        return verdict("rollback", f"the router pulled it back: {evidence.router_reason}")
    if candidate.requests and candidate.error_rate > plan.max_error_rate:
        return verdict(
            "rollback", f"error rate {candidate.error_rate:.2%} over {plan.max_error_rate:.2%}"
        )
    if candidate.p99_ms is not None and champion.p99_ms:
        ratio = candidate.p99_ms / champion.p99_ms
        figures["p99_ratio"] = ratio
        if candidate.requests >= 100 and too_slow(candidate.p99_ms, champion.p99_ms, plan):
            return verdict(
                "rollback",
                f"p99 {candidate.p99_ms:.1f} ms is {ratio:.2f}x the champion's "
                f"and over the {plan.latency_budget_ms:g} ms budget",
            )
    if evidence.strategy == "shadow" and not (candidate.labelled or candidate.rewarded):
        agreement = evidence.agreed / evidence.compared if evidence.compared else 0.0
        figures["agreement"] = agreement
        if evidence.compared < plan.shadow_requests:
            return verdict(
                "continue", f"{evidence.compared} of {plan.shadow_requests} mirrored requests"
            )
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
    s_champion, f_champion = champion.successes
    s_candidate, f_candidate = candidate.successes
    n_champion, n_candidate = int(s_champion + f_champion), int(s_candidate + f_candidate)
    beat = probability_to_beat((s_champion, f_champion), (s_candidate, f_candidate))
    figures.update(
        champion_rate=s_champion / n_champion if n_champion else 0.0,
        candidate_rate=s_candidate / n_candidate if n_candidate else 0.0,
        champion_feedback=float(n_champion),
        candidate_feedback=float(n_candidate),
        probability_to_beat=beat,
    )
    baseline = figures["champion_rate"] or 0.9
    needed = sample_size(baseline, plan.min_effect, plan.significance, plan.power)
    figures["sample_size_per_arm"] = float(needed)
    if evidence.strategy == "bandit":
        if beat >= plan.promote_probability and n_candidate >= 30:
            return verdict("promote", f"P(candidate beats champion) = {beat:.3f}")
        if beat <= 1 - plan.promote_probability and n_champion >= 30:
            return verdict("rollback", f"P(candidate beats champion) = {beat:.3f}")
        return verdict("continue", f"P(beats) = {beat:.3f}, not yet decisive")
    if min(n_champion, n_candidate) < needed:
        return verdict(
            "continue",
            f"feedback on {n_champion} / {n_candidate} rows of the {needed} per arm "
            f"needed to detect a {plan.min_effect:.0%} difference",
        )
    p_value = two_proportion_p_value(s_champion, n_champion, s_candidate, n_candidate)
    figures["p_value"] = p_value
    better = figures["candidate_rate"] > figures["champion_rate"]
    if p_value < plan.significance:
        return verdict(
            "promote" if better else "rollback",
            f"candidate {figures['candidate_rate']:.3f} vs champion "
            f"{figures['champion_rate']:.3f}, p = {p_value:.4f}",
        )
    return verdict(
        "promote" if beat >= plan.promote_probability else "rollback",
        f"no significant difference (p = {p_value:.3f}); P(beats) = {beat:.3f}",
    )
