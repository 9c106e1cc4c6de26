"""Inputs by sample ID: draws tables to arrays, labels joined by ID (never by row position)."""

from __future__ import annotations

import numpy as np
import pandas as pd


def join_labels(sample_ids, labels: pd.Series | pd.DataFrame, what: str = "labels"):
    """The rows of `labels` for `sample_ids`, in that order.

    Args:
        sample_ids: [N] the IDs of the evaluated samples, in row order.
        labels: Series or DataFrame indexed by sample ID (any order, may hold extra IDs).
        what: the name used in error messages.

    Returns:
        `labels` reindexed to `sample_ids` (same type as `labels`).

    Raises:
        ValueError: `labels` is not indexed by unique IDs, or lacks some of `sample_ids`.
    """
    ids = pd.Index(sample_ids)
    if not labels.index.is_unique:
        dup = labels.index[labels.index.duplicated()][:3].tolist()
        raise ValueError(f"{what} have duplicated sample IDs, e.g. {dup}; keep one row per sample.")
    missing = ids.difference(labels.index)
    if len(missing):
        raise ValueError(f"{len(missing)} of {len(ids)} sample(s) have no row in {what}, e.g. "
                         f"{missing[:3].tolist()}; {what} must be indexed by the same sample IDs "
                         "as the data (joins are by ID, never by position).")
    return labels.reindex(ids)


def draws_array(draws, sample_ids=None) -> tuple[pd.Index, np.ndarray]:
    """Draws as one array.

    Args:
        draws: DataFrame with a (sample_id, draw) MultiIndex, as `Imputation.draws[m]`; or a
            DataFrame indexed by sample_id (one draw); or an array [K, N, D] or [N, D].
        sample_ids: optional [N] order of the output rows (required to align DataFrames with
            another table; all of them must be present).

    Returns:
        (ids [N] or None for arrays without IDs, values [K, N, D] float64).

    Raises:
        ValueError: missing IDs, or draws of unequal count per sample.
    """
    if not isinstance(draws, pd.DataFrame):
        values = np.asarray(draws, dtype=np.float64)
        values = values[None] if values.ndim == 2 else values
        if values.ndim != 3:
            raise ValueError(f"draws must be [K, N, D] or [N, D], got shape {values.shape}.")
        ids = None if sample_ids is None else pd.Index(sample_ids)
        if ids is not None and len(ids) != values.shape[1]:
            raise ValueError(f"{len(ids)} sample IDs for draws of {values.shape[1]} samples.")
        return ids, values
    if isinstance(draws.index, pd.MultiIndex):
        if list(draws.index.names) != ["sample_id", "draw"]:
            raise ValueError(f"draws must have index levels ['sample_id', 'draw'], got "
                             f"{list(draws.index.names)}.")
        counts = draws.groupby(level="sample_id", sort=False).size()
        if counts.nunique() != 1:
            raise ValueError(f"draws hold {counts.min()} to {counts.max()} draws per sample; give "
                             "every sample the same K draws.")
        ids = (pd.Index(sample_ids) if sample_ids is not None
               else pd.Index(counts.index, name="sample_id"))
        values = np.stack([join_labels(ids, draws.xs(d, level="draw"), "draws").to_numpy(np.float64)
                           for d in sorted(draws.index.get_level_values("draw").unique())])
        return ids, values
    ids = pd.Index(sample_ids) if sample_ids is not None else draws.index
    return ids, join_labels(ids, draws, "draws").to_numpy(np.float64)[None]


def real_array(real, sample_ids=None) -> tuple[pd.Index | None, np.ndarray]:
    """Real values [N, D] float64 (rows reordered to `sample_ids` for DataFrames)."""
    if isinstance(real, pd.DataFrame):
        ids = pd.Index(sample_ids) if sample_ids is not None else real.index
        return ids, join_labels(ids, real, "real values").to_numpy(np.float64)
    values = np.asarray(real, dtype=np.float64)
    if values.ndim != 2:
        raise ValueError(f"real values must be [N, D], got shape {values.shape}.")
    return (None if sample_ids is None else pd.Index(sample_ids)), values


def paired(real, draws, groups=None):
    """Real [N, D], draws [K, N, D] and groups [N] aligned by sample ID where IDs are known.

    DataFrame/Series inputs are joined on the real table's IDs; array inputs must already be
    in the same row order.

    Raises:
        ValueError: mismatched IDs or shapes.
    """
    if isinstance(draws, pd.DataFrame) and not isinstance(real, pd.DataFrame):
        raise ValueError("draws are a DataFrame (rows by sample ID) but real values are an "
                         "array: give real values as a DataFrame indexed by sample_id so the "
                         "two are joined by ID.")
    ids, real_v = real_array(real)
    _, draws_v = draws_array(draws, ids if isinstance(draws, pd.DataFrame) else None)
    if draws_v.shape[1:] != real_v.shape:
        raise ValueError(f"draws {draws_v.shape} do not match real values {real_v.shape}: "
                         "expected [K, N, D] with the same N and D.")
    if groups is None:
        group_v = None
    elif isinstance(groups, pd.Series):
        if ids is None:
            raise ValueError("groups given as a Series need real values as a DataFrame indexed by "
                             "sample ID; pass both as DataFrame/Series or both as arrays.")
        group_v = join_labels(ids, groups, "groups").to_numpy()
    else:
        group_v = np.asarray(groups)
        if group_v.shape != (real_v.shape[0],):
            raise ValueError(f"groups must be [N]={real_v.shape[0]}, got {group_v.shape}.")
    return ids, real_v, draws_v, group_v
