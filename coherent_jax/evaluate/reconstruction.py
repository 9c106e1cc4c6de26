"""Reconstruction of held-out modalities: MSE, R^2, cosine distance, interval coverage, CRPS.

One R^2 everywhere (the paper's code mixed two):

    R^2 = 1 - SS_res / SS_tot,  SS_res = sum_i (y_ij - p_ij)^2,  SS_tot = sum_i (y_ij - mean_i y_ij)^2

with SS_tot taken around each feature's mean of the REAL values over the evaluated samples.
`r2` pools the sums over features (1 - sum_j SS_res_j / sum_j SS_tot_j); `r2_feature_median`
is the median over features of the per-feature R^2 (constant features are skipped). Within a
group (cancer type), the means are that group's means, so group R^2 measures what the method
explains beyond the group's average.

Draws [K, N, D] are scored two ways: `*_single` is the metric of one draw, averaged over the K
draws; `*_mean` is the metric of the mean of the K draws. A perfect posterior sampler has about
twice the MSE of the posterior mean, so both are reported. `coverage` is the share of entries
inside the central `level` interval of the draws (`ideal_coverage`: what a perfectly
calibrated sampler with K draws reaches); `crps` the empirical CRPS (see `crps`).

Draws are also scored as distributions, per patient (`patient_errors`): the fair energy
score of the patient's whole target vector (`energy_score`, a proper score of the joint
draw: it rewards the right spread and the right dependence between features, not only the
right mean), and the coverage of the patient's vector projected on random unit directions
(`projection_coverage`: joint calibration, which per-feature intervals cannot show).

Patient-level intervals: `patient_errors` keeps each patient's squared-error sums and covered
share, from which `r2_bootstrap` recomputes the pooled R^2 on bootstrap resamples of patients
(SS_tot around each resample's own means).
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from coherent_jax.evaluate.align import paired
from coherent_jax.scoring_rules import crps


def mse(real: np.ndarray, pred: np.ndarray) -> float:
    """Mean squared error over all entries of real [N, D] and pred [N, D]."""
    return float(np.mean((real - pred) ** 2))


def r2(real: np.ndarray, pred: np.ndarray) -> tuple[float, float]:
    """(pooled R^2, median per-feature R^2) of pred [N, D] for real [N, D]; see module doc."""
    pooled, median = _r2_draws(real, ((real - pred) ** 2)[None])
    return float(pooled[0]), float(median[0])


def _r2_draws(real: np.ndarray, squared: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """([K] pooled R^2, [K] median per-feature R^2) of K predictions of real [N, D] from their
    squared errors [K, N, D]. Per feature as sklearn's r2_score on the varying features
    (1 - SS_res / SS_tot); pooled by hand, as sklearn's 'variance_weighted' would drop the
    errors on constant features."""
    ss_tot = np.sum((real - real.mean(axis=0)) ** 2, axis=0)  # [D]
    varying = ss_tot > 0
    if not varying.any():
        return np.full(len(squared), np.nan), np.full(len(squared), np.nan)
    pooled = 1.0 - squared.reshape(len(squared), -1).sum(axis=1) / ss_tot.sum()  # [K]
    per_feature = 1.0 - squared.sum(axis=1)[:, varying] / ss_tot[varying]  # [K, D']
    return pooled, np.median(per_feature, axis=1)


def cosine_distance(real: np.ndarray, pred: np.ndarray) -> float:
    """Mean over samples of 1 - cos(real_i, pred_i); rows of norm 0 count as distance 1."""
    return float(_cosine_draws(real, pred[None])[0])


def _cosine_draws(real: np.ndarray, draws: np.ndarray) -> np.ndarray:
    """[K] `cosine_distance` of each of K predictions [K, N, D] of real [N, D]."""
    dot = np.sum(real * draws, axis=2)  # [K, N]
    norms = np.linalg.norm(real, axis=1) * np.linalg.norm(draws, axis=2)  # [K, N]
    cos = np.divide(dot, norms, out=np.zeros_like(dot), where=norms > 0)
    return np.mean(1.0 - cos, axis=1)


NUM_PROJECTIONS = 64
"""Random unit directions of `projection_coverage` (fixed by seed 0 and the width)."""


def energy_score(real: np.ndarray, draws: np.ndarray, chunk: int = 16) -> np.ndarray:
    """[N] fair energy score of each patient's K draws [K, N, D] for its truth real [N, D]:
    E||X - y|| - 1/2 E||X - X'|| with the unbiased (fair) pairwise term, as scoringrules'
    es_ensemble(estimator='fair'); lower is better. Patients go in chunks to bound the
    [K, chunk, D] work arrays."""
    draws = np.asarray(draws, np.float64)
    real = np.asarray(real, np.float64)
    if draws.shape[0] < 2:
        return np.full(real.shape[0], np.nan)
    return np.concatenate([_energy_chunk(real[i:i + chunk], draws[:, i:i + chunk])
                           for i in range(0, real.shape[0], chunk)])


def _energy_chunk(real: np.ndarray, draws: np.ndarray) -> np.ndarray:
    """`energy_score` [n] of a few patients, real [n, D] and draws [K, n, D]. The pairwise
    distances come from each patient's Gram matrix, ||a - b||^2 = |a|^2 + |b|^2 - 2 a.b, of
    its draws centred on their mean, which keeps the difference from cancelling when the draws
    lie far from the origin; the diagonal is exactly 0."""
    k = draws.shape[0]
    error = np.mean(np.linalg.norm(draws - real[None], axis=2), axis=0)  # [n]
    centred = np.swapaxes(draws - draws.mean(axis=0), 0, 1)  # [n, K, D]
    gram = centred @ np.swapaxes(centred, 1, 2)  # [n, K, K]
    norms = np.diagonal(gram, axis1=1, axis2=2)  # [n, K]
    squared = norms[:, :, None] + norms[:, None, :] - 2 * gram  # [n, K, K]
    pairwise = np.sum(np.sqrt(np.maximum(squared, 0.0)), axis=(1, 2))  # [n]
    return error - pairwise / (2 * k * (k - 1))


def projection_coverage(real: np.ndarray, draws: np.ndarray, level: float = 0.9,
                        num: int = NUM_PROJECTIONS) -> np.ndarray:
    """[N] share of `num` random unit directions u (seed 0) on which u'y lies inside the
    central `level` interval of the K draws' u'x: joint calibration of the draws."""
    width = real.shape[1]
    directions = np.random.default_rng(0).standard_normal((width, num))
    directions /= np.linalg.norm(directions, axis=0, keepdims=True)  # [D, P]
    tail = (1 - level) / 2
    projected = np.asarray(draws, np.float64) @ directions  # [K, N, P]
    lower, upper = np.quantile(projected, [tail, 1 - tail], axis=0)
    truth = np.asarray(real, np.float64) @ directions  # [N, P]
    return np.mean((truth >= lower) & (truth <= upper), axis=1)


def interval_coverage(real: np.ndarray, draws: np.ndarray, level: float = 0.9) -> float:
    """Share of entries of real [N, D] inside the central `level` interval of draws [K, N, D]."""
    return _interval_coverage(real, np.sort(draws, axis=0), level)


def _interval_coverage(real: np.ndarray, ordered: np.ndarray, level: float) -> float:
    """`interval_coverage` from the draws sorted along axis 0, ordered [K, N, D]."""
    if not 0 < level < 1:
        raise ValueError(f"level must be in (0, 1), got {level}.")
    return float(np.mean(_covered(real, ordered, level)))


def _covered(real: np.ndarray, ordered: np.ndarray, level: float) -> np.ndarray:
    """[N, D] whether each entry of real [N, D] lies inside the central `level` interval of
    the draws sorted along axis 0, ordered [K, N, D] (np.quantile's bounds)."""
    tail = (1 - level) / 2
    lower, upper = _sorted_quantile(ordered, tail), _sorted_quantile(ordered, 1 - tail)
    return (real >= lower) & (real <= upper)


def _sorted_quantile(ordered: np.ndarray, q: float) -> np.ndarray:
    """np.quantile(x, q, axis=0) with its default 'linear' method, from x sorted along axis 0
    (ordered [K, ...] -> [...]): numpy's interpolation step by step, without partitioning x
    again; NaN where x holds a NaN (sorted last), as numpy."""
    if not 0 <= q <= 1:
        raise ValueError(f"quantiles must be in [0, 1], got {q}.")
    k = ordered.shape[0]
    position = (k - 1) * q
    below = min(int(np.floor(position)), k - 1)
    gamma = position - below
    low, high = ordered[below], ordered[min(below + 1, k - 1)]
    diff = high - low
    value = low + diff * gamma if gamma < 0.5 else high - diff * (1 - gamma)
    value[np.isnan(ordered[-1])] = np.nan
    return value


def ideal_coverage(k: int, level: float = 0.9, n: int = 200_000) -> float:
    """Coverage of the central `level` interval of k draws for a perfectly calibrated sampler
    (the truth exchangeable with the k draws; Monte Carlo over n patients, seed 0)."""
    if k < 2:
        raise ValueError(f"an interval of draws needs k >= 2, got {k}.")
    u = np.random.default_rng(0).random((n, k + 1))
    lower, upper = np.quantile(u[:, :k], [(1 - level) / 2, (1 + level) / 2], axis=1)
    return float(np.mean((u[:, k] >= lower) & (u[:, k] <= upper)))


def patient_errors(real: np.ndarray, draws: np.ndarray, point: np.ndarray | None = None,
                   level: float = 0.9) -> dict:
    """Per-patient pieces of the pooled R^2 and the coverage of real [N, D] by draws [K, N, D].

    Returns:
        {'sse_mean': [N] sum over features of the squared error of the point estimate (the
        mean of the draws, or `point`), 'sse_single': [N] the same of single draws, averaged
        over the K draws, 'covered': [N] share of the patient's entries inside the central
        `level` interval of the draws, 'energy': [N] `energy_score`, 'projection_covered':
        [N] `projection_coverage` (the last three NaN for K = 1)}.
    """
    mean = draws.mean(axis=0) if point is None else point
    several = len(draws) > 1
    nothing = np.full(len(real), np.nan)
    return {"sse_mean": np.sum((real - mean) ** 2, axis=1),
            "sse_single": np.mean(np.sum((real[None] - draws) ** 2, axis=2), axis=0),
            "covered": np.mean(_covered(real, np.sort(draws, axis=0), level), axis=1)
            if several else nothing,
            "energy": energy_score(real, draws) if several else nothing,
            "projection_covered": projection_coverage(real, draws, level) if several
            else nothing}


def r2_bootstrap(real: np.ndarray, sse: np.ndarray, counts: np.ndarray) -> np.ndarray:
    """[B] pooled R^2 on bootstrap resamples of patients.

    Args:
        real: [N, D] true values; sse: [N] per-patient squared-error sums (`patient_errors`);
        counts: [B, N] how often each patient occurs in each resample (`stats.bootstrap_counts`).
        On a resample, SS_res = counts @ sse and SS_tot is taken around the resample's means:
        sum_j (counts @ y_j^2 - (counts @ y_j)^2 / N).
    """
    n = real.shape[0]
    ss_tot = counts @ np.sum(real**2, axis=1) - np.sum((counts @ real) ** 2, axis=1) / n  # [B]
    return 1.0 - (counts @ sse) / ss_tot


def _scores(real: np.ndarray, draws: np.ndarray, level: float,
            point: np.ndarray | None = None) -> dict:
    single = np.mean(_single_draws(real, draws), axis=0)
    mean = draws.mean(axis=0) if point is None else point
    pooled, median = r2(real, mean)
    ordered = np.sort(draws, axis=0)
    return {"n": real.shape[0], "k": draws.shape[0],
            "mse_single": single[0], "mse_mean": mse(real, mean),
            "r2_single": single[1], "r2_mean": pooled,
            "r2_feature_median_single": single[2], "r2_feature_median_mean": median,
            "cosine_single": single[3], "cosine_mean": cosine_distance(real, mean),
            "coverage": _interval_coverage(real, ordered, level),
            "crps": float(np.mean(crps(real, draws, ordered=ordered)))}


def _single_draws(real: np.ndarray, draws: np.ndarray) -> np.ndarray:
    """[K, 4] `mse`, `r2` (pooled, median per feature) and `cosine_distance` of each draw of
    draws [K, N, D] for real [N, D]."""
    squared = (real - draws) ** 2  # [K, N, D]
    mses = squared.reshape(len(draws), -1).mean(axis=1)  # [K]
    return np.stack([mses, *_r2_draws(real, squared), _cosine_draws(real, draws)], axis=1)


def reconstruction_metrics(real, draws, groups=None, level: float = 0.9,
                           min_group_size: int = 2, point=None) -> pd.DataFrame:
    """All reconstruction metrics, overall and per group.

    Args:
        real: [N, D] true values (array, or DataFrame indexed by sample_id).
        draws: [K, N, D] or [N, D] predictions (array), or a DataFrame indexed by sample_id
            (one prediction) or by (sample_id, draw) as `Imputation.draws[m]`; DataFrames are
            joined to `real` by sample ID.
        groups: optional [N] group labels (array, or Series indexed by sample_id), e.g. cancer
            type; samples with a missing label count in 'all' only.
        level: central interval level for `coverage`.
        min_group_size: groups with fewer samples are left out (R^2 needs >= 2).
        point: optional [N, D] point estimate scored by the *_mean metrics instead of the
            mean of the draws (a DataFrame indexed by sample_id, joined like `real`), e.g.
            `Imputation.feature_means`, the decoder-output mean without the draws' noise.

    Returns:
        DataFrame indexed by group ('all' first), columns n, k, mse_single, mse_mean, r2_single,
        r2_mean, r2_feature_median_single, r2_feature_median_mean, cosine_single, cosine_mean,
        coverage, crps. For K = 1, *_single equals *_mean.
    """
    ids, real_v, draws_v, group_v = paired(real, draws, groups)
    point_v = None
    if point is not None:
        point_v = (point.reindex(ids).to_numpy(np.float64) if isinstance(point, pd.DataFrame)
                   else np.asarray(point, np.float64))
        if point_v.shape != real_v.shape:
            raise ValueError(f"point has shape {point_v.shape}, real {real_v.shape}.")
    rows = {"all": _scores(real_v, draws_v, level, point_v)}
    if group_v is not None:
        known = pd.Series(group_v).notna().to_numpy()  # samples without a label: 'all' only
        for g in pd.unique(group_v[known]):
            sel = known & (pd.Series(group_v).astype("string") == str(g)).fillna(False).to_numpy()
            if sel.sum() >= min_group_size:
                rows[str(g)] = _scores(real_v[sel], draws_v[:, sel], level,
                                       None if point_v is None else point_v[sel])
    table = pd.DataFrame.from_dict(rows, orient="index")
    table.index.name = "group"
    return table


def comparison_table(scores: pd.DataFrame, metric: str = "r2_mean", group: str = "all",
                     source: str | None = None) -> pd.DataFrame:
    """One table: rows methods, columns targets.

    Args:
        scores: long DataFrame with columns method, target, group (and source when several
            available sets were scored), plus metric columns, e.g. the concatenation of
            `reconstruction_metrics(...).reset_index()` tagged with method and target.
        metric: the metric column to show.
        group: the group row to show ('all' for the whole test set).
        source: keep only this available set (required if `scores` holds several).

    Raises:
        ValueError: missing columns, or several rows per (method, target).
    """
    needed = {"method", "target", "group", metric}
    if not needed <= set(scores.columns):
        raise ValueError(f"scores need columns {sorted(needed)}; have {list(scores.columns)}.")
    chosen = scores[scores["group"] == group]
    if source is not None:
        chosen = chosen[chosen["source"] == source]
    if chosen.duplicated(["method", "target"]).any():
        raise ValueError("several rows per (method, target): pick one available set with "
                         "source=... (a 'source' column names it).")
    return chosen.pivot(index="method", columns="target", values=metric)
