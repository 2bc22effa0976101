"""Bootstrap intervals, IQM, interval overlap and Wilson intervals."""

import numpy as np
import pytest

from sslrobot.evaluation.statistics import (
    bootstrap_ci,
    interquartile_mean,
    intervals_overlap,
    seed_mean_resamples,
    stratified_bootstrap_ci,
    success_interval,
    wilson_interval,
)


def test_bootstrap_ci_contains_mean_and_narrows_with_n():
    rng = np.random.default_rng(1)
    small = rng.normal(3.0, 1.0, size=20)
    large = rng.normal(3.0, 1.0, size=2000)
    for sample in (small, large):
        mean, low, high = bootstrap_ci(sample, num_resamples=2000)
        assert mean == pytest.approx(sample.mean())
        assert low < mean < high
    width_small = np.subtract(*bootstrap_ci(small, num_resamples=2000)[2:0:-1])
    width_large = np.subtract(*bootstrap_ci(large, num_resamples=2000)[2:0:-1])
    assert width_large < width_small / 4  # width ~ 1/sqrt(n): sqrt(100) = 10x narrower


def test_bootstrap_ci_is_deterministic_per_seed():
    values = np.random.default_rng(2).random(50)
    assert bootstrap_ci(values, seed=3) == bootstrap_ci(values, seed=3)
    assert bootstrap_ci(values, seed=3) != bootstrap_ci(values, seed=4)


def test_bootstrap_ci_coverage_is_near_nominal():
    rng = np.random.default_rng(5)
    hits, widths = 0, []
    trials = 200
    for trial in range(trials):
        sample = rng.normal(0.0, 1.0, size=30)
        _, low, high = bootstrap_ci(sample, num_resamples=1000, seed=trial)
        hits += low <= 0.0 <= high
        widths.append(high - low)
    # Bounds a 90% (0.875 here) or 99% (0.975) interval falls outside; the width against the
    # normal interval's 2 * 1.96 / sqrt(30) = 0.716 (the bootstrap's, from the 1/n spread,
    # is a little narrower: 0.697; 90% gives 0.587, 99% 0.903).
    assert 0.925 <= hits / trials <= 0.97
    assert 0.65 <= np.mean(widths) <= 0.75


def test_bootstrap_ci_single_and_constant_values():
    assert bootstrap_ci([0.7]) == (0.7, 0.7, 0.7)
    assert bootstrap_ci([0.1] * 7) == (0.1, 0.1, 0.1)


@pytest.mark.parametrize(
    ("values", "kwargs", "message"),
    [
        ([], {}, "is empty"),
        ([1.0, float("nan")], {}, "contains NaN or inf"),
        ([1.0, 2.0], {"confidence": 1.0}, r"confidence must be in \(0, 1\)"),
        ([1.0, 2.0], {"num_resamples": 0}, "num_resamples must be >= 1"),
        ([[1.0]], {}, "must be one-dimensional"),
    ],
)
def test_bootstrap_ci_rejects_bad_input(values, kwargs, message):
    with pytest.raises(ValueError, match=message):
        bootstrap_ci(values, **kwargs)


def test_stratified_bootstrap_weighs_seeds_equally():
    per_seed = [np.ones(10), np.zeros(90)]  # an episode-level mean would be 0.1
    mean, low, high = stratified_bootstrap_ci(per_seed, num_resamples=500)
    assert mean == pytest.approx(0.5)
    assert low <= mean <= high


def test_stratified_bootstrap_seed_resampling_covers_seed_variation():
    rng = np.random.default_rng(6)
    per_seed = [rng.random(50) < p for p in (0.2, 0.5, 0.8)]
    _, low_seeds, high_seeds = stratified_bootstrap_ci(per_seed, num_resamples=2000)
    _, low_strata, high_strata = stratified_bootstrap_ci(
        per_seed, num_resamples=2000, resample_seeds=False
    )
    assert high_seeds - low_seeds > 2 * (high_strata - low_strata)
    assert stratified_bootstrap_ci(per_seed, seed=1) == stratified_bootstrap_ci(per_seed, seed=1)


def test_seeds_evaluated_from_the_same_start_states_resample_them_together():
    """Three policies that succeed on the same 30 of 100 start states: the start states are
    one sample of 100, not three, so the crossed interval is as wide as one seed's bootstrap,
    while drawing each seed's episodes apart narrows it by about sqrt(3)."""
    outcomes = np.zeros(100)
    outcomes[::10] = outcomes[1::10] = outcomes[2::10] = 1.0
    per_seed = [outcomes, outcomes.copy(), outcomes.copy()]
    _, low, high = stratified_bootstrap_ci(per_seed, num_resamples=4000, shared_episodes=True)
    _, nested_low, nested_high = stratified_bootstrap_ci(per_seed, num_resamples=4000)
    _, single_low, single_high = bootstrap_ci(outcomes, num_resamples=4000)
    assert high - low == pytest.approx(single_high - single_low, rel=0.1)
    assert high - low > 1.5 * (nested_high - nested_low)
    wider = success_interval(per_seed, num_resamples=4000, shared_episodes=True)
    assert wider[2] - wider[1] == pytest.approx(high - low)  # wider than the pooled Wilson's
    with pytest.raises(ValueError, match=r"as many episodes.*\[100, 99\]"):
        seed_mean_resamples([outcomes, outcomes[:99]], shared_episodes=True)


def test_stratified_bootstrap_one_seed_matches_plain_bootstrap_mean():
    values = np.random.default_rng(7).random(40)
    mean, low, high = stratified_bootstrap_ci([values], num_resamples=2000)
    plain = bootstrap_ci(values, num_resamples=2000)
    assert mean == pytest.approx(plain[0])
    assert low == pytest.approx(plain[1], abs=0.02)
    assert high == pytest.approx(plain[2], abs=0.02)


def test_interquartile_mean_known_answer_and_robustness():
    assert interquartile_mean([1, 2, 3, 4, 5, 6, 7, 8]) == pytest.approx(4.5)
    assert interquartile_mean([1, 2, 3, 4, 5, 6, 7, 1000]) == pytest.approx(4.5)
    assert interquartile_mean([2.0]) == 2.0


def test_intervals_overlap():
    assert intervals_overlap((0.1, 0.5), (0.4, 0.9))
    assert intervals_overlap((0.1, 0.5), (0.5, 0.9))  # touching counts as overlap
    assert not intervals_overlap((0.1, 0.3), (0.4, 0.9))
    assert not intervals_overlap((0.6, 0.9), (0.1, 0.5))
    with pytest.raises(ValueError, match="low > high"):
        intervals_overlap((0.5, 0.1), (0.0, 1.0))


def test_wilson_interval_known_values():
    p, low, high = wilson_interval(0, 10)
    assert (p, low) == (0.0, 0.0)
    assert high == pytest.approx(0.2775, abs=1e-4)
    p, low, high = wilson_interval(5, 10)
    assert p == 0.5
    assert (low, high) == pytest.approx((0.2366, 0.7634), abs=1e-4)
    with pytest.raises(ValueError, match="num_successes"):
        wilson_interval(11, 10)


def test_success_interval_is_never_a_zero_width_certainty():
    """0 of 50 is not [0, 0], and 1 of 50 is not surer than 0 of 50: one seed's episodes get
    Wilson's interval of their count; several seeds the bootstrap over seeds and episodes,
    widened to Wilson's interval of the pooled count where that is wider."""
    assert success_interval([np.zeros(50)]) == wilson_interval(0, 50)
    assert success_interval([np.zeros(50)])[2] == pytest.approx(0.0713, abs=1e-4)
    one_in_fifty = np.zeros(50)
    one_in_fifty[7] = 1.0
    assert success_interval([one_in_fifty]) == pytest.approx(wilson_interval(1, 50))
    assert success_interval([one_in_fifty])[2] > success_interval([np.zeros(50)])[2]
    mean, low, high = success_interval([np.ones(100)] * 3)
    assert mean == 1.0 and high == 1.0 and low == pytest.approx(wilson_interval(300, 300)[1])
    # Seeds that differ: the bootstrap's interval, wider than the pooled count's Wilson.
    rng = np.random.default_rng(0)
    spread = [(rng.random(100) < p).astype(float) for p in (0.2, 0.5, 0.8)]
    bootstrap = stratified_bootstrap_ci(spread, seed=3)
    assert success_interval(spread, seed=3) == bootstrap
    assert bootstrap[2] - bootstrap[1] > 2 * (wilson_interval(150, 300)[2] - 0.5)
    # Seeds alike but near 0: the bootstrap's upper end falls short of Wilson's; Wilson's kept.
    rare = [one_in_fifty, np.zeros(50), np.zeros(50)]
    _, _, bootstrap_high = stratified_bootstrap_ci(rare, seed=3)
    _, low, high = success_interval(rare, seed=3)
    assert bootstrap_high < wilson_interval(1, 150)[2] == high and low == 0.0
    # Seeds of unequal episode counts: Wilson's interval around the mean of their rates (the
    # pooled rate's, 10 in 100, left the reported 0.5 outside its own interval).
    mean, low, high = success_interval([np.ones(10), np.zeros(90)], resample_seeds=False)
    assert mean == 0.5 and low < 0.5 < high
    assert (low, high) == pytest.approx(wilson_interval(50, 100)[1:])
    with pytest.raises(ValueError, match="per_seed_successes is empty"):
        success_interval([])
    with pytest.raises(ValueError, match=r"must be 0 or 1, got \[0.0, 0.5\]"):
        success_interval([np.array([0.0, 0.5])])
