"""The CRPS of draws, the one implementation the evaluation and the fusion calibration share,
and the paired test by which validation patients let a challenger replace an incumbent.

    CRPS(F, y) = E|X - y| - 1/2 E|X - X'|

for the draws X_1..X_K of each entry. The pairwise term comes from the sorted draws in
O(K log K): sum_{k,l} |x_k - x_l| = 2 sum_i (2i - K + 1) x_(i), i from 0. Two estimators:
the V-statistic (1/K^2: the exact CRPS of the draws' empirical distribution, the evaluation's)
and the fair one (1/(K (K - 1)) over distinct pairs: the expected score of K draws from the
true distribution is minimal whatever K is, what a choice between settings needs).
"""

from __future__ import annotations

import numpy as np


def crps(real: np.ndarray, draws: np.ndarray, *, fair: bool = False,
         ordered: np.ndarray | None = None) -> np.ndarray:
    """[N, D] CRPS per entry of K draws [K, N, D] for real [N, D] (module docstring).

    Args:
        fair: the fair estimator (K >= 2 draws); else the V-statistic (0 for K copies of
            the truth, the absolute error for K = 1).
        ordered: the draws already sorted along axis 0, when the caller has them.
    """
    k = draws.shape[0]
    if fair and k < 2:
        raise ValueError(f"the fair CRPS needs at least 2 draws, got {k}.")
    ordered = np.sort(draws, axis=0) if ordered is None else ordered
    spread = np.mean(np.abs(draws - real[None]), axis=0)  # [N, D]
    weights = (2 * np.arange(k) - k + 1).reshape(-1, 1, 1)
    pairwise = 2 * np.sum(weights * ordered, axis=0) / (k * (k - 1) if fair else k**2)  # [N, D]
    return spread - 0.5 * pairwise


LEAD_Z = 1.645
"""One-sided 5%: a challenger leads where the mean per-patient difference plus 1.645 standard
errors is below zero."""


def paired_lead(differences: np.ndarray, z: float = LEAD_Z) -> dict:
    """Whether a challenger beats an incumbent on the same patients, from their per-patient
    score differences [n] (challenger minus incumbent, lower is better; NaN rows skipped):
    {'mean_difference', 'standard_error', 'patients', 'leads': mean + z se < 0}. The simpler
    or established choice stays unless the other is ahead beyond the noise of the patients."""
    diff = np.asarray(differences, np.float64)
    diff = diff[np.isfinite(diff)]
    mean = float(np.mean(diff)) if diff.size else float("nan")
    se = float(np.std(diff, ddof=1) / np.sqrt(diff.size)) if diff.size > 1 else float("inf")
    return {"mean_difference": mean, "standard_error": se, "patients": int(diff.size),
            "leads": bool(mean + z * se < 0)}
