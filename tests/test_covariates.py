"""A known covariate as an input of the linear maps: where the relation between modalities
flips between groups, the pooled closed form and anchors cannot see it and the covariate's do;
it is saved with the models, and new patients without a known level are refused."""

import numpy as np
import pandas as pd
import pytest

from coherent_jax.closed_form import ClosedForm
from coherent_jax.covariates import Covariate
from coherent_jax.data import Cohort, paper_split
from coherent_jax.data.validate import DataError
from coherent_jax.impute import ImputeConfig, SamplerCalls, impute
from coherent_jax.model_set import ModelSet, ModelSetConfig, train_model_set


def _cohort(n: int, seed: int) -> tuple[Cohort, np.ndarray]:
    """Two groups: a = +W b + 1 in group 'x', a = -W b - 1 in group 'y' (noise 0.3); returns
    the cohort (labels column 'kind') and the exact mean of a given b [n, 3] in the cohort's
    sample order."""
    rng = np.random.default_rng(seed)
    w = np.random.default_rng(0).standard_normal((4, 3))
    b = rng.standard_normal((n, 4))
    sign = np.where(rng.random(n) < 0.5, 1.0, -1.0)[:, None]
    mean = sign * (b @ w + 1.0)
    a = mean + 0.3 * rng.standard_normal((n, 3))
    ids = [f"p{seed}_{i}" for i in range(n)]
    tables = {"a": pd.DataFrame(a, index=ids, columns=["a0", "a1", "a2"]),
              "b": pd.DataFrame(b, index=ids, columns=[f"b{j}" for j in range(4)])}
    labels = pd.DataFrame({"kind": np.where(sign[:, 0] > 0, "x", "y")}, index=ids)
    cohort = Cohort.from_tables(tables, labels)
    return cohort, pd.DataFrame(mean, index=ids).reindex(cohort.sample_ids).to_numpy()


def _holed(cohort: Cohort) -> Cohort:
    """The cohort with every 'a' row removed."""
    a = cohort.tables["a"]
    return cohort.replace(tables={"a": pd.DataFrame(np.nan, index=a.index, columns=a.columns,
                                                    dtype=np.float32), "b": cohort.tables["b"]})


def test_expand_codes_and_refusals():
    labels = pd.DataFrame({"kind": ["y", "x", "y"]}, index=["p", "q", "r"])
    cov = Covariate.fit(labels, "kind")
    assert cov.levels == ("x", "y")
    np.testing.assert_array_equal(cov.codes(labels), [1, 0, 1])
    features = np.arange(6, dtype=np.float32).reshape(3, 2)
    wide = cov.expand(features, cov.codes(labels))
    assert wide.shape == (3, 8)  # (G + 1) D + G
    np.testing.assert_array_equal(wide[:, :2], features)  # shared block
    np.testing.assert_array_equal(wide[:, 2:4], [[0, 0], [2, 3], [0, 0]])  # group 'x' block
    np.testing.assert_array_equal(wide[:, 4:6], [[0, 1], [0, 0], [4, 5]])  # group 'y' block
    assert wide.dtype == np.float32 and wide[0, 7] > 0 and wide[0, 6] == 0
    assert Covariate.from_metadata(cov.metadata()) == cov
    with pytest.raises(DataError, match="single level"):
        Covariate.fit(labels.iloc[[0, 2]], "kind")
    with pytest.raises(DataError, match="not among"):
        cov.codes(labels.rename(columns={"kind": "type"}))
    with pytest.raises(DataError, match="lack the covariate"):
        cov.codes(pd.DataFrame({"kind": ["x", None]}, index=["p", "q"]))
    with pytest.raises(DataError, match=r"levels \['z'\]"):
        cov.codes(pd.DataFrame({"kind": ["x", "z"]}, index=["p", "q"]))


def test_closed_form_with_the_covariate_finds_each_group_s_relation():
    train, _ = _cohort(1500, seed=1)
    test, exact = _cohort(300, seed=2)
    pooled = ClosedForm.fit(train, train)
    grouped = ClosedForm.fit(train, train, covariate=Covariate.fit(train.labels, "kind"))
    b = test.tables["b"].to_numpy()

    def error(form):
        mean = form.pattern(["b"]).mean([form.inputs(b, test.labels)])
        return np.mean((mean - exact) ** 2)

    assert error(grouped) < 0.02  # the exact conditional mean, up to estimation error
    assert error(pooled) > 1.0  # slopes of opposite sign average out: the pooled fit sees none
    # the covariance is that of the noise (0.09) once the group is known
    assert np.allclose(np.diag(grouped.pattern(["b"]).covariance()), 0.09, atol=0.03)


@pytest.mark.slow  # trains (zero steps) and samples
def test_models_with_a_covariate_impute_by_group_and_refuse_unknown_levels(tmp_path):
    train, _ = _cohort(600, seed=3)
    cohort = paper_split(train, seed=0, by="kind")
    config = ModelSetConfig(hidden_dim=16, num_layers=2, time_embed_dim=8, cond_embed_dim=4,
                            batch_size=32, train_steps=0, eval_every=10, val_sampler="ddim",
                            val_sample_steps=5, covariate="kind", sharpness_grid=(0.0,))
    models, _ = train_model_set(cohort, config, seed=0, features=cohort, targets=("a",))
    assert models.covariate == Covariate("kind", ("x", "y"))
    models.save(str(tmp_path / "models"))
    loaded = ModelSet.load(str(tmp_path / "models"))
    assert loaded.covariate == models.covariate
    assert loaded.closed_form.covariate == models.covariate
    test, exact = _cohort(200, seed=4)
    holed = _holed(test)
    for method in ("coherent", "gaussian"):
        out = impute(holed, loaded, ImputeConfig(method=method, num_samples=20), seed=0,
                     calls=SamplerCalls(order=("a",)), feature_cohort=holed)
        mean = out.draws["a"].groupby(level="sample_id").mean().reindex(test.sample_ids)
        assert np.mean((mean.to_numpy() - exact) ** 2) < 0.05, method
    with pytest.raises(DataError, match="lack the covariate"):
        impute(holed, loaded, ImputeConfig(method="coherent", num_samples=2),
               calls=SamplerCalls(order=("a",)),
               feature_cohort=holed.replace(labels=holed.labels.assign(kind=None)))
    with pytest.raises(DataError, match="were not among"):
        impute(holed, loaded, ImputeConfig(method="gaussian", num_samples=2),
               calls=SamplerCalls(order=("a",)),
               feature_cohort=holed.replace(labels=holed.labels.assign(kind="z")))
    with pytest.raises(ValueError, match="feature_conditions=True"):
        train_model_set(cohort, ModelSetConfig(covariate="kind", feature_conditions=False),
                        seed=0, features=cohort)
