"""The row-free fill: exact conditional means of a low-rank Gaussian, nothing of a row kept."""

import numpy as np
from sklearn.impute import KNNImputer

from coherent_jax.data.lowrank_fill import LowRankFill


def _factor_rows(rng, n, d=40, rank=3, noise=0.3):
    loadings = rng.normal(0, 1, (d, rank))
    mean = rng.normal(0, 2, d)
    rows = mean + rng.normal(0, 1, (n, rank)) @ loadings.T + rng.normal(0, noise, (n, d))
    return rows, mean, loadings, noise ** 2 * np.ones(d)


def _exact_fill(rows, mean, loadings, noise):
    cov = loadings @ loadings.T + np.diag(noise)
    out = rows.copy()
    for i, row in enumerate(rows):
        m, o = np.isnan(row), ~np.isnan(row)
        out[i, m] = mean[m] + cov[np.ix_(m, o)] @ np.linalg.solve(cov[np.ix_(o, o)],
                                                                   row[o] - mean[o])
    return out


def test_fill_reaches_the_exact_conditional_mean_and_beats_knn():
    rng = np.random.default_rng(0)
    train, mean, loadings, noise = _factor_rows(rng, 2000)
    train[rng.random(train.shape) < 0.05] = np.nan  # holes in the training rows too
    test = mean + rng.normal(0, 1, (300, 3)) @ loadings.T + rng.normal(0, 0.3, (300, 40))
    holes = rng.random(test.shape) < 0.2
    holed = np.where(holes, np.nan, test)
    model = LowRankFill.fit(train)
    assert model.rank in (2, 4)  # the candidate ranks around the true 3
    ours = model.transform(holed)
    exact = _exact_fill(holed, mean, loadings, noise)
    knn = KNNImputer(n_neighbors=5).fit(train).transform(holed)

    def rmse(x):
        return np.sqrt(np.mean((x[holes] - test[holes]) ** 2))
    assert rmse(ours) < 1.05 * rmse(exact)
    assert rmse(ours) < 0.8 * rmse(knn)
    np.testing.assert_array_equal(ours[~holes], test[~holes])  # observed entries kept


def test_complete_rows_pass_unchanged_and_all_nan_rows_get_the_mean():
    rng = np.random.default_rng(1)
    train, *_ = _factor_rows(rng, 100)
    model = LowRankFill.fit(train, rank=3)
    np.testing.assert_array_equal(model.transform(train), train)
    empty = model.transform(np.full((1, 40), np.nan))
    np.testing.assert_allclose(empty[0], model.mean)


def test_kept_arrays_are_aggregates_not_rows():
    rng = np.random.default_rng(2)
    train, *_ = _factor_rows(rng, 30, d=200, rank=5)
    model = LowRankFill.fit(train)
    gap = np.linalg.norm(train[:, None] - train[None], axis=-1)
    nearest_pair = np.min(gap[~np.eye(30, dtype=bool)])
    for vector in (model.mean, *model.loadings.T, model.noise):
        assert np.min(np.linalg.norm(train - vector, axis=1)) > 0.5 * nearest_pair


def test_same_rows_same_fit():
    rng = np.random.default_rng(3)
    train, *_ = _factor_rows(rng, 200)
    train[rng.random(train.shape) < 0.1] = np.nan
    a, b = LowRankFill.fit(train), LowRankFill.fit(train)
    for x, y in zip(a.arrays().values(), b.arrays().values()):
        np.testing.assert_array_equal(x, y)
