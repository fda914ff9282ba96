"""The pure part of progressive delivery: assignment, sample size, tests, decisions."""

from __future__ import annotations

import random

import pytest
from pydantic import ValidationError

from tabular_mlops.core.rollout import (
    ArmEvidence,
    Evidence,
    RolloutPlan,
    decide,
    probability_to_beat,
    sample_size,
    sticky_bucket,
    thompson_choice,
    two_proportion_p_value,
)


def test_a_user_always_lands_in_the_same_bucket_and_buckets_spread_evenly():
    assert sticky_bucket("user-7", "exp-1") == sticky_bucket("user-7", "exp-1")
    buckets = [sticky_bucket(f"user-{i}", "exp-1") for i in range(10_000)]
    assert 0.48 < sum(b < 0.5 for b in buckets) / len(buckets) < 0.52
    assert sticky_bucket("user-7", "exp-1") != sticky_bucket("user-7", "exp-2")


def test_thompson_sampling_prefers_the_arm_that_earns_more():
    rng = random.Random(0)
    picks = [thompson_choice([90, 60], [10, 40], rng) for _ in range(1000)]
    assert picks.count(0) > 950


def test_sample_size_matches_the_textbook_figure():
    # 0.9 vs 0.85, alpha 0.05 two-sided, power 0.8: about 683 per arm
    assert 670 <= sample_size(0.9, 0.05, 0.05, 0.8) <= 700


def test_two_proportion_test_and_probability_to_beat():
    assert two_proportion_p_value(840, 1000, 970, 1000) < 1e-6
    assert two_proportion_p_value(50, 100, 51, 100) > 0.8
    assert probability_to_beat((84, 16), (97, 3)) > 0.99


def test_canary_steps_must_rise_to_all_traffic():
    with pytest.raises(ValidationError, match="rise strictly"):
        RolloutPlan(canary_steps=[0.5, 0.25, 1.0])
    with pytest.raises(ValidationError, match=r"end at 1\.0"):
        RolloutPlan(canary_steps=[0.05, 0.5])


def evidence(strategy="ab", **candidate) -> Evidence:
    champion = ArmEvidence(version="1", requests=500, labelled=300, correct=252, p99_ms=5.0)
    return Evidence(
        strategy=strategy,
        champion=champion,
        candidate=ArmEvidence(version="2", **{"requests": 500, "p99_ms": 5.0, **candidate}),
    )


def test_a_significantly_better_candidate_is_promoted_a_worse_one_rolled_back():
    plan = RolloutPlan(strategy="ab", min_effect=0.1)
    better = decide(evidence(labelled=300, correct=291), plan)
    assert better.action == "promote" and better.figures["p_value"] < 0.05
    worse = decide(evidence(labelled=300, correct=210), plan)
    assert worse.action == "rollback"


def test_too_little_feedback_means_continue():
    decision = decide(evidence(labelled=20, correct=20), RolloutPlan(strategy="ab"))
    assert decision.action == "continue"
    assert "needed to detect" in decision.reasons[0]


def test_guardrails_come_before_the_experiment():
    plan = RolloutPlan(strategy="canary", min_effect=0.1)
    erring = decide(evidence(labelled=300, correct=299, errors=50), plan)
    assert erring.action == "rollback" and "error rate" in erring.reasons[0]
    slow = decide(evidence(labelled=300, correct=299, p99_ms=80.0), plan)
    assert slow.action == "rollback" and "budget" in slow.reasons[0]
    cold_start = decide(evidence(labelled=300, correct=299, p99_ms=9.0), plan)
    assert cold_start.action == "promote"  # 1.8x the champion, but within the 25 ms budget


def test_shadow_without_feedback_decides_on_agreement():
    plan = RolloutPlan(strategy="shadow", shadow_requests=100)
    agreeing = evidence("shadow").model_copy(update={"compared": 200, "agreed": 199})
    assert decide(agreeing, plan).action == "promote"
    differing = evidence("shadow").model_copy(update={"compared": 200, "agreed": 150})
    assert decide(differing, plan).action == "rollback"
