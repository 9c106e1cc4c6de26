"""Per-feature shape transforms: heavy tails and skew taken out before the z-scores.

A modality observed through an elementwise monotone link (counts, expression on a linear
scale, a sinh-like heavy tail) has conditionals that no Gaussian or Gaussian mixture in its
z-scores describes well, and a diffusion model fitted on ~1,000 patients learns the link only
in part (benchmarks/RESULTS.md, the sinh cohort). Taking the link out per feature first lets
the latent space, the closed form and the mixture anchors model what they can, and the
inverse puts it back on every draw. The family, per feature j,

    T_j(x) = s_j asinh((x - m_j) / s_j),         T_j^-1(t) = m_j + s_j sinh(t / s_j),

is the identity near m_j and logarithmic in both tails (s_j = inf: no transform). (m_j, s_j)
come from a grid of locations (the 10th-90th percentiles of the training values) and scales
(0.05-4 standard deviations: below, the inverse would blow small errors up), in two passes:

1. marginal: the Gaussian likelihood of T_j(x_j) (with the Jacobian);
2. conditional: the Gaussian likelihood of the residual of T_j(x_j) regressed on the other
   features' transformed values (through the leading principal components of the modality,
   feature j's own share taken out). This is what the latent space and the anchors need, a
   linear-Gaussian relation between features; a feature whose marginal is a mixture (a
   subtype it shows) is not forced into one Gaussian: the others explain the modes.

Either pass transforms a feature only where that gains more than log(n) (BIC, two parameters),
and neither touches a constant feature or one with a point mass (`POINT_MASS`).

    shape = AsinhShape.fit(rows)        # rows [n, D] in the input's units, NaN: holes
    t = shape.apply(rows); rows_back = shape.inverse(t)
"""

from __future__ import annotations

import dataclasses

import numpy as np

LOCATIONS = np.linspace(0.1, 0.9, 9)
"""Candidate m_j: these quantiles of the feature's training values."""
SCALES = (0.05, 0.1, 0.2, 0.3, 0.5, 1.0, 2.0, 4.0)
"""Candidate s_j, in units of the feature's training standard deviation."""
POINT_MASS = 0.05
"""A feature whose most frequent value holds this share of its training values (a detection
floor, zeros of a count) is left as it is: the Gaussian likelihood of a transformed spike
rewards squeezing everything but the spike, and the inverse then blows errors up (measured on
KIPAN miRNA: R^2 0.39 -> -0.29 through the files)."""
COMPONENTS = 16
"""Principal components of the other features that the conditional pass regresses on."""
MARGIN = 1.0
"""`inverse` keeps values within the 1st-99th percentile range of the training values (in the
input's units) widened by this share of it on each side: the exponential tail of sinh turns a
draw past the training values into an absurd value in the input's units (percentiles, not the
extremes: no single patient's value is kept)."""
MARGINALS = ("none", "asinh", "auto")
"""The preprocessing's choices (`Preprocessor.fit`): none, always, or where validation says."""


def _candidates(x: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(loc [G], scale [G], transformed values [n, G]) of one feature's grid (x [n], no
    holes); candidate 0 is the identity (scale inf)."""
    sd = x.std()
    loc = np.repeat(np.quantile(x, LOCATIONS), len(SCALES))
    scale = np.tile(np.asarray(SCALES) * (sd if sd > 0 else 1.0), len(LOCATIONS))
    u = (x[:, None] - loc) / scale  # [n, G - 1]
    return (np.concatenate([[0.0], loc]), np.concatenate([[np.inf], scale]),
            np.column_stack([x, scale * np.arcsinh(u)]))


def _choose(rows: np.ndarray, residuals) -> tuple[np.ndarray, np.ndarray]:
    """(loc [D], scale [D]): per feature, the candidate (`_candidates`) whose residuals
    maximise the Gaussian likelihood with the Jacobian, the identity unless a transform gains
    more than log(n). residuals(values [n_j, G], j, present [n]) -> [n_j, G]."""
    loc, scale = np.zeros(rows.shape[1]), np.full(rows.shape[1], np.inf)
    for j in range(rows.shape[1]):
        present = ~np.isnan(rows[:, j])
        x = rows[present, j]
        if len(x) < 3 or _point_mass(x) >= POINT_MASS:  # constant, or a spike: as it is
            continue
        m, s, values = _candidates(x)
        u = (x[:, None] - m[1:]) / s[1:]
        jacobian = np.concatenate([[0.0], -0.5 * np.log1p(u * u).sum(axis=0)])  # [G]
        r = residuals(values, j, present)
        score = -0.5 * len(x) * np.log(np.maximum(np.mean(r * r, axis=0), 1e-300)) + jacobian
        score[1:] -= np.log(len(x))  # BIC: two parameters
        best = int(np.argmax(score))
        loc[j], scale[j] = m[best], s[best]
    return loc, scale


def _point_mass(x: np.ndarray) -> float:
    """The share of the values [n] equal to the most frequent one."""
    return float(np.unique(x, return_counts=True)[1].max() / len(x))


def _centred(values: np.ndarray, j: int, present: np.ndarray) -> np.ndarray:
    """The marginal pass's residuals: each candidate minus its mean."""
    return values - values.mean(axis=0)


class _Regressors:
    """Residuals of a feature regressed on the leading principal components of the modality
    with that feature's own share taken out (the conditional pass)."""

    def __init__(self, t: np.ndarray):
        mean, sd = np.nanmean(t, axis=0), np.nanstd(t, axis=0)
        z = np.nan_to_num((t - mean) / np.where(sd > 0, sd, 1.0))  # [n, D], holes at the mean
        k = max(1, min(COMPONENTS, t.shape[1] - 1, t.shape[0] - 2))
        basis = np.linalg.svd(z, full_matrices=False)[2][:k]  # [k, D]
        self.z, self.basis, self.scores = z, basis, z @ basis.T  # scores [n, k]

    def __call__(self, values: np.ndarray, j: int, present: np.ndarray) -> np.ndarray:
        """[n_j, G] residuals of the candidates of feature j on its rows `present`."""
        own = np.outer(self.z[:, j], self.basis[:, j])  # feature j's share of the scores
        design = np.column_stack([self.scores - own, np.ones(len(self.z))])[present]
        gram = design.T @ design  # [k + 1, k + 1]; least squares by its normal equations
        gram[np.diag_indices_from(gram)] += 1e-9 * np.trace(gram)
        return values - design @ np.linalg.solve(gram, design.T @ values)


@dataclasses.dataclass(frozen=True, eq=False)
class AsinhShape:
    """Fitted per-feature transforms (module docstring).

    Attributes:
        loc: [D] m_j.
        scale: [D] s_j (inf: the feature is left as it is).
        low, high: [D] the range (transformed units) `inverse` clips to (`MARGIN`).
    """

    loc: np.ndarray
    scale: np.ndarray
    low: np.ndarray
    high: np.ndarray

    @classmethod
    def fit(cls, rows: np.ndarray) -> "AsinhShape":
        """Chooses (m_j, s_j) per column of training rows [n, D] (NaN: holes): the marginal
        pass, then the conditional pass given the marginal pass's transforms."""
        rows = np.asarray(rows, np.float64)
        loc, scale = _choose(rows, _centred)
        if rows.shape[1] > 1:
            loc, scale = _choose(rows, _Regressors(_forward(rows, loc, scale)))
        low, high = np.nanquantile(rows, [0.01, 0.99], axis=0)
        width = high - low  # widened in the input's units, kept in the transformed ones
        return cls(loc, scale, _forward(low - MARGIN * width, loc, scale),
                   _forward(high + MARGIN * width, loc, scale))

    @property
    def transformed(self) -> np.ndarray:
        """[D] bool: the features the transform changes."""
        return np.isfinite(self.scale)

    def apply(self, rows: np.ndarray) -> np.ndarray:
        """[n, D] input units -> transformed units (NaN stays NaN)."""
        return _forward(np.asarray(rows, np.float64), self.loc, self.scale)

    def inverse(self, values: np.ndarray) -> np.ndarray:
        """[n, D] transformed units -> input units, transformed features clipped to the
        widened training range first (`MARGIN`)."""
        values = np.asarray(values, np.float64)
        on = self.transformed
        finite = np.where(on, self.scale, 1.0)
        t = np.clip(values, self.low, self.high)
        back = self.loc + finite * np.sinh(t / finite)
        return np.where(on, back, values)

    def arrays(self) -> dict[str, np.ndarray]:
        """What `save` keeps (per-feature constants only)."""
        return {"loc": self.loc, "scale": self.scale, "low": self.low, "high": self.high}


def _forward(rows: np.ndarray, loc: np.ndarray, scale: np.ndarray) -> np.ndarray:
    on = np.isfinite(scale)
    finite = np.where(on, scale, 1.0)
    return np.where(on, finite * np.arcsinh((rows - loc) / finite), rows)
