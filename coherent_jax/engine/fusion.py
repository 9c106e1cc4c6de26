"""How K noise predictions become one, and the per-sample disagreement between them.

Shapes: K members, N samples, D data dims. `weights` [N, K] are per-sample member weights,
non-negative, each row summing to 1; a zero weight means the member's source is not available
for that sample (it takes no part in fusion or disagreement).
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np

FUSIONS = ("mean", "product")


def inverse_mse_weights(val_mse) -> np.ndarray:
    """The paper's member weights softmax(1 / validation MSE) [K], from MSEs [K]."""
    val_mse = np.asarray(val_mse, dtype=np.float64)
    if val_mse.ndim != 1 or val_mse.size == 0:
        raise ValueError(f"val_mse must be a non-empty vector [K], got shape {val_mse.shape}.")
    if not np.all(np.isfinite(val_mse)) or np.any(val_mse <= 0):
        raise ValueError(f"validation MSEs must be finite and > 0, got {val_mse.tolist()}.")
    logits = 1.0 / val_mse
    w = np.exp(logits - logits.max())
    return (w / w.sum()).astype(np.float32)


def availability_weights(val_mse, available) -> np.ndarray:
    """Per-sample weights [N, K]: softmax(1 / MSE) over each sample's available members only.

    Args:
        val_mse: validation MSE of each member [K].
        available: bool [N, K], True where member k's source modality exists for sample n.
    """
    base = inverse_mse_weights(val_mse).astype(np.float64)  # [K]
    available = np.asarray(available, dtype=bool)
    if available.ndim != 2 or available.shape[1] != base.shape[0]:
        raise ValueError(f"available must be [N, {base.shape[0]}], got {available.shape}.")
    empty = np.flatnonzero(~available.any(axis=1))
    if empty.size:
        raise ValueError(f"{empty.size} sample(s) (rows {empty[:5].tolist()}...) have no available "
                         "source: coherent denoising needs at least one condition per sample.")
    w = available * base[None, :]
    return (w / w.sum(axis=1, keepdims=True)).astype(np.float32)


def fuse_mean(eps: jax.Array, weights: jax.Array) -> jax.Array:
    """The paper's fusion: weighted mean of member predictions. eps [K, N, D] -> [N, D]."""
    return jnp.einsum("nk,knd->nd", weights, eps)


def fuse_product(eps: jax.Array, eps_uncond: jax.Array, weights: jax.Array) -> jax.Array:
    """Product of experts (composable diffusion): eps_u + sum_i (eps_i - eps_u).

    The sum runs over each sample's available members; eps_u is the weighted mean of the
    members' unconditional predictions. eps, eps_uncond [K, N, D] -> [N, D].
    """
    available = (weights > 0).astype(eps.dtype)  # [N, K]
    eps_u = jnp.einsum("nk,knd->nd", weights, eps_uncond)
    return eps_u + jnp.einsum("nk,knd->nd", available, eps - eps_uncond)


def fuse_sharpened(eps: jax.Array, eps_uncond: jax.Array, weights: jax.Array,
                   sharpness: jax.Array) -> jax.Array:
    """Weighted mean sharpened towards a product of experts by `sharpness` s.

    eps_u + lambda_n * sum_i w_i (eps_i - eps_u,i) with lambda_n = 1 + s (n - 1), n the
    sample's available members and eps_u = sum_i w_i eps_u,i. s = 0 is the paper's weighted
    mean (the same function, written around the members' unconditional predictions); s = 1
    with equal weights is `fuse_product`. Why: for Gaussian experts the weighted mean of eps
    is a geometric mixture whose variance is a (weighted harmonic) mean of the single-source
    posterior variances, so adding sources improves the mean but not the spread; the product
    assumes sources independent given the target and over-sharpens when they share factors.
    s is calibrated in between on validation patients (`calibrate.choose_fusion_sharpness`).

    eps, eps_uncond [K, N, D], weights [N, K], sharpness scalar -> [N, D].
    """
    n = jnp.sum(weights > 0, axis=1).astype(eps.dtype)  # [N]
    lam = 1.0 + sharpness * (n - 1.0)
    eps_u = jnp.einsum("nk,knd->nd", weights, eps_uncond)
    return eps_u + lam[:, None] * jnp.einsum("nk,knd->nd", weights, eps - eps_uncond)


def disagreement(eps: jax.Array, weights: jax.Array) -> jax.Array:
    """Per-sample disagreement 1 - weighted mean pairwise cosine similarity. -> [N].

    Pairs i < j of available members are weighted (w_i + w_j) / 2 (the paper). A sample with
    fewer than two available members has disagreement 0.
    """
    num_members = eps.shape[0]
    if num_members < 2:
        return jnp.zeros(eps.shape[1], eps.dtype)
    norm = jnp.linalg.norm(eps, axis=-1, keepdims=True)  # [K, N, 1]
    unit = eps / jnp.maximum(norm, 1e-12)
    cos = jnp.einsum("ind,jnd->nij", unit, unit)  # [N, K, K]
    upper = jnp.triu(jnp.ones((num_members, num_members), bool), k=1)
    present = weights > 0
    pair_w = 0.5 * (weights[:, :, None] + weights[:, None, :])  # [N, K, K]
    pair_w = jnp.where(upper[None] & present[:, :, None] & present[:, None, :], pair_w, 0.0)
    total = pair_w.sum(axis=(1, 2))
    mean_cos = (pair_w * cos).sum(axis=(1, 2)) / jnp.where(total > 0, total, 1.0)
    return jnp.where(total > 0, 1.0 - mean_cos, 0.0)
