"""PRDC, energy distance and the privacy audit on Gaussian samples with known answers."""

import numpy as np
import pytest

from coherent_jax.evaluate import (closest_distance, copy_audit, energy_distance, membership_audit,
                                   prdc, prdc_per_sample, unconditional_check)


def _gauss(n, d=4, shift=0.0, seed=0):
    return np.random.default_rng(seed).normal(size=(n, d)) + shift


def test_prdc_identical_sets_are_perfect():
    real = _gauss(300)
    got = prdc(real, real.copy(), k=5)
    assert got["precision"] == 1.0 and got["recall"] == 1.0 and got["coverage"] == 1.0
    assert got["density"] >= 1.0


def test_prdc_hand_computed_one_dimensional():
    real = np.array([[0.0], [1.0], [2.0], [3.0], [10.0]])  # k=1 radii: 1, 1, 1, 1, 7
    generated = np.array([[0.5], [20.0]])  # k=1 radii: 19.5, 19.5
    got = prdc(real, generated, k=1)
    assert got["precision"] == 0.5  # 0.5 lies in the balls of 0 and 1; 20 in none
    assert got["density"] == 1.0  # (2 + 0) balls / (k * 2 samples)
    assert got["coverage"] == 0.4  # the balls of 0 and 1 hold a generated sample
    assert got["recall"] == 1.0  # every real point lies within 19.5 of 0.5


def test_prdc_same_distribution_high_far_shift_zero():
    real, fresh = _gauss(400, seed=1), _gauss(400, seed=2)
    same = prdc(real, fresh)
    assert same["precision"] > 0.8 and same["recall"] > 0.8 and same["coverage"] > 0.8
    assert same["density"] == pytest.approx(1.0, abs=0.25)
    far = prdc(real, _gauss(400, shift=20.0, seed=3))
    assert far["precision"] == 0 and far["recall"] == 0 and far["coverage"] == 0


def test_prdc_mode_collapse_keeps_precision_loses_recall():
    real = _gauss(400, seed=4)
    collapsed = 0.05 * _gauss(400, seed=5)  # all mass at the centre of the real cloud
    got = prdc(real, collapsed)
    assert got["precision"] > 0.9 and got["recall"] < 0.2 and got["coverage"] < 0.3


def test_energy_distance():
    x, y = _gauss(300, seed=6), _gauss(300, seed=7)
    assert abs(energy_distance(x, y)) < 0.1
    # unit-variance Gaussians 6 apart (3 in each of 4 coordinates): about 7.5
    assert energy_distance(x, _gauss(300, shift=3.0, seed=8)) > 5.0


def test_closest_distance_excluding_self():
    records = np.array([[0.0, 0.0], [3.0, 4.0], [0.0, 1.0]])
    np.testing.assert_allclose(closest_distance(records, records), 0.0)
    np.testing.assert_allclose(closest_distance(records, records, exclude_self=True),
                               [1.0, np.sqrt(9 + 9), 1.0])


def test_closest_distance_excluding_self_keeps_duplicates():
    records = np.array([[0.0, 0.0], [0.0, 0.0], [5.0, 0.0]])
    np.testing.assert_allclose(closest_distance(records, records, exclude_self=True),
                               [0.0, 0.0, 5.0])


def test_prdc_per_sample_parts_average_to_prdc():
    real, generated = _gauss(60, seed=20), _gauss(50, seed=21)
    parts, whole = prdc_per_sample(real, generated), prdc(real, generated)
    assert len(parts["precision"]) == 50 and len(parts["coverage"]) == 60
    for name, values in parts.items():
        assert values.mean() == pytest.approx(whole[name])


def test_copy_audit_fresh_draws_pass_copies_fail():
    train, holdout = _gauss(400, seed=9), _gauss(100, seed=10)
    fresh = copy_audit(_gauss(100, seed=11)[None], train, holdout, num=200)
    assert fresh["near_copy_share"] < 0.05 and not fresh["flagged"]
    assert fresh["nn_ratio"] == pytest.approx(1.0, abs=0.2)
    copies = copy_audit(np.stack([train[:100] + 1e-6] * 3), train, holdout, num=200)
    assert copies["near_copy_share"] == 1.0 and copies["flagged"] and copies["low"] == 1.0
    assert copies["draw_train_nn_median"] < 1e-5


def test_membership_audit_auc_interval_and_flag():
    rng = np.random.default_rng(12)
    same = membership_audit(rng.random(300), rng.random(100), num=200)
    assert same["auc"] == pytest.approx(0.5, abs=0.08) and not same["flagged"]
    assert same["low"] < 0.5 < same["high"] and same["p"] > 0.01
    smaller = membership_audit(rng.random(300) * 0.5, rng.random(100), num=200)
    assert smaller["auc"] > 0.7 and smaller["flagged"] and smaller["p"] < 1e-6
    assert smaller["low"] < smaller["auc"] < smaller["high"]
    larger = membership_audit(rng.random(300) * 2.0, rng.random(100), num=200)
    assert larger["auc"] < 0.3 and larger["flagged"]  # worse on members: membership shows too


def test_unconditional_check_separates_fresh_from_copies():
    train = _gauss(400, seed=15)
    fresh = unconditional_check(_gauss(300, seed=16), train)
    assert fresh["share_below_quantile"] < 0.05 and fresh["nn_ratio"] > 0.8
    copies = unconditional_check(train[:300] + 1e-6, train)
    assert copies["share_below_quantile"] == 1.0 and copies["nn_ratio"] < 1e-4


def test_unconditional_check_flags_duplicated_training_records():
    rng = np.random.default_rng(0)
    train = np.repeat(rng.normal(size=(10, 3)), 5, axis=0)  # every record 5 times: collapsed
    out = unconditional_check(rng.normal(size=(40, 3)), train)
    assert out["train_duplicate_share"] == 1.0 and out["train_train_nn_median"] == 0.0
    assert np.isnan(out["nn_ratio"])  # not inf: a healthy-looking ratio would mislead
