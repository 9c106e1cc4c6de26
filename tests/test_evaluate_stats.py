"""Patient-level statistics: bootstrap resamples, intervals, paired tests, AUC tests, BH."""

import numpy as np
import pandas as pd
import pytest
from scipy import stats as scipy_stats

from coherent_jax.evaluate import r2, r2_bootstrap
from coherent_jax.evaluate import stats


def test_benjamini_hochberg_hand_computed_and_nan():
    # p sorted: 0.005 0.01 0.02 0.03 0.2 -> *5/rank: 0.025 0.025 0.0333 0.0375 0.2, step-up
    p = [0.01, 0.02, 0.03, 0.005, 0.2]
    np.testing.assert_allclose(stats.benjamini_hochberg(p),
                               [0.025, 0.0333333, 0.0375, 0.025, 0.2], rtol=1e-5)
    q = stats.benjamini_hochberg([0.9, np.nan, 0.8])
    assert np.isnan(q[1]) and q[0] == pytest.approx(0.9) and q[2] == pytest.approx(0.9)
    assert np.isnan(stats.benjamini_hochberg([np.nan])).all()


def test_bootstrap_counts_match_indices():
    indices = stats.bootstrap_indices(7, 50, seed=3)
    counts = stats.bootstrap_counts(indices, 7)
    assert counts.shape == (50, 7) and (counts.sum(axis=1) == 7).all()
    np.testing.assert_array_equal(counts[4], np.bincount(indices[4], minlength=7))
    with pytest.raises(ValueError, match=">= 2 patients"):
        stats.bootstrap_indices(1)


def test_r2_bootstrap_equals_r2_recomputed_on_each_resample():
    rng = np.random.default_rng(0)
    real = rng.normal(size=(40, 6))
    pred = real + rng.normal(size=(40, 6))
    indices = stats.bootstrap_indices(40, 30, seed=1)
    boot = r2_bootstrap(real, np.sum((real - pred) ** 2, axis=1),
                        stats.bootstrap_counts(indices, 40))
    np.testing.assert_allclose(boot, [r2(real[i], pred[i])[0] for i in indices])


def test_percentile_interval_covers_the_mean_at_the_nominal_rate():
    """95% bootstrap intervals of a mean cover the true mean in ~95% of repeated samples."""
    rng = np.random.default_rng(5)
    covered = []
    for _ in range(200):
        x = rng.normal(size=60)
        boot = stats.resample(np.mean, stats.bootstrap_indices(60, 400, seed=int(rng.integers(1e9))),
                              x)
        low, high = stats.percentile_interval(boot)
        covered.append(low <= 0 <= high)
    assert 0.88 <= np.mean(covered) <= 0.99


def test_paired_difference_sees_a_paired_effect_an_unpaired_view_would_miss():
    rng = np.random.default_rng(2)
    patient = rng.normal(size=80) * 3  # large between-patient spread
    a, b = patient + 0.3 + 0.1 * rng.normal(size=80), patient + 0.1 * rng.normal(size=80)
    indices = stats.bootstrap_indices(80, 1000, seed=0)
    boot_a, boot_b = stats.resample(np.mean, indices, a), stats.resample(np.mean, indices, b)
    found = stats.paired_difference(a.mean(), b.mean(), boot_a, boot_b)
    assert found["low"] > 0.2 and found["high"] < 0.4 and found["p"] < 0.01
    # the marginal intervals overlap: only pairing shows the difference
    assert stats.percentile_interval(boot_a)[0] < stats.percentile_interval(boot_b)[1]
    same = stats.paired_difference(b.mean(), b.mean(), boot_b, boot_b)
    assert same["p"] == 1.0 and same["difference"] == 0.0


def test_auc_test_agrees_with_mann_whitney_and_chance():
    rng = np.random.default_rng(4)
    members, others = rng.normal(0.5, 1, 200), rng.normal(0, 1, 100)
    found = stats.auc_test(members, others, num=300)
    u = scipy_stats.mannwhitneyu(members, others).statistic
    assert found["auc"] == pytest.approx(u / 20000)
    assert found["low"] < found["auc"] < found["high"] and found["p"] < 0.01
    chance = stats.auc_test(rng.normal(size=200), rng.normal(size=100), num=300)
    assert chance["low"] < 0.5 < chance["high"]


def test_auc_bootstrap_is_mann_whitney_of_each_resample_ties_included():
    rng = np.random.default_rng(5)
    members, others = np.round(rng.normal(0.3, 1, 60), 1), np.round(rng.normal(0, 1, 40), 1)
    found = stats.auc_test(members, others, num=50, seed=2)
    draws, boot = np.random.default_rng(2), []
    for _ in range(50):  # the resamples auc_test draws, in its order, scored one by one
        a = members[draws.integers(0, 60, 60)]
        b = others[draws.integers(0, 40, 40)]
        boot.append(scipy_stats.mannwhitneyu(a, b).statistic / 2400)
    assert (found["low"], found["high"]) == pytest.approx(stats.percentile_interval(
        np.array(boot)), abs=1e-12)


def test_with_q_and_cells():
    table = stats.with_q(pd.DataFrame({"p": [0.001, 0.04, 0.5]}))
    assert list(table["significant"]) == [True, False, False]
    assert stats.cell(0.5981, 0.571, 0.6222) == "0.598 [0.571, 0.622]"
    assert stats.cell(0.012, -0.01, 0.031, signed=True) == "+0.012 [-0.010, +0.031]"
    assert stats.cell(float("nan"), 0, 1) == "nan" and stats.cell(0.5, np.nan, np.nan) == "0.500"
