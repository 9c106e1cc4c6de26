"""Fitting the linear-Gaussian anchors of anchored denoisers (`Denoiser(anchored=True)`).

For a model with C conditions, every non-empty subset S of them gets a ridge regression of the
target on the conditions in S (rows where the target and all of S are present; conditions
outside S contribute zero; on their leading principal directions where leave-one-out says so,
`distilled_ridge`) and the full covariance of its held-out residuals (K-fold
out-of-fold predictions on the training rows; `residuals.robust_covariance`: shrunk
correlation, robust spread), kept in its eigenbasis; the empty subset gets the target's
training mean and shrunk covariance (the prior). The result fills the anchor parameters of the
Denoiser:

    anchors = fit_anchors(x, x_present, [(c1, c1_present), (c2, c2_present)])
    params = set_anchors(params, anchors)   # params with a leading member axis
"""

from __future__ import annotations

import functools
import warnings
from typing import Callable, Sequence

import numpy as np
from sklearn.model_selection import KFold

from coherent_jax.encoders import PCAEncoder
from coherent_jax.residuals import robust_covariance, shrunk_covariance

ALPHAS = tuple(np.logspace(-1, 5, 13))
MIN_ROWS = 10  # fewer rows than this for a subset: that subset keeps the prior
VAR_FLOOR = 1e-4
RANK_STEP = 2 ** 0.5  # `rank_grid`: the leading-direction counts a ridge tries
CUT_TEST_Z = 1.645  # `distilled_ridge`: fewer directions only where they lead by this z
ANCHOR_PARAMS = ("kernel", "bias", "log_var", "basis")  # a Denoiser's params 'anchor_<name>'
MIXTURE_PARAMS = ANCHOR_PARAMS + ("gate_const", "gate_mean", "gate_prec")  # `mixture_anchor`


def fit_out_of_fold(x: np.ndarray, y: np.ndarray, folds: int, seed: int, fit: Callable,
                    full: tuple | None = None) -> tuple[tuple[np.ndarray, np.ndarray], np.ndarray]:
    """((coef [D, k], intercept [k]) of `fit(x, y)` on all rows (`full` when already fitted),
    the K-fold out-of-fold predictions [n, k] of the same fit)."""
    oof = np.zeros_like(y)
    for fit_rows, held in KFold(folds, shuffle=True, random_state=seed).split(x):
        coef, intercept = fit(x[fit_rows], y[fit_rows])
        oof[held] = x[held] @ coef + intercept
    return (fit(x, y) if full is None else full), oof


def fit_anchors(target: np.ndarray, target_present: np.ndarray,
                conditions: Sequence[tuple[np.ndarray, np.ndarray]], *, folds: int = 5,
                alphas: Sequence[float] = ALPHAS, seed: int = 0,
                predictions: bool = False, in_sample: Sequence[bool] | None = None,
                residual_target: np.ndarray | None = None) -> dict:
    """Ridge anchors of one model for every subset of its conditions.

    Args:
        target: [N, D] training values of the generated modality (NaN rows where absent).
        target_present: [N] bool.
        conditions: C pairs (values [N, D_c], present [N]).
        folds: folds of the out-of-fold residual variance.
        alphas: ridge penalties tried (per output dimension, leave-one-out).
        seed: the folds' shuffle.
        predictions: the conditions are `fit_condition_map`'s, whose first D columns predict
            the target and the rest (the source's principal components) are left to the
            mixture anchors and networks; a single one is the mean (identity kernel: a second
            ridge on out-of-fold predictions shrinks new patients' less noisy ones; README).
        in_sample: per condition, whether its training values are its map's own fit
            (`fit_condition_map`: a source the map sends one-to-one), not out-of-fold: such a
            prediction alone is regressed on too, with out-of-fold residuals, never taken as
            the mean (its residuals would be too small). None: none is.
        residual_target: [N, D] the same rows' target as new patients' would be encoded
            (`latent.cross_fitted_latents`); the covariances are fitted to its residuals
            (default: `target`'s).

    Returns:
        {'kernel' [2^C, sum D_c, D], 'bias' [2^C, D], 'log_var' [2^C, D], 'basis'
        [2^C, D, D]} float32: subset s has the Gaussian N(inputs @ kernel[s] + bias[s],
        basis[s] diag(exp(log_var[s])) basis[s]^T) (`covariance`); subset index = sum of 2^j
        over the conditions j present (the Denoiser's mask bits).
    """
    widths = [c.shape[1] for c, _ in conditions]
    offsets = np.concatenate([[0], np.cumsum(widths)])
    d = target.shape[1]
    num = 2 ** len(conditions)
    kernel = np.zeros((num, int(offsets[-1]), d), np.float32)
    bias = np.zeros((num, d), np.float32)
    log_var = np.zeros((num, d), np.float32)
    basis = np.zeros((num, d, d), np.float32)
    spread = target if residual_target is None else residual_target  # [N, D]
    prior = target[target_present].astype(np.float64)
    bias[0] = prior.mean(axis=0)
    log_var[0], basis[0] = eigh_floored(shrunk_covariance(spread[target_present]))
    for index in range(1, num):
        members = [j for j in range(len(conditions)) if index >> j & 1]
        rows = target_present & np.all([conditions[j][1] for j in members], axis=0)
        if rows.sum() < max(MIN_ROWS, 2 * folds):
            warnings.warn(f"only {int(rows.sum())} training rows have the target and conditions "
                          f"{members}: that subset's anchor stays the prior.", stacklevel=2)
            bias[index], log_var[index], basis[index] = bias[0], log_var[0], basis[0]
            continue
        used = [d if predictions else widths[j] for j in members]  # columns regressed on
        x = np.concatenate([conditions[j][0][rows, :w] for j, w in zip(members, used)],
                           axis=1).astype(np.float64)
        coef, intercept, predicted = _subset_fit(
            x, target[rows].astype(np.float64), folds, alphas, seed,
            identity=predictions and len(members) == 1
            and not (in_sample is not None and in_sample[members[0]]))
        columns = np.concatenate([offsets[j] + np.arange(w) for j, w in zip(members, used)])
        kernel[index][columns] = coef
        bias[index] = intercept
        log_var[index], basis[index] = eigh_floored(
            robust_covariance(spread[rows].astype(np.float64) - predicted))
    return {"kernel": kernel, "bias": bias, "log_var": log_var, "basis": basis}


def _subset_fit(x: np.ndarray, y: np.ndarray, folds: int, alphas, seed: int, identity: bool
                ) -> tuple[np.ndarray, np.ndarray | float, np.ndarray]:
    """(kernel [D_s, D], bias, predictions [n, D] whose residuals set the spread) of one
    subset's anchor: x [n, D_s] itself (identity kernel, no bias) for a single condition that
    already predicts the target, else the ridge of y [n, D] on x with its out-of-fold
    predictions (folds, alphas, seed as `fit_anchors`)."""
    if identity:
        return np.eye(y.shape[1], dtype=np.float32), 0.0, x
    (coef, intercept), oof = fit_out_of_fold(
        x, y, folds, seed, lambda a, b: distilled_ridge(a, b, alphas, 0.0))
    return coef, intercept, oof


def eigh_floored(cov: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """A covariance [D, D] -> (log eigenvalues [D], floored at VAR_FLOOR; eigenvectors as
    columns [D, D])."""
    values, vectors = np.linalg.eigh(0.5 * (cov + cov.T))
    return np.log(np.maximum(values, VAR_FLOOR)), vectors


def covariance(anchors: dict, subset: int) -> np.ndarray:
    """[D, D] the Gaussian covariance of one subset of `fit_anchors`' output (or of a
    Denoiser's anchor parameters: keys without the 'anchor_' prefix)."""
    basis = np.asarray(anchors["basis"][subset], np.float64)
    return (basis * np.exp(np.asarray(anchors["log_var"][subset], np.float64))) @ basis.T


def set_anchors(params: dict, anchors: Sequence[dict], member_of: np.ndarray) -> dict:
    """Params (leading population axis P) with each row's anchors: row p gets
    anchors[member_of[p]] (one dict per model of the family; Gaussian or mixture anchors,
    `mixture_anchor`)."""
    member_of = np.asarray(member_of)
    return {**params, **{f"anchor_{name}": np.stack([a[name] for a in anchors])[member_of]
                         for name in anchors[0]}}


def rank_grid(rank: int) -> list[int]:
    """The leading-direction counts `distilled_ridge` tries for a design of this rank: 1, 2,
    3, 4, 6, 8, 11, 16, ... (steps of sqrt 2) below it, and the rank itself (the plain
    ridge)."""
    counts, r = [], 1.0
    while round(r) < rank:
        counts.append(int(round(r)))
        r *= RANK_STEP
    return sorted(set(counts)) + [int(rank)]


def _leave_one_out_errors(u: np.ndarray, s: np.ndarray, centred: np.ndarray, alphas,
                          ranks: Sequence[int]) -> np.ndarray:
    """[R, A, k] mean squared leave-one-out error of each output column for the ridge
    (penalty alpha) on the first r principal directions (thin SVD of the centred design,
    u [n, rank], s [rank]): the hat matrix H = 1/n + U_r diag(s^2 / (s^2 + alpha)) U_r^T, a
    residual of y_i - (H y)_i over 1 - H_ii."""
    proj = u.T @ centred  # [rank, k]
    errors = np.empty((len(ranks), len(alphas), centred.shape[1]))
    for a, alpha in enumerate(alphas):
        shrink = s**2 / (s**2 + alpha)  # [rank]
        fit = np.zeros_like(centred)  # [n, k], grown one block of directions at a time
        leverage = np.full(len(u), 1.0 / len(u))
        done = 0
        for i, r in enumerate(ranks):
            block = slice(done, r)
            fit += u[:, block] @ (shrink[block, None] * proj[block])
            leverage += (u[:, block] ** 2) @ shrink[block]
            done = r
            errors[i, a] = (((centred - fit) / (1.0 - leverage[:, None])) ** 2).mean(axis=0)
    return errors


def _loo_residuals(u: np.ndarray, s: np.ndarray, centred: np.ndarray,
                   column_alpha: np.ndarray) -> np.ndarray:
    """[n, k] exact leave-one-out residuals of the ridge on all of u's directions (u [n, r],
    s [r] as `_leave_one_out_errors`), one penalty per output column of `centred` [n, k]."""
    out = np.empty_like(centred)
    for alpha in np.unique(column_alpha):
        cols = column_alpha == alpha
        shrink = s**2 / (s**2 + alpha)  # [r]
        fit = u @ (shrink[:, None] * (u.T @ centred[:, cols]))  # H y, centred
        leverage = (u**2) @ shrink + 1.0 / len(u)  # [n] diagonal of the hat matrix
        out[:, cols] = (centred[:, cols] - fit) / (1.0 - leverage[:, None])
    return out


def distilled_ridge(x: np.ndarray, y: np.ndarray, alphas, share: float, cut: bool = True
                     ) -> tuple[np.ndarray, np.ndarray]:
    """(coef [D_s, k], intercept [k]) of a ridge on the design's leading principal directions,
    fitted to targets whose leave-one-out share is `share` in [0, 1] (see
    `fit_condition_map`).

    The count r of leading directions (`rank_grid`, the last the plain ridge) and a penalty
    per output column are those of the least exact leave-one-out error (`_leave_one_out_errors`;
    r shared by the columns, summed over them; the plain ridge's choice is RidgeCV's,
    alpha_per_target), and fewer than all directions only where the rows' leave-one-out
    squared errors lead the plain ridge's by a paired test (z > CUT_TEST_Z): where a few
    factors drive a wide source, a ridge on all its directions fits noise in the others (the
    door4 cohort: 'reveal' given 60 'hide' features, 8 factors, 1,200 rows: r = 8, z = 5.1),
    and where the two are tied the source's other directions still tell the models after the
    map what a linear mean does not (door6's 'hide' given 'reveal': z = 0.5; benchmarks/
    RESULTS.md, "A ridge on the source's leading directions"). `cut=False` keeps every
    direction. With thin SVD x_c = U S V^T, the released map is the same ridge (same r, same
    alpha per column) fitted to (1 - share) * y + share * loo, loo_i = (fit_i - H_ii y_i) /
    (1 - H_ii).
    """
    x_mean, y_mean = x.mean(axis=0), y.mean(axis=0)
    u, s, vt = np.linalg.svd(x - x_mean, full_matrices=False)  # u [n, m], s [m], vt [m, D_s]
    kept = s > s.max(initial=0.0) * max(x.shape) * np.finfo(np.float64).eps
    u, s, vt = u[:, kept], s[kept], vt[kept]
    centred = y - y_mean
    ranks = rank_grid(len(s)) if cut else [len(s)]
    errors = _leave_one_out_errors(u, s, centred, alphas, ranks)  # [R, A, k]
    penalties = lambda i: np.asarray(alphas, np.float64)[errors[i].argmin(axis=0)]  # noqa: E731
    best = int(np.argmin(errors.min(axis=1).sum(axis=1)))
    r, column_alpha = ranks[best], penalties(best)
    if r < len(s):
        gain = ((_loo_residuals(u, s, centred, penalties(-1)) ** 2).sum(axis=1)
                - (_loo_residuals(u[:, :r], s[:r], centred, column_alpha) ** 2).sum(axis=1))
        if not gain.mean() > CUT_TEST_Z * gain.std() / np.sqrt(len(gain)):
            r, column_alpha = len(s), penalties(-1)
    u, s, vt = u[:, :r], s[:r], vt[:r]
    loo = centred - _loo_residuals(u, s, centred, column_alpha) + y_mean  # [n, k]
    targets = (1.0 - share) * y + share * loo
    coef = np.zeros((x.shape[1], y.shape[1]))
    for alpha in np.unique(column_alpha):
        cols = column_alpha == alpha
        coef[:, cols] = vt.T @ ((s / (s**2 + alpha))[:, None]
                                * (u.T @ (targets[:, cols] - targets[:, cols].mean(axis=0))))
    return coef, targets.mean(axis=0) - x_mean @ coef


def fit_condition_map(features: np.ndarray, target: np.ndarray, *, folds: int = 5,
                      alphas: Sequence[float] = ALPHAS, seed: int = 0,
                      distill: bool = False, components: int = 0) -> tuple[dict, np.ndarray]:
    """Ridge from one source's features to the target's latents: the source as a condition.

    A specialist conditioned on this k-dim prediction instead of the source's own latents sees
    everything a ridge on the raw features sees (compressing the sources to their latents cost
    R^2, compressing the target almost nothing: README, "Sources seen through their features").

    With thousands of source features and a few hundred patients the ridge fits its own
    training patients far better than new ones, and that gap is what a membership attack
    reads. `distill` fits the released map (the same ridge penalties) to the ridge's
    leave-one-out predictions, which carry no patient's own value, instead of the patients'
    values (distillation for membership privacy): training patients are then predicted about
    as well as new ones, for some accuracy on new patients (README, "Privacy").

    Args:
        features: [n, D_s] source features of the training rows that have both modalities.
        target: [n, k] the target's latents on the same rows.
        folds: out-of-fold predictions for these rows (unless the source is sent one-to-one,
            below), so that the models trained on them see conditions as noisy as those of
            patients never fitted (each fold's map fitted the same way).
        distill: fit to the leave-one-out predictions (False: the plain ridge).
        components: p > 0 appends the source's p leading principal components (standardised
            PCA of these rows, each scaled to unit variance) to the prediction. A ridge
            prediction of the target is one linear summary of the source, and it can miss
            what the source tells of a hidden subtype: where the subtype moves the source
            along directions that predict little of the target (the door2 cohort's 'hide'
            given 'reveal', benchmarks/RESULTS.md) BIC finds no mixture on [target,
            prediction]; the source's own leading directions carry its clusters to the
            mixture anchors' gates and to the networks. The linear anchors ignore them
            (`fit_anchors(predictions=True)`).

    A source with no more features than the target has columns (D_s <= k) is sent one-to-one
    into the condition space (`one_to_one`; its ridge keeps every direction, `distilled_ridge`
    with `cut=False`; the models after it may cut): every function of its prediction is a function
    of its features, so a model fitted to its rows' own fitted values learns from them what it
    would from the features and reads nothing of the rows' targets, and those values are what
    new patients get. Its training rows get the map's own fit. Out-of-fold values would come
    from K maps that each send the source to another D_s-dimensional subspace of the k
    columns, while every new patient lands in the full map's: the models would learn from
    directions in which new patients' conditions are always zero (README, "A narrow source's
    conditions as new patients get them"). Models that take such a prediction as the target's
    mean must not (`fit_anchors(in_sample=...)`).

    Returns:
        ({'kernel' [D_s, k + p], 'bias' [k + p]} float32, [n, k + p] the out-of-fold
        predictions (the map's own where `one_to_one`) then the principal components).
    """
    features, target = features.astype(np.float64), target.astype(np.float64)
    fit = functools.partial(distilled_ridge, alphas=alphas, share=1.0 if distill else 0.0,
                            cut=features.shape[1] > target.shape[1])
    coef, intercept = fit(features, target)
    if one_to_one({"kernel": coef}, target.shape[1]):
        oof = features @ coef + intercept  # the map's own fit: no fold is fitted
    else:
        oof = fit_out_of_fold(features, target, folds, seed, fit, full=(coef, intercept))[1]
    if components:
        axes, offset = _unit_components(features, components)  # [D_s, p], [p]
        coef, intercept = np.c_[coef, axes], np.r_[intercept, offset]
        oof = np.c_[oof, features @ axes + offset]
    return ({"kernel": coef.astype(np.float32), "bias": np.asarray(intercept, np.float32)},
            oof.astype(np.float32))


def one_to_one(cmap: dict, width: int) -> bool:
    """Whether a condition map's prediction (its first `width` columns) sends its inputs
    one-to-one into the condition space (the kernel's rank is the input count), so that its
    values on the training rows are what `fit_condition_map` gives them."""
    kernel = np.asarray(cmap["kernel"], np.float32)[:, :width]  # as saved: the same answer
    if kernel.shape[0] > kernel.shape[1]:                        # before and after saving
        return False
    singular = np.linalg.svd(kernel.astype(np.float64), compute_uv=False)
    tolerance = singular.max(initial=0.0) * max(kernel.shape) * np.finfo(np.float32).eps
    return bool((singular > tolerance).sum() == kernel.shape[0])


def _unit_components(features: np.ndarray, count: int) -> tuple[np.ndarray, np.ndarray]:
    """(kernel [D_s, p], bias [p]) mapping features [n, D_s] to their p leading principal
    components (standardised PCA, `encoders.PCAEncoder`) scaled to unit variance on these
    rows."""
    pca = PCAEncoder.fit(features, count)
    kernel = (pca.components / pca.scale).T.astype(np.float64)  # [D_s, p]
    bias = -(pca.mean / pca.scale) @ pca.components.T.astype(np.float64)
    spread = (features @ kernel + bias).std(axis=0)
    spread = np.where(spread > 0, spread, 1.0)
    return kernel / spread, bias / spread


def apply_condition_map(cmap: dict, features: np.ndarray) -> np.ndarray:
    """[N, D_s] source features -> [N, k] condition values (see `fit_condition_map`)."""
    return (np.asarray(features, np.float32) @ np.asarray(cmap["kernel"])
            + np.asarray(cmap["bias"])).astype(np.float32)
