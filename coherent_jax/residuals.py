"""Residual spread per dimension, robust to a few outlying patients.

Held-out residuals of real cohorts are heavy-tailed: a handful of patients with many times the
median squared error set the root-mean-square, so a Gaussian with that RMS is too wide for the
other patients (its central 90% interval over-covers held-out test values). The
normal-consistent median absolute deviation describes the bulk instead, so it is the spread
that anchored denoisers and decoded draws carry (KIPAN: benchmarks/RESULTS.md, "Measurements
behind comments in the code").
"""

from __future__ import annotations

import numpy as np
from sklearn.covariance import LedoitWolf

MAD_TO_SD = 1.4826  # 1 / Phi^-1(3/4): the MAD of a normal sample times this is its SD


def robust_std(residual: np.ndarray, floor: float = 0.0) -> np.ndarray:
    """Normal-consistent MAD per column of residual [n, D] -> [D] (float64), at least `floor`."""
    residual = np.asarray(residual, np.float64)
    if residual.ndim != 2 or residual.shape[0] < 2:
        raise ValueError(f"residuals must be [n >= 2, D], got shape {residual.shape}.")
    centre = np.median(residual, axis=0)
    return np.maximum(MAD_TO_SD * np.median(np.abs(residual - centre), axis=0), floor)


def robust_covariance(residual: np.ndarray) -> np.ndarray:
    """[D, D] covariance of residuals [n, D]: the Ledoit-Wolf shrunk correlation of the
    standardised residuals, rescaled by each column's `robust_std`.

    Ledoit-Wolf on the raw residuals shrinks towards a multiple of the identity: latent
    dimensions whose variances span two orders of magnitude (PCA scores) all get pulled up
    to the average, and the few heavy-tailed patients set every scale. Shrinking the
    correlation keeps each dimension's own spread and takes that spread from the bulk, which
    scored the decoded draws better on every KIPAN target (benchmarks/RESULTS.md,
    "Measurements behind comments in the code").
    """
    residual = np.asarray(residual, np.float64)
    if residual.ndim != 2 or residual.shape[0] < 2:
        raise ValueError(f"residuals must be [n >= 2, D], got shape {residual.shape}.")
    sd = residual.std(axis=0)
    scale = robust_std(residual)
    return shrunk_covariance(residual, np.where(scale > 0, scale, sd))  # constant bulk: its SD


def shrunk_covariance(values: np.ndarray, scale: np.ndarray | None = None) -> np.ndarray:
    """[D, D] the Ledoit-Wolf shrunk correlation of values [n, D] times outer(scale, scale)
    (default scale: each column's standard deviation)."""
    values = np.asarray(values, np.float64)
    if values.ndim != 2 or values.shape[0] < 2:
        raise ValueError(f"values must be [n >= 2, D], got shape {values.shape}.")
    sd = values.std(axis=0)
    sd = np.where(sd > 0, sd, 1.0)
    corr = LedoitWolf().fit(values / sd).covariance_
    norm = np.sqrt(np.diag(corr))
    corr = corr / np.outer(norm, norm)
    scale = sd if scale is None else np.asarray(scale, np.float64)
    return corr * np.outer(scale, scale)
