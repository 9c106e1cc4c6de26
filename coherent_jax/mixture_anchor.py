"""Gaussian-mixture anchors: the closed form where a hidden subtype makes conditionals multi-modal.

A linear-Gaussian anchor (`anchor.fit_anchors`) has one mode. Where a subtype that the given
sources do not reveal shifts the target, the target's conditional has one mode per subtype,
and a learned correction trained on a few thousand patients only partly moves the anchor's
single mode apart (benchmarks/RESULTS.md, bench_mixture). A Gaussian mixture fitted to the
joint rows [target, conditions] (each component with its own covariance, or one shared by all)
has every subset's conditional in closed form, again a mixture:

    p(x | c_S) = sum_j w_j(c_S) N(x; K_{S,j}^T c_S + b_{S,j}, Sigma_{S,j}),
    log w_j(c_S) = log pi_j + t_S log N(c_S; mu_{S,j}, C_{S,j}) + const,

(C_{S,j}: component j's covariance of the conditions in S; t_S = 1, Bayes' rule, for the
mixture as fitted; below, the gates' temperature), and its eps at every noise level is
exact too (`engine.denoiser.mixture_anchor_eps`): each component's Gaussian eps weighted by the
component's posterior given c_S and x_t. Where one component wins BIC on the joint rows, the
model keeps its linear-Gaussian anchor unchanged. Else BIC bounds the count and picks each
count's covariance kind, and the count is the one whose partition gives held-out rows the
highest likelihood of the target given the conditions (`_held_out_count`): BIC scores the
joint rows, so it also counts clusters of the conditions that tell nothing of the target
(a source's batches) and, on the door cohorts, more components than subtypes (9 of 12
joints; benchmarks/RESULTS.md). A model set takes that count as a bound: every count up to
it is drawn on held-out patients, and the draws' energy score chooses (`mixture_count`).

A covariance per component fitted on a few hundred rows makes the gates overconfident (a
source blind to the subtype then looks as if it told it), while one covariance shared by all
components cannot carry noise that depends on the subtype. So the component covariances are
shrunk toward the pooled one (as in regularised discriminant analysis, Friedman 1989), in
three places with a share each: the gates (the conditions' block), the slopes of each
component's regression of the target on the conditions and its residual covariance (the
covariance of the residual around the slopes used). The slopes also get a ridge penalty: a
few hundred rows per component estimate a regression on tens of correlated conditions (e.g.
two sources' predictions of the same target) with more noise than bias. And the gates get a
temperature (`TEMPERATURES`): a source blind to the subtype gets gates near the components'
weights rather than the subtype its noise seems to tell. The shares, the penalty and the
temperature (a `Shape`) are chosen for every subset of the conditions by the cross-validated
log-likelihood of the target given that subset (`choose_shrinkage`), which also picks the
count (on a coarse grid of shapes). The shrinkage target is the pooled covariance or a
factor target (`factor_target`): a common factor model fitted to the components' moments,
its loadings shared by every component, each component scaling its own noise per block.
Modalities coupled by a few shared factors, whose noise differs by subtype, have per-subtype
slopes of exactly that structure, which a few hundred rows per component estimate poorly on
their own (door4: the target given the revealing source 2.2% -> 1.3% above exact on the
pipeline's rows with the first such target; benchmarks/RESULTS.md). Its rank per subset is
chosen on the coarse grid among `RANKS` (`factor_ranks`), and the fit keeps both sets of
shapes (`MixtureFit.factor_shapes`): the draws choose (`mixture_count`). EM on tens of
dimensions often misses the subtypes, so a second mixture is fitted on the joint rows'
leading principal components (`clusterings`), and the held-out likelihood picks the
partition too.

    mixture = fit_mixture_anchors(x, x_present, [(c1, c1_present)], max_components=4)
    # None: one component won (keep fit_anchors); else the mixture's anchor parameters
"""

from __future__ import annotations

import dataclasses
import functools
import itertools
import logging
from typing import NamedTuple, Sequence

import numpy as np
from scipy.special import logsumexp
from sklearn.mixture import GaussianMixture
from threadpoolctl import threadpool_limits

from coherent_jax.anchor import eigh_floored

logger = logging.getLogger(__name__)

REG_COVAR = 1e-3
"""Added to the diagonal of every component's covariance, in units of each column's variance."""

SHRINKAGE = (0.0, 0.25, 0.5, 0.75, 1.0)
"""Candidate weights of the pooled covariance in a component's (0: its own, 1: tied)."""

PENALTIES = (0.0, 0.01, 0.03, 0.1)
"""Candidate ridge penalties on a component's slopes, in units of each condition's variance
in the component (0: least squares)."""

TEMPERATURES = (0.0, 0.25, 0.5, 0.75, 1.0)
"""Candidate temperatures of the gates: each component's log-density of the conditions enters
its gate multiplied by the temperature (1: Bayes' rule under the fitted components; 0: the
components' weights alone). A source blind to the subtype still moves fitted gates: the
components' means of its conditions differ by their sampling noise, so its gates tell a subtype
it cannot see, and a cascade that draws from them spreads that error to every later modality
(the door2 cohort given 'hide', benchmarks/RESULTS.md). Temperature scaling of a classifier's
logits, as in Guo et al. 2017, chosen with the shares by held-out likelihood."""

FOLDS = 5
"""Folds of `choose_shrinkage`'s cross-validation."""

RANKS = (1, 2, 3, 4, 6, 8, 12, 16, 24, 32)
"""Candidate factor ranks of the shrinkage target (`factor_target`, `factor_ranks`)."""

NOISE_FLOOR = 0.05
"""The smallest scale of a component's block noise relative to the pooled (the largest: its
inverse; `factor_target`)."""

FACTOR_ITERATIONS = 50
"""EM steps of `factor_target`'s common factor model."""


class ShapeGrid(NamedTuple):
    """The candidates `choose_shrinkage` scores: shares (of the gates, slopes and residuals),
    slope penalties and gate temperatures."""

    shares: tuple = SHRINKAGE
    penalties: tuple = PENALTIES
    temperatures: tuple = TEMPERATURES


COUNT_GRID = ShapeGrid(shares=(0.5, 1.0), penalties=(0.1,), temperatures=(0.5, 1.0))
"""The coarse grid on which `fit_mixture` compares component counts (the full grid then
shapes the chosen count): 8 shapes instead of 2,500, so a count costs a second or two. Of
the 50 subsets with conditions of the door cohorts' mixtures (benchmarks/RESULTS.md, "The
mixture's count"), the full grid gave 49 slope shares of 0.5-1.0 and 26 the penalty 0.1, but
41 residual shares of 0-0.25, which this grid lacks (one share list serves all three; a grid
with a residual share of its own is untried)."""


def one_thread(fit):
    """`fit` run with one BLAS/OpenMP thread (the limits restored after, also when nested):
    the mixture fits' solves and k-means steps are on matrices of tens to hundreds of columns,
    where a thread per core costs more than it gains (benchmarks/bench_fit_threads.py, 2-core
    CPU: a 1,200-row fit with two 28-wide conditions 6.1 s -> 2.5 s, a 400-row fit with one
    136-wide condition 4.5 s -> 2.9 s)."""

    @functools.wraps(fit)
    def limited(*args, **kwargs):
        with threadpool_limits(limits=1):
            return fit(*args, **kwargs)

    return limited


class Shape(NamedTuple):
    """The shape of one subset's conditional mixture (`choose_shrinkage`): the shares of the
    shrinkage target in the gates, the slopes and the residual covariance (`SHRINKAGE`), the
    slopes' ridge penalty (`PENALTIES`), the gates' temperature (`TEMPERATURES`) and the
    target's factor rank (0: the pooled covariance; else `factor_target`)."""

    gate: float
    slope: float
    residual: float
    penalty: float
    temperature: float = 1.0
    rank: int = 0


CLUSTER_DIMS = 16
"""The leading principal components of the joint rows on which a second mixture is fitted
(`clusterings`): in tens of dimensions a few hundred rows per component cannot place
full-covariance components, and EM finds other partitions than the subtypes (the wide cohort
of benchmarks/bench_mixture_fit.py given both sources, seed 42: on all 90 dimensions BIC keeps
one component, EM's four-component fit there has an adjusted Rand index of 0.01 against the
subtypes; on the 16 leading components BIC picks four, index 1.00; benchmarks/RESULTS.md)."""


def _fit(joint: np.ndarray, m: int, kind: str, seed: int) -> GaussianMixture:
    return GaussianMixture(m, covariance_type=kind, reg_covar=REG_COVAR, n_init=3,
                           max_iter=300, random_state=seed).fit(joint)


def _parameters(m: int, dim: int, kind: str) -> int:
    covariance = dim * (dim + 1) // 2
    return m * (dim + 1) - 1 + (m * covariance if kind == "full" else covariance)


def principal_components(z: np.ndarray, count: int) -> np.ndarray:
    """[n, count] rows z [n, J] (centred) projected on their `count` leading principal
    axes."""
    _, vectors = np.linalg.eigh(z.T @ z)  # ascending eigenvalues
    return z @ vectors[:, ::-1][:, :count]


def clusterings(z: np.ndarray, max_components: int, components: int | None, seed: int
                ) -> list[tuple[np.ndarray, dict[int, GaussianMixture]]]:
    """[(the rows mixtures were fitted to, {count: mixture})]: on the standardised joint rows
    z [n, J] and on their CLUSTER_DIMS leading principal components where J is larger, the
    mixtures of 2 up to the BIC-best count (`component_fits`; exactly `components` when
    given, BIC then picking only the covariance kind). A space where one component wins BIC
    gives none."""
    spaces = [z] + ([principal_components(z, CLUSTER_DIMS)] if z.shape[1] > CLUSTER_DIMS
                    else [])
    out = []
    for space in spaces:
        if components is None:
            fits = component_fits(space, max_components, seed)
            best = bic_count(fits, space)
            counts = {m: gm for m, gm in fits.items() if 2 <= m <= best}
        else:
            counts = {components: min((_fit(space, components, kind, seed)
                                       for kind in ("tied", "full")),
                                      key=lambda g: g.bic(space))}
        if counts:
            out.append((space, counts))
    return out


@one_thread
def component_fits(joint: np.ndarray, max_components: int, seed: int
                   ) -> dict[int, GaussianMixture]:
    """{count: the BIC-better mixture of that many components} for counts 1..max_components
    on standardised joint rows [n, J], each component with its own covariance ('full') or
    one shared by all ('tied': J (J + 1) / 2 parameters in all, so a few hundred rows can
    afford several components); a count with more parameters than values in both kinds is
    not tried."""
    n, dim = joint.shape
    fits = {1: _fit(joint, 1, "full", seed)}
    for m in range(2, max_components + 1):
        tried = [_fit(joint, m, kind, seed) for kind in ("tied", "full")
                 if _parameters(m, dim, kind) <= n * dim]
        if tried:
            fits[m] = min(tried, key=lambda g: g.bic(joint))
    return fits


def select_components(joint: np.ndarray, max_components: int, seed: int
                      ) -> GaussianMixture | None:
    """The BIC-best mixture of 1..max_components components on standardised joint rows
    [n, J] (`component_fits`); None when one component wins."""
    fits = component_fits(joint, max_components, seed)
    best = bic_count(fits, joint)
    return None if best == 1 else fits[best]


def bic_count(fits: dict[int, GaussianMixture], joint: np.ndarray) -> int:
    """The count of `fits` ({count: mixture fitted on joint}) of the lowest BIC on joint."""
    return min(fits, key=lambda m: fits[m].bic(joint))


@dataclasses.dataclass(frozen=True)
class MixtureFit:
    """A fitted mixture's structure, kept in memory only (it holds training rows): the
    standardised joint rows z [n, J] of the training rows `rows` [n] (indices into the N
    rows given to `fit_mixture`), their responsibilities resp [n, M], the standardisation
    (centre, scale [J]), the target's width, the conditions' widths and each subset's
    `Shape` toward the pooled covariance, and where a factor target is preferred by some
    subset (`factor_ranks`), the shapes chosen with it as a candidate (`factor_shapes`; else
    None). `anchors` turns it into anchor parameters, from all its rows or from some."""

    z: np.ndarray
    rows: np.ndarray
    resp: np.ndarray
    centre: np.ndarray
    scale: np.ndarray
    dim: int
    widths: tuple
    shapes: tuple
    factor_shapes: tuple | None = None

    def anchors(self, keep: np.ndarray | None = None, factor: bool = False) -> dict:
        """The anchor parameters of `fit_mixture_anchors` from the components' moments on the
        fitted rows, or only on those where keep [N] (over the rows given to `fit_mixture`) is
        true: the same partition and shapes refitted to fewer rows (a cross-fit's fold); with
        `factor`, the factor shapes (the pooled ones where there are none)."""
        shapes = self.factor_shapes if factor and self.factor_shapes else self.shapes
        used = slice(None) if keep is None else np.asarray(keep, bool)[self.rows]
        weights, means, own = component_moments(self.resp[used], self.z[used])
        return shrunk_conditional_mixtures(
            weights, self.centre + means * self.scale, own * np.outer(self.scale, self.scale),
            self.dim, self.widths, shapes, reg=REG_COVAR * np.square(self.scale))


def _held_out_count(z: np.ndarray, space: np.ndarray, counts: dict[int, GaussianMixture],
                    dim: int, widths: Sequence[int], seed: int) -> GaussianMixture:
    """The mixture of `counts` ({count: mixture fitted on `space`}) whose partition gives
    the held-out rows of z the highest likelihood of the target given the conditions
    (`choose_shrinkage` on `COUNT_GRID`, summed over the subsets)."""
    if len(counts) == 1:
        return next(iter(counts.values()))
    held_out = {m: choose_shrinkage(z, gm.predict_proba(space), dim, widths, seed,
                                    COUNT_GRID)[1] for m, gm in counts.items()}
    return counts[max(held_out, key=held_out.get)]


@one_thread
def fit_mixture(target: np.ndarray, target_present: np.ndarray,
                conditions: Sequence[tuple[np.ndarray, np.ndarray]], *, max_components: int,
                seed: int = 0, residual_target: np.ndarray | None = None,
                components: int | None = None) -> MixtureFit | None:
    """The mixture of `fit_mixture_anchors` (same arguments) as a `MixtureFit`, or None when
    one component wins BIC."""
    values = target if residual_target is None else residual_target
    rows = np.flatnonzero(target_present & np.all([p for _, p in conditions], axis=0))
    joint = np.concatenate([values[rows]] + [c[rows] for c, _ in conditions],
                           axis=1).astype(np.float64)  # [n, D + W]
    centre, scale = joint.mean(axis=0), joint.std(axis=0)
    scale = np.where(scale > 0, scale, 1.0)
    z = (joint - centre) / scale
    dim, widths = target.shape[1], [c.shape[1] for c, _ in conditions]
    best = None
    for space, counts in clusterings(z, max_components, components, seed):
        gm = _held_out_count(z, space, counts, dim, widths, seed)
        resp = gm.predict_proba(space)  # [n, M]
        shapes, held_out = choose_shrinkage(z, resp, dim, widths, seed)
        if best is None or held_out > best[0]:
            best = held_out, shapes, resp, gm, space.shape[1]
    if best is None:
        return None
    _, shapes, resp, gm, width = best
    ranks, factor = factor_ranks(z, resp, dim, widths, seed), None
    if ranks:
        factor, _ = choose_shrinkage(z, resp, dim, widths, seed, ranks=(0, *ranks))
        factor = tuple(factor) if any(shape.rank for shape in factor) else None
    logger.info("mixture anchor: %d components (held-out, %s, on %d of %d joint dimensions); "
                "shape per subset of the conditions %s; with a factor target %s", gm.n_components,
                gm.covariance_type, width, z.shape[1], [tuple(shape) for shape in shapes],
                factor and [tuple(shape) for shape in factor])
    return MixtureFit(z, rows, resp, centre, scale, dim, tuple(widths), tuple(shapes), factor)


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
    fitted = fit_mixture(target, target_present, conditions, max_components=max_components,
                         seed=seed, residual_target=residual_target, components=components)
    return None if fitted is None else fitted.anchors()


def component_moments(resp: np.ndarray, z: np.ndarray
                      ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(weights [M], means [M, J], covariances [M, J, J]) of rows z [n, J] weighted by the
    responsibilities resp [n, M] (one M-step of EM with a covariance per component)."""
    mass = resp.sum(axis=0) + 10 * np.finfo(np.float64).eps  # [M]
    means = resp.T @ z / mass[:, None]
    covs = np.stack([(resp[:, k, None] * (z - means[k])).T @ (z - means[k]) / mass[k]
                     for k in range(resp.shape[1])])
    return mass / mass.sum(), means, covs


def factor_target(covs: np.ndarray, weights: np.ndarray, rank: int, blocks: Sequence[int]
                  ) -> np.ndarray:
    """[M, J, J] each component's covariance (covs [M, J, J], weights [M]) as a common factor
    model: `rank` factors with loadings L [J, rank] shared by every component (the factors that
    couple the blocks) and, within each diagonal block b of widths `blocks` (the target, then
    each condition), a noise covariance N_b shared in shape and scaled per component,

        Sigma_k = L L^T + blockdiag_b(c_kb N_b),   sum_k w_k c_kb = 1,

    fitted to the components' moments by `FACTOR_ITERATIONS` EM steps (factor analysis with the
    weights' rows, as Ghahramani and Hinton 1996, here with the noise tied across components up
    to a scale per block), started from the pooled covariance's leading principal directions;
    c_kb is the component's share of the block's expected residual (its trace, which stays
    defined where a block is singular, e.g. a prediction wider than its source), kept between
    NOISE_FLOOR and its inverse. All in the units where the pooled covariance has a unit
    diagonal (so the same in any units). Where subtypes shift the means and scale the noise of
    modalities coupled by a few shared factors (the mixture cohorts), each component's slopes
    are then estimated from every row instead of its own few hundred, and its noise scale
    reaches the factors' posterior too (benchmarks/RESULTS.md, "A factor shrinkage target",
    "Common factors"): a target that kept the pooled covariance within the leading directions
    and scaled only the rest lost that."""
    pooled = np.einsum("k,kij->ij", weights, covs)
    unit = np.sqrt(np.maximum(np.diag(pooled), 1e-12))  # in the pooled's correlation units:
    unit = np.outer(unit, unit)  # the same target in any units of the columns
    covs, pooled = covs / unit, pooled / unit
    values, vectors = np.linalg.eigh(pooled)  # ascending
    loadings = vectors[:, -rank:] * np.sqrt(np.maximum(values[-rank:], 0.0))  # [J, r]
    offsets = np.concatenate([[0], np.cumsum(blocks)]).astype(int)
    spans = [slice(a, b) for a, b in zip(offsets[:-1], offsets[1:])]
    rest = pooled - loadings @ loadings.T
    noise = [rest[b, b] + REG_COVAR * np.eye(b.stop - b.start) for b in spans]
    scales = np.ones((len(weights), len(spans)))  # c_kb
    for _ in range(FACTOR_ITERATIONS):
        loadings, residuals = _factor_step(covs, weights, loadings, noise, scales, spans)
        for q, b in enumerate(spans):
            mass = weights / scales[:, q]
            shared = np.einsum("k,kij->ij", mass, residuals[q])
            shared = 0.5 * (shared + shared.T) + REG_COVAR * np.eye(b.stop - b.start)
            scale = np.clip(np.einsum("kii->k", residuals[q]) / np.trace(shared),
                            NOISE_FLOOR, 1 / NOISE_FLOOR)
            scales[:, q], noise[q] = scale / (weights @ scale), shared * (weights @ scale)
    out = np.broadcast_to(loadings @ loadings.T, covs.shape).copy()
    for q, b in enumerate(spans):
        out[:, b, b] += scales[:, q, None, None] * noise[q]
    return out * unit


def _factor_step(covs: np.ndarray, weights: np.ndarray, loadings: np.ndarray,
                 noise: list, scales: np.ndarray, spans: list) -> tuple[np.ndarray, list]:
    """One EM step of `factor_target`: (the new loadings [J, r], per block the components'
    expected residual second moments [M, d_b, d_b] under them)."""
    rank = loadings.shape[1]
    whitened = np.concatenate([np.linalg.solve(n, loadings[b]) for n, b in zip(noise, spans)])
    widths = [b.stop - b.start for b in spans]
    moments = []  # per component (E[x z^T] [J, r], E[z z^T] [r, r])
    for k in range(len(weights)):
        psi = whitened / np.repeat(scales[k], widths)[:, None]  # Psi_k^-1 L
        beta = np.linalg.solve(np.eye(rank) + loadings.T @ psi, psi.T)  # [r, J]: E[z | x]
        cross = covs[k] @ beta.T
        moments.append((cross, np.eye(rank) - beta @ loadings + beta @ cross))
    new = np.empty_like(loadings)
    for q, b in enumerate(spans):
        mass = weights / scales[:, q]
        cross = sum(w * c[b] for w, (c, _) in zip(mass, moments))
        second = sum(w * s for w, (_, s) in zip(mass, moments))
        new[b] = np.linalg.solve(second, cross.T).T
    residuals = []
    for b in spans:
        fitted = [c[b] @ new[b].T for c, _ in moments]  # [d_b, d_b] each
        residuals.append(np.stack([covs[k][b, b] - f - f.T + new[b] @ s @ new[b].T
                                   for k, (f, (_, s)) in enumerate(zip(fitted, moments))]))
    return new, residuals


def shrunk(covs: np.ndarray, weights: np.ndarray, share: float,
           reg: np.ndarray | float = REG_COVAR, rank: int = 0,
           blocks: Sequence[int] = ()) -> np.ndarray:
    """[M, J, J] each component's covariance moved `share` of the way to the shrinkage target,
    plus `reg` on the diagonal (a scalar or [J]): the pooled covariance sum_k w_k covs_k
    (rank 0), or `factor_target` of that rank over diagonal blocks of widths `blocks`."""
    target = (np.einsum("k,kij->ij", weights, covs) if rank == 0
              else factor_target(covs, weights, rank, blocks))
    return (1 - share) * covs + share * target + np.diag(np.broadcast_to(reg, covs.shape[-1:]))


def _slopes(covs: np.ndarray, dim: int, cols: np.ndarray, penalty: float) -> np.ndarray:
    """[M, |S|, D] each component's ridge slopes of the target (the first `dim` columns) on
    the condition columns `cols` (indices after the target's) of covs [M, J, J]: the penalty
    in units of each condition's variance in the component (so the same in any units;
    0: least squares)."""
    c = dim + cols
    if not len(c):
        return np.zeros((len(covs), 0, dim))
    scc = covs[:, c][:, :, c]
    ridge = penalty * np.einsum("kii->ki", scc)[:, :, None] * np.eye(len(c))  # [M, |S|, |S|]
    return np.linalg.solve(scc + ridge, covs[:, c, :dim])


def _residuals(covs: np.ndarray, dim: int, cols: np.ndarray, slopes: np.ndarray
               ) -> np.ndarray:
    """[M, D, D] each component's covariance (covs [M, J, J]) of the target minus `slopes`
    [M, |S|, D] times the conditions `cols`: the residual around the slopes used, whichever
    they are (the Schur complement for the component's own least-squares slopes). Linear in
    covs."""
    c = dim + cols
    if not len(c):
        return covs[:, :dim, :dim]
    transposed = np.swapaxes(slopes, 1, 2)  # [M, D, |S|]
    cross = transposed @ covs[:, c, :dim]  # [M, D, D]
    return (covs[:, :dim, :dim] - cross - np.swapaxes(cross, 1, 2)
            + transposed @ (covs[:, c][:, :, c] @ slopes))


def _ends(covs: dict, dim: int, cols: np.ndarray, penalty: float
          ) -> tuple[np.ndarray, np.ndarray]:
    """The ridge slopes (`_slopes`) of the components' own covariances (covs[0.0]) and of the
    pooled one (covs[1.0]); covs: share -> `shrunk` covariances."""
    return _slopes(covs[0.0], dim, cols, penalty), _slopes(covs[1.0], dim, cols, penalty)


def _experts(covs: dict, dim: int, cols: np.ndarray, slope: float, ends: tuple
             ) -> tuple[np.ndarray, tuple[np.ndarray, np.ndarray]]:
    """(slopes [M, |S|, D], (own, pooled) [M, D, D] residual covariances) of the target on the
    conditions `cols`: the ridge slopes `ends` (`_ends`) moved `slope` of the way from the
    components' own to the pooled, and the covariance of the residual around them under
    each component's own covariance and the pooled one. The residual covariance at share r
    is (1 - r) own + r pooled (`_residuals` is linear in the covariance)."""
    slopes = (1 - slope) * ends[0] + slope * ends[1]
    return slopes, (_residuals(covs[0.0], dim, cols, slopes),
                    _residuals(covs[1.0], dim, cols, slopes))


def _pencil_log_normals(x: np.ndarray, a: np.ndarray, b: np.ndarray,
                        shares: Sequence[float]) -> np.ndarray:
    """[len(shares), n] log N(x_i; 0, (1 - s) a + s b) of rows x [n, d] for each share s, the
    covariances a and b [d, d] positive definite: one Cholesky factor L of a and one
    eigendecomposition L^-1 b L^-T = Q diag(lam) Q^T serve every share, as
    (1 - s) a + s b = L Q diag(1 - s + s lam) Q^T L^T."""
    chol = np.linalg.cholesky(a)
    whiten = np.linalg.inv(chol)  # [d, d]
    lam, q = np.linalg.eigh(whiten @ b @ whiten.T)
    white = q.T @ (whiten @ x.T)  # [d, n]
    scale = 1.0 - np.asarray(shares)[:, None] + np.asarray(shares)[:, None] * lam  # [S, d]
    logdet = 2 * np.log(np.diag(chol)).sum() + np.log(scale).sum(axis=1)  # [S]
    quad = np.einsum("sd,dn->sn", 1.0 / scale, np.square(white))
    return -0.5 * (logdet[:, None] + quad + x.shape[1] * np.log(2 * np.pi))


def _subsets(widths: Sequence[int]) -> list[np.ndarray]:
    """Per subset index (sum of 2^j over the conditions j present) its condition columns."""
    offsets = np.concatenate([[0], np.cumsum(widths)]).astype(int)
    return [np.concatenate([np.arange(offsets[c], offsets[c + 1])
                            for c in range(len(widths)) if index >> c & 1] or [[]]).astype(int)
            for index in range(2 ** len(widths))]


def choose_shrinkage(z: np.ndarray, resp: np.ndarray, dim: int, widths: Sequence[int],
                     seed: int, grid: ShapeGrid = ShapeGrid(), ranks: Sequence[int] = (0,)
                     ) -> tuple[list[Shape], float]:
    """(per subset of the conditions (index = sum of 2^j over the conditions j present) the
    `Shape` among the grid's shares^3 x penalties x temperatures x `ranks` whose mixture,
    refitted (`component_moments`) on FOLDS - 1 folds of the standardised joint rows z [n, dim +
    sum widths] with responsibilities resp [n, M], gives the held-out rows the highest
    log-likelihood of the target given the subset: the gates read covariances moved the gate
    share toward the shrinkage target of the rank (`shrunk`), their log-densities times the
    temperature; each component's regression of the target on the subset takes ridge slopes
    moved the slope share and the covariance of its residual moved the residual share
    (`_experts`); the held-out log-likelihood of the chosen shapes summed over the subsets).
    Ties go to the larger shares, penalty, temperature and rank."""
    subsets = _subsets(widths)
    fold = np.random.default_rng(seed).permutation(len(z)) % FOLDS
    shares, blocks = grid.shares, (dim, *widths)
    candidates = list(itertools.product(ranks, shares, grid.temperatures, shares, shares,
                                        grid.penalties))
    temperatures = np.asarray(grid.temperatures)[None, None, :, None]
    total = np.zeros((len(subsets), len(ranks), len(candidates) // len(ranks)))
    moments = [component_moments(resp[fold != f], z[fold != f]) for f in range(FOLDS)]
    for f, (r, rank) in itertools.product(range(FOLDS), enumerate(ranks)):
        weights, means, own = moments[f]
        covs = {share: shrunk(own, weights, share, rank=rank, blocks=blocks)
                for share in (0.0, 1.0)}  # affine between
        held = z[fold == f]  # [h, J]
        for index, cols in enumerate(subsets):
            c = dim + cols
            density = np.stack([  # [M, gate share, h]
                _pencil_log_normals(held[:, c] - means[k, c], covs[0.0][k][np.ix_(c, c)],
                                    covs[1.0][k][np.ix_(c, c)], shares) if len(c)
                else np.zeros((len(shares), len(held))) for k in range(len(weights))])
            log = np.log(weights)[:, None, None, None] + temperatures * density[:, :, None]
            gates = np.moveaxis(log - logsumexp(log, axis=0), 0, 2)  # [gate, temperature, M, h]
            ends = {penalty: _ends(covs, dim, cols, penalty) for penalty in grid.penalties}
            experts = np.empty((len(shares), len(shares), len(grid.penalties))
                               + gates.shape[2:])
            for (a, slope), (p, penalty) in itertools.product(enumerate(shares),
                                                              enumerate(grid.penalties)):
                slopes, (own_res, pooled_res) = _experts(covs, dim, cols, slope, ends[penalty])
                error = (held[None, :, :dim] - means[:, None, :dim]
                         - (held[None, :, c] - means[:, None, c]) @ slopes)  # [M, h, D]
                experts[a, :, p] = np.moveaxis(np.stack([  # [residual share, M, h]
                    _pencil_log_normals(error[k], own_res[k], pooled_res[k], shares)
                    for k in range(len(weights))]), 0, 1)
            # [gate, temperature, slope, residual, penalty]: held-out log-likelihood
            joint = gates[:, :, None, None, None] + experts[None, None]  # [..., M, h], finite
            top = joint.max(axis=-2)
            total[index, r] += (np.log(np.exp(joint - top[..., None, :]).sum(axis=-2))
                                + top).sum(axis=-1).ravel()
    total = total.reshape(len(subsets), -1)
    best = [np.flatnonzero(row >= row.max() - 1e-9)[-1] for row in total]
    shapes = [Shape(gate, slope, residual, penalty, temperature, rank)
              for rank, gate, temperature, slope, residual, penalty
              in (candidates[b] for b in best)]
    return shapes, float(sum(row[b] for row, b in zip(total, best)))


def factor_ranks(z: np.ndarray, resp: np.ndarray, dim: int, widths: Sequence[int],
                 seed: int) -> tuple[int, ...]:
    """The ranks of `RANKS` (below the joint width) whose factor shrinkage target gives the
    held-out rows the highest likelihood on the coarse grid (`choose_shrinkage` on
    `COUNT_GRID`; arguments as there), the best of each subset of the conditions."""
    ranks = [rank for rank in RANKS if rank < z.shape[1]]
    if not ranks:
        return ()
    shapes, _ = choose_shrinkage(z, resp, dim, widths, seed, COUNT_GRID, ranks)
    return tuple(sorted({shape.rank for shape in shapes}))


def conditional_mixtures(weights: np.ndarray, means: np.ndarray, covs: np.ndarray, dim: int,
                         widths: Sequence[int]) -> dict:
    """Every subset's conditional mixture of a joint mixture over [target (dim), conditions
    (widths)]: weights [M], means [M, J], covs [M, J, J] -> the anchor dict of
    `fit_mixture_anchors`."""
    out = _empty_anchor(len(weights), dim, widths)
    for index, cols in enumerate(_subsets(widths)):
        slopes = _slopes(covs, dim, cols, 0.0)
        _fill(out, index, weights, means, covs, slopes, _residuals(covs, dim, cols, slopes),
              cols)
    return {k: v.astype(np.float32) for k, v in out.items()}


def shrunk_conditional_mixtures(weights: np.ndarray, means: np.ndarray, own: np.ndarray,
                                dim: int, widths: Sequence[int], shapes: Sequence[Shape],
                                reg: np.ndarray | float = REG_COVAR) -> dict:
    """`conditional_mixtures` of the components' own covariances own [M, J, J] (plus `reg` on
    the diagonal) in each subset's `Shape` (`choose_shrinkage`): gates, slopes and residuals
    moved their shares toward the shrinkage target of the shape's rank, the slopes' ridge
    penalty, the gates' temperature."""
    shapes = [Shape(*shape) for shape in shapes]
    out = _empty_anchor(len(weights), dim, widths)
    blocks = (dim, *widths)
    covs = {(share, rank): shrunk(own, weights, share, reg, rank, blocks)
            for rank in {shape.rank for shape in shapes}
            for share in {0.0, 1.0, *(shape.gate for shape in shapes if shape.rank == rank)}}
    for index, cols in enumerate(_subsets(widths)):
        shape = shapes[index]
        ends = {share: covs[share, shape.rank] for share in (0.0, 1.0)}
        slopes, (own_res, pooled_res) = _experts(ends, dim, cols, shape.slope,
                                                 _ends(ends, dim, cols, shape.penalty))
        _fill(out, index, weights, means, covs[shape.gate, shape.rank], slopes,
              (1 - shape.residual) * own_res + shape.residual * pooled_res, cols)
        _cool(out, index, weights, shape.temperature)
    return {k: v.astype(np.float32) for k, v in out.items()}


def widened(anchor: dict, read: Sequence[int], widths: Sequence[int]) -> dict:
    """A mixture anchor fitted on each condition's first read[c] columns as one over conditions
    of `widths` (read[c] <= widths[c]) that ignores the other columns: their kernel rows, gate
    means and gate precisions zero."""
    offsets = np.concatenate([[0], np.cumsum(widths)]).astype(int)
    cols = np.concatenate([offsets[c] + np.arange(r) for c, r in enumerate(read)])  # [W']
    out = dict(anchor)
    num, m, dim = anchor["bias"].shape
    width = int(offsets[-1])
    out["kernel"] = np.zeros((num, m, width, dim), anchor["kernel"].dtype)
    out["kernel"][:, :, cols] = anchor["kernel"]
    out["gate_mean"] = np.zeros((num, m, width), anchor["gate_mean"].dtype)
    out["gate_mean"][:, :, cols] = anchor["gate_mean"]
    out["gate_prec"] = np.zeros((num, m, width, width), anchor["gate_prec"].dtype)
    out["gate_prec"][:, :, cols[:, None], cols[None, :]] = anchor["gate_prec"]
    return out


def with_components(anchor: dict, m: int) -> dict:
    """The same conditional distributions as a mixture anchor of exactly m components: a
    Gaussian anchor (`anchor.fit_anchors`) as m equal copies of itself, a mixture of fewer
    components with its first component split into equal copies (each copy's gate constant
    lowered by the log of their number: the gates' weights, the eps posterior and the draws
    are unchanged). The members of a family are stacked, so each member's own choice of
    count (`mixture_count.choose_count`) is padded to the family's largest."""
    if "gate_const" not in anchor:  # Gaussian: one component, the gates constant
        num, width, dim = anchor["kernel"].shape
        dtype = anchor["kernel"].dtype
        anchor = {**{k: v[:, None] for k, v in anchor.items()},
                  "gate_const": np.zeros((num, 1), dtype),
                  "gate_mean": np.zeros((num, 1, width), dtype),
                  "gate_prec": np.zeros((num, 1, width, width), dtype)}
    have = anchor["gate_const"].shape[1]
    if have > m:
        raise ValueError(f"a mixture anchor of {have} components cannot be padded to {m}.")
    copies = m - have + 1
    out = {k: np.concatenate([np.repeat(v[:, :1], copies, axis=1), v[:, 1:]], axis=1)
           for k, v in anchor.items()}
    out["gate_const"][:, :copies] -= np.log(copies).astype(out["gate_const"].dtype)
    return out


def _empty_anchor(m: int, dim: int, widths: Sequence[int]) -> dict:
    width, num = int(sum(widths)), 2 ** len(widths)
    return {"kernel": np.zeros((num, m, width, dim)), "bias": np.zeros((num, m, dim)),
            "log_var": np.zeros((num, m, dim)), "basis": np.zeros((num, m, dim, dim)),
            "gate_const": np.zeros((num, m)), "gate_mean": np.zeros((num, m, width)),
            "gate_prec": np.zeros((num, m, width, width))}


def _fill(out: dict, index: int, weights, means, gate_covs, slopes, residuals,
          cols: np.ndarray) -> None:
    """Writes subset `index`'s conditional mixture into `out`: gates from the conditions'
    block of gate_covs [M, J, J], component j's target mean mu_x + slopes_j^T (c - mu_c)
    (slopes [M, |S|, D]) and covariance residuals_j [M, D, D]."""
    dim = slopes.shape[-1]
    c = dim + cols
    for j in range(len(weights)):
        mu_x, mu_c = means[j, :dim], means[j, c]
        out["kernel"][index, j][cols] = slopes[j]
        out["bias"][index, j] = mu_x - mu_c @ slopes[j]
        out["gate_const"][index, j] = np.log(weights[j])
        if len(cols):
            g_cc = gate_covs[j][np.ix_(c, c)]
            out["gate_mean"][index, j][cols] = mu_c
            out["gate_prec"][index, j][np.ix_(cols, cols)] = np.linalg.inv(g_cc)
            out["gate_const"][index, j] -= 0.5 * np.linalg.slogdet(g_cc)[1]
        out["log_var"][index, j], out["basis"][index, j] = eigh_floored(residuals[j])


def _cool(out: dict, index: int, weights: np.ndarray, temperature: float) -> None:
    """Multiplies subset `index`'s gate log-densities in `out` by `temperature`: each gate is
    then log w_j + temperature * log N(c; mu_j, C_j)."""
    log_weights = np.log(weights)
    out["gate_prec"][index] *= temperature
    out["gate_const"][index] = log_weights + temperature * (out["gate_const"][index]
                                                            - log_weights)


LOGIT_ROWS = 8192
"""Rows per block of `component_logits`: its memory is rows x components x condition width."""


def component_logits(anchor: dict, subset: np.ndarray, inputs: np.ndarray) -> np.ndarray:
    """[R, M] log weights (unnormalised) of each row's conditional mixture: subset [R] index,
    inputs [R, W] (zeros where masked). numpy float64, computed per subset in blocks of
    LOGIT_ROWS rows (a gather of each row's gate precision would take R x M x W x W)."""
    out = np.empty((len(subset), anchor["gate_const"].shape[-1]))
    for index in np.unique(subset):
        chosen = np.flatnonzero(subset == index)
        for start in range(0, len(chosen), LOGIT_ROWS):
            rows = chosen[start:start + LOGIT_ROWS]
            centred = inputs[rows][None] - anchor["gate_mean"][index][:, None, :]  # [M, r, W]
            quad = np.sum((centred @ anchor["gate_prec"][index]) * centred, axis=-1)  # [M, r]
            out[rows] = anchor["gate_const"][index] - 0.5 * quad.T
    return out
