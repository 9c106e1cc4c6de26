"""Per-feature shape transforms (`data.marginal`): chosen only where the training values call
for them, inverted exactly, kept with the preprocessing without a patient's row."""

import json

import numpy as np
import pandas as pd
import pytest

from coherent_jax.data import Cohort, DataError, Preprocessor
from coherent_jax.data.config import DataConfig, load_cohort, load_raw_cohort
from coherent_jax.data.marginal import AsinhShape
from coherent_jax.data.mixture import hidden_subtype_model


def test_the_sinh_link_is_taken_out_and_gaussian_features_are_left_alone():
    values = hidden_subtype_model(seed=3, target_link="sinh").sample(1200, 0)[0]
    shape = AsinhShape.fit(values["target"])
    assert shape.transformed.all()
    truth = np.arcsinh(values["target"])  # the working scale the link hides
    t = shape.apply(values["target"])
    assert min(np.corrcoef(t[:, j], truth[:, j])[0, 1] for j in range(t.shape[1])) > 0.97
    # raw values are far less linear in the working scale: the transform did the work
    assert min(np.corrcoef(values["target"][:, j], truth[:, j])[0, 1]
               for j in range(t.shape[1])) < 0.9
    gaussian = np.random.default_rng(0).normal(3.0, 2.0, (1200, 20))
    assert not AsinhShape.fit(gaussian).transformed.any()


@pytest.mark.parametrize("seed", [3, 5])
def test_the_fitted_transform_is_the_link_itself(seed):
    """x = sinh(u) is s asinh((x - m) / s) with m = 0, s = 1: the refined fit finds it, off
    the grid, with subtype-dependent noise (the grid alone, scaled by the tail-inflated
    standard deviation, missed s by up to a factor 2.5), and `inverse` does not clip the
    tail's draws."""
    model = hidden_subtype_model(seed=seed, target_link="sinh")
    shape = AsinhShape.fit(model.sample(1200, 0)[0]["target"])
    assert shape.transformed.all()
    assert np.abs(np.log(shape.scale)).max() < 0.3
    assert np.abs(shape.loc).max() < 0.35
    # the range `inverse` clips to leaves new patients' heavy tails alone (widened in the
    # input's units, it cut 0.14-0.15% of their values here)
    t = shape.apply(model.sample(20000, 1)[0]["target"])
    assert np.mean((t < shape.low) | (t > shape.high)) < 1e-4


@pytest.mark.parametrize("seed", [3, 5])
def test_a_log_normal_feature_gets_close_to_its_log(seed):
    """x = exp(u): a location below the values makes the transform a shifted log (with the
    locations among the values' quantiles only, the mean correlation was 0.995)."""
    x = hidden_subtype_model(seed=seed, target_link="exp").sample(1200, 0)[0]["target"]
    t = AsinhShape.fit(x).apply(x)
    assert np.mean([np.corrcoef(t[:, j], np.log(x[:, j]))[0, 1] for j in range(16)]) > 0.997


def test_skewed_positive_features_are_transformed_too():
    counts = np.exp(np.random.default_rng(1).normal(0, 1, (800, 5)))
    shape = AsinhShape.fit(counts)
    assert shape.transformed.all()
    t = shape.apply(counts)
    skew = lambda v: np.mean(((v - v.mean(0)) / v.std(0)) ** 3, axis=0)
    assert np.all(np.abs(skew(t)) < 0.5 * np.abs(skew(counts)))


def test_inverse_undoes_apply_and_tames_values_far_out():
    rng = np.random.default_rng(2)
    rows = np.sinh(rng.normal(0, 1.5, (500, 4)))
    rows[3, 1] = np.nan
    shape = AsinhShape.fit(rows)
    t = shape.apply(rows)
    assert np.isnan(t[3, 1]) and not np.isnan(np.delete(t, 3, axis=0)).any()
    inside = (t >= shape.low) & (t <= shape.high)
    back = shape.inverse(t)
    np.testing.assert_allclose(back[inside], rows[inside], rtol=1e-9, atol=1e-9)
    far = shape.inverse(np.full((1, 4), 1e6))  # a wild draw stays a finite, bounded value
    assert np.isfinite(far).all() and np.all(far <= shape.inverse(shape.high[None]) + 1e-9)


def test_constant_and_gappy_features():
    rng = np.random.default_rng(3)
    rows = np.column_stack([np.full(300, 4.0), np.exp(rng.normal(size=300))])
    rows[::7, 1] = np.nan
    shape = AsinhShape.fit(rows)
    assert list(shape.transformed) == [False, True]
    np.testing.assert_array_equal(shape.apply(rows)[:, 0], rows[:, 0])


def _cohort(rng, n_train=300, n_test=40):
    n = n_train + n_test
    ids = [f"s{i:03d}" for i in range(n)]
    heavy = pd.DataFrame(np.sinh(rng.normal(0, 1.5, (n, 3))), index=ids, columns=["h0", "h1", "h2"])
    heavy.iloc[5, 1] = np.nan  # a hole the fill takes in the transformed units
    plain = pd.DataFrame(rng.normal(2, 1, (n, 3)), index=ids, columns=["p0", "p1", "p2"])
    splits = {s: ("train" if i < n_train else "test") for i, s in enumerate(ids)}
    return Cohort.from_tables({"heavy": heavy, "plain": plain}, splits=splits)


def test_preprocessing_with_asinh_round_trips_and_maps_back(tmp_path):
    cohort = _cohort(np.random.default_rng(4))
    prep = Preprocessor.fit(cohort, marginal="asinh")
    assert prep.transforms["heavy"].shape is not None
    assert prep.transforms["plain"].shape is None  # Gaussian: nothing to take out
    z = prep.transform(cohort).tables["heavy"]
    assert abs(float(z.to_numpy().std()) - 1.0) < 0.05  # z-scores of the transformed values
    back = prep.transforms["heavy"].inverse(z).to_numpy()
    given = cohort.tables["heavy"].to_numpy()
    shape = prep.transforms["heavy"].shape
    lowest, highest = shape.inverse(shape.low[None])[0], shape.inverse(shape.high[None])[0]
    ok = (given >= lowest) & (given <= highest)  # the widened percentile range (MARGIN)
    assert ok.mean() > 0.99
    np.testing.assert_allclose(back[ok], given[ok], rtol=1e-4, atol=1e-4)
    far = ~ok & ~np.isnan(given)  # further out: at the bound, never past it
    np.testing.assert_allclose(back[far], np.where(given > highest, highest, lowest)[far],
                               rtol=1e-4)
    prep.save(str(tmp_path))
    with open(tmp_path / "preprocessing.json") as f:
        assert json.load(f)["format"] == "coherent_jax.Preprocessor/3"
    loaded = Preprocessor.load(str(tmp_path))
    pd.testing.assert_frame_equal(z, loaded.transform(cohort).tables["heavy"])
    train = cohort.split("train").tables["heavy"].to_numpy(np.float64)
    with np.load(tmp_path / "preprocessing.npz") as arrays:  # no training row kept
        for key in (k for k in arrays.files if k.startswith("heavy/shape_")):
            assert not np.any(np.all(np.isclose(train, arrays[key]), axis=1)), key


def test_without_a_transform_the_saved_format_stays_readable_by_older_versions(tmp_path):
    Preprocessor.fit(_cohort(np.random.default_rng(5))).save(str(tmp_path))
    with open(tmp_path / "preprocessing.json") as f:
        assert json.load(f)["format"] == "coherent_jax.Preprocessor/2"


def test_unknown_marginal_is_refused():
    with pytest.raises(DataError, match="marginal is 'log'"):
        Preprocessor.fit(_cohort(np.random.default_rng(6)), marginal="log")
    with pytest.raises(ValueError, match="marginal must be one of"):
        DataConfig(marginal="log")


def test_a_feature_with_a_point_mass_is_left_alone():
    rng = np.random.default_rng(7)
    floor = np.where(rng.random(600) < 0.3, -2.0, np.sinh(rng.normal(0, 1.5, 600)))
    rows = np.column_stack([floor, np.sinh(rng.normal(0, 1.5, 600))])
    assert list(AsinhShape.fit(rows).transformed) == [False, True]


@pytest.mark.parametrize("link, shaped", [("sinh", True), ("exp", True), ("identity", False)])
def test_auto_keeps_a_shape_only_where_validation_draws_get_better(link, shaped):
    cohort, prep = load_cohort(DataConfig(source="mixture", mixture_link=link, num_samples=800,
                                          missing="0.2"))
    assert (prep.transforms["target"].shape is not None) == shaped
    assert prep.transforms["hide"].shape is None  # Gaussian sources stay as they are
    if shaped:  # the imputation's units: draws mapped back land on the target's scale
        back = prep.transforms["target"].inverse(cohort.tables["target"].dropna())
        given = load_raw_cohort(DataConfig(source="mixture", mixture_link=link,
                                           num_samples=800, missing="0.2")).tables["target"]
        np.testing.assert_allclose(np.median(back.to_numpy(), axis=0),
                                   np.nanmedian(given.loc[back.index].to_numpy(), axis=0),
                                   rtol=1e-3, atol=1e-3)
