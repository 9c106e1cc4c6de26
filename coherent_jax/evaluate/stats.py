"""Paired one-sided tests across seeds and Benjamini-Hochberg false discovery rate control."""

from __future__ import annotations

from typing import Sequence

import numpy as np
import pandas as pd
from scipy import stats


def benjamini_hochberg(pvalues) -> np.ndarray:
    """Benjamini-Hochberg adjusted p-values (q-values) of [P] p-values.

    q_(i) = min_{j >= i} p_(j) * P / j for p sorted ascending (rank j from 1), capped at 1.
    Reject at FDR alpha where q <= alpha. NaN p-values stay NaN and do not count in P.
    """
    p = np.asarray(pvalues, dtype=np.float64)
    q = np.full_like(p, np.nan)
    valid = ~np.isnan(p)
    if not valid.any():
        return q
    pv = p[valid]
    order = np.argsort(pv)
    ranked = pv[order] * len(pv) / np.arange(1, len(pv) + 1)
    monotone = np.minimum.accumulate(ranked[::-1])[::-1]
    adjusted = np.empty_like(pv)
    adjusted[order] = np.minimum(monotone, 1.0)
    q[valid] = adjusted
    return q


def paired_tests(results: pd.DataFrame, metric: str, against: str, column: str = "fill",
                 pair: str = "seed", by: Sequence[str] = ("removed",),
                 alternative: str = "greater", alpha: float = 0.05) -> pd.DataFrame:
    """Paired one-sided t-tests of every method vs `against`, paired on seeds, BH-adjusted.

    Args:
        results: long table with columns `column` (the method, e.g. fill), `pair` (e.g. seed),
            the `by` columns (e.g. removed subset) and `metric`.
        metric: the score compared (higher is better for alternative='greater').
        against: the reference method, e.g. 'none' or 'mean'.
        column, pair, by: column names as above.
        alternative: 'greater' tests method > reference; 'less' the opposite.
        alpha: FDR level for the `significant` column.

    Returns:
        One row per (by..., method != against): n pairs, mean difference, t, p, q (BH over all
        rows of the table), significant (q <= alpha). Rows with < 2 pairs or zero variance of
        the differences get p = NaN.

    Raises:
        ValueError: missing columns, or duplicated (by, method, pair) rows.
    """
    by = list(by)
    needed = {column, pair, metric, *by}
    if not needed <= set(results.columns):
        raise ValueError(f"results need columns {sorted(needed)}; have {list(results.columns)}.")
    if results.duplicated([*by, column, pair]).any():
        raise ValueError(f"several rows per ({', '.join([*by, column, pair])}); average them "
                         "first or add the distinguishing column to `by`.")
    rows = []
    for key, part in (results.groupby(by, sort=False) if by else [((), results)]):
        wide = part.pivot(index=pair, columns=column, values=metric)
        if against not in wide.columns:
            raise ValueError(f"reference {against!r} is not among the methods {list(wide.columns)}.")
        for method in wide.columns.drop(against):
            both = wide[[method, against]].dropna()
            diff = both[method] - both[against]
            if len(diff) >= 2 and diff.std() > 0:
                t, p = stats.ttest_rel(both[method], both[against], alternative=alternative)
            else:
                t, p = np.nan, np.nan
            rows.append({**dict(zip(by, key if isinstance(key, tuple) else (key,))),
                         "method": method, "against": against, "n": len(diff),
                         "mean_difference": float(diff.mean()), "t": float(t), "p": float(p)})
    table = pd.DataFrame(rows)
    table["q"] = benjamini_hochberg(table["p"].to_numpy())
    table["significant"] = table["q"] <= alpha
    return table
