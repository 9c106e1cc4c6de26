"""Per-feature shape transforms: heavy tails and skew taken out before the z-scores.

A modality observed through an elementwise monotone link (counts, expression on a linear
scale, a sinh-like heavy tail) has conditionals that no Gaussian or Gaussian mixture in its
z-scores describes well, and a diffusion model fitted on ~1,000 patients learns the link only
in part (benchmarks/RESULTS.md, the sinh cohort). Taking the link out per feature first lets
the latent space, the closed form and the mixture anchors model what they can, and the
inverse puts it back on every draw. The family, per feature j,

    T_j(x) = s_j asinh((x - m_j) / s_j),         T_j^-1(t) = m_j + s_j sinh(t / s_j),

is the identity near m_j and logarithmic in both tails (s_j = inf: no transform). (m_j, s_j)
come from a grid of locations (the 10th-90th percentiles of the training values, and some
beyond the 1st and 99th: a shifted log for a skewed feature, `OUTSIDE`) and scales
(0.05-4 times the feature's spread, its interquartile range over 1.349: the standard deviation
of a heavy-tailed feature is its tail's, and below 0.05 the inverse would blow small errors
up), in three passes:

1. marginal: the Gaussian likelihood of T_j(x_j) (with the Jacobian);
2. conditional: the Gaussian likelihood of the residual of T_j(x_j) regressed on the other
   features' transformed values (through the leading principal components of the modality,
   feature j's own share taken out). This is what the latent space and the anchors need, a
   linear-Gaussian relation between features; a feature whose marginal is a mixture (a
   subtype it shows) is not forced into one Gaussian: the others explain the modes.
3. refined: the conditional likelihood again, now with one residual variance per subgroup of
   patients (the components of a Gaussian mixture on the modality's principal component
   scores, count by BIC; one group where BIC finds none), and the chosen (m_j, s_j) moved off
   the grid to the likelihood's local maximum. Noise whose spread depends on the subtype
   otherwise pulls the one-variance likelihood towards transforms that even it out, and the
   grid is coarse where it matters: on the sinh cohort the true link (m = 0, s = 1) came out
   with s up to 2.4 before, 0.96-1.28 after (benchmarks/RESULTS.md).

Each pass transforms a feature only where that gains more than log(n) (BIC, two parameters),
and none touches a constant feature or one with a point mass (`POINT_MASS`).

    shape = AsinhShape.fit(rows)        # rows [n, D] in the input's units, NaN: holes
    t = shape.apply(rows); rows_back = shape.inverse(t)
"""

from __future__ import annotations

import dataclasses

import numpy as np
from scipy import optimize
from sklearn.mixture import GaussianMixture
from threadpoolctl import threadpool_limits

LOCATIONS = np.linspace(0.1, 0.9, 9)
"""Candidate m_j: these quantiles of the feature's training values, and `OUTSIDE`."""
OUTSIDE = (0.0, 0.5, 2.0)
"""More candidate m_j: the 1st percentile minus, and the 99th plus, these multiples of the
feature's spread. A location below (above) the values makes the transform a shifted log of
a right- (left-) skewed feature, a log-normal's own link; one inside the values would flip
the values below it onto a second log branch (measured on an exp-link cohort: correlation of
the transformed values with the log 0.985-0.996 with the quantiles alone)."""
SCALES = (0.05, 0.1, 0.2, 0.3, 0.5, 1.0, 2.0, 4.0)
"""Candidate s_j, in units of the feature's training spread (`_spread`)."""
POINT_MASS = 0.05
"""A feature whose most frequent value holds this share of its training values (a detection
floor, zeros of a count) is left as it is: the Gaussian likelihood of a transformed spike
rewards squeezing everything but the spike, and the inverse then blows errors up (measured on
KIPAN miRNA: R^2 0.39 -> -0.29 through the files)."""
COMPONENTS = 16
"""Principal components of the other features that the conditional pass regresses on."""
REFINE_STEP = (0.1, 0.2)
"""The first steps of the refinement off the grid: of m in units of the spread (`_spread`),
of log s."""
MAX_GROUPS = 4
"""The most subgroups (mixture components of the modality) the third pass gives a residual
variance each."""
GROUP_ROWS = 50
"""Training rows per subgroup, at least, the third pass asks for."""
MARGIN = 0.5
"""`inverse` keeps values within the 1st-99th percentile range of the transformed training
values widened by this share of it on each side: the exponential tail of sinh turns a draw
far past the training values into an absurd value in the input's units (percentiles, not the
extremes: no single patient's value is kept). The range is set in the transformed units, where
the draws' tails are Gaussian-like: a Gaussian's 1st-99th percentile range widened so reaches
4.7 standard deviations. Widened in the input's units instead (by their whole width), it
clipped draws a heavy tail needs: on the sinh cohort 0.1-0.35% of the values lie past it, and
given 'reveal' the energy score was 1.509 with that clip, 1.474 without any (K = 50, exact
1.441; benchmarks/RESULTS.md)."""
MARGINALS = ("none", "asinh", "auto")
"""The preprocessing's choices (`Preprocessor.fit`): none, always, or where validation says."""


def _candidates(x: np.ndarray) -> tuple[np.ndarray, np.ndarray, float]:
    """(loc [G], scale [G], the feature's spread) of one feature's grid (x [n], no holes);
    candidate 0 is the identity (scale inf)."""
    unit, (q01, q99) = _spread(x), np.quantile(x, [0.01, 0.99])
    outside = unit * np.asarray(OUTSIDE)
    loc = np.repeat(np.concatenate([np.quantile(x, LOCATIONS), q01 - outside, q99 + outside]),
                    len(SCALES))
    scale = np.tile(np.asarray(SCALES) * unit, len(loc) // len(SCALES))
    return np.concatenate([[0.0], loc]), np.concatenate([[np.inf], scale]), unit


def _loglik(x: np.ndarray, loc: np.ndarray, scale: np.ndarray, residuals,
            groups: np.ndarray) -> np.ndarray:
    """[G] Gaussian log-likelihoods (Jacobian included, constants dropped) of one feature's
    candidates (loc [G], scale [G], inf: the identity) on its values x [n]: each soft group
    (groups [n, C], rows summing to 1) with its own residual variance.
    residuals(values [n, G]) -> [n, G]."""
    on = np.isfinite(scale)
    finite = np.where(on, scale, 1.0)
    u = (x[:, None] - loc) / finite  # [n, G]
    values = np.where(on, finite * np.arcsinh(u), x[:, None])
    jacobian = np.where(on, -0.5 * np.log1p(u * u).sum(axis=0), 0.0)
    r = residuals(values)
    size = np.maximum(groups.sum(axis=0), 1e-12)  # [C]
    var = np.maximum((groups.T @ (r * r)) / size[:, None], 1e-300)  # [C, G]
    return -0.5 * size @ np.log(var) + jacobian


def _choose(rows: np.ndarray, residuals, groups: np.ndarray | None = None,
            refine: bool = False) -> tuple[np.ndarray, np.ndarray]:
    """(loc [D], scale [D]): per feature, the candidate (`_candidates`) of the highest
    likelihood (`_loglik`), the identity unless a transform gains more than log(n).

    Args:
        rows: [n, D] training values (NaN: holes).
        residuals: residuals(j, present [n]) -> the map of feature j's candidate values on
            its rows `present` [n_j, G] to their residuals [n_j, G].
        groups: [n, C] soft groups with a residual variance each (None: one for all rows).
        refine: whether a chosen transform's (m, s) are then moved off the grid to the
            likelihood's local maximum (Nelder-Mead within the grid's range).
    """
    loc, scale = np.zeros(rows.shape[1]), np.full(rows.shape[1], np.inf)
    with threadpool_limits(1, user_api="blas"):  # small products: threads only cost here
        for j in range(rows.shape[1]):
            present = ~np.isnan(rows[:, j])
            x = rows[present, j]
            if len(x) < 3 or _point_mass(x) >= POINT_MASS:  # constant, or a spike: as it is
                continue
            of = residuals(j, present)
            w = np.ones((len(x), 1)) if groups is None else groups[present]  # [n_j, C]
            m, s, unit = _candidates(x)
            score = _loglik(x, m, s, of, w)
            score[1:] -= np.log(len(x))  # BIC: two parameters
            best = int(np.argmax(score))
            loc[j], scale[j] = m[best], s[best]
            if refine and best > 0:
                loc[j], scale[j] = _refined(x, (loc[j], scale[j]), of, w, unit,
                                            (m[1:].min(), m[1:].max()))
    return loc, scale


def _refined(x: np.ndarray, best: tuple[float, float], residuals, groups: np.ndarray,
             unit: float, locations: tuple[float, float]) -> tuple[float, float]:
    """(m, s) of the likelihood's local maximum (`_loglik`) near the grid's best (loc,
    scale), within the grid's range: of locations (lowest, highest) and of scales (`SCALES`
    times the feature's spread `unit`)."""
    (loc, scale), centre = best, np.median(x)

    def loss(p: np.ndarray) -> float:  # p: ((m - median) / unit, log(s / unit))
        return -float(_loglik(x, centre + unit * p[:1], unit * np.exp(p[1:]), residuals,
                              groups)[0])

    bounds = np.array([(np.array(locations) - centre) / unit,
                       np.log(np.asarray(SCALES)[[0, -1]])])  # [2 (m, s), 2 (low, high)]
    start = np.clip([(loc - centre) / unit, np.log(scale / unit)], bounds[:, 0],
                    bounds[:, 1])  # the grid's edges, within rounding
    inward = np.where(start < bounds.mean(axis=1), 1.0, -1.0) * REFINE_STEP  # [2]
    fit = optimize.minimize(loss, start, method="Nelder-Mead", bounds=bounds,
                            options={"xatol": 1e-3, "fatol": 1e-3, "initial_simplex":
                                     [start, start + [inward[0], 0], start + [0, inward[1]]]})
    if fit.fun >= loss(start):
        return loc, scale
    return float(centre + unit * fit.x[0]), float(unit * np.exp(fit.x[1]))


def _spread(x: np.ndarray) -> float:
    """The unit of a feature's candidate scales: its interquartile range over 1.349 (the
    standard deviation of a Gaussian; a heavy tail would inflate the standard deviation
    itself past the scales that fit the bulk), the standard deviation where that is 0, 1
    where both are."""
    iqr = float(np.subtract(*np.quantile(x, [0.75, 0.25]))) / 1.349
    return iqr if iqr > 0 else (float(x.std()) or 1.0)


def _point_mass(x: np.ndarray) -> float:
    """The share of the values [n] equal to the most frequent one."""
    return float(np.unique(x, return_counts=True)[1].max() / len(x))


def _centred(j: int, present: np.ndarray):
    """The marginal pass's residuals: each candidate minus its mean."""
    return lambda values: values - values.mean(axis=0)


def _groups(scores: np.ndarray) -> np.ndarray | None:
    """[n, C] responsibilities of the Gaussian mixture on the principal component scores
    [n, k] whose component count (1 to `MAX_GROUPS`, at least `GROUP_ROWS` rows each) has
    the lowest BIC; None when that is one (no subgroups: one residual variance)."""
    best, best_bic = None, np.inf
    for count in range(1, min(MAX_GROUPS, len(scores) // GROUP_ROWS) + 1):
        mixture = GaussianMixture(count, covariance_type="full", reg_covar=1e-3,
                                  random_state=0).fit(scores)
        bic = mixture.bic(scores)
        if bic < best_bic:
            best, best_bic = mixture, bic
    if best is None or best.n_components == 1:
        return None
    return best.predict_proba(scores)


class _Regressors:
    """Residuals of a feature regressed on the leading principal components of the modality
    with that feature's own share taken out (the conditional passes)."""

    def __init__(self, t: np.ndarray):
        mean, sd = np.nanmean(t, axis=0), np.nanstd(t, axis=0)
        z = np.nan_to_num((t - mean) / np.where(sd > 0, sd, 1.0))  # [n, D], holes at the mean
        k = max(1, min(COMPONENTS, t.shape[1] - 1, t.shape[0] - 2))
        basis = np.linalg.svd(z, full_matrices=False)[2][:k]  # [k, D]
        self.z, self.basis, self.scores = z, basis, z @ basis.T  # scores [n, k]

    def __call__(self, j: int, present: np.ndarray):
        """The map of feature j's candidate values on its rows `present` [n_j, G] to their
        least-squares residuals [n_j, G]."""
        own = np.outer(self.z[:, j], self.basis[:, j])  # feature j's share of the scores
        design = np.column_stack([self.scores - own, np.ones(len(self.z))])[present]
        gram = design.T @ design  # [k + 1, k + 1]
        gram[np.diag_indices_from(gram)] += 1e-9 * np.trace(gram)
        # q [n_j, k + 1]: the design whitened by its Gram matrix, q q^T its hat matrix
        q = design @ np.linalg.inv(np.linalg.cholesky(gram)).T
        return lambda values: values - q @ (q.T @ values)


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
        pass, then the conditional and refined passes given the previous pass's transforms
        (module docstring)."""
        rows = np.asarray(rows, np.float64)
        loc, scale = _choose(rows, _centred)
        if rows.shape[1] > 1:
            loc, scale = _choose(rows, _Regressors(_forward(rows, loc, scale)))
            regressors = _Regressors(_forward(rows, loc, scale))
            loc, scale = _choose(rows, regressors, _groups(regressors.scores), refine=True)
        low, high = np.nanquantile(_forward(rows, loc, scale), [0.01, 0.99], axis=0)
        width = high - low
        return cls(loc, scale, low - MARGIN * width, high + MARGIN * width)

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
