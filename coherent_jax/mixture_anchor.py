"""Gaussian-mixture anchors: the closed form where a hidden subtype makes conditionals multi-modal.

A linear-Gaussian anchor (`anchor.fit_anchors`) has one mode. Where a subtype that the given
sources do not reveal shifts the target, the target's conditional has one mode per subtype,
and a learned correction trained on a few thousand patients only partly moves the anchor's
single mode apart (benchmarks/RESULTS.md, bench_mixture). A Gaussian mixture fitted to the
joint rows [target, conditions] (each component with its own covariance, or one shared by all)
has every subset's conditional in closed form, again a mixture:

    p(x | c_S) = sum_j w_j(c_S) N(x; K_{S,j}^T c_S + b_{S,j}, Sigma_{S,j}),
    log w_j(c_S) = log pi_j - 1/2 logdet C_{S,j} - 1/2 (c_S - mu_{S,j})^T C_{S,j}^-1 (c_S - mu_{S,j}) + const,

(C_{S,j}: component j's covariance of the conditions in S), and its eps at every noise level is
exact too (`models.denoiser.mixture_anchor_eps`): each component's Gaussian eps weighted by the
component's posterior given c_S and x_t. The number of components and the covariance kind are
chosen by BIC on the joint rows, one component included; where one wins, the model keeps its
linear-Gaussian anchor unchanged.

    mixture = fit_mixture_anchors(x, x_present, [(c1, c1_present)], max_components=4)
    # None: one component won (keep fit_anchors); else the mixture's anchor parameters
"""

from __future__ import annotations

import itertools
from typing import Sequence

import numpy as np
from sklearn.mixture import GaussianMixture

from coherent_jax.anchor import eigh_floored

REG_COVAR = 1e-3
"""Added to the diagonal of every component's covariance, in units of each column's variance."""


def _fit(joint: np.ndarray, m: int, kind: str, seed: int) -> GaussianMixture:
    return GaussianMixture(m, covariance_type=kind, reg_covar=REG_COVAR, n_init=3,
                           max_iter=300, random_state=seed).fit(joint)


def _parameters(m: int, dim: int, kind: str) -> int:
    covariance = dim * (dim + 1) // 2
    return m * (dim + 1) - 1 + (m * covariance if kind == "full" else covariance)


def select_components(joint: np.ndarray, max_components: int, seed: int
                      ) -> GaussianMixture | None:
    """The BIC-best mixture of 1..max_components components on standardised joint rows
    [n, J], each with its own covariance ('full') or one shared by all ('tied': J (J + 1) / 2
    parameters in all, so a few hundred rows can afford several components); None when one
    component wins."""
    n, dim = joint.shape
    best, best_bic = None, _fit(joint, 1, "full", seed).bic(joint)
    for m, kind in itertools.product(range(2, max_components + 1), ("tied", "full")):
        if _parameters(m, dim, kind) > n * dim:  # more parameters than values: not tried
            continue
        gm = _fit(joint, m, kind, seed)
        bic = gm.bic(joint)
        if bic < best_bic:
            best, best_bic = gm, bic
    return best


def fit_mixture_anchors(target: np.ndarray, target_present: np.ndarray,
                        conditions: Sequence[tuple[np.ndarray, np.ndarray]], *,
                        max_components: int, seed: int = 0,
                        residual_target: np.ndarray | None = None,
                        components: int | None = None) -> dict | None:
    """Mixture anchors of one model for every subset of its conditions (module docstring).

    Args:
        target: [N, D] training values of the generated modality.
        target_present: [N] bool.
        conditions: C pairs (values [N, D_c], present [N]).
        max_components: the most components BIC may choose.
        seed: EM's initialisation.
        residual_target: [N, D] the target as new patients' would be encoded
            (`latent.cross_fitted_latents`); the mixture is fitted to it (default: `target`).
        components: fit exactly this many (BIC then only picks the covariance kind; used to
            give every member of a family the same count).

    Returns:
        None when one component wins BIC (keep the linear-Gaussian anchor), else float32
        {'kernel' [S, M, W, D], 'bias' [S, M, D], 'log_var' [S, M, D], 'basis' [S, M, D, D],
        'gate_const' [S, M], 'gate_mean' [S, M, W], 'gate_prec' [S, M, W, W]}, S = 2^C subsets
        (index = sum of 2^j over the conditions j present), W = sum D_c (zeros outside the
        subset's conditions).
    """
    values = target if residual_target is None else residual_target
    rows = target_present & np.all([p for _, p in conditions], axis=0)
    joint = np.concatenate([values[rows]] + [c[rows] for c, _ in conditions],
                           axis=1).astype(np.float64)  # [n, D + W]
    centre, scale = joint.mean(axis=0), joint.std(axis=0)
    scale = np.where(scale > 0, scale, 1.0)
    if components is None:
        gm = select_components((joint - centre) / scale, max_components, seed)
        if gm is None:
            return None
    else:
        gm = min((_fit((joint - centre) / scale, components, kind, seed) for kind in
                  ("tied", "full")), key=lambda g: g.bic((joint - centre) / scale))
    means = centre + gm.means_ * scale  # [M, D + W] back in the data's units
    covs = np.broadcast_to(gm.covariances_, (gm.n_components,) + gm.means_.shape[1:] * 2)
    covs = covs * np.outer(scale, scale)  # [M, D + W, D + W]
    return conditional_mixtures(gm.weights_, means, covs, target.shape[1],
                                [c.shape[1] for c, _ in conditions])


def conditional_mixtures(weights: np.ndarray, means: np.ndarray, covs: np.ndarray, dim: int,
                         widths: Sequence[int]) -> dict:
    """Every subset's conditional mixture of a joint mixture over [target (dim), conditions
    (widths)]: weights [M], means [M, J], covs [M, J, J] -> the anchor dict of
    `fit_mixture_anchors`."""
    m, width = len(weights), int(sum(widths))
    offsets = np.concatenate([[0], np.cumsum(widths)]).astype(int)
    num = 2 ** len(widths)
    out = {"kernel": np.zeros((num, m, width, dim)), "bias": np.zeros((num, m, dim)),
           "log_var": np.zeros((num, m, dim)), "basis": np.zeros((num, m, dim, dim)),
           "gate_const": np.zeros((num, m)), "gate_mean": np.zeros((num, m, width)),
           "gate_prec": np.zeros((num, m, width, width))}
    for index, j in itertools.product(range(num), range(m)):
        cols = np.concatenate([np.arange(offsets[c], offsets[c + 1])
                               for c in range(len(widths)) if index >> c & 1] or [[]]).astype(int)
        mu_x, mu_c = means[j, :dim], means[j, dim + cols]
        s_xx = covs[j, :dim, :dim]
        s_xc = covs[j][:dim][:, dim + cols]  # [D, |S|]
        s_cc = covs[j][np.ix_(dim + cols, dim + cols)]
        if len(cols):
            prec = np.linalg.inv(s_cc)
            gain = prec @ s_xc.T  # [|S|, D]
            out["kernel"][index, j][cols] = gain
            out["bias"][index, j] = mu_x - mu_c @ gain
            cond_cov = s_xx - s_xc @ gain
            out["gate_mean"][index, j][cols] = mu_c
            out["gate_prec"][index, j][np.ix_(cols, cols)] = prec
            out["gate_const"][index, j] = (np.log(weights[j])
                                           - 0.5 * np.linalg.slogdet(s_cc)[1])
        else:
            out["bias"][index, j] = mu_x
            cond_cov = s_xx
            out["gate_const"][index, j] = np.log(weights[j])
        out["log_var"][index, j], out["basis"][index, j] = eigh_floored(cond_cov)
    return {k: v.astype(np.float32) for k, v in out.items()}


def component_logits(anchor: dict, subset: np.ndarray, inputs: np.ndarray) -> np.ndarray:
    """[R, M] log weights (unnormalised) of each row's conditional mixture: subset [R] index,
    inputs [R, W] (zeros where masked). numpy float64."""
    centred = inputs[:, None, :] - anchor["gate_mean"][subset]  # [R, M, W]
    quad = np.einsum("rmw,rmwv,rmv->rm", centred, anchor["gate_prec"][subset], centred)
    return anchor["gate_const"][subset] - 0.5 * quad
