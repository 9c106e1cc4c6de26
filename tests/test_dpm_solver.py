"""DPM-Solver++ ('dpmpp_2m', 'dpmpp_2m_sde', 'dpmpp_3m_sde'): the step against float64
transcriptions, the timesteps, and the exact Gaussian posterior at 20 steps."""

import json
import os
import subprocess
import sys

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from analytic import expert_params, gaussian_expert
from coherent_jax.data.linear_gaussian import LinearGaussianModel
from coherent_jax.engine.ensemble import stack_members
from coherent_jax.engine.denoiser import Condition
from coherent_jax.engine.sampling import (CoherentConfig, Members, SamplerConfig, coherent_sample,
                                          dpmpp_step, sample, timesteps)
from coherent_jax.engine.schedules import linear_schedule

SCHEDULE = linear_schedule()
MODEL = LinearGaussianModel.random({"x": 4, "a": 3, "b": 3}, num_factors=4, seed=1)


def _marginal_expert():
    mu, cov = MODEL.marginal("x")
    return expert_params(SCHEDULE, mu, np.zeros((4, 3)), cov, mu, cov), mu, cov


def _reference_step(x, eps, t, t_prev, hist, z, eta, order):
    """Float64 DPM-Solver++ multistep step: 2M in the notation of Lu et al. 2022 (data
    prediction, D = x0 + (x0 - x0_1) / (2 r)); 3M transcribed from k-diffusion's
    `sample_dpmpp_3m_sde` (there in sigma = sigma / alpha units). hist: [(x0, h), ...] latest
    last."""
    ab = np.cumprod(1 - np.linspace(1e-4, 0.02, 1000))
    alpha, sigma = np.sqrt(ab[t]), np.sqrt(1 - ab[t])
    x0 = (x - sigma * eps) / alpha
    if t_prev < 0:
        return x0
    alpha_p, sigma_p = np.sqrt(ab[t_prev]), np.sqrt(1 - ab[t_prev])
    h = np.log(alpha_p / sigma_p) - np.log(alpha / sigma)
    h_eta = h * (1 + eta)
    if order == 2:
        d = x0 if not hist else x0 + (x0 - hist[-1][0]) * h / (2 * hist[-1][1])
        mean = alpha_p * (1 - np.exp(-h_eta)) * d
    else:
        mean = alpha_p * -np.expm1(-h_eta) * x0
        phi_2 = np.expm1(-h_eta) / h_eta + 1
        if len(hist) >= 2:
            (x0_1, h_1), (x0_2, h_2) = hist[-1], hist[-2]
            r0, r1 = h_1 / h, h_2 / h
            d1_0, d1_1 = (x0 - x0_1) / r0, (x0_1 - x0_2) / r1
            d1 = d1_0 + (d1_0 - d1_1) * r0 / (r0 + r1)
            d2 = (d1_0 - d1_1) / (r0 + r1)
            mean = mean + alpha_p * (phi_2 * d1 - (phi_2 / h_eta - 0.5) * d2)
        elif hist:
            mean = mean + alpha_p * phi_2 * (x0 - hist[-1][0]) / (hist[-1][1] / h)
    return (sigma_p / sigma * np.exp(-eta * h) * x + mean
            + sigma_p * np.sqrt(1 - np.exp(-2 * eta * h)) * z)


@pytest.mark.parametrize("order,eta", [(2, 0.0), (2, 1.0), (3, 1.0), (3, 0.0)])
def test_step_matches_float64_formula(order, eta):
    """A chain of four steps (first step, one x0 known, two known, the step to the data)."""
    rng = np.random.default_rng(0)
    f32 = lambda a: jnp.asarray(a, jnp.float32)
    x = rng.standard_normal((5, 4))
    history = (f32(np.zeros((5, 4))), f32(np.zeros((5, 4))), jnp.float32(0), jnp.float32(0))
    hist = []
    for t, t_prev in ((999, 700), (700, 300), (300, 44), (44, -1)):
        eps, z = rng.standard_normal((5, 4)), rng.standard_normal((5, 4))
        expected = _reference_step(x, eps, t, t_prev, hist, z, eta, order)
        got, history = dpmpp_step(SCHEDULE, (f32(x), history), f32(eps), jnp.int32(t),
                                  jnp.int32(t_prev), f32(z), jnp.float32(eta), order)
        np.testing.assert_allclose(got, expected, rtol=2e-4, atol=2e-4)
        hist.append((np.asarray(history[0], np.float64), float(history[2])))
        x = expected


@pytest.mark.parametrize("sample_steps", [1, 2, 10, 20, 100, 999, 1000])
def test_timesteps_unique_descending_from_t_minus_1_to_0(sample_steps):
    ts = timesteps(1000, "dpmpp_3m_sde", sample_steps)
    assert len(ts) == sample_steps and np.all(np.diff(ts) < 0)
    assert ts[-1] == 0 and (sample_steps == 1 or ts[0] == 999)


# Measured with 20k samples (seed 0), max mean error / relative covariance error at 20 steps:
# dpmpp_2m 0.012 / 0.85%, dpmpp_2m_sde 0.014 / 2.9%, dpmpp_3m_sde 0.014 / 0.7% (10 steps:
# 3.4%, 2.9% and 26%; 50 steps: 0.4%, 0.9%, 0.9%), beside DDIM-20 0.011 / 14.8%, DDIM-100
# 2.9% and DDPM-1000 1.0%. The mean error is the Monte Carlo error of 20k samples.
@pytest.mark.parametrize("sampler,cov_tol", [("dpmpp_2m", 0.03), ("dpmpp_2m_sde", 0.06),
                                             ("dpmpp_3m_sde", 0.03)])
def test_exact_posterior_gaussian_20_steps(sampler, cov_tol):
    params, mu, cov = _marginal_expert()
    n = 20_000
    samples = np.asarray(sample(gaussian_expert, params, Condition.of(jnp.zeros((n, 3))), SCHEDULE,
                                jax.random.key(0), shape=(n, 4),
                                config=SamplerConfig(sampler, 20)), np.float64)
    mean_err = np.abs(samples.mean(0) - mu).max()
    cov_err = np.linalg.norm(np.cov(samples.T) - cov) / np.linalg.norm(cov)
    assert mean_err < 0.05, mean_err
    assert cov_err < cov_tol, cov_err


@pytest.mark.parametrize("sampler", ["dpmpp_2m", "dpmpp_3m_sde"])
def test_coherent_identical_members_equal_single_sampler(sampler):
    params, _, _ = _marginal_expert()
    cond = Condition.of(jnp.zeros((64, 3)))
    chain = SamplerConfig(sampler, 15)
    single = sample(gaussian_expert, params, cond, SCHEDULE, jax.random.key(5), shape=(64, 4),
                    config=chain)
    res = coherent_sample(gaussian_expert, Members(stack_members([params] * 2),
                                                   stack_members([cond] * 2), jnp.ones(2)),
                          SCHEDULE, jax.random.key(5), shape=(64, 4),
                          config=CoherentConfig(chain))
    np.testing.assert_allclose(res.samples, single, rtol=1e-5, atol=1e-5)
    assert res.disagreement.shape == (64, 15) and bool(res.accepted.all())


def test_ddpm_only_takes_all_steps_and_names_the_few_step_samplers():
    with pytest.raises(ValueError, match="'dpmpp_3m_sde'"):
        timesteps(1000, "ddpm", 20)
    with pytest.raises(ValueError, match="dpmpp_2m sample_steps"):
        timesteps(1000, "dpmpp_2m", 0)
    np.testing.assert_array_equal(timesteps(1000, "dpmpp_2m", 20),
                                  timesteps(1000, "dpmpp_3m_sde", 20))


SHARDED = r"""
import json
import jax, jax.numpy as jnp, numpy as np
from coherent_jax.engine import parallel
from coherent_jax.engine.denoiser import Condition, Denoiser, DenoiserApply
from coherent_jax.engine.sampling import CoherentConfig, Members, SamplerConfig, coherent_sample
from coherent_jax.engine.schedules import linear_schedule
from coherent_jax.engine.train import create_train_state

assert len(jax.devices()) == 4, jax.devices()
schedule = linear_schedule(100)
model = Denoiser(4, hidden_dim=32, num_layers=2, time_embed_dim=16)
params = create_train_state(model, schedule, jax.random.key(0), cond_dims=[4],
                            num_members=2).variables
rng = np.random.default_rng(0)
conds = Condition(values=(jnp.asarray(rng.standard_normal((2, 10, 4)), jnp.float32),),
                  mask=jnp.ones((2, 10, 1), jnp.float32))
out = {}
for sampler in ("dpmpp_2m", "dpmpp_3m_sde"):
    config = CoherentConfig(SamplerConfig(sampler, 12), num_candidates=3)
    call = lambda mesh: coherent_sample(DenoiserApply(model), Members(params, conds, jnp.ones(2)),
                                        schedule, jax.random.key(1), shape=(10, 4),
                                        config=config, mesh=mesh)
    a, b = parallel.to_host(call(None)), parallel.to_host(call(parallel.make_mesh(4)))
    out[sampler] = max(float(np.max(np.abs(np.asarray(x, np.float64) - np.asarray(y))))
                       for x, y in zip(jax.tree.leaves(a), jax.tree.leaves(b)))
print(json.dumps(out))
"""


@pytest.mark.slow
def test_sharded_equals_one_device():
    """The multistep history rides in the scan carry, split over the devices like x: 10 rows x
    3 candidates padded to 32 on 4 fake CPU devices give the same draws as one device."""
    env = dict(os.environ, XLA_FLAGS="--xla_force_host_platform_device_count=4",
               JAX_PLATFORMS="cpu")
    out = subprocess.run([sys.executable, "-c", SHARDED], env=env, capture_output=True,
                         text=True, timeout=600)
    assert out.returncode == 0, out.stderr[-3000:]
    for sampler, diff in json.loads(out.stdout.strip().splitlines()[-1]).items():
        assert diff < 1e-5, (sampler, diff)
