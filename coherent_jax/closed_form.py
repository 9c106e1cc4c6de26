"""The closed form: a patient's missing modalities drawn jointly from a Gaussian conditional.

For every set S of modalities a patient may have (each non-empty proper subset of the model
set's modalities), one linear-Gaussian model of ALL the others' latents given S:

    z_T | x_S ~ N(x_S @ kernel + bias, scale @ scale')

with x_S the preprocessed features of the modalities in S side by side, z_T the latents of
the complement T side by side, the kernel a ridge (penalty per output column by leave-one-out,
on the sources' leading principal directions where leave-one-out says so, as the condition
maps, `anchor.distilled_ridge`; optionally distilled on its leave-one-out predictions for
membership privacy) fitted per target on the training rows that have the sources and that
target, and the covariance that of the ridges' out-of-fold residuals on the rows that have
every modality (`residuals.robust_covariance`: Ledoit-Wolf shrunk correlation, robust
per-dimension spread). The draws of all missing modalities come out of one Gaussian, so their
within- and cross-modality dependence is the residuals' and no order of targets is involved.
With a known covariate (`covariates.py`) each source's features enter expanded with their
interactions with the group. This is the strongest simple competitor of a generative imputer
and the floor its draws are scored against (`ImputeConfig.method = 'gaussian'`). It keeps
kernels, biases and covariance factors: aggregates, no patient's row.
"""

from __future__ import annotations

import dataclasses
import itertools
import warnings
from typing import Mapping, Sequence

import numpy as np
from coherent_jax.anchor import ALPHAS, distilled_ridge, fit_out_of_fold
from coherent_jax.covariates import Covariate, inputs
from coherent_jax.residuals import robust_covariance

MIN_ROWS = 20
"""Fewer training rows than this with a source set and a target: no closed form from that
source set (the method refuses those patients)."""


def pattern_key(sources: Sequence[str]) -> str:
    """The name of a source set, e.g. 'mirna+rna' (the model set's modality order)."""
    return "+".join(sources)


@dataclasses.dataclass(frozen=True, eq=False)
class GaussianPattern:
    """z_T | x_S for one source set S (module docstring).

    Attributes:
        sources: S, in the model set's order.
        targets: T, the other modalities, in the same order.
        widths: latent width of each target.
        kernel: [sum D_s, sum L_t] ridge coefficients on the sources' features.
        bias: [sum L_t].
        scale: [sum L_t, sum L_t] lower Cholesky factor of the residual covariance.
    """

    sources: tuple[str, ...]
    targets: tuple[str, ...]
    widths: tuple[int, ...]
    kernel: np.ndarray
    bias: np.ndarray
    scale: np.ndarray

    def mean(self, features: Sequence[np.ndarray]) -> np.ndarray:
        """[N, sum L_t] conditional means of the sources' feature rows ([N, D_s] each, as
        `ClosedForm.inputs` gives them)."""
        x = np.concatenate([np.asarray(f, np.float64) for f in features], axis=1)
        return x @ self.kernel + self.bias

    def draw(self, mean: np.ndarray, num: int, rng: np.random.Generator) -> np.ndarray:
        """[num, N, sum L_t] draws around conditional means [N, sum L_t]."""
        return mean[None] + rng.standard_normal((num,) + mean.shape) @ self.scale.T

    def covariance(self) -> np.ndarray:
        """[sum L_t, sum L_t] the conditional covariance."""
        return self.scale @ self.scale.T

    def split(self, values: np.ndarray) -> dict[str, np.ndarray]:
        """[..., sum L_t] -> {target: [..., L_t]}."""
        edges = np.cumsum((0,) + self.widths)
        return {t: values[..., a:b] for t, a, b in zip(self.targets, edges[:-1], edges[1:])}

    def arrays(self) -> dict[str, np.ndarray]:
        return {"kernel": self.kernel.astype(np.float32), "bias": self.bias.astype(np.float32),
                "scale": self.scale.astype(np.float32)}


@dataclasses.dataclass(frozen=True, eq=False)
class ClosedForm:
    """The Gaussian conditional of every source set. Build with `ClosedForm.fit`.

    Attributes:
        modalities: the model set's modalities, in order.
        patterns: pattern_key(S) -> GaussianPattern.
        covariate: the known covariate the sources' features are expanded with (or None).
    """

    modalities: tuple[str, ...]
    patterns: Mapping[str, GaussianPattern]
    covariate: Covariate | None = None

    def inputs(self, features: np.ndarray, labels) -> np.ndarray:
        """One source's feature rows [N, D_s] as the kernels take them (expanded with the
        covariate of the same patients' `labels`, when there is one)."""
        return inputs(self.covariate, np.asarray(features, np.float64), labels)

    @classmethod
    def fit(cls, features, latents, *, distill: bool = False, folds: int = 5,
            alphas: Sequence[float] = ALPHAS, seed: int = 0,
            residual_latents=None, covariate: Covariate | None = None) -> "ClosedForm":
        """Fits every source set: each target's ridge on the training rows that have the
        sources and that target, the joint residual covariance on the rows that have every
        modality (block-diagonal, each target's own rows, when fewer than `MIN_ROWS` do).

        Args:
            features: the feature cohort's training split (preprocessed z-scores).
            latents: the latent cohort's training split (same patients).
            distill: fit the kernels to their ridge's leave-one-out predictions
                (`anchor.distilled_ridge`; the private configuration).
            folds, alphas, seed: the out-of-fold residuals and the ridge penalties.
            residual_latents: the same patients' latents as new patients' would be encoded
                (`latent.cross_fitted_latents`); the covariance is fitted to their residuals
                (default: `latents`').
            covariate: a known covariate the sources' features are expanded with.
        """
        modalities = tuple(latents.modalities)
        x = {m: (inputs(covariate, values, features.labels), present)  # ([N, D'], [N])
             for m, (values, present) in ((m, features.matrix(m)) for m in modalities)}
        z = {m: latents.matrix(m)[0].astype(np.float64) for m in modalities}
        spread = z if residual_latents is None else {
            m: _aligned(residual_latents, latents).matrix(m)[0].astype(np.float64)
            for m in modalities}
        share = 1.0 if distill else 0.0
        patterns = {}
        for size in range(1, len(modalities)):
            for sources in itertools.combinations(modalities, size):
                found = _fit_pattern(sources, tuple(m for m in modalities if m not in sources),
                                     x, z, spread, folds, seed,
                                     lambda a, b: distilled_ridge(a, b, alphas, share))
                if found is not None:
                    patterns[pattern_key(sources)] = found
        return cls(modalities, patterns, covariate)

    def pattern(self, sources: Sequence[str]) -> GaussianPattern:
        """The closed form of a source set (in any order)."""
        ordered = tuple(m for m in self.modalities if m in set(sources))
        if not ordered:
            raise ValueError("the closed form needs at least one source: a patient with no "
                             "modality has nothing to condition on.")
        key = pattern_key(ordered)
        if key not in self.patterns:
            raise ValueError(f"no closed form for sources {ordered} (have "
                             f"{sorted(self.patterns)}); too few complete training patients.")
        return self.patterns[key]

    def sample(self, sources: Sequence[str], features: Sequence[np.ndarray], num: int,
               rng: np.random.Generator, labels=None) -> dict[str, np.ndarray]:
        """{target: [num, N, L_t]} joint draws of every modality not in `sources` for N
        patients whose sources' feature rows are `features` (in `pattern(sources).sources`
        order) and whose labels [N, ...] are `labels` (needed with a covariate)."""
        pattern = self.pattern(sources)
        mean = pattern.mean([self.inputs(f, labels) for f in features])
        return pattern.split(pattern.draw(mean, num, rng))

    def tree(self) -> dict:
        """The arrays to save (pattern key -> kernel, bias, scale)."""
        return {k: p.arrays() for k, p in self.patterns.items()}

    def metadata(self) -> dict:
        return {"modalities": list(self.modalities),
                "patterns": {k: {"sources": list(p.sources), "targets": list(p.targets),
                                 "widths": list(p.widths)} for k, p in self.patterns.items()}}

    @classmethod
    def from_saved(cls, metadata: dict, tree: dict,
                   covariate: Covariate | None = None) -> "ClosedForm":
        """Reads what `tree` and `metadata` gave; `covariate` is the model set's (saved
        once, with the model set)."""
        patterns = {}
        for key, info in metadata["patterns"].items():
            arrays = {k: np.asarray(v, np.float64) for k, v in tree[key].items()}
            patterns[key] = GaussianPattern(tuple(info["sources"]), tuple(info["targets"]),
                                            tuple(info["widths"]), arrays["kernel"],
                                            arrays["bias"], arrays["scale"])
        return cls(tuple(metadata["modalities"]), patterns, covariate)


def _aligned(other, latents):
    """`other` (a cohort) on `latents`' samples, refusing other samples."""
    if not other.sample_ids.equals(latents.sample_ids):
        raise ValueError("residual_latents must hold the same samples, in the same order, as "
                         "the latents (cross_fitted_latents of the same feature cohort).")
    return other


def _fit_pattern(sources, targets, x, z, spread, folds, seed, ridge) -> GaussianPattern | None:
    """One source set's GaussianPattern (see `ClosedForm.fit`); None when some target has
    fewer than MIN_ROWS training rows with it and the sources. z: the latents the kernels
    are fitted to; spread: those the residual covariance is fitted to."""
    have = np.all([x[m][1] for m in sources], axis=0)  # [N] rows with every source
    kernels, biases, residuals = [], [], []
    for t in targets:
        rows = have & x[t][1]
        if rows.sum() < MIN_ROWS:
            warnings.warn(f"only {int(rows.sum())} training patients have {list(sources)} and "
                          f"{t!r}: no closed form from {list(sources)}.", stacklevel=3)
            return None
        xs = np.concatenate([x[m][0][rows] for m in sources], axis=1).astype(np.float64)
        (coef, intercept), oof = fit_out_of_fold(xs, z[t][rows], folds, seed, ridge)
        kernels.append(coef)
        biases.append(intercept)
        residual = np.full_like(z[t], np.nan)
        residual[rows] = spread[t][rows] - oof
        residuals.append(residual)
    joint = np.concatenate(residuals, axis=1)  # [N, sum L_t], NaN where a target is absent
    complete = ~np.isnan(joint).any(axis=1)
    if complete.sum() >= MIN_ROWS:
        cov = robust_covariance(joint[complete])
    else:  # too few patients with every target: each target's own residuals, independent
        blocks = [robust_covariance(r[~np.isnan(r).any(axis=1)]) for r in residuals]
        cov = _block_diagonal(blocks)
    return GaussianPattern(tuple(sources), tuple(targets),
                           tuple(z[t].shape[1] for t in targets), np.concatenate(kernels, axis=1),
                           np.concatenate(biases), np.linalg.cholesky(cov + 1e-9 * np.eye(len(cov))))


def _block_diagonal(blocks: Sequence[np.ndarray]) -> np.ndarray:
    size = sum(len(b) for b in blocks)
    out, at = np.zeros((size, size)), 0
    for b in blocks:
        out[at:at + len(b), at:at + len(b)] = b
        at += len(b)
    return out
