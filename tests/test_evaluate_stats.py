"""Benjamini-Hochberg against a hand-computed example; paired one-sided t-tests."""

import numpy as np
import pandas as pd
import pytest

from coherent_jax.evaluate import benjamini_hochberg, paired_tests


def test_benjamini_hochberg_hand_computed():
    p = [0.01, 0.04, 0.03, 0.005, 0.20]
    # sorted: 0.005, 0.01, 0.03, 0.04, 0.20 -> p * 5 / rank: 0.025, 0.025, 0.05, 0.05, 0.20
    # (already monotone), back in the input order:
    np.testing.assert_allclose(benjamini_hochberg(p), [0.025, 0.05, 0.05, 0.025, 0.20])


def test_benjamini_hochberg_step_up_monotonicity_cap_and_nan():
    # sorted 0.02, 0.03 -> 0.02*2/1 = 0.04, 0.03*2/2 = 0.03 -> step-up min gives 0.03 for both
    np.testing.assert_allclose(benjamini_hochberg([0.03, 0.02]), [0.03, 0.03])
    q = benjamini_hochberg([0.9, np.nan, 0.8])
    assert np.isnan(q[1]) and q[0] == pytest.approx(0.9) and q[2] == pytest.approx(0.9)
    assert benjamini_hochberg([0.7, 0.9, 1.0]).max() <= 1.0


def _results(seeds=8, effect=0.1, seed=0):
    rng = np.random.default_rng(seed)
    rows = []
    for s in range(seeds):
        base = 0.6 + 0.02 * rng.normal()
        for removed in ("rna", "rna+cna"):
            rows += [{"seed": s, "removed": removed, "fill": "none", "score": base},
                     {"seed": s, "removed": removed, "fill": "coherent",
                      "score": base + effect + 0.01 * rng.normal()},
                     {"seed": s, "removed": removed, "fill": "mean",
                      "score": base + 0.01 * rng.normal()}]
    return pd.DataFrame(rows)


def test_paired_tests_find_the_real_improvement_only():
    table = paired_tests(_results(), "score", against="none")
    assert len(table) == 4 and set(table["method"]) == {"coherent", "mean"}
    coherent = table[table["method"] == "coherent"]
    assert (coherent["q"] < 1e-4).all() and coherent["significant"].all()
    assert coherent["mean_difference"].between(0.09, 0.11).all()
    assert not table[table["method"] == "mean"]["significant"].any()
    np.testing.assert_allclose(table["q"], benjamini_hochberg(table["p"]))
    worse = paired_tests(_results(effect=-0.1), "score", against="none")
    assert not worse["significant"].any()  # one-sided: a decrease is not an improvement


def test_paired_tests_reject_duplicates_and_unknown_reference():
    results = _results()
    with pytest.raises(ValueError, match="several rows"):
        paired_tests(pd.concat([results, results]), "score", against="none")
    with pytest.raises(ValueError, match="reference 'knn'"):
        paired_tests(results, "score", against="knn")
