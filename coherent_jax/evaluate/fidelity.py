"""Fidelity of generated vs real samples: precision, recall, density, coverage (Naeem et al.
2020, "Reliable fidelity and diversity metrics for generative models") and energy distance.

All distances are Euclidean in the space given (use z-scored latents or standardised features).
"""

from __future__ import annotations

import numpy as np
from scipy.spatial.distance import cdist


def _kth_neighbour_radius(x: np.ndarray, k: int) -> np.ndarray:
    """[N] distance from each row of x [N, D] to its k-th nearest other row."""
    if x.shape[0] <= k:
        raise ValueError(f"k={k} needs more than {k} samples, got {x.shape[0]}.")
    d = cdist(x, x)
    return np.partition(d, k, axis=1)[:, k]  # column 0 of the partition is the self-distance


def prdc_per_sample(real: np.ndarray, generated: np.ndarray, k: int = 5) -> dict:
    """Each sample's part of precision, recall, density and coverage (see `prdc`).

    Returns:
        {'precision': [M] generated sample inside some real ball, 'density': [M] number of real
        balls holding it / k, 'recall': [N] real sample inside some generated ball, 'coverage':
        [N] real ball holding some generated sample}; `prdc` is their means. With the k-NN
        balls held fixed, resampling these per-sample values gives intervals over samples.
    """
    real, generated = np.asarray(real, np.float64), np.asarray(generated, np.float64)
    if real.ndim != 2 or generated.ndim != 2 or real.shape[1] != generated.shape[1]:
        raise ValueError(f"real and generated must be [N, D] and [M, D]; got {real.shape} and "
                         f"{generated.shape}.")
    real_radius = _kth_neighbour_radius(real, k)  # [N]
    gen_radius = _kth_neighbour_radius(generated, k)  # [M]
    d = cdist(real, generated)  # [N, M]
    inside_real = d <= real_radius[:, None]  # generated j inside real ball i
    return {"precision": inside_real.any(axis=0).astype(np.float64),
            "density": inside_real.sum(axis=0) / k,
            "recall": (d <= gen_radius[None, :]).any(axis=1).astype(np.float64),
            "coverage": (d.min(axis=1) <= real_radius).astype(np.float64)}


def prdc(real: np.ndarray, generated: np.ndarray, k: int = 5) -> dict:
    """Precision, recall, density and coverage with k-NN manifolds.

    Each real sample gets a ball of radius = distance to its k-th nearest real neighbour (and
    each generated sample one from its k-th nearest generated neighbour, for recall).
    precision: share of generated samples inside some real ball.
    recall: share of real samples inside some generated ball.
    density: mean number of real balls holding a generated sample, divided by k (~1 when the
        distributions match; can exceed 1).
    coverage: share of real samples whose ball holds at least one generated sample.

    Args:
        real: [N, D]; generated: [M, D].
        k: neighbourhood size (5 as in Naeem et al.; the paper's §5 used 10).
    """
    parts = prdc_per_sample(real, generated, k)
    return {**{name: float(values.mean()) for name, values in parts.items()}, "k": k}


def energy_distance(x: np.ndarray, y: np.ndarray, max_samples: int | None = 2000,
                    seed: int = 0) -> float:
    """Energy distance 2 E|X - Y| - E|X - X'| - E|Y - Y'| between samples x [N, D], y [M, D].

    The within-sample terms exclude self-pairs (U-statistics), so the estimate is ~0 (and may
    be slightly negative) when both come from one distribution. Samples larger than
    `max_samples` are subsampled without replacement with `seed` (None: use all).
    """
    rng = np.random.default_rng(seed)
    x, y = np.asarray(x, np.float64), np.asarray(y, np.float64)
    if max_samples is not None:
        x = x[rng.permutation(len(x))[:max_samples]]
        y = y[rng.permutation(len(y))[:max_samples]]
    if len(x) < 2 or len(y) < 2:
        raise ValueError("energy distance needs at least 2 samples on each side.")

    def within(a):
        return cdist(a, a).sum() / (len(a) * (len(a) - 1))

    return float(2 * cdist(x, y).mean() - within(x) - within(y))
