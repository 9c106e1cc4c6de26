"""The paper's split rule, stage encoding and missingness induction."""

import math

import numpy as np
import pandas as pd
import pytest

from coherent_jax.data import (Cohort, encode_stage, induce_missingness, paper_split, tcga_like,
                               tcga_like_rates)


@pytest.fixture(scope="module")
def cohort():
    return tcga_like(600, seed=3, num_types=5, scale=0.002)


def test_split_sizes_per_type_from_complete_samples(cohort):
    split = paper_split(cohort).splits
    assert split.notna().all()  # nobody discarded
    types = cohort.labels["cancer_type"]
    for t, members in types.groupby(types).groups.items():
        counts = split.loc[members].value_counts()
        assert counts.get("val", 0) == math.floor(0.05 * len(members))
        assert counts.get("test", 0) == math.floor(0.15 * len(members))
    held = split.isin(["val", "test"]).to_numpy()
    assert cohort.complete[held].all()
    assert (~cohort.complete).any()  # incomplete samples exist, and all went to train


def test_seed_reproduces_split_independent_of_row_order(cohort):
    a = paper_split(cohort, seed=42).splits
    b = paper_split(cohort, seed=42).splits
    pd.testing.assert_series_equal(a, b)
    shuffled = cohort.subset(cohort.sample_ids[::-1])
    c = paper_split(shuffled, seed=42).splits
    pd.testing.assert_series_equal(a, c.loc[a.index])
    assert not a.equals(paper_split(cohort, seed=7).splits)


def test_small_types_get_no_holdout():
    tables = {"a": pd.DataFrame({"x": np.arange(30.0)}, index=[f"s{i:02d}" for i in range(30)])}
    labels = pd.DataFrame({"cancer_type": ["BIG"] * 25 + ["SMALL"] * 5}, index=tables["a"].index)
    split = paper_split(Cohort.from_tables(tables, labels)).splits
    assert (split.iloc[25:] == "train").all()
    assert (split.iloc[:25] == "test").sum() == 3 and (split.iloc[:25] == "val").sum() == 1


def test_encode_stage():
    got = encode_stage(["Stage 0", "Stage I", "stage ia", "IB", "Stage IIA", "stage iib",
                        "Stage IIIC", "Stage IV", "stage ivb", "Stage X", "not reported", None,
                        3, "Stage Tis"])
    assert got.tolist()[:9] == [1, 1, 1, 1, 2, 2, 3, 4, 4]
    assert got.iloc[9:12].isna().all() and got.iloc[12] == 3 and got.iloc[13] is pd.NA
    assert str(got.dtype) == "Int64"


def test_induced_missingness_train_only_seeded_and_recorded():
    complete = tcga_like(400, seed=5, num_types=3, scale=0.002, missing_rates=None)
    assert complete.complete.all()
    split = paper_split(complete)
    rates = {"rppa": 0.5, "wsi": 0.5, "cna": 0.5, "rna": 0.5}
    holed = induce_missingness(split, rates, seed=1)
    again = induce_missingness(split, rates, seed=1)
    pd.testing.assert_frame_equal(holed.induced, again.induced)
    assert not holed.induced.equals(induce_missingness(split, rates, seed=2).induced)
    train = (holed.splits == "train").to_numpy()
    assert holed.complete[~train].all()  # val/test untouched
    assert holed.presence.to_numpy().any(axis=1).all()  # nobody lost everything
    share = holed.induced.to_numpy()[train].mean(axis=0)
    assert np.all(np.abs(share - 0.5) < 0.1)
    np.testing.assert_array_equal(holed.induced.to_numpy(), ~holed.presence.to_numpy())
    for m in holed.modalities:
        removed = holed.induced.index[holed.induced[m].to_numpy()]
        pd.testing.assert_frame_equal(holed.held_out[m].loc[removed],
                                      complete.tables[m].loc[removed])


def test_induce_everything_keeps_one_modality_each():
    complete = tcga_like(50, seed=5, num_types=2, scale=0.002, missing_rates=None)
    holed = induce_missingness(complete, 1.0, seed=0, splits=None)
    assert (holed.presence.sum(axis=1) == 1).all()


def test_tcga_like_rates_names():
    assert tcga_like_rates(["cnv", "rnaseq"]) == {"cnv": 0.04, "rnaseq": 0.03}
    with pytest.raises(KeyError, match="explicit rates"):
        tcga_like_rates(["ct_scan"])
