"""Sharpened fusion spans the paper's weighted mean and the product of experts, and its sharpness,
calibrated on validation patients, brings multi-source coherent draws closer to the exact
posterior on a linear-Gaussian cohort with two noisy sources."""

import dataclasses

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from coherent_jax.engine import fusion
from coherent_jax.anchor import apply_condition_map
from coherent_jax.calibrate import calibrate_fusion, choose_fusion_sharpness
from coherent_jax.scoring_rules import crps as crps_entries
from coherent_jax.data import LinearGaussianModel, linear_gaussian_cohort, paper_split
from coherent_jax.engine.ensemble import stack_members
from coherent_jax.engine.fusion import availability_weights
from coherent_jax.model_set import ModelSetConfig, train_model_set
from coherent_jax.engine.denoiser import Condition
from coherent_jax.engine.sampling import CoherentConfig, Members, SamplerConfig, coherent_sample


def test_sharpened_fusion_is_the_mean_at_zero_and_the_product_at_one():
    rng = np.random.default_rng(0)
    eps, eps_u = (jnp.asarray(rng.standard_normal((3, 5, 4)), jnp.float32) for _ in range(2))
    w = jnp.asarray([[1 / 3] * 3] * 4 + [[0.5, 0.5, 0.0]], jnp.float32)  # last row: 2 sources
    np.testing.assert_allclose(fusion.fuse_sharpened(eps, eps_u, w, 0.0),
                               fusion.fuse_mean(eps, w), atol=1e-5)
    np.testing.assert_allclose(fusion.fuse_sharpened(eps, eps_u, w, 1.0),
                               fusion.fuse_product(eps, eps_u, w), atol=1e-5)
    one = jnp.asarray([[0.0, 1.0, 0.0]] * 5, jnp.float32)  # one source: sharpness changes nothing
    np.testing.assert_allclose(fusion.fuse_sharpened(eps, eps_u, one, 0.7), eps[1], atol=1e-6)


def fair_crps(real, draws):
    return float(np.mean(crps_entries(real, draws, fair=True)))


def test_fair_crps_prefers_the_true_spread_and_matches_the_pairwise_mean():
    rng = np.random.default_rng(1)
    real = rng.standard_normal((400, 3))
    scores = {s: fair_crps(real, s * rng.standard_normal((5, 400, 3))) for s in (0.5, 1.0, 2.0)}
    assert scores[1.0] < scores[0.5] and scores[1.0] < scores[2.0]
    with pytest.raises(ValueError, match="at least 2 draws"):
        fair_crps(real, real[None])
    draws = rng.standard_normal((6, 10, 2))
    pairs = np.abs(draws[:, None] - draws[None]).sum(axis=(0, 1)) / (6 * 5)  # distinct pairs
    brute = np.abs(draws - real[None, :10, :2]).mean(axis=0) - 0.5 * pairs
    np.testing.assert_allclose(crps_entries(real[:10, :2], draws, fair=True), brute)


@pytest.fixture(scope="module")
def gaussian_models():
    # two noisy 3-d views of the factors: each source alone leaves var 0.43 of 'a', both 0.24
    base = LinearGaussianModel.random({"a": 4, "b": 3, "c": 3}, num_factors=3, seed=3)
    gauss = dataclasses.replace(base, noise_std={"a": 0.3, "b": 1.0, "c": 1.0})
    cohort = paper_split(linear_gaussian_cohort(gauss, 1500, seed=0), seed=42)
    config = ModelSetConfig(hidden_dim=16, num_layers=2, time_embed_dim=8, cond_embed_dim=4,
                            train_steps=0, val_sampler="ddim", val_sample_steps=20,
                            sharpness_grid=(0.0, 0.25, 0.5, 0.75, 1.0), multi=False)
    models, reports = train_model_set(cohort, config, seed=0, targets=["a"], features=cohort)
    return gauss, cohort, models, reports


def _draws(tm, schedule, test, sharpness, k=30):
    """K coherent draws [K, N, D] of 'a' for the patients of `test`, both sources given."""
    conds = [apply_condition_map(tm.condition_maps[s], test.matrix(s)[0]) for s in tm.sources]
    n = len(test.sample_ids)
    member = stack_members([Condition.of(jnp.asarray(np.tile(c, (k, 1)), jnp.float32))
                            for c in conds])
    weights = availability_weights(tm.val_mse, np.ones((k * n, len(tm.sources)), bool))
    apply_fn, params = tm.sampling_specialists(schedule.diffusion_steps)
    out = coherent_sample(apply_fn, Members(params, member, weights, member.dropped()), schedule,
                          jax.random.key(5), shape=(k * n, tm.specialist_model.data_dim),
                          config=CoherentConfig(SamplerConfig("ddim", 20),
                                                sharpness=sharpness))
    return np.asarray(out.samples).reshape(k, n, -1)


@pytest.mark.slow  # trains models / samples long chains
def test_calibrated_sharpness_moves_draws_towards_the_exact_posterior(gaussian_models):
    gauss, cohort, models, reports = gaussian_models
    tm, record = models.targets["a"], reports["a"]["fusion"]
    assert record["rows"] >= 10 and len(record["crps"]) == 5
    assert tm.sharpness == record["chosen"] > 0.0
    test = cohort.split("test")
    real = test.matrix("a")[0]
    exact_mean, _ = gauss.conditional("a", {s: test.matrix(s)[0].astype(np.float64)
                                            for s in ("b", "c")})
    crps, off = {}, {}
    for sharpness in (0.0, tm.sharpness):
        draws = _draws(tm, models.schedule, test, sharpness)
        crps[sharpness] = fair_crps(real, draws)
        off[sharpness] = float(np.mean((draws.mean(axis=0) - exact_mean) ** 2))
    # measured (held-out patients, 30 draws): CRPS 0.281 -> 0.268, squared distance of the
    # draws' mean to the exact posterior mean 0.042 -> 0.018 (sharpness 0.5)
    assert crps[tm.sharpness] < crps[0.0] - 0.005
    assert off[tm.sharpness] < 0.7 * off[0.0]


@pytest.mark.slow  # trains models
def test_calibration_keeps_the_mean_with_too_few_patients_or_one_source(gaussian_models):
    _, cohort, models, reports = gaussian_models
    tm = models.targets["a"]
    val = cohort.split("val")
    conds = [val.matrix(s)[0] for s in tm.sources]
    few = np.zeros((len(conds[0]), 2), bool)
    few[:5] = True
    record = choose_fusion_sharpness(tm, models.schedule, conds, few, val.matrix("a")[0],
                                     jax.random.key(0))
    assert record["chosen"] == 0.0 and "fewer than" in record["reason"]
    assert tm.sharpness == reports["a"]["fusion"]["chosen"] > 0.0  # returned, not stored
    old = dataclasses.replace(tm)
    with pytest.warns(DeprecationWarning, match="choose_fusion_sharpness"):
        assert calibrate_fusion(old, models.schedule, conds, few, val.matrix("a")[0],
                                jax.random.key(0)) == record
    assert old.sharpness == 0.0  # the old call stores the sharpness
    with pytest.warns(DeprecationWarning, match="use TargetModels.sharpness"):
        assert old.fusion_sharpness == 0.0  # the old attribute name still reads it


def test_a_challenger_leads_only_beyond_the_patients_noise():
    from coherent_jax.scoring_rules import paired_lead

    rng = np.random.default_rng(0)
    noise = rng.normal(0.0, 1.0, 400)
    ahead = paired_lead(noise - 0.5)  # clearly lower scores
    assert ahead["leads"] and ahead["patients"] == 400
    np.testing.assert_allclose(ahead["mean_difference"], noise.mean() - 0.5)
    np.testing.assert_allclose(ahead["standard_error"], noise.std(ddof=1) / 20)
    assert not paired_lead(noise - noise.mean())["leads"]  # a tie stays with the incumbent
    assert not paired_lead(noise - noise.mean() - 0.05)["leads"]  # within the noise: no
    skipped = paired_lead(np.r_[noise - 0.5, np.nan])
    assert skipped["patients"] == 400 and skipped["leads"]
    assert not paired_lead(np.array([-1.0]))["leads"]  # one patient: no standard error
