"""Imputation over every missingness pattern with a tiny trained model set."""

import dataclasses

import numpy as np
import pandas as pd
import pytest

from coherent_jax.data import (LinearGaussianModel, induce_missingness, linear_gaussian_cohort,
                               paper_split)
from coherent_jax.impute import calibrate_thresholds, impute
from coherent_jax.model_set import ModelSet, ModelSetConfig, train_model_set

pytestmark = pytest.mark.slow  # trains models or runs scripts end to end

GAUSS = LinearGaussianModel.random({"a": 4, "b": 4, "c": 4}, num_factors=3, noise_std=0.4, seed=2)
CONFIG = ModelSetConfig(hidden_dim=32, num_layers=2, time_embed_dim=16, cond_embed_dim=8,
                        batch_size=64, num_steps=60, eval_every=30, log_every=30,
                        val_sampler="ddim", val_num_steps=5, seeds=(0, 1),
                        feature_conditions=False)  # conditions on latents: no space needed
FAST = dict(sampler="ddim", num_steps=8, num_samples=3, bucket=64)


@pytest.fixture(scope="module")
def trained():
    cohort = paper_split(linear_gaussian_cohort(GAUSS, 400, seed=0), seed=42)
    cohort = induce_missingness(cohort, 0.3, seed=1)
    models, reports = train_model_set(cohort, CONFIG, seed=0, features=cohort)
    return cohort, models, reports


def _holed_test_cohort():
    """Test patients with every one of the 6 non-empty, non-complete patterns plus complete."""
    cohort = linear_gaussian_cohort(GAUSS, 21, seed=5)
    tables = {m: t.copy() for m, t in cohort.tables.items()}
    patterns = [("a",), ("b",), ("c",), ("a", "b"), ("a", "c"), ("b", "c"), ("a", "b", "c")]
    for i, sid in enumerate(cohort.sample_ids):
        for m in tables:
            if m not in patterns[i % 7]:
                tables[m].loc[sid] = np.nan
    return cohort.replace(tables=tables), cohort


def test_every_pattern_filled_ids_kept_observed_unchanged(trained):
    _, models, reports = trained
    holed, full = _holed_test_cohort()
    assert len(holed.patterns()) == 7
    for method in ("coherent", "product", "multi", "single"):
        out = impute(holed, models, method=method, seed=0, **FAST)
        assert out.imputed.index.equals(holed.sample_ids)
        for m in holed.modalities:
            draws = out.draws[m]
            assert draws.index.get_level_values("sample_id").unique().equals(holed.sample_ids)
            assert np.all(np.isfinite(draws.to_numpy()))
            values, present = holed.matrix(m)
            per_draw = draws.to_numpy().reshape(3, 21, -1)
            np.testing.assert_array_equal(per_draw[:, present], np.broadcast_to(
                values[present], per_draw[:, present].shape))
            assert out.imputed[m].to_numpy().tolist() == (~present).tolist()
            # draws of generated rows differ
            assert np.all(per_draw[0, ~present] != per_draw[1, ~present])
        assert set(out.diagnostics["target"]) == {"a", "b", "c"}
        if method in ("coherent", "product"):
            assert out.diagnostics["acceptance"].between(0, 1).all()
    assert set(reports["a"]) == {"specialists", "multi", "fusion"}
    assert len(reports["a"]["specialists"]["chosen"]) == 2  # one trial per source


def test_reproducible_by_seed_and_summaries(trained):
    _, models, _ = trained
    holed, _ = _holed_test_cohort()
    a = impute(holed, models, seed=3, **FAST)
    b = impute(holed, models, seed=3, **FAST)
    c = impute(holed, models, seed=4, **FAST)
    pd.testing.assert_frame_equal(a.draws["b"], b.draws["b"])
    assert not a.draws["b"].equals(c.draws["b"])
    summary = a.summary("b", interval=0.8)
    assert summary["mean"].index.equals(holed.sample_ids)
    assert (summary["lower"] <= summary["upper"]).all().all()
    observed = holed.matrix("b")[1]
    assert np.all(summary["std"].to_numpy()[observed] == 0)


def test_cascade_off_conditions_on_observed_only(trained):
    _, models, _ = trained
    holed, _ = _holed_test_cohort()
    # Independent filling does not depend on the fill order; the cascade does.
    run = lambda order, cascade: impute(holed, models, cascade=cascade, order=order, seed=0,
                                        **FAST).draws["c"]
    pd.testing.assert_frame_equal(run(["a", "b", "c"], False), run(["b", "a", "c"], False))
    assert not run(["a", "b", "c"], True).equals(run(["c", "b", "a"], True))


def test_privacy_guard_and_opt_in(trained):
    _, models, _ = trained
    holed, _ = _holed_test_cohort()
    tables = {m: t.copy() for m, t in holed.tables.items()}
    for t in tables.values():
        t.iloc[0] = np.nan  # patient 0 has nothing at all
    with pytest.raises(ValueError, match="cannot|no available modality"):
        empty = holed.replace(tables=tables)
        impute(empty, models, method="coherent", **FAST)
    with pytest.raises(ValueError, match="allow_unconditional=True"):
        impute(empty, models, method="multi", **FAST)
    out = impute(empty, models, method="multi", allow_unconditional=True, **FAST)
    assert out.imputed.iloc[0].all()


def test_save_load_round_trip_and_calibration(trained, tmp_path):
    cohort, models, _ = trained
    found = calibrate_thresholds(cohort.split("val"), models, sampler="ddim", num_steps=8)
    assert set(found) == {"a", "b", "c"} and all(v > 0 for v in found.values())
    models.save(str(tmp_path / "models"))
    loaded = ModelSet.load(str(tmp_path / "models"))
    assert loaded.targets["a"].thresholds == models.targets["a"].thresholds
    holed, _ = _holed_test_cohort()
    a = impute(holed, models, seed=1, **FAST)
    b = impute(holed, loaded, seed=1, **FAST)
    pd.testing.assert_frame_equal(a.draws["c"], b.draws["c"])
    assert a.diagnostics["threshold"].iloc[0] == found[a.diagnostics["target"].iloc[0]]


def test_save_load_keeps_the_target_order(trained, tmp_path):
    _, models, _ = trained
    reordered = ModelSet(models.schedule_name, models.num_train_steps,
                         {t: models.targets[t] for t in ("c", "a", "b")})  # the cascade order
    reordered.save(str(tmp_path / "models"))
    loaded = ModelSet.load(str(tmp_path / "models"))
    assert list(loaded.targets) == ["c", "a", "b"]
    holed, _ = _holed_test_cohort()
    a = impute(holed, reordered, seed=2, **FAST)
    b = impute(holed, loaded, seed=2, **FAST)
    for m in "abc":
        pd.testing.assert_frame_equal(a.draws[m], b.draws[m])


def test_bad_requests_raise(trained):
    _, models, _ = trained
    holed, _ = _holed_test_cohort()
    with pytest.raises(ValueError, match="unknown method"):
        impute(holed, models, method="mice")
    with pytest.raises(ValueError, match="no trained models for target"):
        impute(holed, models, order=["z"])
    with pytest.raises(ValueError, match="num_samples"):
        impute(holed, models, num_samples=0)


def test_decoded_draws_carry_the_residual_spread_and_means_drop_it(trained):
    # a space whose decoder leaves out a known per-feature spread
    from coherent_jax.latent import LatentConfig, LatentSpace  # noqa: PLC0415

    cohort, models, _ = trained
    space = LatentSpace.fit(cohort, LatentConfig(latent_dim=4))  # identity: 4 features
    space = dataclasses.replace(space, residual_std={m: np.full(4, 0.5, np.float32)
                                                     for m in space.modalities})
    holed, _ = _holed_test_cohort()
    result = impute(holed, models, seed=0, latent_space=space, feature_cohort=holed,
                    **dict(FAST, num_samples=40))
    imputed = result.imputed["b"].to_numpy()
    draws = result.features["b"]
    expected = space.decode("b", result.draws["b"])
    noise = (draws - expected).to_numpy().reshape(40, -1, 4)[:, imputed]
    assert abs(noise.std() - 0.5) < 0.05 and abs(noise.mean()) < 0.05
    means = result.summary("b", space="features")["mean"]
    np.testing.assert_allclose(  # the mean of the decoder outputs, not of the noisy draws
        means.to_numpy()[imputed],
        expected.groupby(level="sample_id", sort=False).mean().to_numpy()[imputed], atol=1e-5)
    observed = holed.matrix("b")[1]
    np.testing.assert_array_equal(means.to_numpy()[observed], holed.matrix("b")[0][observed])


def test_per_patient_acceptance_and_disagreement(trained):
    _, models, _ = trained
    holed, _ = _holed_test_cohort()
    out = impute(holed, models, method="coherent", seed=0, num_candidates=2, **FAST)
    generated = out.imputed.to_numpy()
    for table in (out.acceptance, out.bad_fraction):
        assert table.shape == out.imputed.shape and list(table.index) == list(out.imputed.index)
        assert np.isnan(table.to_numpy()[~generated]).all()  # observed: nothing was generated
        values = table.to_numpy()[generated]
        assert np.isfinite(values).all() and ((values >= 0) & (values <= 1)).all()
    # the per-target diagnostics are the means of the per-draw values
    for _, row in out.diagnostics.iterrows():
        t = row["target"]
        np.testing.assert_allclose(out.acceptance[t].dropna().mean(), row["acceptance"], atol=1e-9)
