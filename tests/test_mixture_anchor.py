"""Gaussian-mixture anchors (`mixture_anchor`): the eps is the exact score of the diffused
mixture conditional (checked by autodiff of the joint density), the untrained model's direct
draws land in each mode with the exact weight, the chain agrees, BIC finds the count, and
cross-validation shrinks the gates of a blind source to the pooled covariance and cools them
toward the components' weights while keeping the components' own noise, and shrinks the slopes
of modalities coupled by shared factors toward a target with the data's factor rank."""

import jax
import jax.numpy as jnp
import numpy as np
import pandas as pd
import pytest
from jax.scipy.special import logsumexp
from jax.scipy.stats import multivariate_normal

from coherent_jax import anchor_draws
from coherent_jax.mixture_count import composite
from coherent_jax.mixture_anchor import (COUNT_GRID, RANKS, Shape, _pencil_log_normals,
                                         choose_shrinkage, component_logits, component_moments,
                                         conditional_mixtures, factor_ranks, factor_target,
                                         fit_mixture, fit_mixture_anchors,
                                         select_components, shrunk,
                                         shrunk_conditional_mixtures, widened,
                                         with_components)
from coherent_jax.engine.denoiser import (Condition, Denoiser, DenoiserApply, anchor_eps,
                                          init_denoiser, mixture_anchor_eps)
from coherent_jax.engine.sampling import SamplerConfig, sample
from coherent_jax.engine.schedules import make_schedule

D, W1, W2, M = 2, 2, 1, 3


def _joint(seed=0):
    """A random 3-component mixture over [target (D), c1 (W1), c2 (W2)] (float64)."""
    rng = np.random.default_rng(seed)
    j = D + W1 + W2
    weights = np.array([0.5, 0.3, 0.2])
    means = 2.0 * rng.standard_normal((M, j))
    a = rng.standard_normal((M, j, j))
    covs = a @ np.swapaxes(a, 1, 2) / j + 0.3 * np.eye(j)
    return weights, means, covs


def _exact_eps(weights, means, covs, ab, x, c, cols):
    """-sqrt(1 - ab) d/dx log p(x_t = x, c_S = c) of the joint mixture, diffused (autodiff)."""
    def log_joint(xt):
        parts = []
        for j in range(M):
            mean = jnp.concatenate([jnp.sqrt(ab) * means[j, :D], means[j, D + cols]])
            idx = np.r_[np.arange(D), D + cols]
            cov = jnp.asarray(covs[j][np.ix_(idx, idx)])
            cov = cov.at[:D, :D].set(ab * cov[:D, :D] + (1 - ab) * jnp.eye(D))
            cov = cov.at[:D, D:].multiply(jnp.sqrt(ab)).at[D:, :D].multiply(jnp.sqrt(ab))
            parts.append(jnp.log(weights[j])
                         + multivariate_normal.logpdf(jnp.concatenate([xt, c]), mean, cov))
        return logsumexp(jnp.stack(parts))
    return -jnp.sqrt(1 - ab) * jax.grad(log_joint)(x)


def test_mixture_eps_is_the_exact_score_of_every_subset():
    jax.config.update("jax_enable_x64", True)
    try:
        weights, means, covs = _joint()
        anchor = conditional_mixtures(weights, means, covs, D, [W1, W2])
        anchor = {k: jnp.asarray(v, jnp.float64) for k, v in anchor.items()}
        rng = np.random.default_rng(1)
        for mask in ([0, 0], [1, 0], [0, 1], [1, 1]):
            for ab in (0.999, 0.5, 0.02):
                x = jnp.asarray(rng.standard_normal((1, D)) * 2)
                c1, c2 = rng.standard_normal((1, W1)), rng.standard_normal((1, W2))
                cond = Condition(values=(jnp.asarray(c1), jnp.asarray(c2)),
                                 mask=jnp.asarray([mask], jnp.float64))
                got = mixture_anchor_eps(anchor, jnp.asarray([ab]), x, cond)[0]
                cols = np.concatenate([np.arange(W1)] * mask[0] + [W1 + np.arange(W2)] * mask[1]
                                      + [np.zeros(0, int)]).astype(int)
                given = np.concatenate([c1[0], c2[0]])[cols]
                want = _exact_eps(weights, means, covs, ab, x[0], jnp.asarray(given), cols)
                np.testing.assert_allclose(got, want, rtol=1e-6, atol=1e-9)
    finally:
        jax.config.update("jax_enable_x64", False)


def test_a_widened_anchor_ignores_the_columns_it_was_not_fitted_on():
    """The multi-condition family's mixture reads each source's first columns only
    (`widened`): on inputs with anything in the other columns its eps for every mask is the
    narrow anchor's on the columns it read."""
    anchor = conditional_mixtures(*_joint(), D, [W1, W2])
    wide = widened(anchor, [W1, W2], [W1 + 2, W2 + 3])
    rng = np.random.default_rng(4)
    x, ab = jnp.asarray(rng.standard_normal((8, D))), jnp.full((8,), 0.4)
    c1, c2 = rng.standard_normal((8, W1 + 2)), rng.standard_normal((8, W2 + 3))
    for mask in ([0, 0], [1, 0], [0, 1], [1, 1]):
        mask = jnp.asarray(np.tile(mask, (8, 1)), jnp.float32)
        narrow = mixture_anchor_eps(anchor, ab, x, Condition(
            values=(jnp.asarray(c1[:, :W1]), jnp.asarray(c2[:, :W2])), mask=mask))
        got = mixture_anchor_eps(wide, ab, x, Condition(
            values=(jnp.asarray(c1), jnp.asarray(c2)), mask=mask))
        np.testing.assert_allclose(got, narrow, rtol=1e-5, atol=1e-6)
    assert wide["kernel"].shape[2] == wide["gate_prec"].shape[-1] == W1 + W2 + 5


def test_component_logits_are_each_rows_gate_computed_in_blocks_per_subset(monkeypatch):
    """The exact draws' gates (`component_logits`) per subset in blocks of rows, never a gather
    of every row's gate precision (R x M x W x W: 27 GiB for 1,000 patients x 100 draws of a
    96-wide multi-condition model): the same logits as row by row."""
    import coherent_jax.mixture_anchor as mixture_anchor  # noqa: PLC0415

    anchor = conditional_mixtures(*_joint(), D, [W1, W2])
    rng = np.random.default_rng(5)
    subset = rng.integers(0, 4, 50)
    inputs = rng.standard_normal((50, W1 + W2))
    monkeypatch.setattr(mixture_anchor, "LOGIT_ROWS", 7)
    got = component_logits(anchor, subset, inputs)
    for r in range(50):
        s, c = subset[r], inputs[r] - anchor["gate_mean"][subset[r]]  # c: [M, W]
        want = anchor["gate_const"][s] - 0.5 * np.einsum("mw,mwv,mv->m", c,
                                                           anchor["gate_prec"][s], c)
        np.testing.assert_allclose(got[r], want, rtol=1e-6, atol=1e-6)


def test_a_gaussian_or_a_smaller_mixture_padded_to_more_components_has_the_same_eps():
    """`with_components`: a family's members take their own counts and are padded to the
    largest (`mixture_count`); the eps at every noise level, hence the draws, are the same."""
    from coherent_jax.anchor import fit_anchors  # noqa: PLC0415

    rng = np.random.default_rng(7)
    x, c1, c2 = (rng.standard_normal((300, w)).astype(np.float32) for w in (D, W1, W2))
    present = np.ones(300, bool)
    gaussian = fit_anchors(x, present, [(c1, present), (c2, present)])
    mixture = conditional_mixtures(*_joint(), D, [W1, W2])  # 3 components
    xt = jnp.asarray(rng.standard_normal((40, D)), jnp.float32)
    ab = jnp.asarray(rng.uniform(0.05, 0.99, 40), jnp.float32)
    cond = Condition(values=(jnp.asarray(rng.standard_normal((40, W1)), jnp.float32),
                             jnp.asarray(rng.standard_normal((40, W2)), jnp.float32)),
                     mask=jnp.asarray(rng.integers(0, 2, (40, 2)), jnp.float32))
    for anchor, m in ((gaussian, 1), (gaussian, 4), (mixture, 3), (mixture, 5)):
        padded = with_components(anchor, m)
        assert padded["gate_const"].shape == (4, m)
        np.testing.assert_allclose(
            mixture_anchor_eps({k: jnp.asarray(v) for k, v in padded.items()}, ab, xt, cond),
            anchor_eps({k: jnp.asarray(v) for k, v in anchor.items()}, ab, xt, cond),
            rtol=1e-4, atol=1e-5)
    with pytest.raises(ValueError, match="cannot be padded"):
        with_components(mixture, 2)


def _model():
    return Denoiser(D, hidden_dim=16, num_layers=2, time_embed_dim=8, cond_embed_dim=4,
                    anchored=True, anchor_components=M, diffusion_steps=1000)


def _untrained(anchor):
    variables = init_denoiser(_model(), jax.random.key(0), [W1, W2])
    return {**variables, "params": {**variables["params"], **{
        f"anchor_{k}": jnp.asarray(v) for k, v in anchor.items()}}}


def _component_of(draws, centres):
    return np.argmin(((draws[:, None, :] - centres[None]) ** 2).sum(-1), axis=1)


def test_direct_draws_and_the_chain_put_each_mode_at_its_exact_weight():
    # well separated components, one condition given: the mode shares are the conditional weights
    weights = np.array([0.5, 0.3, 0.2])
    means = np.zeros((M, D + W1 + W2))
    means[:, :D] = [[-6, 0], [6, 0], [0, 8]]
    means[:, D:D + W1] = [[0.5, 0], [0, 0.5], [-0.5, 0]]
    covs = np.tile(0.3 * np.eye(D + W1 + W2), (M, 1, 1))
    anchor = conditional_mixtures(weights, means, covs, D, [W1, W2])
    variables = _untrained(anchor)
    n = 4000
    c1 = np.zeros((n, W1), np.float32)
    c2 = np.zeros((n, W2), np.float32)
    mask = np.tile([[True, False]], (n, 1))
    logp = (np.log(weights) - 0.5 * (means[:, D:D + W1] ** 2).sum(1) / 0.3)
    want = np.exp(logp - logp.max()) / np.exp(logp - logp.max()).sum()
    direct = anchor_draws.masked_draws(variables["params"], [c1, c2], mask, jax.random.key(2))
    chain = np.asarray(sample(DenoiserApply(_model()), variables,
                              Condition.of(jnp.asarray(c1), jnp.asarray(c2), mask=mask),
                              make_schedule("linear", 1000), jax.random.key(3), shape=(n, D),
                              config=SamplerConfig("dpmpp_3m_sde", 50)))
    for draws in (direct, chain):
        share = np.bincount(_component_of(draws, means[:, :D]), minlength=M) / n
        np.testing.assert_allclose(share, want, atol=0.03)
    again = anchor_draws.masked_draws(variables["params"], [c1, c2], mask, jax.random.key(2))
    np.testing.assert_array_equal(direct, again)


def test_one_available_mixture_specialist_is_drawn_exactly_and_two_need_the_chain():
    """Fused mixture specialists: where a row has one specialist available the fusion returns
    that member's eps unchanged, so `fused_draws` draws its conditional mixture exactly (each
    mode at its weight); with two available there is no closed form (None: the chain runs)."""
    centres = np.array([[-6.0, 0.0], [6.0, 0.0], [0.0, 8.0]])
    covs = np.tile(0.3 * np.eye(D + W1), (M, 1, 1))
    members, wanted = [], []
    for weights, gate in ((np.array([0.5, 0.3, 0.2]), [[0.5, 0], [0, 0.5], [-0.5, 0]]),
                          (np.array([0.2, 0.2, 0.6]), [[0, 0], [0, 0], [0, 0]])):
        means = np.concatenate([centres, np.asarray(gate, float)], axis=1)
        anchor = conditional_mixtures(weights, means, covs, D, [W1])
        model = Denoiser(D, hidden_dim=16, num_layers=2, time_embed_dim=8, cond_embed_dim=4,
                         anchored=True, anchor_components=M, diffusion_steps=1000)
        params = init_denoiser(model, jax.random.key(0), [W1])["params"]
        members.append({**params, **{f"anchor_{k}": jnp.asarray(v) for k, v in anchor.items()}})
        logp = np.log(weights) - 0.5 * (means[:, D:] ** 2).sum(1) / 0.3
        wanted.append(np.exp(logp - logp.max()) / np.exp(logp - logp.max()).sum())
    stacked = jax.tree.map(lambda *v: jnp.stack(v), *members)
    n = 4000
    values = [np.zeros((n, W1), np.float32)] * 2
    available = np.zeros((n, 2), bool)
    available[: n // 2, 0] = available[n // 2:, 1] = True  # first half A alone, second B alone
    weights = available.astype(np.float32)
    draws = anchor_draws.fused_draws(stacked, values, available, weights, jax.random.key(1))
    for half, want in zip((slice(0, n // 2), slice(n // 2, n)), wanted):
        share = np.bincount(_component_of(draws[half], centres), minlength=M) / (n // 2)
        np.testing.assert_allclose(share, want, atol=0.04)
    np.testing.assert_array_equal(
        draws, anchor_draws.fused_draws(stacked, values, available, weights, jax.random.key(1)))
    both = np.ones((n, 2), bool)
    assert anchor_draws.fused_draws(stacked, values, both, both / 2.0, jax.random.key(1)) is None


def test_pencil_log_normals_match_each_shares_own_gaussian():
    """`choose_shrinkage` scores every share s of (1 - s) A + s B from one factorisation: the
    same log-densities as each covariance taken on its own."""
    from scipy.stats import multivariate_normal as scipy_normal  # noqa: PLC0415

    rng = np.random.default_rng(3)
    d = 5
    a, b = (m @ m.T / d + 0.1 * np.eye(d) for m in rng.standard_normal((2, d, d)))
    x = rng.standard_normal((7, d))
    shares = (0.0, 0.3, 1.0)
    got = _pencil_log_normals(x, a, b, shares)  # [3, 7]
    for row, s in zip(got, shares):
        np.testing.assert_allclose(row, scipy_normal(np.zeros(d), (1 - s) * a + s * b).logpdf(x),
                                   rtol=1e-10, atol=1e-10)


def test_bic_finds_the_subtypes_and_keeps_one_gaussian_when_there_are_none():
    rng = np.random.default_rng(0)
    n = 600
    subtype = rng.integers(0, 3, n)
    centres = np.array([[-4.0, 0, 0], [4.0, 0, 0], [0, 5.0, 0]])
    target = (centres[subtype] + rng.standard_normal((n, 3))).astype(np.float32)
    source = (rng.standard_normal((n, 2)) + 0.5 * target[:, :2]).astype(np.float32)
    present = np.ones(n, bool)
    found = fit_mixture_anchors(target, present, [(source, present)], max_components=5)
    assert found is not None and found["gate_const"].shape == (2, 3)
    plain = rng.standard_normal((n, 3)).astype(np.float32)
    assert fit_mixture_anchors(plain, present, [(plain[:, :2] + rng.standard_normal((n, 2))
                                                 .astype(np.float32), present)],
                               max_components=5) is None


def test_the_count_is_the_targets_not_the_conditions_clusters():
    """A source with batches of its own: BIC on the joint rows counts subtype x batch, the
    held-out likelihood of the target given the sources the subtypes alone."""
    rng = np.random.default_rng(0)
    n = 600
    subtype, batch = rng.integers(0, 2, n), rng.integers(0, 2, n)
    target = 3.0 * np.array([[-1.0, 1, 0], [1, 0, -1]])[subtype] + rng.standard_normal((n, 3))
    revealing = (2.0 * np.array([[1.0, -1, 0, 1], [-1, 0, 1, -1]])[subtype]
                 + rng.standard_normal((n, 4)))
    batched = 4.0 * np.array([[1.0, 1, -1, 0], [-1, -1, 1, 0]])[batch] + rng.standard_normal(
        (n, 4))
    joint = np.concatenate([target, revealing, batched], axis=1)
    joint = (joint - joint.mean(0)) / joint.std(0)
    assert select_components(joint, 6, seed=0).n_components == 4
    present = np.ones(n, bool)
    fitted = fit_mixture(target, present, [(revealing, present), (batched, present)],
                         max_components=6)
    assert fitted.resp.shape[1] == 2
    agree = (fitted.resp.argmax(axis=1) == subtype).mean()
    assert max(agree, 1 - agree) > 0.95


def test_mixture_fits_run_on_one_thread_and_restore_the_callers_limits(monkeypatch):
    from sklearn.mixture import GaussianMixture  # noqa: PLC0415
    from threadpoolctl import threadpool_info, threadpool_limits  # noqa: PLC0415

    seen = []
    original = GaussianMixture.fit

    def recording(self, *args, **kwargs):
        seen.append(max(pool["num_threads"] for pool in threadpool_info()))
        return original(self, *args, **kwargs)

    monkeypatch.setattr(GaussianMixture, "fit", recording)
    rng = np.random.default_rng(0)
    target = rng.standard_normal((200, 2)) + 4.0 * rng.integers(0, 2, (200, 1))
    present = np.ones(200, bool)
    with threadpool_limits(limits=2):
        fit_mixture_anchors(target, present, [(target + rng.standard_normal((200, 2)), present)],
                            max_components=2)
        after = [pool["num_threads"] for pool in threadpool_info()]
    assert seen and set(seen) == {1}
    assert max(after) == 2  # the caller's limits are back


def test_a_sources_principal_components_let_bic_see_the_subtype_its_prediction_misses():
    from sklearn.metrics import adjusted_rand_score  # noqa: PLC0415

    from coherent_jax.anchor import fit_condition_map  # noqa: PLC0415
    from coherent_jax.data.mixture import MixtureModel  # noqa: PLC0415
    from coherent_jax.mixture_anchor import fit_mixture  # noqa: PLC0415

    # 'reveal' tells the subtype, the blind target does not depend on it: the ridge prediction
    # of the target from 'reveal' reads the shared factors, not the subtype, yet the target's
    # conditional given 'reveal' depends on it (the factors are read from 'reveal' minus its
    # subtype's mean, at its subtype's noise)
    model = MixtureModel.random({"blind": 12, "reveal": 8}, {"blind": 0, "reveal": 3.0},
                                num_subtypes=3, num_factors=3, noise_std=0.5,
                                noise_spread=2.0, seed=1)
    rows, subtype = model.sample(600, seed=1)
    present = np.ones(600, bool)
    target = rows["blind"][:, :7]  # fewer columns than 'reveal' has features: a summary
    _, prediction = fit_condition_map(rows["reveal"], target)
    assert fit_mixture(target, present, [(prediction, present)], max_components=4,
                       seed=0) is None
    _, with_pcs = fit_condition_map(rows["reveal"], target, components=8)
    fit = fit_mixture(target, present, [(with_pcs, present)], max_components=4, seed=0)
    assert fit is not None and fit.resp.shape[1] == 3
    assert adjusted_rand_score(subtype, fit.resp.argmax(1)) > 0.9
    # a source sent one-to-one (8 features, 12 columns): its prediction is the source itself
    # in other coordinates (the map's own fit on these rows), clusters and all
    _, whole = fit_condition_map(rows["reveal"], rows["blind"])
    assert fit_mixture(rows["blind"], present, [(whole, present)], max_components=4,
                       seed=0) is not None
    # the model set keeps the components of a source with clusters, zeroes a blind one's,
    # and drops them where no source has clusters
    from coherent_jax.model_set import _clustered_components_only  # noqa: PLC0415

    revealing = fit_condition_map(rows["reveal"], rows["blind"][:, :8], components=8)
    blind = fit_condition_map(rows["blind"], rows["blind"][:, :8], components=8)
    out = _clustered_components_only({"r": revealing, "b": blind}, 8)
    np.testing.assert_array_equal(out["r"][1], revealing[1])
    assert out["b"][1].shape == (600, 16) and not out["b"][1][:, 8:].any()
    np.testing.assert_array_equal(out["b"][1][:, :8], blind[1][:, :8])
    assert not out["b"][0]["kernel"][:, 8:].any()
    alone = _clustered_components_only({"b": blind}, 8)["b"]
    assert alone[0]["kernel"].shape == (12, 8) and alone[1].shape == (600, 8)


def _blind_source_rows(n=600, width=10, seed=0):
    """Standardised joint rows [target (3), source (width)] and the true subtypes: the target's
    subtype means and noise scales differ (0.3, 0.6, 1.2), the source shares a factor with the
    target and does not depend on the subtype."""
    rng = np.random.default_rng(seed)
    subtype = rng.integers(0, 3, n)
    factor = rng.standard_normal((n, 1))
    centres = np.array([[-3.0, 0, 1], [3.0, 0, 1], [0, 3.0, -1]])
    noise = np.array([0.3, 0.6, 1.2])[subtype, None]
    target = centres[subtype] + factor + noise * rng.standard_normal((n, 3))
    source = factor + 0.5 * rng.standard_normal((n, width))
    joint = np.concatenate([target, source], axis=1)
    return (joint - joint.mean(0)) / joint.std(0), subtype


def test_shrinkage_pools_a_blind_sources_gates_and_keeps_the_subtypes_noise():
    z, subtype = _blind_source_rows()
    resp = np.eye(3)[subtype]  # the true components
    shares, _ = choose_shrinkage(z, resp, 3, [10], seed=0)
    assert len(shares) == 2  # no condition, the source
    gate, slope, residual = shares[1][:3]
    assert gate >= 0.75  # a source blind to the subtype: per-component gates only add noise
    assert slope >= 0.5  # the slopes on the shared factor are the same in every subtype
    assert residual <= 0.25  # the target's noise differs by subtype: a pooled one misfits it
    weights, means, own = component_moments(resp, z)
    np.testing.assert_allclose(weights, np.bincount(subtype) / len(subtype))
    pooled = shrunk(own, weights, 1.0)
    np.testing.assert_allclose(pooled[0], pooled[2])  # share 1: one covariance for all
    np.testing.assert_allclose(shrunk(own, weights, 0.0)[1] - own[1], 1e-3 * np.eye(13),
                               atol=1e-12)


def _blind_and_revealing_rows(n=600, seed=0):
    """Standardised joint rows [target (3), blind (30), revealing (4)] and the subtypes: the
    blind source shares a factor with the target and does not depend on the subtype; the
    revealing one is the subtype's centre plus noise."""
    rng = np.random.default_rng(seed)
    subtype = rng.integers(0, 3, n)
    factor = rng.standard_normal((n, 1))
    centres = np.array([[-3.0, 0, 1], [3.0, 0, 1], [0, 3.0, -1]])
    target = centres[subtype] + factor + 0.5 * rng.standard_normal((n, 3))
    blind = factor + 0.5 * rng.standard_normal((n, 30))
    revealing = 2.0 * rng.standard_normal((3, 4))[subtype] + rng.standard_normal((n, 4))
    joint = np.concatenate([target, blind, revealing], axis=1)
    return (joint - joint.mean(0)) / joint.std(0), subtype


def test_a_blind_sources_gates_are_cooled_to_the_weights_and_a_revealing_ones_kept():
    z, subtype = _blind_and_revealing_rows()
    resp = np.eye(3)[subtype]
    shapes, _ = choose_shrinkage(z, resp, 3, [30, 4], seed=0)
    assert shapes[1].temperature <= 0.5, shapes[1]  # blind: its gates' spread is noise
    assert shapes[2].temperature >= 0.75, shapes[2]  # revealing: Bayes' rule as fitted
    weights, means, own = component_moments(resp, z)
    fresh, fresh_subtype = _blind_and_revealing_rows(seed=1)
    inputs = np.concatenate([fresh[:, 3:33], np.zeros((len(fresh), 4))], axis=1)

    def gate_weights(shape):
        anchor = shrunk_conditional_mixtures(weights, means, own, 3, [30, 4], [shape] * 4)
        logits = component_logits(anchor, np.ones(len(fresh), int), inputs)
        return np.exp(logits - logsumexp(logits, axis=1, keepdims=True))

    cooled, hot = gate_weights(shapes[1]), gate_weights(shapes[1]._replace(temperature=1.0))
    # the chosen gates stay nearer the weights, and lose less on the fresh rows' subtypes
    assert np.abs(cooled - weights).sum(1).mean() < np.abs(hot - weights).sum(1).mean()
    truth = np.arange(len(fresh)), fresh_subtype
    assert np.log(cooled[truth]).mean() > np.log(hot[truth]).mean()


def test_the_temperature_scales_the_gates_log_densities():
    weights, means, covs = _joint()
    shape = Shape(0.5, 0.0, 0.0, 0.0)
    hot = shrunk_conditional_mixtures(weights, means, covs, D, [W1, W2], [shape] * 4, reg=0.0)
    cool = shrunk_conditional_mixtures(weights, means, covs, D, [W1, W2],
                                       [shape._replace(temperature=0.25)] * 4, reg=0.0)
    inputs = np.random.default_rng(2).standard_normal((7, W1 + W2))
    for subset in range(4):
        index = np.full(7, subset)
        np.testing.assert_allclose(
            component_logits(cool, index, inputs) - np.log(weights),
            0.25 * (component_logits(hot, index, inputs) - np.log(weights)), rtol=1e-4,
            atol=1e-4)
    for key in ("kernel", "bias", "log_var", "basis", "gate_mean"):  # only the gates change
        np.testing.assert_allclose(cool[key], hot[key])


def test_shares_move_gates_slopes_and_residuals_separately():
    weights, means, covs = _joint()
    pooled = shrunk(covs, weights, 1.0, reg=0.0)
    subsets = 4  # none, c1, c2, both

    def close(a, b, keys):
        for key in keys:
            np.testing.assert_allclose(a[key], b[key], rtol=2e-4, atol=2e-5)

    own = conditional_mixtures(weights, means, covs, D, [W1, W2])
    tied = conditional_mixtures(weights, means, pooled, D, [W1, W2])
    every = ("kernel", "bias", "log_var", "basis", "gate_const", "gate_mean", "gate_prec")
    close(shrunk_conditional_mixtures(weights, means, covs, D, [W1, W2],
                                      [(0.0, 0.0, 0.0, 0.0)] * subsets, reg=0.0), own, every)
    close(shrunk_conditional_mixtures(weights, means, covs, D, [W1, W2],
                                      [(1.0, 1.0, 1.0, 0.0)] * subsets, reg=0.0), tied, every)
    mixed = shrunk_conditional_mixtures(weights, means, covs, D, [W1, W2],
                                        [(1.0, 0.0, 0.0, 0.0)] * subsets, reg=0.0)
    close(mixed, tied, ("gate_const", "gate_prec"))  # pooled gates
    close(mixed, own, ("kernel", "bias", "log_var", "basis"))  # the components' own experts
    assert not np.allclose(own["gate_prec"], tied["gate_prec"])


@pytest.mark.slow
def test_a_model_set_with_mixture_anchors_imputes_saves_and_loads(tmp_path):
    from coherent_jax.data import paper_split
    from coherent_jax.data.mixture import hidden_subtype_model, mixture_cohort
    from coherent_jax.impute import SamplerCalls, impute
    from coherent_jax.latent import LatentConfig, LatentSpace
    from coherent_jax.model_set import ModelSet, ModelSetConfig, train_model_set

    cohort = paper_split(mixture_cohort(hidden_subtype_model(width=4), 500, seed=0), seed=42)
    space = LatentSpace.fit(cohort, LatentConfig(latent_dim=4))
    latents = space.encode(cohort)
    config = ModelSetConfig(hidden_dim=16, num_layers=2, time_embed_dim=8, cond_embed_dim=4,
                            batch_size=64, train_steps=0, anchor_components=4,
                            sharpness_grid=(0.0,))
    models, reports = train_model_set(latents, config, seed=0, features=cohort)
    target = models.targets["target"]
    report = reports["target"]["specialists"]
    assert report["anchor_components"] > 1
    scores = report["validation_by_anchor_components"]  # both kinds trained, the better kept
    kept = report["anchor_label"]  # each member's count and shapes, e.g. '3' or '2/3+factor'
    assert set(scores) == {"1", kept}
    # kept because its untrained draws lead the Gaussian anchor's by the paired test on the
    # validation patients and every training patient cross-fitted (mixture_count)
    count = report["mixture_count"]
    assert count["chosen"] == count["best"] == kept
    assert kept == composite([member["chosen"] for member in count["members"]])
    test = count["best_minus_gaussian"]
    train = int((cohort.splits == "train").sum())
    assert test["leads"] and count["held_out_patients"] == train
    assert test["patients"] == train + int((cohort.splits == "val").sum())
    assert test["mean_difference"] + 1.645 * test["standard_error"] < 0
    counts = sorted({int(m.split("+")[0]) for m in count["energy"]})  # every count up to
    assert counts == list(range(1, counts[-1] + 1))  # the largest, some with factor shapes
    assert counts[-1] >= report["anchor_components"] > 1
    assert report["anchor_components"] == max(int(m.split("+")[0]) for m in kept.split("/"))
    assert scores[kept] < scores["1"]
    assert target.specialist_model.anchor_components > 1
    assert target.specialists["params"]["anchor_gate_const"].shape[-1] > 1
    # the specialists' mixtures read the sources' principal components, the multi-condition
    # model's only the sources' predictions (4 wide each: the target's latent width)
    components = np.tile(np.arange(8) >= 4, 2)  # [16]: hide's then reveal's columns
    spec = np.abs(target.specialists["params"]["anchor_kernel"]).sum(axis=(0, 1, 2, 4))
    assert spec[4:].any()
    multi = {k: np.abs(np.asarray(target.multi["params"]["anchor_" + k]))
             for k in ("kernel", "gate_prec", "gate_mean")}
    assert multi["kernel"].shape[2] == 16 and multi["kernel"].sum(axis=(0, 1, 3))[~components].all()
    assert not multi["kernel"][:, :, components].any()
    assert not multi["gate_prec"][..., components].any()
    assert not multi["gate_mean"][..., components].any()
    # both families untrained: every training patient is scored too, drawn from the mixture
    # refitted without its fold (cross_fit)
    for scores in reports["target"]["family_by_pattern"]["patterns"].values():
        assert scores["held_out_rows"] == train
        assert scores["multi_minus_specialists"]["patients"] == train + scores["rows"]
    models.save(str(tmp_path / "models"))
    loaded = ModelSet.load(str(tmp_path / "models"))
    assert loaded.targets["target"].specialist_model == target.specialist_model
    test = cohort.split("test")
    holed = test.replace(tables={**test.tables, "target": test.tables["target"] * np.nan},
                         splits=pd.Series(pd.NA, index=test.sample_ids, dtype="string"))
    for method in ("coherent", "multi"):
        a, b = (impute(space.encode(holed), m, latent_space=space, feature_cohort=holed,
                       method=method, sampler="ddim", sample_steps=8, num_samples=2,
                       calls=SamplerCalls(bucket=64), seed=1) for m in (models, loaded))
        assert np.isfinite(a.draws["target"].to_numpy()).all()
        pd.testing.assert_frame_equal(a.draws["target"], b.draws["target"])


@pytest.mark.slow
def test_a_mixture_candidate_that_loses_untrained_is_not_trained(monkeypatch):
    """With training on, the mixture counts are first scored untrained (`mixture_count`); the
    best is trained only where it starts ahead of the Gaussian anchor beyond the patients'
    noise (paired test, same noise), and dropped where, trained, the Gaussian leads it on
    validation; a member's learned correction is kept only where it leads its anchor alone
    (`model_set._corrections_that_lead`)."""
    from coherent_jax import model_set
    from coherent_jax.data import paper_split
    from coherent_jax.data.mixture import hidden_subtype_model, mixture_cohort
    from coherent_jax.latent import LatentConfig, LatentSpace

    cohort = paper_split(mixture_cohort(hidden_subtype_model(width=4), 500, seed=0), seed=42)
    latents = LatentSpace.fit(cohort, LatentConfig(latent_dim=4)).encode(cohort)
    config = model_set.ModelSetConfig(hidden_dim=16, num_layers=2, time_embed_dim=8,
                                      cond_embed_dim=4, batch_size=64, train_steps=2,
                                      eval_every=1, log_every=1, anchor_components=4,
                                      sharpness_grid=(0.0,), multi=False)
    _, ahead = model_set.train_target(latents, "target", config, jax.random.key(0),
                                      features=cohort)
    count = ahead["specialists"]["mixture_count"]
    m = count["chosen"]
    assert m != "1" and all(member["energy"][member["chosen"]] < member["energy"]["1"]
                            for member in count["members"] if member["chosen"] != "1")
    assert set(ahead["specialists"]["validation_by_anchor_components"]) == {"1", m}
    assert "leads" in ahead["specialists"]["mixture_vs_gaussian"]  # trained, tested again

    monkeypatch.setattr(model_set, "MIXTURE_TEST_Z", 1e6)  # no lead is beyond the noise
    models, behind = model_set.train_target(latents, "target", config, jax.random.key(0),
                                            features=cohort)
    report = behind["specialists"]
    assert set(report["validation_by_anchor_components"]) == {"1"}  # not trained
    assert report["mixture_count"]["energy"] == count["energy"]  # the same draws
    assert report["mixture_count"]["chosen"] == "1"
    assert not report["mixture_count"]["best_minus_gaussian"]["leads"]
    assert "mixture_vs_gaussian" not in report
    assert report["anchor_components"] == 1 and models.specialist_model.anchor_components == 1
    with pytest.raises(ValueError, match="correction_test_z must be a finite"):
        model_set.ModelSetConfig(correction_test_z=float("nan"))
    # nor does a trained correction lead its anchor alone: each member draws from its anchor
    assert report["corrections"] and not any(c["kept"] for c in report["corrections"])
    assert anchor_draws.untrained(models.specialists)


def _collinear_sources_rows(n, width=6, seed=0):
    """Standardised joint rows [target (3), c1 (width), c2 (width)] and the subtypes: c1 a noisy
    linear image of the target, c2 a slightly noisier copy of c1 (two sources' predictions of
    the same target)."""
    rng = np.random.default_rng(seed)
    subtype = rng.integers(0, 3, n)
    centres = np.array([[-3.0, 0, 1], [3.0, 0, 1], [0, 3.0, -1]])
    target = centres[subtype] + np.array([0.3, 0.6, 1.2])[subtype, None] * rng.standard_normal(
        (n, 3))
    c1 = target @ rng.standard_normal((3, width)) + rng.standard_normal((n, width))
    c2 = c1 + 0.3 * rng.standard_normal((n, width))
    joint = np.concatenate([target, c1, c2], axis=1)
    return (joint - joint.mean(0)) / joint.std(0), subtype


def test_collinear_conditions_on_few_rows_get_ridge_slopes_and_many_rows_least_squares():
    for n, penalised in ((150, True), (3000, False)):
        z, subtype = _collinear_sources_rows(n)
        shares, _ = choose_shrinkage(z, np.eye(3)[subtype], 3, [6, 6], seed=0)
        assert (shares[3][3] > 0) == penalised, (n, shares[3])


def test_residual_covariance_is_that_around_the_slopes_used():
    z, subtype = _collinear_sources_rows(400)
    resp = np.eye(3)[subtype]
    weights, means, own = component_moments(resp, z)
    dim, widths = 3, [6, 6]
    anchor = shrunk_conditional_mixtures(weights, means, own, dim, widths,
                                         [(0.0, 0.5, 0.0, 0.1)] * 4, reg=0.0)
    for k in range(3):
        rows = z[subtype == k]
        kernel = anchor["kernel"][3, k]  # [12, 3] both conditions
        residual = rows[:, :dim] - rows[:, dim:] @ kernel  # around the slopes used
        expected = np.cov(residual.T, bias=True)
        basis, var = anchor["basis"][3, k], np.exp(anchor["log_var"][3, k])
        np.testing.assert_allclose(basis * var @ basis.T, expected, rtol=1e-3, atol=1e-4)
        np.testing.assert_allclose(anchor["bias"][3, k], residual.mean(0), atol=1e-4)
        assert not np.allclose(kernel, np.linalg.lstsq(rows[:, dim:] - rows[:, dim:].mean(0),
                                                        rows[:, :dim] - rows[:, :dim].mean(0),
                                                        rcond=None)[0], atol=1e-2)


def _factor_rows(n=600, seed=0):
    """Standardised joint rows [target (12), source (8)] of a 3-subtype mixture cohort whose
    modalities share 3 factors and whose noise scales differ by subtype (`MixtureModel`), the
    subtypes, and each subtype's true covariance in the standardised units."""
    from coherent_jax.data.mixture import MixtureModel
    model = MixtureModel.random({"target": 12, "source": 8}, {"target": 3.0, "source": 2.0},
                                num_subtypes=3, num_factors=3, noise_std=0.6,
                                noise_spread=2.5, seed=seed)
    values, subtype = model.sample(n, seed + 1)
    joint = np.concatenate([values["target"], values["source"]], axis=1)
    centre, scale = joint.mean(0), joint.std(0)
    true = np.stack([model._component(k, ["target", "source"])[1] for k in range(3)])
    return (joint - centre) / scale, subtype, true / np.outer(scale, scale)


def test_a_factor_target_finds_the_shared_factors_and_estimates_each_subtypes_slopes_better():
    z, subtype, true = _factor_rows()
    resp = np.eye(3)[subtype]
    coarse, _ = choose_shrinkage(z, resp, 12, [8], seed=0, grid=COUNT_GRID, ranks=RANKS)
    assert coarse[1].rank == 3  # given the source: the cohort's factor count
    assert factor_ranks(z, resp, 12, [8], seed=0) == tuple(sorted({s.rank for s in coarse}))
    weights, means, own = component_moments(resp, z)
    shapes, _ = choose_shrinkage(z, resp, 12, [8], seed=0, ranks=(0, 3))
    assert shapes[1].rank == 3 and shapes[1].slope > 0, shapes
    factor = shrunk_conditional_mixtures(weights, means, own, 12, [8], shapes)
    pooled, _ = choose_shrinkage(z, resp, 12, [8], seed=0)
    plain = shrunk_conditional_mixtures(weights, means, own, 12, [8], pooled)
    exact = np.linalg.solve(true[:, 12:, 12:], true[:, 12:, :12])  # [3, 8, 12]
    error = {name: np.linalg.norm(anchor["kernel"][1] - exact, axis=(1, 2))
             for name, anchor in (("factor", factor), ("pooled", plain))}
    assert np.all(error["factor"] < error["pooled"]), error
    assert error["factor"].sum() < 0.8 * error["pooled"].sum(), error


def test_a_common_factor_model_is_its_own_factor_target():
    """Components that share 3 factors' loadings and differ in means and in each block's noise
    scale (the mixture cohorts' structure) are recovered from their exact moments, the noise
    scaled within the factors' directions too; a rank short of the factors is not."""
    _, _, true = _factor_rows()
    weights = np.array([0.2, 0.3, 0.5])
    found = factor_target(true, weights, 3, (12, 8))
    np.testing.assert_allclose(found, true, atol=0.02)  # FACTOR_ITERATIONS steps: 0.014
    assert np.abs(factor_target(true, weights, 2, (12, 8)) - true).max() > 0.05


def test_a_factor_target_is_positive_definite_where_the_pooled_covariance_is_singular():
    z, subtype, _ = _factor_rows(300)
    z = np.concatenate([z, z[:, 12:]], axis=1)  # the source twice: a singular covariance
    weights, _, own = component_moments(np.eye(3)[subtype], z)
    for rank in (1, 3, 8, 27):  # 27: beyond the covariance's rank, nothing left to scale
        target = factor_target(own, weights, rank, (12, 8, 8))
        assert np.all(np.isfinite(target))
        assert np.linalg.eigvalsh(shrunk(own, weights, 1.0, rank=rank,
                                         blocks=(12, 8, 8))).min() > 0
    np.testing.assert_allclose(shrunk(own, weights, 1.0, rank=0), shrunk(own, weights, 1.0))
    low = factor_target(own, weights, 27, (12, 8, 8))  # the factors hold all but the ridge
    np.testing.assert_allclose(low[0], np.einsum("k,kij->ij", weights, own), atol=1e-3)
    scale = np.linspace(0.1, 10.0, z.shape[1])  # any units: the same target
    np.testing.assert_allclose(factor_target(own * np.outer(scale, scale), weights, 3, (12, 8, 8)),
                               factor_target(own, weights, 3, (12, 8, 8)) * np.outer(scale, scale),
                               rtol=1e-6, atol=1e-9)
