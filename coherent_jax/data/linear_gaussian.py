"""A linear-Gaussian multimodal cohort whose every conditional is known exactly.

Each modality m is a linear map of shared Gaussian patient factors plus its own noise:
    z ~ N(0, I_F),   x_m = mu_m + A_m z + s_m * e_m,   e_m ~ N(0, I_{D_m}).
The joint law of all modalities is therefore Gaussian, and the law of any modality given any
subset of the others is the Gaussian given by the usual Schur complement. Tests use it to check
that samplers and trained denoisers reproduce exact posteriors.
"""

from __future__ import annotations

import dataclasses
from typing import Mapping

import numpy as np

from coherent_jax.errors import UnknownModalityError


@dataclasses.dataclass(frozen=True)
class LinearGaussianModel:
    """Parameters of the linear-Gaussian cohort (float64, exact).

    Attributes:
        names: modality names, in order.
        means: per modality mean vector [D_m].
        loadings: per modality loading matrix A_m [D_m, F].
        noise_std: per modality isotropic noise standard deviation s_m.
    """

    names: tuple[str, ...]
    means: Mapping[str, np.ndarray]
    loadings: Mapping[str, np.ndarray]
    noise_std: Mapping[str, float]

    @classmethod
    def random(cls, modality_dims: Mapping[str, int], num_factors: int = 4,
               noise_std: float = 0.5, seed: int = 0) -> "LinearGaussianModel":
        """Draws a random model: N(0, 1/F) loadings, N(0, 0.5^2) means.

        Args:
            modality_dims: modality name -> feature count.
            num_factors: shared latent factor count F (coupling between modalities).
            noise_std: per-feature private noise, same for every modality.
            seed: numpy seed of the parameters.
        """
        if not modality_dims:
            raise ValueError("modality_dims is empty: give at least one modality name -> width.")
        for name, dim in modality_dims.items():
            if int(dim) < 1:
                raise ValueError(f"modality {name!r} has width {dim}; widths must be >= 1.")
        rng = np.random.default_rng(seed)
        names = tuple(modality_dims)
        means = {m: 0.5 * rng.standard_normal(modality_dims[m]) for m in names}
        loadings = {m: rng.standard_normal((modality_dims[m], num_factors)) / np.sqrt(num_factors)
                    for m in names}
        return cls(names, means, loadings, {m: float(noise_std) for m in names})

    def dim(self, name: str) -> int:
        return int(self.means[self._check(name)].shape[0])

    def _check(self, name: str) -> str:
        if name not in self.names:
            raise UnknownModalityError(f"unknown modality {name!r}; this model has "
                                       f"{list(self.names)}.")
        return name

    def sample(self, num_samples: int, seed: int) -> dict[str, np.ndarray]:
        """Draws `num_samples` complete patients: name -> [N, D_m] float64."""
        rng = np.random.default_rng(seed)
        num_factors = next(iter(self.loadings.values())).shape[1]
        z = rng.standard_normal((num_samples, num_factors))
        return {m: self.means[m] + z @ self.loadings[m].T
                + self.noise_std[m] * rng.standard_normal((num_samples, self.dim(m)))
                for m in self.names}

    def cross_cov(self, a: str, b: str) -> np.ndarray:
        """Cov(x_a, x_b) [D_a, D_b]."""
        cov = self.loadings[self._check(a)] @ self.loadings[self._check(b)].T
        if a == b:
            cov = cov + self.noise_std[a] ** 2 * np.eye(self.dim(a))
        return cov

    def marginal(self, target: str) -> tuple[np.ndarray, np.ndarray]:
        """Mean [D] and covariance [D, D] of one modality."""
        return self.means[self._check(target)].copy(), self.cross_cov(target, target)

    def conditional(self, target: str, given: Mapping[str, np.ndarray]
                    ) -> tuple[np.ndarray, np.ndarray]:
        """Exact law of `target` given observed modalities.

        Args:
            target: the modality to predict.
            given: observed modality name -> values [N, D_m]; may be empty (the marginal).

        Returns:
            (mean [N, D_t], cov [D_t, D_t]); the covariance does not depend on the values.
        """
        return self.joint_conditional((target,), given)

    def joint_conditional(self, targets: tuple[str, ...], given: Mapping[str, np.ndarray]
                          ) -> tuple[np.ndarray, np.ndarray]:
        """Exact joint law of several modalities (side by side, in `targets` order) given
        observed ones: (mean [N, sum D_t], cov [sum D_t, sum D_t]); see `conditional`."""
        overlap = [t for t in targets if t in given]
        if overlap:
            raise ValueError(f"targets {overlap} are also among the given modalities.")
        mu_t = np.concatenate([self.marginal(t)[0] for t in targets])
        cov_tt = np.block([[self.cross_cov(a, b) for b in targets] for a in targets])
        if not given:
            return mu_t[None, :], cov_tt
        names = list(given)
        values = [np.asarray(given[m], dtype=np.float64) for m in names]
        num = {v.shape[0] for v in values}
        if len(num) != 1:
            raise ValueError(f"given modalities have different row counts {sorted(num)}.")
        for m, v in zip(names, values):
            if v.ndim != 2 or v.shape[1] != self.dim(m):
                raise ValueError(f"given[{m!r}] has shape {v.shape}; expected [N, {self.dim(m)}].")
        cov_gg = np.block([[self.cross_cov(a, b) for b in names] for a in names])
        cov_tg = np.block([[self.cross_cov(t, b) for b in names] for t in targets])
        resid = np.concatenate([v - self.means[m] for m, v in zip(names, values)], axis=1)
        gain = np.linalg.solve(cov_gg, cov_tg.T).T  # [D_t, sum D_g]
        mean = mu_t[None, :] + resid @ gain.T
        cov = cov_tt - gain @ cov_tg.T
        return mean, 0.5 * (cov + cov.T)
