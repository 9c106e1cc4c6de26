"""Reconstruction metrics: known answers for R^2, CRPS, coverage; ID joins of draws tables."""

import numpy as np
import pandas as pd
import pytest

from coherent_jax.evaluate import (comparison_table, cosine_distance, crps, draws_array,
                                   ideal_coverage, interval_coverage, mse, patient_errors, r2,
                                   reconstruction_metrics)
from coherent_jax.evaluate.reconstruction import energy_score


def _data(n=40, d=6, seed=0):
    rng = np.random.default_rng(seed)
    return rng.normal(size=(n, d)) * np.arange(1, d + 1)


def test_r2_perfect_mean_and_hand_computed():
    real = _data()
    assert r2(real, real) == (1.0, 1.0)
    pooled, median = r2(real, np.tile(real.mean(0), (len(real), 1)))
    assert pooled == pytest.approx(0.0) and median == pytest.approx(0.0)
    y = np.array([[1.0], [2.0], [3.0]])
    p = np.array([[1.0], [2.0], [4.0]])  # SS_res = 1, SS_tot = 2 around the mean 2
    assert r2(y, p)[0] == pytest.approx(0.5)


def test_r2_is_pooled_over_features_not_averaged():
    real = np.array([[0.0, 0.0], [1.0, 10.0], [2.0, 20.0]])
    pred = real.copy()
    pred[:, 0] = 1.0  # feature 0 explains nothing (R^2 0), feature 1 perfectly
    pooled, median = r2(real, pred)
    assert pooled == pytest.approx(1 - 2 / (2 + 200))
    assert median == pytest.approx(0.5)


def test_crps_point_mass_at_truth_is_zero_and_single_draw_is_abs_error():
    real = _data()
    assert np.allclose(crps(real, np.stack([real] * 5)), 0.0)
    assert np.allclose(crps(real, (real + 2.0)[None]), 2.0)


def test_crps_matches_brute_force_pairwise():
    rng = np.random.default_rng(1)
    real, draws = rng.normal(size=(3, 2)), rng.normal(size=(7, 3, 2))
    brute = (np.abs(draws - real).mean(0)
             - 0.5 * np.abs(draws[:, None] - draws[None]).mean((0, 1)))
    assert np.allclose(crps(real, draws), brute)


def test_interval_coverage_of_calibrated_draws():
    rng = np.random.default_rng(2)
    real = rng.normal(size=(400, 5))
    draws = rng.normal(size=(200, 400, 5))
    assert interval_coverage(real, draws, 0.9) == pytest.approx(0.9, abs=0.03)
    assert interval_coverage(real, draws * 0.01, 0.9) < 0.05


def test_coverage_bounds_are_numpys_quantiles_with_ties_and_nan():
    rng = np.random.default_rng(5)
    for k in (1, 2, 3, 50):
        real = np.round(rng.normal(size=(30, 4)))
        draws = np.round(real + rng.normal(size=(k, 30, 4)))  # ties, and truths on the bounds
        draws[0, 0, 0] = np.nan
        for level in (0.3, 0.5, 0.9):
            lower, upper = np.quantile(draws, [(1 - level) / 2, (1 + level) / 2], axis=0)
            inside = (real >= lower) & (real <= upper)
            assert interval_coverage(real, draws, level) == np.mean(inside)
            if k > 1:
                assert np.array_equal(patient_errors(real, draws, level=level)["covered"],
                                      np.mean(inside, axis=1))


def test_energy_score_matches_scoringrules_fair_estimator():
    """The Gram-matrix pairwise distances against the direct [K, K, D] differences."""
    scoringrules = pytest.importorskip("scoringrules")
    rng = np.random.default_rng(6)
    for k, n, d, offset in [(2, 5, 1, 0.0), (2, 7, 3, 0.0), (5, 4, 1, 0.0), (50, 9, 30, 0.0),
                            (20, 33, 7, 1e3), (3, 17, 200, -50.0)]:
        real = offset + rng.normal(size=(n, d)) * 2
        draws = real + rng.normal(size=(k, n, d)) * rng.uniform(0.1, 3, size=d)
        expected = scoringrules.es_ensemble(real, np.swapaxes(draws, 0, 1), estimator="fair",
                                            backend="numpy")
        got = energy_score(real, draws, chunk=4)
        np.testing.assert_allclose(got, expected, rtol=1e-8, atol=1e-12 * (1 + abs(offset)))
    assert np.isnan(energy_score(real, draws[:1])).all()
    assert np.allclose(energy_score(real, np.stack([real] * 3)), 0.0)


def test_single_draw_metrics_are_the_per_draw_metrics_averaged():
    from sklearn.metrics import r2_score  # noqa: PLC0415

    rng = np.random.default_rng(7)
    real = rng.normal(size=(25, 6)) * 3
    real[:, 2] = 1.0  # a constant feature: left out of the per-feature median
    draws = real + rng.normal(size=(4, 25, 6))
    row = reconstruction_metrics(real, draws).loc["all"]
    per_feature = [np.median(r2_score(real[:, [0, 1, 3, 4, 5]], d[:, [0, 1, 3, 4, 5]],
                                      multioutput="raw_values")) for d in draws]
    assert row["r2_feature_median_single"] == pytest.approx(np.mean(per_feature), rel=1e-12)
    for column, metric in (("mse_single", mse), ("cosine_single", cosine_distance),
                           ("r2_single", lambda y, p: r2(y, p)[0])):
        assert row[column] == pytest.approx(np.mean([metric(real, d) for d in draws]),
                                            rel=1e-12)


def test_cosine_distance():
    real = _data()
    assert cosine_distance(real, 3 * real) == pytest.approx(0.0, abs=1e-12)
    assert cosine_distance(real, -real) == pytest.approx(2.0)


def test_metrics_single_vs_mean_of_draws():
    rng = np.random.default_rng(3)
    real = rng.normal(size=(300, 4))
    draws = real + rng.normal(size=(20, 300, 4))  # unbiased noisy draws, noise variance 1
    table = reconstruction_metrics(real, draws)
    row = table.loc["all"]
    assert row["mse_single"] == pytest.approx(1.0, abs=0.05)
    assert row["mse_mean"] == pytest.approx(1 / 20, abs=0.01)
    assert row["k"] == 20 and row["n"] == 300


def test_groups_and_dataframe_draws_joined_by_id():
    rng = np.random.default_rng(4)
    n, k, d = 30, 3, 4
    ids = [f"s{i}" for i in range(n)]
    real = pd.DataFrame(rng.normal(size=(n, d)), index=pd.Index(ids, name="sample_id"))
    draws = real.to_numpy()[None] + 0.1 * rng.normal(size=(k, n, d))
    index = pd.MultiIndex.from_arrays([np.tile(ids, k), np.repeat(np.arange(k), n)],
                                      names=["sample_id", "draw"])
    table = pd.DataFrame(draws.reshape(k * n, d), index=index, columns=real.columns)
    groups = pd.Series(np.where(np.arange(n) < 10, "A", "B"), index=ids)
    expected = reconstruction_metrics(real.to_numpy(), draws, groups.to_numpy())
    shuffled = table.sample(frac=1.0, random_state=0)
    got = reconstruction_metrics(real, shuffled, groups.sample(frac=1.0, random_state=1))
    pd.testing.assert_frame_equal(got, expected)
    assert list(got.index) == ["all", "A", "B"] and got.loc["A", "n"] == 10
    _, arr = draws_array(shuffled, ids)
    np.testing.assert_allclose(arr, draws)


def test_missing_ids_and_shape_mismatch_raise():
    real = pd.DataFrame(np.zeros((3, 2)), index=["a", "b", "c"])
    pred = pd.DataFrame(np.zeros((3, 2)), index=["a", "b", "x"])
    with pytest.raises(ValueError, match="no row in draws"):
        reconstruction_metrics(real, pred)
    with pytest.raises(ValueError, match="joined by ID"):
        reconstruction_metrics(real.to_numpy(), pred)
    with pytest.raises(ValueError, match="do not match"):
        reconstruction_metrics(np.zeros((3, 2)), np.zeros((2, 3, 3)))


def test_comparison_table_rows_methods_columns_targets():
    scores = pd.DataFrame({"method": ["knn", "knn", "coherent", "coherent"],
                           "target": ["rna", "cna"] * 2, "group": "all",
                           "r2_mean": [0.1, 0.2, 0.3, 0.4]})
    table = comparison_table(scores)
    assert table.loc["coherent", "cna"] == 0.4 and table.loc["knn", "rna"] == 0.1
    with pytest.raises(ValueError, match="several rows"):
        comparison_table(pd.concat([scores, scores]))


def test_ideal_coverage_matches_the_exchangeable_rank_formula():
    """With the truth exchangeable with k draws, its rank among the k + 1 values is uniform;
    np.quantile's interval of k draws holds it with the probability simulated here."""
    assert ideal_coverage(50) == pytest.approx(0.87, abs=0.01)
    assert ideal_coverage(10) < ideal_coverage(50) < 0.9
    with pytest.raises(ValueError, match="k >= 2"):
        ideal_coverage(1)


def test_patient_errors_sum_to_the_pooled_metrics():
    rng = np.random.default_rng(8)
    real = rng.normal(size=(30, 5))
    draws = real[None] + rng.normal(size=(20, 30, 5))
    parts = patient_errors(real, draws)
    ss_tot = np.sum((real - real.mean(0)) ** 2)
    assert 1 - parts["sse_mean"].sum() / ss_tot == pytest.approx(r2(real, draws.mean(0))[0])
    single = np.mean([r2(real, d)[0] for d in draws])
    assert 1 - parts["sse_single"].sum() / ss_tot == pytest.approx(single)
    assert parts["covered"].mean() == pytest.approx(interval_coverage(real, draws))


def test_joint_dependence_sees_draws_that_ignore_the_cross_modality_correlation():
    from coherent_jax.evaluate.joint import dependence  # noqa: PLC0415

    rng = np.random.default_rng(0)
    n, k, d = 400, 20, 5
    shared = rng.standard_normal((n, d))
    mean_a, mean_b = rng.standard_normal((n, d)), rng.standard_normal((n, d))
    real = [mean_a + shared + 0.5 * rng.standard_normal((n, d)),
            mean_b + shared + 0.5 * rng.standard_normal((n, d))]
    common = rng.standard_normal((k, n, d))
    joint = [mean_a + common + 0.5 * rng.standard_normal((k, n, d)),
             mean_b + common + 0.5 * rng.standard_normal((k, n, d))]
    independent = [mean_a + rng.standard_normal((k, n, d)) * np.sqrt(1.25),
                   mean_b + rng.standard_normal((k, n, d)) * np.sqrt(1.25)]
    good, bad = dependence(real, joint), dependence(real, independent)
    # the real residuals correlate dimension by dimension (0.8 on the diagonal of 5 x 5)
    assert good["real |r|"] > 0.15 and abs(good["drawn |r|"] - good["real |r|"]) < 0.03
    assert bad["drawn |r|"] < 0.03 and bad["rms difference"] > 3 * good["rms difference"]
