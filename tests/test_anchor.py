"""Anchored denoisers: the untrained model is the exact linear-Gaussian posterior eps of its
ridge anchors, the folded form agrees, and fitted anchors recover a linear-Gaussian truth."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from coherent_jax.anchor import covariance, fit_anchors, set_anchors
from coherent_jax.engine.denoiser import Condition, Denoiser, DenoiserApply, init_denoiser
from coherent_jax.engine.folded import fold_denoiser
from coherent_jax.engine.schedules import make_schedule

T = 50


def _model(**kwargs):
    return Denoiser(3, hidden_dim=16, num_layers=3, time_embed_dim=8, cond_embed_dim=4,
                    anchored=True, diffusion_steps=T, **kwargs)


def _linear_data(n, seed=0):
    """x = c1 @ A + c2 @ B + noise(0.5): exact posteriors per condition subset are linear."""
    rng = np.random.default_rng(seed)
    c1, c2 = rng.standard_normal((n, 4)), rng.standard_normal((n, 2))
    a, b = rng.standard_normal((4, 3)), rng.standard_normal((2, 3))
    x = c1 @ a + c2 @ b + 0.5 * rng.standard_normal((n, 3))
    return x, c1, c2, a, b


def test_fitted_anchors_recover_each_subsets_posterior():
    x, c1, c2, a, b = _linear_data(4000)
    yes = np.ones(len(x), bool)
    anchors = fit_anchors(x, yes, [(c1, yes), (c2, yes)])
    assert anchors["kernel"].shape == (4, 6, 3)
    np.testing.assert_allclose(anchors["kernel"][3], np.vstack([a, b]), atol=0.05)
    np.testing.assert_allclose(anchors["kernel"][1][:4], a, atol=0.1)  # c2 marginalised
    assert not anchors["kernel"][1][4:].any() and not anchors["kernel"][2][:4].any()
    # full residual covariances: the marginalised c2 correlates the dimensions of subset 1
    np.testing.assert_allclose(covariance(anchors, 3), 0.25 * np.eye(3), atol=0.04)
    np.testing.assert_allclose(covariance(anchors, 1), 0.25 * np.eye(3) + b.T @ b, atol=0.15)
    np.testing.assert_allclose(covariance(anchors, 0), np.cov(x.T, bias=True), atol=0.02)


def test_untrained_anchored_model_is_the_gaussian_posterior_eps_and_folds_exactly():
    x0, c1, c2, *_ = _linear_data(2000, seed=1)
    yes = np.ones(len(x0), bool)
    model = _model()
    variables = init_denoiser(model, jax.random.key(0), [4, 2])
    anchors = fit_anchors(x0, yes, [(c1, yes), (c2, yes)])
    params = set_anchors(jax.tree.map(lambda v: v[None], variables["params"]), [anchors],
                         np.zeros(1, int))
    variables = {**variables, "params": jax.tree.map(lambda v: jnp.asarray(v[0]), params)}
    n = 64
    key = jax.random.key(1)
    x = jax.random.normal(key, (n, 3))
    t = jax.random.randint(jax.random.fold_in(key, 1), (n,), 0, T)
    mask = jnp.asarray(np.random.default_rng(2).integers(0, 2, (n, 2)), jnp.float32)
    cond = Condition.of(jnp.asarray(c1[:n], jnp.float32), jnp.asarray(c2[:n], jnp.float32),
                        mask=mask)
    eps = DenoiserApply(model)(variables, x, t, cond)
    # expected: per row, the Gaussian posterior of its subset
    ab = make_schedule("linear", T).alpha_bars[t][:, None]
    index = np.asarray(mask[:, 0] + 2 * mask[:, 1], int)
    inputs = np.concatenate([c1[:n] * mask[:, :1], c2[:n] * mask[:, 1:]], axis=1)
    mean = np.einsum("bi,bid->bd", inputs, anchors["kernel"][index]) + anchors["bias"][index]
    cov = np.stack([covariance(anchors, i) for i in index])  # [n, 3, 3]
    residual = np.asarray(x) - np.sqrt(ab) * mean
    expected = np.sqrt(1 - ab) * np.linalg.solve(
        ab[:, :, None] * cov + (1 - ab[:, :, None]) * np.eye(3), residual[..., None])[..., 0]
    np.testing.assert_allclose(eps, expected, rtol=1e-4, atol=1e-5)
    apply_fn, folded = fold_denoiser(model, variables, T)
    np.testing.assert_allclose(apply_fn(folded, x, t, cond), eps, rtol=1e-4, atol=1e-5)


def test_anchor_parameters_get_no_gradient():
    model = _model()
    variables = init_denoiser(model, jax.random.key(0), [4])
    cond = Condition.of(jnp.ones((5, 4)))

    def loss(params):
        out = model.apply({**variables, "params": params}, jnp.ones((5, 3)),
                          jnp.arange(5), cond, train=True, mutable=["batch_stats"])[0]
        return jnp.sum(out ** 2)

    grads = jax.grad(loss)(variables["params"])
    for name in ("anchor_kernel", "anchor_bias", "anchor_log_var", "anchor_basis"):
        assert not np.asarray(grads[name]).any()


def test_condition_map_is_a_cross_fitted_ridge_from_features():
    from coherent_jax.anchor import apply_condition_map, fit_condition_map  # noqa: PLC0415

    rng = np.random.default_rng(0)
    features = rng.standard_normal((300, 50))  # wide source features
    target = features[:, :3] @ rng.standard_normal((3, 4)) + 0.1 * rng.standard_normal((300, 4))
    cmap, oof = fit_condition_map(features, target)
    assert cmap["kernel"].shape == (50, 4) and oof.shape == (300, 4)
    fitted = apply_condition_map(cmap, features)
    in_sample = np.mean((fitted - target) ** 2)
    out_of_fold = np.mean((oof - target) ** 2)
    assert in_sample < out_of_fold < 0.05  # held-out predictions are honest, and good


def test_a_source_sent_one_to_one_gives_its_training_rows_the_maps_own_fit():
    from coherent_jax.anchor import (apply_condition_map, covariance, fit_anchors,  # noqa: PLC0415
                                     fit_condition_map, one_to_one)

    rng = np.random.default_rng(1)
    narrow = rng.standard_normal((400, 5))  # 5 features -> 8 predictions (+ 3 components)
    target = narrow @ rng.standard_normal((5, 8)) + 0.5 * rng.standard_normal((400, 8))
    cmap, values = fit_condition_map(narrow, target, components=3)
    assert one_to_one(cmap, 8)
    np.testing.assert_allclose(values, apply_condition_map(cmap, narrow), atol=1e-4)
    wide = np.c_[narrow, rng.standard_normal((400, 7))]  # 12 features -> 8: out of fold
    wide_map, wide_values = fit_condition_map(wide, target)
    assert not one_to_one(wide_map, 8)
    assert np.abs(wide_values - apply_condition_map(wide_map, wide)).max() > 1e-3
    # the linear anchor regresses on a prediction fitted to these rows, with held-out
    # residuals, instead of taking it as the mean with its (too small) in-sample residuals
    present = np.ones(400, bool)
    as_mean = fit_anchors(target, present, [(values, present)], predictions=True)
    regressed = fit_anchors(target, present, [(values, present)], predictions=True,
                            in_sample=[True])
    np.testing.assert_allclose(as_mean["kernel"][1][:8], np.eye(8))
    assert not np.allclose(regressed["kernel"][1][:8], np.eye(8), atol=1e-3)
    assert np.trace(covariance(regressed, 1)) > np.trace(covariance(as_mean, 1))


def test_the_model_set_gives_a_one_to_one_sources_training_rows_its_maps_fit():
    from coherent_jax.anchor import apply_condition_map  # noqa: PLC0415
    from coherent_jax.data import LinearGaussianModel, linear_gaussian_cohort, paper_split  # noqa: PLC0415
    from coherent_jax.model_set import ModelSetConfig, _target_inputs  # noqa: PLC0415

    gauss = LinearGaussianModel.random({"a": 6, "narrow": 4, "wide": 9}, num_factors=2,
                                       noise_std=0.3, seed=0)
    cohort = paper_split(linear_gaussian_cohort(gauss, 300, seed=0), seed=42)
    inputs = _target_inputs(cohort, "a", ModelSetConfig(condition_components=0).conditioning,
                            cohort, None)
    assert inputs.sources == ("narrow", "wide") and inputs.in_sample == (True, False)
    train = cohort.split("train")
    for source, (values, _), own in zip(inputs.sources, inputs.conds, inputs.in_sample):
        fitted = apply_condition_map(inputs.maps[source], train.matrix(source)[0])
        assert np.allclose(values, fitted, atol=1e-4) == own  # else out of fold


def test_condition_map_appends_the_sources_principal_components_which_linear_anchors_ignore():
    from coherent_jax.anchor import apply_condition_map, fit_condition_map  # noqa: PLC0415

    rng = np.random.default_rng(0)
    features = rng.standard_normal((300, 12)) @ rng.standard_normal((12, 12))
    target = features[:, :3] @ rng.standard_normal((3, 4)) + 0.1 * rng.standard_normal((300, 4))
    plain, plain_oof = fit_condition_map(features, target)
    cmap, oof = fit_condition_map(features, target, components=3)
    assert cmap["kernel"].shape == (12, 7) and oof.shape == (300, 7)
    np.testing.assert_allclose(cmap["kernel"][:, :4], plain["kernel"], rtol=1e-6)
    np.testing.assert_allclose(oof[:, :4], plain_oof, rtol=1e-5, atol=1e-6)
    scores = oof[:, 4:]  # the components: in-sample, what the map gives these rows
    np.testing.assert_allclose(scores, apply_condition_map(cmap, features)[:, 4:], atol=1e-4)
    np.testing.assert_allclose(np.cov(scores.T, bias=True), np.eye(3), atol=1e-4)
    standard = (features - features.mean(0)) / features.std(0)
    leading = np.linalg.svd(standard, full_matrices=False)[2][:3]  # [3, 12] axes
    assert np.allclose(np.abs(np.corrcoef((standard @ leading.T).T, scores.T)[:3, 3:]),
                       np.eye(3), atol=1e-5)
    # the linear anchors read the predictions alone: the same anchors, zero rows for the rest
    x, present = target, np.ones(300, bool)
    second = features[:, 3:6] @ rng.standard_normal((3, 4))
    with_pcs = [(oof, present), (np.c_[second, scores], present)]
    without = [(oof[:, :4], present), (second, present)]
    a = fit_anchors(x, present, with_pcs, predictions=True)
    b = fit_anchors(x, present, without, predictions=True)
    assert a["kernel"].shape == (4, 14, 4) and b["kernel"].shape == (4, 8, 4)
    np.testing.assert_allclose(a["kernel"][:, [0, 1, 2, 3, 7, 8, 9, 10]], b["kernel"],
                               rtol=1e-5, atol=1e-6)
    assert not a["kernel"][:, [4, 5, 6, 11, 12, 13]].any()
    for name in ("bias", "log_var"):
        np.testing.assert_allclose(a[name], b[name], rtol=1e-5, atol=1e-6)


def _wide_regression(n, seed):
    """Two draws of n rows: 400 features = 10 factors + noise, a 3-d target of the factors
    (p >> n: a ridge fits its own rows far better than new ones)."""
    rng = np.random.default_rng(seed)
    loadings, weights = rng.standard_normal((10, 400)), rng.standard_normal((10, 3))

    def draw():
        factors = rng.standard_normal((n, 10))
        return (factors @ loadings + 3.0 * rng.standard_normal((n, 400)),
                factors @ weights + rng.standard_normal((n, 3)))
    return draw(), draw()


def test_distilled_condition_map_is_a_ridge_on_leave_one_out_predictions():
    from sklearn.linear_model import Ridge, RidgeCV  # noqa: PLC0415

    from coherent_jax.anchor import ALPHAS, distilled_ridge, fit_condition_map  # noqa: PLC0415

    (features, target), _ = _wide_regression(40, seed=1)
    plain, _ = distilled_ridge(features, target, ALPHAS, 0.0, cut=False)
    teacher = RidgeCV(alphas=ALPHAS, alpha_per_target=True).fit(features, target)
    np.testing.assert_allclose(plain, teacher.coef_.T, rtol=1e-4, atol=1e-6)
    loo = np.zeros_like(target)  # brute-force leave-one-out at the teacher's alphas
    for i in range(len(features)):
        keep = np.arange(len(features)) != i
        for j, alpha in enumerate(teacher.alpha_):
            loo[i, j] = Ridge(alpha=alpha).fit(features[keep], target[keep, j]).predict(
                features[i:i + 1])[0]
    for share in (1.0, 0.5):
        kernel, bias = distilled_ridge(features, target, ALPHAS, share, cut=False)
        cmap = {"kernel": kernel, "bias": bias}
        mixed = (1 - share) * target + share * loo
        expected = [Ridge(alpha=a).fit(features, mixed[:, j]) for j, a in enumerate(teacher.alpha_)]
        np.testing.assert_allclose(cmap["kernel"], np.stack([e.coef_ for e in expected], 1),
                                   rtol=1e-4, atol=1e-6)
        np.testing.assert_allclose(cmap["bias"], [e.intercept_ for e in expected], atol=1e-5)
    full, _ = fit_condition_map(features, target, distill=True)
    np.testing.assert_allclose(full["kernel"], distilled_ridge(features, target, ALPHAS, 1.0)[0],
                               rtol=1e-4, atol=1e-6)


def test_distillation_closes_the_gap_between_training_rows_and_new_ones():
    from coherent_jax.anchor import ALPHAS, distilled_ridge  # noqa: PLC0415

    (features, target), (new_features, new_target) = _wide_regression(150, seed=2)

    def errors(share, cut):
        kernel, bias = distilled_ridge(features, target, ALPHAS, share, cut)
        return [np.mean((f @ kernel + bias - t) ** 2)
                for f, t in ((features, target), (new_features, new_target))]

    (plain_in, plain_new), (full_in, full_new) = errors(0.0, False), errors(1.0, False)
    assert plain_in < 0.3 * plain_new  # the plain ridge fits its own rows far better
    assert 0.7 * full_new < full_in < full_new  # the gap mostly closed
    assert full_new < 1.1 * plain_new  # at a small price on new rows
    # on the 10 factors' directions alone the ridge fits little noise: new rows predicted
    # better, and its own rows hardly better than new ones even undistilled
    (cut_in, cut_new), (both_in, both_new) = errors(0.0, True), errors(1.0, True)
    assert cut_new < 0.95 * plain_new and 0.7 * cut_new < cut_in
    assert 0.7 * both_new < both_in < both_new and both_new < 1.1 * cut_new


def test_the_ridge_cuts_to_the_leading_directions_by_exact_leave_one_out(monkeypatch):
    from sklearn.linear_model import Ridge  # noqa: PLC0415

    from coherent_jax import anchor  # noqa: PLC0415
    from coherent_jax.anchor import (ALPHAS, _leave_one_out_errors,  # noqa: PLC0415
                                     distilled_ridge, rank_grid)

    (features, target), (new_features, new_target) = _wide_regression(120, seed=3)
    centred = features - features.mean(axis=0)
    u, s, vt = np.linalg.svd(centred, full_matrices=False)
    ranks, alphas = [3, 10, 40], [1.0, 100.0]
    errors = _leave_one_out_errors(u, s, target - target.mean(axis=0), alphas, ranks)
    for i, r in enumerate(ranks):  # brute force on the fixed directions' scores
        scores = centred @ vt[:r].T
        for a, alpha in enumerate(alphas):
            loo = np.zeros_like(target)
            for row in range(len(target)):
                keep = np.arange(len(target)) != row
                loo[row] = Ridge(alpha=alpha).fit(scores[keep], target[keep]).predict(
                    scores[row:row + 1])[0]
            np.testing.assert_allclose(errors[i, a], ((target - loo) ** 2).mean(axis=0),
                                       rtol=1e-6)
    assert rank_grid(20) == [1, 2, 3, 4, 6, 8, 11, 16, 20]
    chosen = _leave_one_out_errors(u, s, target - target.mean(axis=0), ALPHAS,
                                   rank_grid(len(s))).min(axis=1).sum(axis=1)
    assert rank_grid(len(s))[int(np.argmin(chosen))] == 11  # the grid's count nearest 10
    kernel, bias = distilled_ridge(features, target, ALPHAS, 0.0)
    plain = distilled_ridge(features, target, ALPHAS, 0.0, cut=False)
    new = [np.mean((new_features @ k + b - new_target) ** 2) for k, b in ((kernel, bias), plain)]
    assert new[0] < 0.95 * new[1]  # 1.19 against 1.27
    monkeypatch.setattr(anchor, "CUT_TEST_Z", 1e9)  # the cut must lead by the paired test
    np.testing.assert_allclose(distilled_ridge(features, target, ALPHAS, 0.0)[0], plain[0])


@pytest.mark.slow  # trains models / samples long chains
def test_zero_training_steps_keep_anchored_models_as_their_anchors():
    import pytest  # noqa: PLC0415

    from coherent_jax.data import LinearGaussianModel, linear_gaussian_cohort, paper_split  # noqa: PLC0415
    from coherent_jax.model_set import ModelSetConfig, train_model_set  # noqa: PLC0415

    gauss = LinearGaussianModel.random({"a": 4, "b": 4}, num_factors=2, noise_std=0.3, seed=0)
    cohort = paper_split(linear_gaussian_cohort(gauss, 200, seed=0), seed=42)
    config = ModelSetConfig(hidden_dim=16, num_layers=2, time_embed_dim=8, cond_embed_dim=4,
                            batch_size=32, train_steps=0, eval_every=10, val_sampler="ddim",
                            val_sample_steps=5)
    models, reports = train_model_set(cohort, config, seed=0, features=cohort)
    out = models.targets["a"].specialists["params"]["out"]
    assert not np.asarray(out["kernel"]).any()  # no correction was learned
    assert [h["step"] for h in reports["a"]["specialists"]["history"]] == [0]
    import dataclasses  # noqa: PLC0415

    with pytest.raises(ValueError, match="only anchored models"):
        train_model_set(cohort, dataclasses.replace(config, anchored=False), seed=0,
                        features=cohort)
    # distill_conditions reaches the condition maps: the model set's map of b -> a is the
    # distilled fit on the training rows
    from coherent_jax.anchor import fit_condition_map  # noqa: PLC0415

    distilled, _ = train_model_set(cohort, dataclasses.replace(config, distill_conditions=True),
                                   seed=0, features=cohort, targets=("a",))
    train = cohort.split("train")
    expected, _ = fit_condition_map(train.matrix("b")[0], train.matrix("a")[0], distill=True)
    got = distilled.targets["a"].condition_maps["b"]
    # (a Gaussian cohort: no source's principal components show clusters, none are kept)
    np.testing.assert_allclose(got["kernel"], expected["kernel"], rtol=1e-5, atol=1e-6)
    assert not np.allclose(got["kernel"], models.targets["a"].condition_maps["b"]["kernel"])
