"""The closed form ('gaussian'): on a linear-Gaussian cohort its draws follow the exact joint
conditional of the missing modalities (means, within- and cross-modality covariances), from
any set of given modalities; it keeps no row, and the same seed gives the same draws."""

import numpy as np
import pandas as pd
import pytest

from coherent_jax.closed_form import ClosedForm
from coherent_jax.data import LinearGaussianModel, linear_gaussian_cohort
from coherent_jax.impute import ImputeConfig, SamplerCalls, impute
from coherent_jax.model_set import ModelSet

MODEL = LinearGaussianModel.random({"a": 5, "b": 4, "c": 3}, num_factors=3, noise_std=0.5,
                                   seed=3)


def _train(n=4000):
    cohort = linear_gaussian_cohort(MODEL, n, seed=0)
    return cohort.replace(splits=pd.Series("train", index=cohort.sample_ids, dtype="string"))


@pytest.fixture(scope="module")
def form():
    train = _train()
    return ClosedForm.fit(train, train)  # identity latents: latent = features


def test_every_source_set_has_the_exact_conditional(form):
    assert sorted(form.patterns) == ["a", "a+b", "a+c", "b", "b+c", "c"]
    given = {m: v[:200] for m, v in MODEL.sample(200, seed=5).items()}
    for key, pattern in form.patterns.items():
        mean, cov = MODEL.joint_conditional(pattern.targets,
                                            {m: given[m] for m in pattern.sources})
        ours = pattern.mean([given[m] for m in pattern.sources])
        scale = np.sqrt(np.diag(cov))
        assert np.sqrt(np.mean(((ours - mean) / scale) ** 2)) < 0.1, key
        np.testing.assert_allclose(pattern.covariance(), cov, atol=0.06 * scale.max() ** 2,
                                   err_msg=key)


def test_impute_draws_missing_modalities_jointly_and_exactly(form):
    """Patients given 'a' and missing 'b' and 'c': the draws' within- and cross-modality
    covariance around their conditional mean is the exact one."""
    models = ModelSet("linear", 1000, {}, form)
    test = linear_gaussian_cohort(MODEL, 300, seed=9)
    holed = test.replace(tables={m: (t if m == "a" else
                                     pd.DataFrame(np.nan, index=t.index, columns=t.columns,
                                                  dtype=np.float32))
                                 for m, t in test.tables.items()})
    result = impute(holed, models, ImputeConfig(method="gaussian", num_samples=200), seed=0,
                    feature_cohort=holed)
    assert result.imputed[["b", "c"]].all().all() and not result.imputed["a"].any()
    draws = np.concatenate([result.draws[m].to_numpy(np.float64).reshape(200, 300, -1)
                            for m in ("b", "c")], axis=2)  # [K, N, 7]
    mean, cov = MODEL.joint_conditional(("b", "c"), {"a": test.tables["a"].to_numpy()})
    centred = (draws - mean[None]).reshape(-1, draws.shape[2])
    np.testing.assert_allclose(centred.mean(0), 0, atol=0.1)
    np.testing.assert_allclose(np.cov(centred.T), cov, atol=0.08)  # includes b-c blocks
    again = impute(holed, models, ImputeConfig(method="gaussian", num_samples=200), seed=0,
                   feature_cohort=holed)
    pd.testing.assert_frame_equal(result.draws["b"], again.draws["b"])


def test_round_trip_and_refusals(form, tmp_path):
    models = ModelSet("linear", 1000, {}, form)
    models.save(str(tmp_path / "m"))
    back = ModelSet.load(str(tmp_path / "m"))
    for key, pattern in form.patterns.items():
        np.testing.assert_allclose(back.closed_form.patterns[key].kernel, pattern.kernel,
                                   rtol=1e-5, atol=1e-6)
    with pytest.raises(ValueError, match="at least one source"):
        form.pattern([])
    old = ModelSet("linear", 1000, {}, None)
    cohort = linear_gaussian_cohort(MODEL, 10, seed=2)
    with pytest.raises(ValueError, match="lacks"):
        impute(cohort, old, ImputeConfig(method="gaussian"), feature_cohort=cohort,
               calls=SamplerCalls(order=()))


class _IdentitySpace:
    """A latent space whose latents are the features (names 'c_z<j>')."""

    feature_names = {"c": tuple(f"c_{j}" for j in range(3))}

    @staticmethod
    def width(modality):
        return 3

    @staticmethod
    def encode_values(modality, values):
        return np.asarray(values, np.float32)


def test_feature_space_closed_form_draws_the_exact_conditional():
    """The report's 'gaussian (features)': raw-feature ridge plus Ledoit-Wolf residuals, drawn
    without forming the covariance; its draws' covariance is the exact conditional one."""
    from coherent_jax.evaluate.baselines import predict_missing  # noqa: PLC0415
    from coherent_jax.evaluate.scoring import FEATURE_RIDGE_ALPHAS, feature_gaussian_draws

    train = {m: t for m, t in linear_gaussian_cohort(MODEL, 3000, seed=0).tables.items()}
    test = {m: t for m, t in linear_gaussian_cohort(MODEL, 200, seed=8).tables.items()}
    point = predict_missing("ridge", train, {m: test[m] for m in "ab"}, ("a", "b"), "c",
                            alphas=FEATURE_RIDGE_ALPHAS)
    latent, features, fitted_in, back = feature_gaussian_draws(
        point, train, ("a", "b"), "c", _IdentitySpace(), num_samples=100, seed=0)
    assert fitted_in == "features" and back is point
    draws = features.to_numpy().reshape(100, 200, 3)
    mean, cov = MODEL.conditional("c", {m: test[m].to_numpy() for m in "ab"})
    np.testing.assert_allclose(np.cov((draws - point.to_numpy()[None]).reshape(-1, 3).T), cov,
                               atol=0.05)
    np.testing.assert_allclose(point.to_numpy(), mean, atol=0.15)
    assert latent.shape == features.shape


def test_robust_covariance_keeps_each_spread_and_resists_outliers():
    from coherent_jax.residuals import robust_covariance
    rng = np.random.default_rng(0)
    scales = np.array([10.0, 1.0, 0.1])
    corr = np.array([[1.0, 0.6, 0.0], [0.6, 1.0, 0.0], [0.0, 0.0, 1.0]])
    x = rng.multivariate_normal(np.zeros(3), corr * np.outer(scales, scales), size=2000)
    clean = robust_covariance(x)
    assert 0.5 < clean[0, 1] / np.sqrt(clean[0, 0] * clean[1, 1]) < 0.7
    x[:20] *= 30.0  # 1% of heavy-tailed patients: the spreads come from the bulk
    np.testing.assert_allclose(np.sqrt(np.diag(robust_covariance(x))), scales, rtol=0.08)
    with pytest.raises(ValueError, match="residuals must be"):
        robust_covariance(np.ones(3))
