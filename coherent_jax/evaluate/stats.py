"""Patient-level uncertainty: bootstrap resamples of patients, percentile intervals, paired
bootstrap tests, rank tests of an AUC, and Benjamini-Hochberg false discovery rate control.

What varies is the patients: every interval resamples the evaluated patients with replacement
(the same resamples for every method, so differences are paired); the split, the training
seed, the trained models and the draws are held fixed.
"""

from __future__ import annotations

from typing import Callable

import numpy as np
import pandas as pd
from scipy import stats

NUM_BOOTSTRAP = 1000
LEVEL = 0.95


def bootstrap_indices(n: int, num: int = NUM_BOOTSTRAP, seed: int = 0) -> np.ndarray:
    """[num, n] row indices: `num` resamples of n patients with replacement."""
    if n < 2:
        raise ValueError(f"a bootstrap over patients needs >= 2 patients, got {n}.")
    return np.random.default_rng(seed).integers(0, n, size=(num, n))


def bootstrap_counts(indices: np.ndarray, n: int) -> np.ndarray:
    """[B, n] how often each patient occurs in each resample of `indices` [B, n]."""
    counts = np.zeros((len(indices), n))
    np.add.at(counts, (np.arange(len(indices))[:, None], indices), 1.0)
    return counts


def resample(statistic: Callable[..., float], indices: np.ndarray, *arrays) -> np.ndarray:
    """[B] `statistic(*arrays)` recomputed on each resample (rows `indices[b]` of each array)."""
    arrays = [np.asarray(a) for a in arrays]
    return np.asarray([statistic(*(a[i] for a in arrays)) for i in indices], dtype=np.float64)


def percentile_interval(values: np.ndarray, level: float = LEVEL) -> tuple[float, float]:
    """The central `level` percentile interval of bootstrap values (NaN resamples skipped)."""
    values = np.asarray(values, np.float64)
    if np.isnan(values).all():
        return float("nan"), float("nan")
    tail = 100 * (1 - level) / 2
    low, high = np.nanpercentile(values, [tail, 100 - tail])
    return float(low), float(high)


def bootstrap_p(differences: np.ndarray) -> float:
    """Two-sided bootstrap p-value of 'no difference' from paired bootstrap differences [B]:
    twice the smaller share of resamples on either side of 0, (count + 1) / (B + 1)."""
    d = np.asarray(differences, np.float64)
    d = d[~np.isnan(d)]
    if not d.size:
        return float("nan")
    side = min(np.sum(d <= 0), np.sum(d >= 0))
    return float(min(1.0, 2 * (side + 1) / (d.size + 1)))


def paired_difference(point_a: float, point_b: float, boot_a: np.ndarray, boot_b: np.ndarray,
                      level: float = LEVEL) -> dict:
    """a - b with its paired bootstrap interval and p-value (boot_* on the same resamples)."""
    diff = np.asarray(boot_a, np.float64) - np.asarray(boot_b, np.float64)
    low, high = percentile_interval(diff, level)
    return {"difference": float(point_a - point_b), "low": low, "high": high,
            "p": bootstrap_p(diff)}


def benjamini_hochberg(pvalues) -> np.ndarray:
    """Benjamini-Hochberg adjusted p-values (q) of one family (`scipy.stats.
    false_discovery_control`); NaN p-values stay NaN and do not count in the family."""
    p = np.asarray(pvalues, dtype=np.float64)
    q = np.full_like(p, np.nan)
    valid = ~np.isnan(p)
    if valid.any():
        q[valid] = stats.false_discovery_control(p[valid], method="bh")
    return q


def with_q(table: pd.DataFrame, alpha: float = 0.05) -> pd.DataFrame:
    """`table` (one family, a 'p' column) with BH 'q' and 'significant' (q <= alpha)."""
    table = table.copy()
    table["q"] = benjamini_hochberg(table["p"].to_numpy())
    table["significant"] = table["q"] <= alpha
    return table


def auc_test(member_scores, non_member_scores, num: int = NUM_BOOTSTRAP, seed: int = 0,
             level: float = LEVEL) -> dict:
    """AUC of scores telling members (higher) from non-members, with a bootstrap interval
    (each group resampled on its own) and the one-sided Mann-Whitney p-value of AUC = 0.5
    (the rank test that a permutation of the membership labels would give).

    Returns:
        {'auc', 'low', 'high', 'p', 'n_members', 'n_non_members'}.
    """
    a = np.asarray(member_scores, np.float64)
    b = np.asarray(non_member_scores, np.float64)
    u, p = stats.mannwhitneyu(a, b, alternative="greater")
    rng = np.random.default_rng(seed)
    counts_a, counts_b = np.empty((num, a.size)), np.empty((num, b.size))
    for i in range(num):  # resample i as counts per patient
        counts_a[i] = np.bincount(rng.integers(0, a.size, a.size), minlength=a.size)
        counts_b[i] = np.bincount(rng.integers(0, b.size, b.size), minlength=b.size)
    # Mann-Whitney U of a resample: its pairs weighted by their counts, from one pair table
    wins = (a[:, None] > b[None, :]) + 0.5 * (a[:, None] == b[None, :])  # [A, B]
    boot = ((counts_a @ wins) * counts_b).sum(axis=1) / (a.size * b.size)
    low, high = percentile_interval(boot, level)
    return {"auc": float(u / (a.size * b.size)), "low": low, "high": high, "p": float(p),
            "n_members": int(a.size), "n_non_members": int(b.size)}


def cell(point: float, low: float, high: float, digits: int = 3, signed: bool = False) -> str:
    """'0.598 [0.571, 0.622]' (signed: '+0.012 [-0.010, +0.031]'); 'nan' for a NaN point."""
    if np.isnan(point):
        return "nan"
    fmt = f"{{:{'+' if signed else ''}.{digits}f}}"
    if np.isnan(low):
        return fmt.format(point)
    return f"{fmt.format(point)} [{fmt.format(low)}, {fmt.format(high)}]"
