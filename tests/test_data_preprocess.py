"""Preprocessing learned on train only: drop rule, fills, z-scoring."""

import numpy as np
import pandas as pd
import pytest

from coherent_jax.data import Cohort, DataError, Preprocessor


def _cohort(rng, n_train=40, n_test=10):
    n = n_train + n_test
    ids = [f"s{i:03d}" for i in range(n)]
    rna = pd.DataFrame(rng.normal(5, 2, (n, 4)), index=ids, columns=["g0", "g1", "g2", "g3"])
    rna.iloc[:4, 0] = np.nan  # 4/40 = 10% of train missing -> dropped
    rna.iloc[:3, 1] = np.nan  # 7.5% -> kept, filled
    rna.iloc[n_train:, 2] = np.nan  # missing only in test: kept (train decides)
    cna = pd.DataFrame(rng.integers(-2, 3, (n, 3)).astype(float), index=ids,
                       columns=["c0", "c1", "c2"])
    cna.iloc[5, 1] = np.nan
    cna = cna.drop(index=ids[10:12])  # two train samples without cna
    splits = {s: ("train" if i < n_train else "test") for i, s in enumerate(ids)}
    return Cohort.from_tables({"rna": rna, "cna": cna}, splits=splits)


def test_drop_rule_fills_and_zscore():
    cohort = _cohort(np.random.default_rng(0))
    prep = Preprocessor.fit(cohort)
    assert prep.dropped["rna"] == ("g0",)
    assert prep.transforms["rna"].features == ("g1", "g2", "g3")
    assert prep.transforms["rna"].fill == "knn" and prep.transforms["cna"].fill == "median"
    out = prep.transform(cohort)
    values, present = out.split("train").matrix("rna")  # no NaN left in present rows
    np.testing.assert_allclose(values[present].mean(0), 0, atol=1e-5)
    np.testing.assert_allclose(values[present].std(0), 1, atol=1e-5)
    assert out.presence["cna"].sum() == cohort.presence["cna"].sum()  # absent stays absent
    cna_raw = cohort.tables["cna"]
    step = prep.transforms["cna"]
    filled = out.tables["cna"].iloc[5, 1] * step.std[1] + step.mean[1]
    train_rows = cna_raw.loc[cohort.splits == "train"]
    assert filled == pytest.approx(np.nanmedian(train_rows["c1"]), abs=1e-5)


def test_knn_fill_uses_nearest_train_samples():
    ids = [f"s{i:02d}" for i in range(12)]
    x = np.repeat(np.arange(6.0), 2)[:, None] * np.ones((1, 3))  # pairs of identical rows
    x[:, 2] = x[:, 0] * 10
    x[11, 2] = np.nan
    table = pd.DataFrame(x, index=ids, columns=["a", "b", "c"])
    cohort = Cohort.from_tables({"rppa": table}, splits={s: "train" for s in ids})
    prep = Preprocessor.fit(cohort, num_neighbors=1, max_missing=0.5)
    out = prep.transform(cohort).tables["rppa"]
    step = prep.transforms["rppa"]
    assert out.iloc[11, 2] * step.std[2] + step.mean[2] == pytest.approx(50.0, abs=1e-4)


def test_statistics_come_from_train_only():
    rng = np.random.default_rng(1)
    cohort = _cohort(rng)
    prep = Preprocessor.fit(cohort)
    wild = {m: t.copy() for m, t in cohort.tables.items()}
    test = (cohort.splits == "test").to_numpy()
    for m in wild:
        wild[m].iloc[test] = wild[m].iloc[test] * 100 + 1e3
    changed = cohort.replace(tables={m: t.astype(np.float32) for m, t in wild.items()})
    other = Preprocessor.fit(changed)
    for m in cohort.modalities:
        a, b = prep.transforms[m], other.transforms[m]
        assert a.features == b.features
        np.testing.assert_array_equal(a.mean, b.mean)
        np.testing.assert_array_equal(a.std, b.std)
        np.testing.assert_array_equal(a.median, b.median)
    pd.testing.assert_frame_equal(prep.transform(cohort).split("train").tables["rna"],
                                  other.transform(changed).split("train").tables["rna"])
    # and the fit really depends on train: moving train values moves the statistics
    moved = cohort.replace(tables={m: (t + 1).astype(np.float32)
                                   for m, t in cohort.tables.items()})
    assert not np.allclose(Preprocessor.fit(moved).transforms["rna"].mean,
                           prep.transforms["rna"].mean)


def test_needs_a_split():
    table = pd.DataFrame({"a": [1.0, 2.0]}, index=["x", "y"])
    with pytest.raises(DataError, match="paper_split"):
        Preprocessor.fit(Cohort.from_tables({"rna": table}))
