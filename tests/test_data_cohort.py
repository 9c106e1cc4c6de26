"""Cohort container: alignment, presence, views, patterns."""

import dataclasses

import numpy as np
import pandas as pd
import pytest

from coherent_jax.data import Cohort, DataError


def _tables():
    a = pd.DataFrame({"f1": [1.0, 2.0, 3.0], "f2": [4.0, 5.0, 6.0]}, index=["s3", "s1", "s2"])
    b = pd.DataFrame({"g": [7.0, np.nan, 9.0]}, index=["s1", "s2", "s4"])  # s2 all-NaN
    return {"a": a, "b": b}


def test_alignment_presence_and_matrix():
    cohort = Cohort.from_tables(_tables())
    assert list(cohort.sample_ids) == ["s1", "s2", "s3", "s4"]
    assert cohort.modalities == ("a", "b")
    assert cohort.presence["a"].tolist() == [True, True, True, False]
    assert cohort.presence["b"].tolist() == [True, False, False, True]
    values, present = cohort.matrix("a")
    assert values.dtype == np.float32 and present.dtype == bool
    np.testing.assert_array_equal(values, [[2, 5], [3, 6], [1, 4], [0, 0]])
    raw, _ = cohort.arrays("b")
    assert np.isnan(raw[1]).all() and raw[3, 0] == 9
    assert cohort.feature_names == {"a": ["f1", "f2"], "b": ["g"]}
    assert cohort.complete.tolist() == [True, False, False, False]


def test_patterns_counts():
    cohort = Cohort.from_tables(_tables())
    patterns = cohort.patterns()
    assert patterns["count"].sum() == 4
    as_sets = {(bool(r.a), bool(r.b)): int(r["count"]) for _, r in patterns.iterrows()}
    assert as_sets == {(True, True): 1, (True, False): 2, (False, True): 1}
    assert patterns["count"].iloc[0] == 2


def test_matrix_refuses_holes_inside_present_rows():
    tables = _tables()
    tables["a"].iloc[0, 1] = np.nan
    cohort = Cohort.from_tables(tables)
    with pytest.raises(DataError, match="sample 's3', feature 'f2'.*Preprocessor"):
        cohort.matrix("a")


def test_split_and_subset_views():
    cohort = Cohort.from_tables(_tables(), splits={"s1": "test", "s2": "train", "s3": "train",
                                                   "s4": "train"})
    train = cohort.split("train")
    assert list(train.sample_ids) == ["s2", "s3", "s4"]
    assert train.tables["a"].index.equals(train.labels.index)
    sub = cohort.subset(["s4", "s1"])
    np.testing.assert_array_equal(sub.matrix("b")[0][:, 0], [9, 7])
    with pytest.raises(KeyError, match="nope"):
        cohort.subset(["nope"])
    with pytest.raises(ValueError, match="unknown split"):
        cohort.split("training")


def test_no_split_yet_is_a_clear_error():
    with pytest.raises(DataError, match="paper_split"):
        Cohort.from_tables(_tables()).split("train")


def test_labels_are_standardised():
    labels = pd.DataFrame({"stage": ["Stage IIA", "stage iv", "Stage X"], "extra": [1, 2, 3]},
                          index=["s1", "s2", "s3"])
    cohort = Cohort.from_tables(_tables(), labels)
    assert list(cohort.labels.columns) == ["cancer_type", "stage", "os_time", "os_event", "extra"]
    assert cohort.labels["stage"].tolist()[:2] == [2, 4]
    assert cohort.labels["stage"].isna().tolist() == [False, False, True, True]
    assert cohort.labels.index.equals(cohort.sample_ids)


def test_cohort_is_frozen_and_validated():
    cohort = Cohort.from_tables(_tables())
    with pytest.raises(dataclasses.FrozenInstanceError):
        cohort.name = "x"
    with pytest.raises(DataError, match="float32"):
        cohort.replace(tables={"a": cohort.tables["a"].astype(np.float64),
                               "b": cohort.tables["b"]})
