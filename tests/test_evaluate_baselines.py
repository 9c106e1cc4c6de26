"""Baselines on a linear two-view cohort with holes: every learned baseline beats the mean."""

import numpy as np
import pandas as pd
import pytest

from coherent_jax.evaluate import predict_missing, r2


def _cohort(n_train=240, n_test=60, seed=0):
    rng = np.random.default_rng(seed)
    n = n_train + n_test
    z = rng.normal(size=(n, 3))
    ids = pd.Index([f"p{i:03d}" for i in range(n)], name="sample_id")
    tables = {
        "a": pd.DataFrame(z @ rng.normal(size=(3, 8)) + 0.1 * rng.normal(size=(n, 8)), index=ids),
        "b": pd.DataFrame(z @ rng.normal(size=(3, 5)) * 10 + 5 + 0.1 * rng.normal(size=(n, 5)),
                          index=ids, columns=[f"b{j}" for j in range(5)]),
        "c": pd.DataFrame(rng.normal(size=(n, 4)), index=ids),  # unrelated noise
    }
    train = {m: t.iloc[:n_train].copy() for m, t in tables.items()}
    train["b"].iloc[:40] = np.nan  # holes: all-NaN rows
    train["a"] = train["a"].iloc[40:80 + 40]  # holes: absent rows
    test = {m: t.iloc[n_train:] for m, t in tables.items()}
    return train, test


@pytest.mark.parametrize("method,floor,options", [
    ("knn", 0.8, {}), ("iterative", 0.95, {"max_iter": 100}), ("ridge", 0.95, {}),
    ("mlp", 0.9, {"hidden": (64,)}), ("mofa", 0.9, {})])
def test_learned_baselines_recover_a_linear_target(method, floor, options):
    if method == "mofa":
        pytest.importorskip("mofapy2")
    train, test = _cohort()
    pred = predict_missing(method, train, test, ("a",), "b", seed=0, **options)
    assert list(pred.columns) == list(test["b"].columns)
    assert pred.index.equals(test["a"].index)
    assert r2(test["b"].to_numpy(), pred.to_numpy())[0] > floor


def test_mean_baseline_is_the_training_mean():
    train, test = _cohort()
    pred = predict_missing("mean", train, test, ("a", "c"), "b")
    np.testing.assert_allclose(pred.to_numpy(), np.tile(train["b"].mean().to_numpy(), (60, 1)))
    assert abs(r2(test["b"].to_numpy(), pred.to_numpy())[0]) < 0.2


def test_bad_inputs_raise_clear_errors():
    train, test = _cohort()
    with pytest.raises(ValueError, match="unknown baseline"):
        predict_missing("magic", train, test, ("a",), "b")
    with pytest.raises(ValueError, match="also in available"):
        predict_missing("knn", train, test, ("a", "b"), "b")
    holed = dict(test, a=test["a"].copy())
    holed["a"].iloc[0] = np.nan
    with pytest.raises(ValueError, match="lack available modality 'a'"):
        predict_missing("knn", train, holed, ("a",), "b")
