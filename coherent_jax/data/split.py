"""The paper's train/val/test split, per cancer type, without discarding any sample."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd

from coherent_jax.data import validate
from coherent_jax.data.cohort import Cohort


def paper_split(cohort: Cohort, val_fraction: float = 0.05, test_fraction: float = 0.15,
                seed: int = 42, by: str = "cancer_type") -> Cohort:
    """Assigns every sample to train, val or test, the paper's way.

    For each group (cancer type) of n samples: val gets floor(val_fraction * n) and test
    floor(test_fraction * n) samples, both drawn at random from the group's COMPLETE samples
    (all modalities present); every other sample, complete or not, is train. A group with too
    few complete samples gives what it has to test first, then val (small types get 0). Samples
    without a group label form one group of their own. Unlike the original code, no sample is
    ever dropped.

    The draw depends only on the seed, the sample IDs, the groups and which samples are
    complete: not on the order of rows in the input files.

    Args:
        cohort: the cohort; any existing split is replaced.
        val_fraction: share of each group for validation.
        test_fraction: share of each group for test.
        seed: numpy seed (the paper used 42).
        by: the labels column to stratify by.

    Returns:
        The cohort with `splits` filled for every sample.

    Raises:
        DataError: val/test samples are requested but the cohort has no complete sample at all.
    """
    if not (0 <= val_fraction and 0 <= test_fraction and val_fraction + test_fraction < 1):
        raise ValueError(f"fractions must be >= 0 and sum below 1, got val={val_fraction}, "
                         f"test={test_fraction}.")
    ids = cohort.sample_ids
    groups = cohort.labels[by].astype("string").fillna("<no label>").to_numpy()  # [N]
    complete = cohort.complete  # [N]
    order = np.argsort(ids.to_numpy(dtype=str), kind="stable")
    split = np.full(len(ids), "train", dtype=object)
    rng = np.random.default_rng(seed)
    requested = 0
    for group in sorted(set(groups)):
        members = order[groups[order] == group]  # sorted by sample ID
        n_val = math.floor(val_fraction * len(members) + 1e-9)
        n_test = math.floor(test_fraction * len(members) + 1e-9)
        requested += n_val + n_test
        pool = rng.permutation(members[complete[members]])
        n_test = min(n_test, len(pool))
        n_val = min(n_val, len(pool) - n_test)
        split[pool[:n_test]] = "test"
        split[pool[n_test:n_test + n_val]] = "val"
    if requested and not complete.any():
        raise validate.DataError(
            f"cohort {cohort.name!r} has no complete sample (one with all of "
            f"{list(cohort.modalities)}), so no validation or test set can be drawn. Check the "
            "sample IDs match across modalities, drop a modality, or pass val_fraction=0 and "
            "test_fraction=0.")
    return cohort.replace(splits=pd.Series(split, index=ids, dtype="string", name="split"))
