"""Samplers against closed-form Gaussian truth and the METHOD.md formulas."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from analytic import conditional_gain, expert_params, gaussian_expert
from coherent_jax.engine import fusion
from coherent_jax.data.linear_gaussian import LinearGaussianModel
from coherent_jax.engine.ensemble import stack_members
from coherent_jax.engine.denoiser import Condition
from coherent_jax.engine.sampling import (CoherentConfig, Members, SamplerConfig, coherent_sample,
                                          ddpm_step, sample, select_candidates, timesteps)
from coherent_jax.engine.schedules import linear_schedule

SCHEDULE = linear_schedule()
MODEL = LinearGaussianModel.random({"x": 4, "a": 3, "b": 3}, num_factors=4, seed=1)


def _marginal_expert():
    mu, cov = MODEL.marginal("x")
    return expert_params(SCHEDULE, mu, np.zeros((4, 3)), cov, mu, cov), mu, cov


def test_ddpm_step_matches_float64_formula():
    rng = np.random.default_rng(0)
    x, eps, z = (rng.standard_normal((5, 4)) for _ in range(3))
    betas = np.linspace(1e-4, 0.02, 1000)
    ab = np.cumprod(1 - betas)
    for t in (999, 500, 1, 0):
        expected = (x - betas[t] / np.sqrt(1 - ab[t]) * eps) / np.sqrt(1 - betas[t])
        expected = expected + (np.sqrt(betas[t]) * z if t > 0 else 0.0)
        got = ddpm_step(SCHEDULE, jnp.asarray(x, jnp.float32), jnp.asarray(eps, jnp.float32),
                        jnp.int32(t), jnp.asarray(z, jnp.float32))
        np.testing.assert_allclose(got, expected, rtol=2e-5, atol=2e-5)


# Measured with 20k samples (seed 0): DDPM 1000 max mean error 0.010, relative covariance
# error 1.0%; DDIM 50 max mean error 0.010, relative covariance error 7.9% (50-step
# discretisation; 2.3% with one Langevin corrector step per step).
@pytest.mark.parametrize("sampler,sample_steps,cov_tol", [("ddpm", None, 0.05), ("ddim", 50, 0.12)])
def test_exact_posterior_gaussian(sampler, sample_steps, cov_tol):
    params, mu, cov = _marginal_expert()
    n = 20_000
    samples = np.asarray(sample(gaussian_expert, params, Condition.of(jnp.zeros((n, 3))), SCHEDULE,
                                jax.random.key(0), shape=(n, 4),
                                config=SamplerConfig(sampler, sample_steps)), np.float64)
    mean_err = np.abs(samples.mean(0) - mu).max()
    cov_err = np.linalg.norm(np.cov(samples.T) - cov) / np.linalg.norm(cov)
    assert mean_err < 0.05, mean_err
    assert cov_err < cov_tol, cov_err


def _experts(n=64, seed=3):
    data = MODEL.sample(n, seed=seed)
    mu, cov = MODEL.marginal("x")
    members = [expert_params(SCHEDULE, *conditional_gain(MODEL, "x", s), mu, cov) for s in "ab"]
    conds = [Condition.of(jnp.asarray(data[s], jnp.float32)) for s in "ab"]
    return members, conds, data


def test_identical_members_equal_single_sampler():
    members, conds, _ = _experts()
    ddim = SamplerConfig("ddim", 30)
    single = sample(gaussian_expert, members[0], conds[0], SCHEDULE, jax.random.key(5),
                    shape=(64, 4), config=ddim)
    for k in (2, 3):
        res = coherent_sample(gaussian_expert, Members(stack_members([members[0]] * k),
                                                       stack_members([conds[0]] * k), jnp.ones(k)),
                              SCHEDULE, jax.random.key(5), shape=(64, 4),
                              config=CoherentConfig(ddim))
        np.testing.assert_allclose(res.samples, single, rtol=1e-5, atol=1e-5)
        np.testing.assert_allclose(res.disagreement, 0.0, atol=1e-5)
        assert res.disagreement.shape == (64, 30) and bool(res.accepted.all())


def test_same_key_same_samples_other_key_other():
    members, conds, _ = _experts()
    both = Members(stack_members(members), stack_members(conds), jnp.array([0.5, 0.5]))
    run = lambda seed: coherent_sample(gaussian_expert, both, SCHEDULE, jax.random.key(seed),
                                       shape=(64, 4)).samples
    a, b, c = run(0), run(0), run(1)
    np.testing.assert_array_equal(a, b)
    assert np.abs(np.asarray(a) - np.asarray(c)).mean() > 0.1


def test_the_old_keyword_calls_still_draw_the_same_with_a_warning():
    members, conds, _ = _experts()
    params, stacked = stack_members(members), stack_members(conds)
    weights = jnp.array([0.3, 0.7])
    new = coherent_sample(gaussian_expert, Members(params, stacked, weights), SCHEDULE,
                          jax.random.key(2), shape=(64, 4),
                          config=CoherentConfig(SamplerConfig("ddim", 10), fusion="mean",
                                                num_candidates=2, threshold=0.5))
    with pytest.warns(DeprecationWarning, match="Members"):
        old = coherent_sample(gaussian_expert, params, stacked, weights, SCHEDULE,
                              jax.random.key(2), shape=(64, 4), sampler="ddim", sample_steps=10,
                              fusion="mean", num_candidates=2, threshold=0.5)
    np.testing.assert_array_equal(old.samples, new.samples)
    np.testing.assert_array_equal(old.accepted, new.accepted)
    single = sample(gaussian_expert, members[0], conds[0], SCHEDULE, jax.random.key(5),
                    shape=(64, 4), config=SamplerConfig("ddim", 12, eta=1.0))
    with pytest.warns(DeprecationWarning, match="SamplerConfig"):
        old_single = sample(gaussian_expert, members[0], conds[0], SCHEDULE, jax.random.key(5),
                            shape=(64, 4), sampler="ddim", sample_steps=12, eta=1.0)
    np.testing.assert_array_equal(old_single, single)


def test_no_retrace_over_repeated_calls():
    traces = []

    def counting_expert(params, x, t, cond):
        traces.append(1)
        return gaussian_expert(params, x, t, cond)

    members, conds, _ = _experts()
    for seed in range(3):
        scaled = jax.tree.map(lambda a: a * (1.0 + 0.01 * seed), stack_members(members))
        coherent_sample(counting_expert,
                        Members(scaled, stack_members(conds), jnp.array([0.3, 0.7])), SCHEDULE,
                        jax.random.key(seed), shape=(64, 4),
                        config=CoherentConfig(SamplerConfig("ddim", 10), threshold=0.5 + seed))
    assert len(traces) == 1


def test_select_candidates_on_crafted_disagreement():
    s = 20
    dis = np.zeros((3, 4, s), np.float32)
    dis[0, 0, :5] = 2.0   # sample 0: candidate 0 has 25% bad steps, candidate 1 is clean
    dis[0, 1, :2] = 2.0   # sample 1: 10% bad is still a pass (more than 10% fails)
    dis[:, 2, :] = 2.0    # sample 2: all bad; candidate 2 is least bad
    dis[2, 2, :10] = 0.0
    dis[:2, 3, :] = 2.0   # sample 3: only candidate 2 passes
    chosen, accepted, bad = select_candidates(jnp.asarray(dis), 1.0, 0.1)
    assert chosen.tolist() == [1, 0, 2, 2]
    assert accepted.tolist() == [True, True, False, True]
    np.testing.assert_allclose(bad[:, 2], [1.0, 1.0, 0.5])


def _opposed_expert(params, x, t, cond):
    return params["sign"] * jnp.ones_like(x) + 0.0 * cond.values[0][:, :1]


def test_rejection_reports_failures_of_disagreeing_experts():
    # Two experts predicting opposite noise: cosine -1, disagreement 2 at every step.
    params = {"sign": jnp.array([1.0, -1.0])}
    conds = stack_members([Condition.of(jnp.zeros((8, 2)))] * 2)
    ddim = SamplerConfig("ddim", 10)
    res = coherent_sample(_opposed_expert, Members(params, conds, jnp.array([0.5, 0.5])),
                          SCHEDULE, jax.random.key(0), shape=(8, 3),
                          config=CoherentConfig(ddim, num_candidates=4))
    np.testing.assert_allclose(res.disagreement, 2.0, atol=1e-5)
    assert res.acceptance_rate == 0.0 and res.candidate.tolist() == [0] * 8
    # A patient with only one available specialist has no pair, hence no disagreement.
    one = coherent_sample(_opposed_expert, Members(params, conds, jnp.array([[1.0, 0.0]] * 8)),
                          SCHEDULE, jax.random.key(0), shape=(8, 3), config=CoherentConfig(ddim))
    np.testing.assert_allclose(one.disagreement, 0.0)
    assert one.acceptance_rate == 1.0


def test_product_of_experts_formula_with_constant_experts():
    # eps_i = c_i (conditional), u_i (unconditional): PoE gives mean(u) + sum(c_i - u_i).
    def const_expert(params, x, t, cond):
        return jnp.where(cond.mask[:, :1] > 0, params["c"], params["u"]) * jnp.ones_like(x)

    params = {"c": jnp.array([0.3, -0.1]), "u": jnp.array([0.1, 0.2])}
    conds = stack_members([Condition.of(jnp.zeros((4, 1)))] * 2)
    eps = jnp.stack([jnp.full((4, 2), 0.3), jnp.full((4, 2), -0.1)])
    eps_u = jnp.stack([jnp.full((4, 2), 0.1), jnp.full((4, 2), 0.2)])
    w = jnp.full((4, 2), 0.5)
    np.testing.assert_allclose(fusion.fuse_product(eps, eps_u, w), 0.15 + (0.2 - 0.3), atol=1e-6)
    res = coherent_sample(const_expert,
                          Members(params, conds, jnp.array([0.5, 0.5]), conds.dropped()),
                          SCHEDULE, jax.random.key(0), shape=(4, 2),
                          config=CoherentConfig(SamplerConfig("ddim", 5), fusion="product"))
    assert res.samples.shape == (4, 2) and np.all(np.isfinite(res.samples))


def test_timesteps_plans():
    assert timesteps(1000, "ddpm", None).tolist()[:3] == [999, 998, 997]
    ddim = timesteps(1000, "ddim", 50)
    assert len(ddim) == 50 and ddim[0] == 999 and ddim[-1] == 0 and np.all(np.diff(ddim) < 0)


def test_bad_sampler_inputs_raise():
    members, conds, _ = _experts()
    stacked, cstack = stack_members(members), stack_members(conds)
    call = lambda weights=jnp.ones(2), shape=(64, 4), **kw: coherent_sample(
        gaussian_expert, Members(stacked, cstack, weights), SCHEDULE, jax.random.key(0),
        shape=shape, config=CoherentConfig(**kw))
    with pytest.raises(ValueError, match="empty condition set"):
        call(weights=jnp.zeros((64, 2)))
    with pytest.raises(ValueError, match="weights must be"):
        call(weights=jnp.ones(3))
    with pytest.raises(ValueError, match="needs uncond_conds"):
        call(fusion="product")
    with pytest.raises(ValueError, match="unknown fusion"):
        call(fusion="median")
    with pytest.raises(ValueError, match="Use sampler='ddim'"):
        call(chain=SamplerConfig(sample_steps=50))
    with pytest.raises(ValueError, match="members.conds leaves"):
        call(shape=(32, 4))
    with pytest.raises(ValueError, match="shape must be"):
        sample(gaussian_expert, members[0], conds[0], SCHEDULE, jax.random.key(0), shape=(0, 4))
