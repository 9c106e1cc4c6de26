"""Draws of anchored models with nothing learned: the Gaussian their anchors define, no chain.

An anchored Denoiser whose learned correction is exactly zero (not trained, `train_steps=0`,
or the anchor kept by selection) predicts the exact eps of the Gaussian N(m_S, Sigma_S) of its
anchor (`engine/denoiser.py`), so a reverse chain can only approximate, with solver error, a
draw that is made exactly and in one step here.

Fused specialists. A fusion rule combines the members' eps linearly (`fusion.py`); at t -> 0
eps / sigma_t is minus the score, so the fused score is the same combination of the members'
Gaussian scores -P (x - m), and the fusion defines the Gaussian with precision and shift

    P = sum_i w_i P0_i + sum_i a_i (P_i - P0_i),
    P m = sum_i w_i P0_i m0_i + sum_i a_i (P_i m_i - P0_i m0_i),

with (m_i, P_i) member i's conditional anchor, (m0_i, P0_i) its prior (the unconditional
anchor), w the sample's member weights, and a_i = lambda w_i for the sharpened mean
(lambda = 1 + s (n - 1), s the sharpness, n available members; s = 0 is the paper's weighted
mean) or
a_i = 1 for every available member (product of experts, which for sources independent given
the target is the exact posterior p(x | c_1..c_n) = prod p(x | c_i) / p(x)^(n-1)). A chain
run on the fused eps reaches this Gaussian exactly when the members share one covariance (and,
for s > 0 or the product, their prior shares it too); otherwise the fused eps is not that
of any one diffused Gaussian and the chain lands near it. Where the fused precision is not positive definite (sharpening far past the
product) there is no such Gaussian and `fused_draws` returns None (the chain runs).

Mixture anchors (`mixture_anchor`): a multi-condition model's subset anchor is an exact
mixture, drawn here (component, then its Gaussian). Where each row has one specialist
available, the fusion returns that member's eps unchanged (weight 1, and lambda = 1 for one
member), so the rows are drawn exactly from its conditional mixture; two or more fused
mixture specialists define no mixture in closed form, so their chain runs on the fused exact
eps (`fused_draws` returns None).

Rows: R rows of one target, each with its members' condition values and availability.
"""

from __future__ import annotations

import jax
import numpy as np

from coherent_jax.anchor import ANCHOR_PARAMS, MIXTURE_PARAMS
from coherent_jax.mixture_anchor import component_logits


def untrained(variables) -> bool:
    """Whether anchored variables ({'params': ...}, optionally with a leading member axis) have
    an exactly zero learned correction: the output layer's kernel and bias all zero."""
    if variables is None:
        return False
    params = variables["params"]
    if "anchor_basis" not in params:
        return False
    return not (np.asarray(params["out"]["kernel"]).any() or np.asarray(params["out"]["bias"]).any())


def is_mixture(variables) -> bool:
    """Whether anchored variables hold mixture anchors (`mixture_anchor`)."""
    return variables is not None and "anchor_gate_const" in variables["params"]


def anchors_of(params: dict) -> dict:
    """{'kernel', 'bias', 'log_var', 'basis'} (and a mixture's 'gate_*') float64 arrays of a
    Denoiser's anchor params."""
    names = MIXTURE_PARAMS if "anchor_gate_const" in params else ANCHOR_PARAMS
    return {name: np.asarray(params[f"anchor_{name}"], np.float64) for name in names}


def _precision(anchor: dict, subset) -> np.ndarray:
    """[..., D, D] inverse covariance of anchor subset(s) (eigenbasis, exact)."""
    basis = anchor["basis"][subset]
    return (basis * np.exp(-anchor["log_var"][subset])[..., None, :]) @ np.swapaxes(basis, -1, -2)


def _mean(anchor: dict, subset: int, inputs: np.ndarray) -> np.ndarray:
    """[R, D] anchor means of one subset for its inputs [R, sum D_c] (zeros where masked)."""
    return inputs @ anchor["kernel"][subset] + anchor["bias"][subset]


def fused_draws(members: dict, values: list[np.ndarray], available: np.ndarray,
                weights: np.ndarray, key: jax.Array, *, product: bool = False,
                sharpness: float = 0.0) -> np.ndarray | None:
    """[R, D] one draw per row from the Gaussian that fused untrained specialists define.

    Args:
        members: the K specialists' params, stacked (leading axis K), each one condition.
        values: K condition values [R, D_c] (any finite value where unavailable).
        available: [R, K] bool, member k's source given for row r.
        weights: [R, K] member weights (zero where unavailable; rows sum to 1).
        key: the draws' PRNG key (same key, same draws).
        product: product of experts (`fusion.fuse_product`); else the sharpened weighted
            mean (`fusion.fuse_sharpened` with `sharpness`).

    Returns:
        The draws, or None when some row's fused precision is not positive definite or the
        members hold mixture anchors and some row has two or more available (no closed form:
        the chain runs).
    """
    if "anchor_gate_const" in members:
        return _single_mixture_draws(members, values, available, key)
    gaussians = fused_gaussians(members, values, available, weights, product=product,
                                sharpness=sharpness)
    if gaussians is None:
        return None
    d = gaussians[0][1].shape[1]
    noise = np.asarray(jax.random.normal(key, (available.shape[0], d)), np.float64)  # [R, D]
    out = np.empty_like(noise)
    for rows, mean, scale in gaussians:
        out[rows] = mean + noise[rows] @ scale.T
    return out.astype(np.float32)


def fused_gaussians(members: dict, values: list[np.ndarray], available: np.ndarray,
                    weights: np.ndarray, *, product: bool = False, sharpness: float = 0.0
                    ) -> list[tuple[np.ndarray, np.ndarray, np.ndarray]] | None:
    """The fused Gaussians of `fused_draws` (same arguments), one per availability pattern:
    [(rows [r], means [r, D], factor L [D, D] with L L^T the covariance)], or None."""
    if "anchor_gate_const" in members:
        return None
    anchor = anchors_of(members)
    num = available.shape[1]
    member = [{k: v[i] for k, v in anchor.items()} for i in range(num)]
    prior_p = [_precision(a, 0) for a in member]  # K x [D, D]
    prior_h = [p @ a["bias"][0] for p, a in zip(prior_p, member)]
    cond_p = [_precision(a, 1) for a in member]
    cond_mean = [_mean(a, 1, np.asarray(v, np.float64)) for a, v in zip(member, values)]
    found = []
    for pattern in np.unique(np.concatenate([available, weights], axis=1), axis=0):
        avail, w = pattern[:num] > 0.5, pattern[num:]
        rows = np.flatnonzero((available == avail).all(axis=1)
                              & np.isclose(weights, w, rtol=0, atol=1e-7).all(axis=1))
        lam = 1.0 + sharpness * (avail.sum() - 1.0)
        a = np.where(avail, 1.0, 0.0) if product else lam * w
        precision = sum(w[i] * prior_p[i] + a[i] * (cond_p[i] - prior_p[i]) for i in range(num))
        shift = sum((w[i] - a[i]) * prior_h[i] for i in range(num))  # [D]
        shift = shift + sum(a[i] * cond_mean[i][rows] @ cond_p[i] for i in range(num) if a[i])
        gaussian = _gaussian(precision, shift)
        if gaussian is None:
            return None
        found.append((rows, *gaussian))
    return found


def _single_mixture_draws(members: dict, values: list[np.ndarray], available: np.ndarray,
                          key: jax.Array) -> np.ndarray | None:
    """[R, D] exact draws of mixture specialists where every row has exactly one available
    (each row from its member's conditional mixture, `masked_draws`), else None."""
    if not (available.sum(axis=1) == 1).all():
        return None
    member = np.argmax(available, axis=1)  # [R]
    out = None
    for k in np.unique(member):
        rows = np.flatnonzero(member == k)
        own = {name: np.asarray(v)[k] for name, v in members.items()
               if name.startswith("anchor_")}
        drawn = masked_draws(own, [np.asarray(values[k])[rows]], np.ones((rows.size, 1), bool),
                             jax.random.fold_in(key, int(k)))
        if out is None:
            out = np.empty((available.shape[0], drawn.shape[1]), np.float32)
        out[rows] = drawn
    return out


def masked_draws(params: dict, values: list[np.ndarray], mask: np.ndarray,
                 key: jax.Array) -> np.ndarray:
    """[R, D] one draw per row from an untrained multi-condition model: its anchor of the
    row's condition subset (mask [R, C] bool; values C x [R, D_c])."""
    anchor = anchors_of(params)
    index = mask.astype(int) @ (2 ** np.arange(mask.shape[1]))  # [R]
    inputs = np.concatenate([np.asarray(v, np.float64) * mask[:, [j]]
                             for j, v in enumerate(values)], axis=1)
    noise = np.asarray(jax.random.normal(key, (len(index), anchor["bias"].shape[-1])), np.float64)
    out = np.empty_like(noise)
    if "gate_const" in anchor:
        return _mixture_draws(anchor, index, inputs, noise, jax.random.fold_in(key, 1))
    for subset in np.unique(index):
        rows = np.flatnonzero(index == subset)
        scale = anchor["basis"][subset] * np.exp(0.5 * anchor["log_var"][subset])
        out[rows] = _mean(anchor, subset, inputs[rows]) + noise[rows] @ scale.T
    return out.astype(np.float32)


def _mixture_draws(anchor: dict, index: np.ndarray, inputs: np.ndarray, noise: np.ndarray,
                   key: jax.Array) -> np.ndarray:
    """[R, D] exact draws of mixture anchors: a component per row from its conditional weights,
    then that component's Gaussian (index [R] subsets, inputs [R, W], noise [R, D])."""
    logits = component_logits(anchor, index, inputs)  # [R, M]
    uniform = np.asarray(jax.random.uniform(key, (len(index), 1)), np.float64)
    weights = np.exp(logits - logits.max(axis=1, keepdims=True))
    cumulative = np.cumsum(weights / weights.sum(axis=1, keepdims=True), axis=1)
    component = np.minimum((cumulative < uniform).sum(axis=1), logits.shape[1] - 1)  # [R]
    group = index * logits.shape[1] + component  # [R]: (subset, component) as one key
    out = np.empty_like(noise)
    for key in np.unique(group):
        rows = np.flatnonzero(group == key)
        subset, j = divmod(int(key), logits.shape[1])
        scale = anchor["basis"][subset, j] * np.exp(0.5 * anchor["log_var"][subset, j])  # [D, D]
        out[rows] = (inputs[rows] @ anchor["kernel"][subset, j] + anchor["bias"][subset, j]
                     + noise[rows] @ scale.T)
    return out.astype(np.float32)


def _gaussian(precision: np.ndarray, shift: np.ndarray) -> tuple[np.ndarray, np.ndarray] | None:
    """(means [R, D] = shift [R, D] @ P^-1, factor L with L L^T = P^-1), or None when the
    precision P [D, D] is not positive definite."""
    values, vectors = np.linalg.eigh(0.5 * (precision + precision.T))
    if values.min() <= 1e-10 * max(values.max(), 1e-300):
        return None
    covariance = (vectors / values) @ vectors.T
    return shift @ covariance, vectors / np.sqrt(values)
