"""The mixture cohort: exact conditional draws of non-Gaussian, subtype-driven modalities."""

import numpy as np
import pytest

from coherent_jax.data.mixture import LINKS, MixtureModel, hidden_subtype_model, mixture_cohort


def _moments(values: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    return values.mean(axis=0), np.cov(values, rowvar=False)


@pytest.mark.parametrize("given,targets", [(("hide",), ("reveal", "target")),
                                           (("reveal",), ("target",)),
                                           (("hide", "target"), ("reveal",))])
def test_conditional_draws_with_the_marginal_give_the_joint(given, targets):
    """x_S from the model, then x_T from `conditional_draws`: the pairs must have the model's
    joint law. A wrong mixture weight, component mean or covariance shows in the moments."""
    model = hidden_subtype_model(width=3, seed=1)
    n = 60_000
    joint, _ = model.sample(n, seed=2)
    given_values = {m: joint[m] for m in given}
    drawn = model.conditional_draws(targets, given_values, num=1, seed=3)
    working = lambda m, v: LINKS[model.links[m]][1](v)  # moments of the heavy-tailed sinh
    pairs = np.concatenate([working(m, joint[m]) for m in given]  # link in its working scale
                           + [working(t, drawn[t][0]) for t in targets], axis=1)
    reference, _ = model.sample(n, seed=4)
    ref = np.concatenate([working(m, reference[m]) for m in given + targets], axis=1)
    mean_d, cov_d = _moments(pairs)
    mean_r, cov_r = _moments(ref)
    scale = np.sqrt(np.diag(cov_r))
    assert np.abs((mean_d - mean_r) / scale).max() < 0.05
    assert np.abs((cov_d - cov_r) / np.outer(scale, scale)).max() < 0.06
    # the modes: the share of draws above each target feature's median, as in the model
    assert np.abs((pairs > np.median(ref, axis=0)).mean(axis=0) - 0.5).max() < 0.02


def test_a_blind_modality_leaves_the_subtype_unknown_and_a_revealing_one_tells_it():
    model = hidden_subtype_model(width=8, seed=0)
    values, subtype = model.sample(3000, seed=1)
    blind = model.subtype_posterior({"hide": values["hide"]})
    told = model.subtype_posterior({"reveal": values["reveal"]})
    assert np.abs(blind - 1 / 3).max() < 1e-9  # means equal: the likelihood does not move
    assert (told.argmax(axis=1) == subtype).mean() > 0.97
    # the posterior is calibrated: the true subtype's average probability is the hit rate
    np.testing.assert_allclose(told.mean(axis=0), np.bincount(subtype) / 3000, atol=0.02)


def test_given_the_blind_modality_the_target_has_several_modes():
    model = hidden_subtype_model(width=8, seed=0)
    values, _ = model.sample(5, seed=1)
    draws = model.conditional_draws(["target"], {"hide": values["hide"]}, num=3000, seed=2)
    u = np.arcsinh(draws["target"][:, 0])  # [num, D] one patient, working scale
    centres = model.means["target"]  # [K, D]
    nearest = np.argmin(((u[:, None, :] - centres[None]) ** 2).sum(-1), axis=1)
    assert np.bincount(nearest, minlength=3).min() > 600  # every mode drawn, about 1/3 each
    told = model.conditional_draws(["target"], {"reveal": values["reveal"]}, num=3000, seed=2)
    u = np.arcsinh(told["target"][:, 0])
    nearest = np.argmin(((u[:, None, :] - centres[None]) ** 2).sum(-1), axis=1)
    assert np.bincount(nearest, minlength=3).max() > 2900  # one mode


def test_links_keep_their_domain_and_draws_are_seeded():
    model = MixtureModel.random({"a": 4, "b": 5}, {"a": 2.0, "b": 0.0},
                                links={"a": "exp", "b": "sinh"}, seed=0)
    values, _ = model.sample(100, seed=0)
    assert (values["a"] > 0).all()
    one = model.conditional_draws(["a"], {"b": values["b"]}, num=4, seed=7)["a"]
    assert one.shape == (4, 100, 4) and (one > 0).all()
    np.testing.assert_array_equal(one, model.conditional_draws(["a"], {"b": values["b"]},
                                                               num=4, seed=7)["a"])
    marginal = model.conditional_draws(["a", "b"], {}, num=10, seed=0)
    assert marginal["a"].shape == (10, 1, 4) and marginal["b"].shape == (10, 1, 5)


def test_bad_input_is_refused_with_the_fix():
    model = hidden_subtype_model(width=3)
    with pytest.raises(ValueError, match="expected"):
        model.conditional_draws(["target"], {"hide": np.zeros((2, 4))}, num=1, seed=0)
    with pytest.raises(ValueError, match="not given"):
        model.conditional_draws(["hide"], {"hide": np.zeros((2, 3))}, num=1, seed=0)
    with pytest.raises(ValueError, match="separation"):
        MixtureModel.random({"a": 2, "b": 2}, {"a": 1.0})
    with pytest.raises(ValueError, match="links"):
        MixtureModel.random({"a": 2}, {"a": 1.0}, links={"a": "log"})


def test_cohort_labels_the_subtype():
    cohort = mixture_cohort(hidden_subtype_model(width=3), 50, seed=0,
                            missing_rates={"hide": 0.2})
    assert set(cohort.labels["cancer_type"].dropna()) <= {"S0", "S1", "S2"}
    assert cohort.tables["target"].shape == (50, 3)
    assert cohort.tables["hide"].isna().all(axis=1).sum() > 0


def test_pipeline_source_mixture_is_the_standard_hard_case():
    from coherent_jax.pipeline import DataConfig, load_raw_cohort  # noqa: PLC0415

    raw = load_raw_cohort(DataConfig(source="mixture", num_samples=200, missing="0.2"))
    assert raw.modalities == ("hide", "reveal", "target")
    values, _ = hidden_subtype_model(seed=42).sample(200, seed=42)
    complete = raw.split("test").sample_ids[raw.split("test").complete]
    rows = [int(i.split("-")[1]) for i in complete]
    np.testing.assert_allclose(raw.tables["target"].loc[complete].to_numpy(),
                               values["target"][rows], rtol=1e-6)
