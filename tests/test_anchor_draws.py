"""Untrained anchored models drawn without a chain (`anchor_draws`): the chain on the same
models reaches the same Gaussian, the product of exact specialists is the exact posterior of
the linear-Gaussian cohort, and the draws are bit-stable for a key."""

import jax
import jax.numpy as jnp
import numpy as np

from coherent_jax import anchor_draws
from coherent_jax.data.linear_gaussian import LinearGaussianModel
from coherent_jax.engine.ensemble import stack_members
from coherent_jax.engine.denoiser import Condition, Denoiser, DenoiserApply, init_denoiser
from coherent_jax.engine.sampling import CoherentConfig, Members, coherent_sample, sample
from coherent_jax.engine.schedules import make_schedule

T = 1000
D = 3


def _model(num_conditions=1):
    return Denoiser(D, hidden_dim=16, num_layers=2, time_embed_dim=8, cond_embed_dim=4,
                    anchored=True, diffusion_steps=T)


def _anchor(kernel, bias, cov, prior_mean, prior_cov):
    """Anchor params of a one-condition model: subset 0 the prior, subset 1 the conditional."""
    log_var, basis = zip(*[(np.log(v), q) for v, q in map(np.linalg.eigh, (prior_cov, cov))])
    return {"anchor_kernel": np.stack([np.zeros_like(kernel), kernel]).astype(np.float32),
            "anchor_bias": np.stack([prior_mean, bias]).astype(np.float32),
            "anchor_log_var": np.stack(log_var).astype(np.float32),
            "anchor_basis": np.stack(basis).astype(np.float32)}


def _variables(anchor, seed=0):
    variables = init_denoiser(_model(), jax.random.key(seed), [2])
    return {**variables, "params": {**variables["params"],
                                    **{k: jnp.asarray(v) for k, v in anchor.items()}}}


def _random_cov(rng, scale=1.0):
    a = rng.standard_normal((D, D))
    return scale * (a @ a.T / D + 0.2 * np.eye(D))


def _moments(draws):
    return draws.mean(axis=0), np.cov(draws.T)


def test_one_untrained_specialist_chain_and_direct_draws_agree():
    rng = np.random.default_rng(0)
    cov, prior = _random_cov(rng, 0.5), _random_cov(rng, 2.0)
    anchor = _anchor(rng.standard_normal((2, D)), rng.standard_normal(D), cov, np.zeros(D), prior)
    variables = _variables(anchor)
    n = 6000
    c = np.tile(rng.standard_normal((1, 2)), (n, 1)).astype(np.float32)
    chain = np.asarray(sample(DenoiserApply(_model()), variables, Condition.of(jnp.asarray(c)),
                              make_schedule("linear", T), jax.random.key(1), shape=(n, D)))
    stacked = jax.tree.map(lambda v: v[None], variables["params"])
    direct = anchor_draws.fused_draws(stacked, [c], np.ones((n, 1), bool), np.ones((n, 1)),
                                      jax.random.key(2))
    expected_mean = c[0] @ anchor["anchor_kernel"][1] + anchor["anchor_bias"][1]
    for draws in (chain, direct):
        mean, got = _moments(draws)
        np.testing.assert_allclose(mean, expected_mean, atol=0.05)
        np.testing.assert_allclose(got, cov, atol=0.06)


def test_fused_specialists_sharing_a_covariance_chain_and_direct_agree():
    """Coherent fusion (sharpened weighted mean) of two Gaussian specialists with one
    covariance (sharpness > 0: their prior's too): the fused eps is exactly that of one diffused
    Gaussian, so the chain and the direct draws have the same law."""
    rng = np.random.default_rng(3)
    cov, prior = _random_cov(rng, 0.5), _random_cov(rng, 2.0)
    n = 6000
    values = [np.tile(rng.standard_normal((1, 2)), (n, 1)).astype(np.float32) for _ in range(2)]
    weights = np.tile([[0.3, 0.7]], (n, 1)).astype(np.float32)
    conds = stack_members([Condition.of(jnp.asarray(v)) for v in values])
    kernels = [rng.standard_normal((2, D)) for _ in range(2)]
    biases = [rng.standard_normal(D) for _ in range(2)]
    for sharpness, prior_cov in ((0.0, prior), (0.5, cov)):
        stacked = jax.tree.map(lambda *v: jnp.stack(v), *[
            _variables(_anchor(k, b, cov, np.zeros(D), prior_cov), i)
            for i, (k, b) in enumerate(zip(kernels, biases))])
        chain = np.asarray(coherent_sample(
            DenoiserApply(_model()),
            Members(stacked, conds, jnp.asarray(weights), conds.dropped()),
            make_schedule("linear", T), jax.random.key(4), shape=(n, D),
            config=CoherentConfig(sharpness=sharpness)).samples)
        direct = anchor_draws.fused_draws(stacked["params"], values, np.ones((n, 2), bool),
                                          weights, jax.random.key(5), sharpness=sharpness)
        (mean_c, cov_c), (mean_d, cov_d) = _moments(chain), _moments(direct)
        np.testing.assert_allclose(mean_c, mean_d, atol=0.06)
        np.testing.assert_allclose(cov_c, cov_d, atol=0.06)


def test_product_of_exact_specialists_is_the_exact_posterior():
    """Sources independent given the target (the target is the shared factor itself): the
    product of the exact single-source Gaussians over the prior is p(target | both)."""
    rng = np.random.default_rng(6)
    truth = LinearGaussianModel(
        ("t", "a", "b"), {m: 0.5 * rng.standard_normal(w) for m, w in
                          (("t", D), ("a", 4), ("b", 5))},
        {"t": np.eye(D), "a": rng.standard_normal((4, D)), "b": rng.standard_normal((5, D))},
        {"t": 0.0, "a": 0.7, "b": 0.4})
    prior_mean, prior_cov = truth.marginal("t")
    members = []
    for s in ("a", "b"):
        gain = np.linalg.solve(truth.cross_cov(s, s), truth.cross_cov("t", s).T).T  # [D, D_s]
        _, cov = truth.conditional("t", {s: np.zeros((1, truth.dim(s)))})
        members.append(_anchor(gain.T, prior_mean - truth.means[s] @ gain.T, cov, prior_mean,
                               prior_cov))
    width = max(truth.dim("a"), truth.dim("b"))
    members = [{**m, "anchor_kernel": np.pad(m["anchor_kernel"],
                                              ((0, 0), (0, width - m["anchor_kernel"].shape[1]),
                                               (0, 0)))} for m in members]
    stacked = {k: np.stack([m[k] for m in members]) for k in members[0]}
    given = truth.sample(5, seed=7)
    values = [np.pad(given[s], ((0, 0), (0, width - truth.dim(s)))) for s in ("a", "b")]
    (rows, mean, scale), = anchor_draws.fused_gaussians(
        stacked, values, np.ones((5, 2), bool), np.full((5, 2), 0.5), product=True)
    exact_mean, exact_cov = truth.conditional("t", {"a": given["a"], "b": given["b"]})
    np.testing.assert_array_equal(rows, np.arange(5))
    np.testing.assert_allclose(mean, exact_mean, atol=1e-4)
    np.testing.assert_allclose(scale @ scale.T, exact_cov, atol=1e-5)


def test_direct_draws_are_bit_stable_and_refuse_a_non_positive_fusion():
    rng = np.random.default_rng(8)
    prior = _random_cov(rng, 1.0)
    members = [_anchor(rng.standard_normal((2, D)), rng.standard_normal(D), 1.5 * prior,
                       np.zeros(D), prior) for _ in range(2)]
    stacked = {k: np.stack([m[k] for m in members]) for k in members[0]}
    values = [rng.standard_normal((7, 2)).astype(np.float32) for _ in range(2)]
    available = np.array([[1, 1], [1, 0], [0, 1]] * 2 + [[1, 1]], bool)
    weights = available / available.sum(axis=1, keepdims=True)
    first = anchor_draws.fused_draws(stacked, values, available, weights, jax.random.key(0))
    again = anchor_draws.fused_draws(stacked, values, available, weights, jax.random.key(0))
    np.testing.assert_array_equal(first, again)
    # a single available member draws its own conditional
    (rows, mean, scale), = [g for g in anchor_draws.fused_gaussians(
        stacked, values, available, weights) if g[0][0] == 1]
    np.testing.assert_allclose(scale @ scale.T, 1.5 * prior, rtol=1e-5, atol=1e-6)
    assert anchor_draws.fused_draws(stacked, values, available, weights, jax.random.key(0),
                                    sharpness=0.0) is not None
    # members wider than the prior (estimated anchors can be) sharpened far: the fused
    # precision P0 + lambda sum_i w_i (P_i - P0) = P0 (1 - lambda / 3) is not positive for
    # lambda = 31, and there is no Gaussian to draw
    assert anchor_draws.fused_draws(stacked, values, available, weights, jax.random.key(0),
                                    sharpness=30.0) is None
