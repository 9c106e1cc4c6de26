"""Fills holes inside a row without keeping any training row: a low-rank Gaussian model.

The training rows of one modality (raw units, scattered NaNs) are modelled as
x = mean + loadings @ z + e, z ~ N(0, I_r), e ~ N(0, diag(noise)) (probabilistic PCA with a
per-feature noise variance), fitted on the completed training rows (holes filled by iterated
rank-r SVD reconstruction). A hole is filled with its conditional mean given the observed
entries of the same row:

    E[x_m | x_o] = mean_m + W_m (I + W_o' P_o^-1 W_o)^-1 W_o' P_o^-1 (x_o - mean_o)

The rank r is chosen on held-out entries of the training rows (a share of the observed
entries hidden, the rank whose fill reconstructs them best). What is kept, and saved with a
work directory, is [D] mean, [D, r] loadings and [D] noise variances: aggregates over all
training patients, no patient's row (`coherent_jax.audit` checks that on every saved array).
This replaces the paper's KNN fill, whose fitted state IS the training rows.
"""

from __future__ import annotations

import dataclasses

import numpy as np

RANKS = (1, 2, 4, 8, 16, 32, 64, 128)
"""Candidate ranks, capped below half the smaller side of the training table."""
HOLDOUT_SHARE = 0.05
"""Share of the observed training entries hidden to choose the rank."""
ITERATIONS = 30
TOLERANCE = 1e-5


def _svd_complete(rows: np.ndarray, holes: np.ndarray, rank: int) -> np.ndarray:
    """Iterated rank-r SVD fill of standardised rows [n, D] (holes start at 0, the mean)."""
    filled = np.where(holes, 0.0, rows)
    if not holes.any():
        return filled
    for _ in range(ITERATIONS):
        centre = filled.mean(axis=0)
        u, s, vt = np.linalg.svd(filled - centre, full_matrices=False)
        approx = centre + (u[:, :rank] * s[:rank]) @ vt[:rank]
        change = np.mean((approx[holes] - filled[holes]) ** 2)
        filled[holes] = approx[holes]
        if change < TOLERANCE:
            break
    return filled


@dataclasses.dataclass(frozen=True, eq=False)
class LowRankFill:
    """A fitted low-rank Gaussian model of one modality's rows, in the input's units.

    Attributes:
        mean: [D] the training mean (after completion).
        loadings: [D, r] the PPCA loadings W.
        noise: [D] per-feature residual variances (positive).
    """

    mean: np.ndarray
    loadings: np.ndarray
    noise: np.ndarray

    @property
    def rank(self) -> int:
        return int(self.loadings.shape[1])

    @classmethod
    def fit(cls, rows: np.ndarray, rank: int | None = None, seed: int = 0) -> "LowRankFill":
        """Fits the model on training rows [n, D] with scattered NaNs (no all-NaN column
        needed; a column with no value gets mean 0 and unit noise).

        Args:
            rows: [n, D] training rows of one modality, raw units.
            rank: the rank r; None chooses it on held-out entries (`RANKS`).
            seed: which entries are held out to choose the rank.
        """
        rows = np.asarray(rows, np.float64)
        n, d = rows.shape
        centre = np.nanmean(np.where(np.isnan(rows).all(axis=0), 0.0, rows), axis=0)
        centre = np.where(np.isnan(centre), 0.0, centre)
        scale = np.nanstd(rows, axis=0)
        scale = np.where(np.isfinite(scale) & (scale > 0), scale, 1.0)
        z = (rows - centre) / scale  # [n, D]
        holes = np.isnan(z)
        cap = max(1, min(n, d) // 2)
        if rank is None:
            rank = _choose_rank(z, holes, [r for r in RANKS if r <= cap] or [1], seed)
        rank = int(min(rank, cap))
        model = _from_completed(_svd_complete(z, holes, rank), rank)
        return cls(mean=centre + scale * model.mean, loadings=model.loadings * scale[:, None],
                   noise=np.maximum(model.noise * scale ** 2, 1e-12))

    def transform(self, rows: np.ndarray) -> np.ndarray:
        """Rows [n, D] with holes -> the same rows with each hole at its conditional mean
        given the row's observed entries; observed entries are kept as given. An all-NaN
        row gets the mean."""
        rows = np.array(rows, np.float64)
        holes = np.isnan(rows)
        if not holes.any():
            return rows
        weighted = self.loadings / self.noise[:, None]  # [D, r] P^-1 W
        full = np.eye(self.rank) + self.loadings.T @ weighted  # [r, r] I + W' P^-1 W
        for i in np.flatnonzero(holes.any(axis=1)):
            seen, hole = ~holes[i], holes[i]
            residual = rows[i, seen] - self.mean[seen]  # [D_o]
            # I + W_o' P_o^-1 W_o, as the full sum less the (few) holes' terms
            precision = full - self.loadings[hole].T @ weighted[hole]  # [r, r]
            latent = np.linalg.solve(precision, weighted[seen].T @ residual)  # [r]
            rows[i, holes[i]] = self.mean[holes[i]] + self.loadings[holes[i]] @ latent
        return rows

    def arrays(self) -> dict[str, np.ndarray]:
        """What is saved: {'mean', 'loadings', 'noise'}."""
        return {"mean": self.mean, "loadings": self.loadings, "noise": self.noise}


def _from_completed(done: np.ndarray, rank: int, svd=None) -> LowRankFill:
    """The PPCA fit (ML loadings, per-feature noise) of complete standardised rows [n, D]."""
    n, d = done.shape
    mean = done.mean(axis=0)
    _, s, vt = svd if svd is not None else np.linalg.svd(done - mean, full_matrices=False)
    variances = s ** 2 / n  # eigenvalues of the covariance
    rest = variances[rank:]
    floor = max(float(rest.sum()) / max(d - rank, 1), 1e-6)  # PPCA's sigma^2
    loadings = vt[:rank].T * np.sqrt(np.maximum(variances[:rank] - floor, 0.0))  # [D, r]
    noise = np.maximum(done.var(axis=0) - (loadings ** 2).sum(axis=1), floor * 1e-3)
    return LowRankFill(mean=mean, loadings=loadings, noise=noise)


def _choose_rank(z: np.ndarray, holes: np.ndarray, ranks: list[int], seed: int) -> int:
    """The rank whose conditional-mean fill best reconstructs a held-out share of the observed
    entries of standardised rows z [n, D] (one SVD of the rows with every hole at the mean)."""
    observed = np.argwhere(~holes)
    rng = np.random.default_rng(seed)
    take = observed[rng.random(len(observed)) < HOLDOUT_SHARE]
    if len(take) == 0:
        return ranks[0]
    hidden = holes.copy()
    hidden[take[:, 0], take[:, 1]] = True
    masked = np.where(hidden, np.nan, z)
    done = np.where(hidden, 0.0, z)
    svd = np.linalg.svd(done - done.mean(axis=0), full_matrices=False)
    truth = z[take[:, 0], take[:, 1]]
    errors = []
    for rank in ranks:
        filled = _from_completed(done, rank, svd).transform(masked)
        errors.append(np.mean((filled[take[:, 0], take[:, 1]] - truth) ** 2))
    return ranks[int(np.argmin(errors))]
