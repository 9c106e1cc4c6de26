"""impute(): every missingness pattern, reproducibility, cascade, privacy guard, calibrated
thresholds, saving and loading, decoded draws and per-patient diagnostics, on the shared tiny
model set (`tiny_run`: models conditioned on the sources' features)."""

import copy
import dataclasses
import json
import os

import numpy as np
import pandas as pd
import pytest

from coherent_jax.calibrate import calibrate_thresholds, rejection_thresholds
from coherent_jax.data import linear_gaussian_cohort
from coherent_jax.impute import SamplerCalls, impute
from coherent_jax.model_set import ModelSet
from tiny import GAUSS, with_a_correction

pytestmark = pytest.mark.slow  # trains models or runs scripts end to end

FAST = dict(sampler="ddim", sample_steps=8, num_samples=3, calls=SamplerCalls(bucket=64))


def _holed_test_cohort():
    """Test patients with every one of the 6 non-empty, non-complete patterns plus complete."""
    cohort = linear_gaussian_cohort(GAUSS, 21, seed=5)
    tables = {m: t.copy() for m, t in cohort.tables.items()}
    patterns = [("a",), ("b",), ("c",), ("a", "b"), ("a", "c"), ("b", "c"), ("a", "b", "c")]
    for i, sid in enumerate(cohort.sample_ids):
        for m in tables:
            if m not in patterns[i % 7]:
                tables[m].loc[sid] = np.nan
    return cohort.replace(tables=tables)


def _impute(run, holed, models=None, space=None, **settings):
    """impute() on the latents of a feature cohort, with what feature-conditioned models need."""
    space = space or run.space
    return impute(space.encode(holed), models or run.models, latent_space=space,
                  feature_cohort=holed, **{**FAST, **settings})


def test_every_pattern_filled_ids_kept_observed_unchanged(tiny_run):
    holed = _holed_test_cohort()
    latents = tiny_run.space.encode(holed)
    assert len(holed.patterns()) == 7
    for method in ("auto", "coherent", "product", "multi", "single"):
        out = _impute(tiny_run, holed, method=method, seed=0)
        assert out.imputed.index.equals(holed.sample_ids)
        for m in holed.modalities:
            draws = out.draws[m]
            assert draws.index.get_level_values("sample_id").unique().equals(holed.sample_ids)
            assert np.all(np.isfinite(draws.to_numpy()))
            values, present = latents.matrix(m)
            per_draw = draws.to_numpy().reshape(3, 21, -1)
            np.testing.assert_array_equal(per_draw[:, present], np.broadcast_to(
                values[present], per_draw[:, present].shape))
            assert out.imputed[m].to_numpy().tolist() == (~present).tolist()
            # observed features are the patient's own, in every draw
            features, _ = holed.matrix(m)
            decoded = out.features[m].to_numpy().reshape(3, 21, -1)
            np.testing.assert_array_equal(decoded[:, present], np.broadcast_to(
                features[present], decoded[:, present].shape))


def test_reproducible_by_seed_and_summaries(tiny_run):
    holed = _holed_test_cohort()
    a = _impute(tiny_run, holed, seed=3)
    b = _impute(tiny_run, holed, seed=3)
    c = _impute(tiny_run, holed, seed=4)
    pd.testing.assert_frame_equal(a.draws["b"], b.draws["b"])
    pd.testing.assert_frame_equal(a.features["b"], b.features["b"])
    assert not a.draws["b"].equals(c.draws["b"])
    summary = a.summary("b", interval=0.8)
    assert summary["mean"].index.equals(holed.sample_ids)
    assert (summary["lower"] <= summary["upper"]).all().all()
    observed = holed.matrix("b")[1]
    assert np.all(summary["std"].to_numpy()[observed] == 0)


def test_cascade_off_conditions_on_observed_only(tiny_run):
    holed = _holed_test_cohort()
    # Independent filling does not depend on the fill order; the cascade does.
    run = lambda order, cascade: _impute(tiny_run, holed, cascade=cascade, seed=0,
                                         calls=SamplerCalls(order, bucket=64)).draws["c"]
    pd.testing.assert_frame_equal(run(["a", "b", "c"], False), run(["b", "a", "c"], False))
    assert not run(["a", "b", "c"], True).equals(run(["c", "b", "a"], True))


def test_privacy_guard_and_opt_in(tiny_run):
    holed = _holed_test_cohort()
    tables = {m: t.copy() for m, t in holed.tables.items()}
    for t in tables.values():
        t.iloc[0] = np.nan  # patient 0 has nothing at all
    empty = holed.replace(tables=tables)
    with pytest.raises(ValueError, match="no available modality"):
        _impute(tiny_run, empty, method="coherent")
    with pytest.raises(ValueError, match="allow_unconditional=True"):
        _impute(tiny_run, empty, method="multi")
    out = _impute(tiny_run, empty, method="multi", allow_unconditional=True)
    assert out.imputed.iloc[0].all()


def test_save_load_round_trip_and_calibration(tiny_run, tmp_path):
    models = with_a_correction(tiny_run.models)  # a copy (storing changes it) with a chain
    settings = dict(sampler="ddim", sample_steps=8, feature_cohort=tiny_run.cohort.split("val"))
    before = copy.deepcopy(models.targets["a"].thresholds)
    found = rejection_thresholds(tiny_run.latents.split("val"), models, **settings)
    assert found.key == "ddim:8" and set(found.by_target) == {"a", "b", "c"}
    assert all(v > 0 for v in found.by_target.values())
    assert models.targets["a"].thresholds == before  # returned, not stored
    models.store_thresholds(found)
    assert models.targets["a"].thresholds == {**before, "ddim:8": found.by_target["a"]}
    old = with_a_correction(tiny_run.models)
    with pytest.warns(DeprecationWarning, match="rejection_thresholds"):
        assert calibrate_thresholds(tiny_run.latents.split("val"), old, **settings) == found.by_target
    assert old.targets["a"].thresholds == models.targets["a"].thresholds  # the old call stores
    models.save(str(tmp_path / "models"))
    loaded = ModelSet.load(str(tmp_path / "models"))
    assert loaded.targets["a"].thresholds == models.targets["a"].thresholds
    holed = _holed_test_cohort()
    a = _impute(tiny_run, holed, models=models, seed=1, method="coherent")
    b = _impute(tiny_run, holed, models=loaded, seed=1, method="coherent")
    pd.testing.assert_frame_equal(a.draws["c"], b.draws["c"])
    assert loaded.targets["a"].family_by_pattern == models.targets["a"].family_by_pattern
    assert a.diagnostics["threshold"].iloc[0] == found.by_target[a.diagnostics["target"].iloc[0]]


def test_a_model_set_saved_with_the_old_names_loads(tiny_run, tmp_path):
    folder = str(tmp_path / "models")
    tiny_run.models.save(folder)
    path = os.path.join(folder, "metadata.json")
    meta = json.load(open(path))
    meta["num_train_steps"] = meta.pop("diffusion_steps")  # as saved before the renames
    for info in meta["targets"].values():
        info["model"] = info.pop("specialist_model")
        for arch in (info["model"], info["multi_model"]):
            arch["num_train_steps"] = arch.pop("diffusion_steps")
    json.dump(meta, open(path, "w"))
    loaded = ModelSet.load(folder)
    assert loaded.diffusion_steps == tiny_run.models.diffusion_steps
    holed = _holed_test_cohort()
    pd.testing.assert_frame_equal(_impute(tiny_run, holed, seed=1).draws["a"],
                                  _impute(tiny_run, holed, models=loaded, seed=1).draws["a"])


def test_save_load_keeps_the_target_order(tiny_run, tmp_path):
    models = tiny_run.models
    reordered = ModelSet(models.schedule_name, models.diffusion_steps,
                         {t: models.targets[t] for t in ("c", "a", "b")})  # the cascade order
    reordered.save(str(tmp_path / "models"))
    loaded = ModelSet.load(str(tmp_path / "models"))
    assert list(loaded.targets) == ["c", "a", "b"]
    holed = _holed_test_cohort()
    a = _impute(tiny_run, holed, models=reordered, seed=2)
    b = _impute(tiny_run, holed, models=loaded, seed=2)
    for m in "abc":
        pd.testing.assert_frame_equal(a.draws[m], b.draws[m])


@pytest.mark.parametrize("settings,message", [
    (dict(method="mice"), "unknown method"),
    (dict(calls=SamplerCalls(order=["z"])), "no trained models for target"),
    (dict(num_samples=0), "num_samples"),
    (dict(sampler="euler"), "unknown sampler"),
    (dict(num_draws=3), "unknown setting"),
])
def test_bad_requests_raise(tiny_run, settings, message):
    with pytest.raises(ValueError, match=message):
        _impute(tiny_run, _holed_test_cohort(), **settings)


def test_features_needed_by_feature_conditioned_models(tiny_run):
    holed = _holed_test_cohort()
    with pytest.raises(ValueError, match="pass feature_cohort"):
        impute(tiny_run.space.encode(holed), tiny_run.models, **FAST)


def test_decoded_draws_carry_the_residual_spread_and_means_drop_it(tiny_run):
    # the space's decoder leaves out a known per-feature spread
    space = dataclasses.replace(tiny_run.space, residual_std={
        m: np.full(4, 0.5, np.float32) for m in tiny_run.space.modalities})
    holed = _holed_test_cohort()
    result = _impute(tiny_run, holed, space=space, seed=0, num_samples=40)
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


def test_per_patient_acceptance_and_disagreement(tiny_run):
    holed = _holed_test_cohort()
    out = _impute(tiny_run, holed, models=with_a_correction(tiny_run.models), method="coherent",
                  seed=0, num_candidates=2)
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


def test_models_with_nothing_learned_are_drawn_without_a_chain(tiny_run):
    holed = _holed_test_cohort()
    untrained = with_a_correction(tiny_run.models, shift=0.0)
    for tm in untrained.targets.values():
        for name in ("specialists", "multi"):
            params = getattr(tm, name)["params"]
            params["out"] = {k: np.zeros_like(v) for k, v in params["out"].items()}
    for method in ("coherent", "product", "multi", "single"):
        first = _impute(tiny_run, holed, models=untrained, method=method, seed=3)
        again = _impute(tiny_run, holed, models=untrained, method=method, seed=3)
        assert first.diagnostics["signature"].str.contains("no chain").all()
        for m in first.draws:
            pd.testing.assert_frame_equal(first.draws[m], again.draws[m])
    chained = _impute(tiny_run, holed, models=with_a_correction(tiny_run.models), seed=3)
    assert not chained.diagnostics["signature"].str.contains("no chain").any()


def test_fusion_weights_come_from_the_kept_checkpoints(tiny_run):
    # selection keeps each member's checkpoint by the energy score; its fusion weight must be
    # that checkpoint's validation MSE, not the best MSE any checkpoint of the run reached,
    # and where the checkpoint's correction did not lead its anchor alone (dropped), the
    # anchor's own (the untrained step 0)
    for target, report in tiny_run.reports.items():
        history = [h for h in report["specialists"]["history"] if "energy_score" in h]
        scores = np.array([h["energy_score"] for h in history])  # [validations, K]
        kept = scores.argmin(axis=0)
        corrections = report["specialists"]["corrections"] or [{"kept": True}] * len(kept)
        assert history[0]["step"] == 0
        expected = [history[v if c["kept"] else 0]["sample_mse"][k]
                    for k, (v, c) in enumerate(zip(kept, corrections))]
        np.testing.assert_allclose(tiny_run.models.targets[target].val_mse, expected)


def test_auto_draws_each_pattern_with_the_family_validation_chose(tiny_run):
    from coherent_jax.fill import auto_methods

    for target, tm in tiny_run.models.targets.items():  # chosen on validation when trained
        record = tiny_run.reports[target]["family_by_pattern"]
        assert tm.family_by_pattern == record["chosen"]
        assert set(record["chosen"]) == set(record["patterns"]) == {"+".join(tm.sources),
                                                                     *tm.sources}
        for scores in record["patterns"].values():
            assert scores["rows"] >= 10 and np.isfinite([scores["specialists"],
                                                          scores["multi"]]).all()
    holed = _holed_test_cohort()
    models = copy.deepcopy(tiny_run.models)

    def routed(chosen):
        for tm in models.targets.values():
            tm.family_by_pattern = {p: chosen(p) for p in tiny_run.models.targets[
                tm.target].family_by_pattern}
        return _impute(tiny_run, holed, models=models, method="auto", seed=4, cascade=False)

    for family, method in (("specialists", "coherent"), ("multi", "multi")):
        auto = routed(lambda pattern: family)
        alone = _impute(tiny_run, holed, models=models, method=method, seed=4, cascade=False)
        for m in holed.modalities:  # every row by one family: that method's draws
            pd.testing.assert_frame_equal(auto.draws[m], alone.draws[m])
    mixed = routed(lambda pattern: "multi" if "+" in pattern else "specialists")
    tm = models.targets["a"]
    avail = np.array([[True, False], [False, True], [True, True]])
    assert auto_methods(tm, avail).tolist() == ["coherent", "coherent", "multi"]
    record = mixed.diagnostics[mixed.diagnostics["target"] == "a"].iloc[0]
    assert record["rows"] == 3 * 9 and "multi/" in record["signature"] and "coherent/" in (
        record["signature"])
    for m in holed.modalities:
        assert np.isfinite(mixed.draws[m].to_numpy()).all()
