"""Multimodal cohorts whose conditionals are NOT Gaussian but still known exactly.

A hidden subtype k ~ Categorical(weights) shifts some modalities and not others; within a
subtype the modalities are linear-Gaussian in a working scale u, each with its own
subtype-dependent noise; each modality is observed through an elementwise monotone link:

    k ~ Cat(pi),  z ~ N(0, I_F),  u_m = mu_{m,k} + A_m z + s_{m,k} e_m,  x_m = g_m(u_m)

with g_m one of 'identity', 'sinh' (heavy tails) or 'exp' (positive, count-like). A modality
whose subtype means differ ('reveals' it) tells the subtype; one whose means coincide ('hides'
it) does not, so the law of a revealing modality given a hiding one is a mixture with several
modes. Because g_m is a bijection, conditioning on x_S is conditioning on u_S = g^-1(x_S), and
the law of the missing modalities given any available set is exact:

    p(u_T | u_S) = sum_k w_k(u_S) N(u_T; mu_{T|S,k}, Sigma_{T|S,k}),
    w_k(u_S) proportional to pi_k N(u_S; mu_{S,k}, Sigma_{SS,k}),

drawn by `MixtureModel.conditional_draws` and mapped through g_T. Those exact draws are the
floor every imputer's score is read against (issue: a learned generator where the data are not
Gaussian). The noise scales of the revealing modalities differ between subtypes, so the
conditional spread depends on the patient.
"""

from __future__ import annotations

import dataclasses
from typing import Mapping, Sequence

import numpy as np
import pandas as pd

from coherent_jax.data import labels as labels_lib
from coherent_jax.data.cohort import Cohort
from coherent_jax.data.missingness import induce_missingness
from coherent_jax.errors import UnknownModalityError

LINKS = {"identity": (lambda u: u, lambda x: x),
         "sinh": (np.sinh, np.arcsinh),
         "exp": (np.exp, np.log)}
"""Observation link g (forward, inverse) per name."""


@dataclasses.dataclass(frozen=True)
class MixtureModel:
    """Parameters of the mixture cohort (float64, exact; module docstring).

    Attributes:
        names: modality names, in order.
        weights: [K] subtype probabilities pi.
        means: modality -> [K, D_m] subtype means mu_{m,k} in the working scale.
        loadings: modality -> [D_m, F] shared-factor loadings A_m.
        noise_std: modality -> [K] per-subtype noise standard deviation s_{m,k}.
        links: modality -> observation link name (`LINKS`).
    """

    names: tuple[str, ...]
    weights: np.ndarray
    means: Mapping[str, np.ndarray]
    loadings: Mapping[str, np.ndarray]
    noise_std: Mapping[str, np.ndarray]
    links: Mapping[str, str]

    @classmethod
    def random(cls, modality_dims: Mapping[str, int], separation: Mapping[str, float], *,
               num_subtypes: int = 3, num_factors: int = 4, noise_std: float = 0.5,
               noise_spread: float = 2.0, links: Mapping[str, str] | None = None,
               seed: int = 0) -> "MixtureModel":
        """Draws a random model.

        Args:
            modality_dims: modality name -> feature count.
            separation: modality -> how far apart its subtype means lie (in units of its
                within-subtype spread; 0 hides the subtype, 3 or more reveals it).
            num_subtypes: K, equally likely.
            num_factors: shared factor count F (within-subtype coupling of the modalities).
            noise_std: geometric mean of the per-subtype noise scales.
            noise_spread: ratio of the largest to the smallest subtype noise scale of the
                modalities that reveal the subtype (1: the same for every subtype; above 1 the
                spread depends on the patient's subtype); a blind modality (separation 0)
                has noise_std for every subtype, else its spread would tell the subtype.
            links: modality -> link name (default 'identity' everywhere).
            seed: numpy seed of the parameters.
        """
        if not modality_dims:
            raise ValueError("modality_dims is empty: give at least one modality name -> width.")
        names = tuple(modality_dims)
        missing = [m for m in names if m not in separation]
        if missing:
            raise ValueError(f"separation has no entry for {missing}: give each modality's "
                             "subtype separation (0 hides the subtype).")
        links = dict(links or {})
        bad = {m: g for m, g in links.items() if g not in LINKS or m not in names}
        if bad:
            raise ValueError(f"bad links {bad}: keys among {list(names)}, values among "
                             f"{list(LINKS)}.")
        if num_subtypes < 1 or noise_std <= 0 or noise_spread < 1:
            raise ValueError("need num_subtypes >= 1, noise_std > 0 and noise_spread >= 1.")
        for name, dim in modality_dims.items():
            if int(dim) < 1:
                raise ValueError(f"modality {name!r} has width {dim}; widths must be >= 1.")
        rng = np.random.default_rng(seed)
        scales = noise_std * noise_spread ** np.linspace(-0.5, 0.5, num_subtypes)
        loadings, means, noise = {}, {}, {}
        for m in names:
            d = int(modality_dims[m])
            loadings[m] = rng.standard_normal((d, num_factors)) / np.sqrt(num_factors)
            spread = np.sqrt(1.0 + noise_std ** 2)  # a feature's within-subtype sd, about
            centres = rng.standard_normal((num_subtypes, d))
            centres -= centres.mean(axis=0)
            centres /= np.maximum(np.linalg.norm(centres, axis=1, keepdims=True), 1e-12)
            means[m] = 0.3 * rng.standard_normal(d) + separation[m] * spread * centres
            # a blind modality keeps one noise scale: a subtype-dependent spread would tell it
            noise[m] = (rng.permutation(scales) if separation[m] > 0
                        else np.full(num_subtypes, float(noise_std)))
        return cls(names, np.full(num_subtypes, 1.0 / num_subtypes), means, loadings, noise,
                   {m: links.get(m, "identity") for m in names})

    @property
    def num_subtypes(self) -> int:
        return int(self.weights.shape[0])

    def dim(self, name: str) -> int:
        return int(self.loadings[self._check(name)].shape[0])

    def _check(self, name: str) -> str:
        if name not in self.names:
            raise UnknownModalityError(f"unknown modality {name!r}; this model has "
                                       f"{list(self.names)}.")
        return name

    def sample(self, num_samples: int, seed: int) -> tuple[dict[str, np.ndarray], np.ndarray]:
        """({name: [N, D_m] float64 observed values}, [N] subtypes) of complete patients."""
        rng = np.random.default_rng(seed)
        subtype = rng.choice(self.num_subtypes, num_samples, p=self.weights)
        z = rng.standard_normal((num_samples, next(iter(self.loadings.values())).shape[1]))
        values = {}
        for m in self.names:
            u = (self.means[m][subtype] + z @ self.loadings[m].T + self.noise_std[m][subtype, None]
                 * rng.standard_normal((num_samples, self.dim(m))))
            values[m] = LINKS[self.links[m]][0](u)
        return values, subtype

    def _component(self, k: int, names: Sequence[str]) -> tuple[np.ndarray, np.ndarray]:
        """Mean [sum D] and covariance [sum D, sum D] of u_names in subtype k."""
        mean = np.concatenate([self.means[m][k] for m in names])
        cov = np.block([[self.loadings[a] @ self.loadings[b].T for b in names] for a in names])
        cov += np.diag(np.concatenate([np.full(self.dim(m), self.noise_std[m][k] ** 2)
                                       for m in names]))
        return mean, cov

    def _working(self, given: Mapping[str, np.ndarray]) -> tuple[list[str], np.ndarray]:
        """(given names, [N, sum D] their working-scale values), checked."""
        names = [self._check(m) for m in given]
        values = [np.asarray(given[m], np.float64) for m in names]
        if len({v.shape[0] for v in values}) > 1:
            raise ValueError(f"given modalities have different row counts "
                             f"{sorted({v.shape[0] for v in values})}.")
        for m, v in zip(names, values):
            if v.ndim != 2 or v.shape[1] != self.dim(m):
                raise ValueError(f"given[{m!r}] has shape {v.shape}; expected [N, {self.dim(m)}].")
            if self.links[m] == "exp" and (v <= 0).any():
                raise ValueError(f"given[{m!r}] has values <= 0; its link is 'exp'.")
        return names, np.concatenate([LINKS[self.links[m]][1](v)
                                      for m, v in zip(names, values)], axis=1)

    def subtype_posterior(self, given: Mapping[str, np.ndarray]) -> np.ndarray:
        """[N, K] exact p(subtype | the given modalities) (the prior when none is given)."""
        if not given:
            return self.weights[None, :].copy()
        names, u = self._working(given)
        log_w = np.empty((u.shape[0], self.num_subtypes))
        for k in range(self.num_subtypes):
            mean, cov = self._component(k, names)
            chol = np.linalg.cholesky(cov)
            white = np.linalg.solve(chol, (u - mean).T)  # [sum D, N]
            log_w[:, k] = (np.log(self.weights[k]) - np.log(np.diag(chol)).sum()
                           - 0.5 * np.square(white).sum(axis=0))
        log_w -= log_w.max(axis=1, keepdims=True)
        w = np.exp(log_w)
        return w / w.sum(axis=1, keepdims=True)

    def conditional_draws(self, targets: Sequence[str], given: Mapping[str, np.ndarray],
                          num: int, seed: int) -> dict[str, np.ndarray]:
        """Exact draws of `targets` given the observed modalities.

        Args:
            targets: modalities to draw (none of them given).
            given: observed modality -> [N, D_m] values in the observed scale (may be empty:
                the marginal, N = 1).
            num: draws per patient.
            seed: numpy seed.

        Returns:
            {target: [num, N, D_t]} in the observed scale, jointly drawn (one subtype and one
            Gaussian draw per patient and draw).
        """
        targets = [self._check(t) for t in targets]
        overlap = [t for t in targets if t in given]
        if overlap or not targets:
            raise ValueError(f"targets {targets} must be non-empty and not given ({overlap}).")
        names, u = self._working(given) if given else ([], np.zeros((1, 0)))
        n = u.shape[0]
        rng = np.random.default_rng(seed)
        post = self.subtype_posterior(given)  # [N, K]
        picks = (rng.random((num, n, 1)) > np.cumsum(post, axis=1)[None]).sum(-1)  # [num, N]
        picks = np.minimum(picks, self.num_subtypes - 1)
        width = sum(self.dim(t) for t in targets)
        out = np.empty((num, n, width))
        for k in range(self.num_subtypes):
            mean, cov = self._component(k, list(names) + targets)
            g = u.shape[1]
            gain = (np.linalg.solve(cov[:g, :g], cov[:g, g:]).T if g
                    else np.zeros((width, 0)))  # [D_T, D_S]
            cond_mean = mean[g:] + (u - mean[:g]) @ gain.T  # [N, D_T]
            cond_cov = cov[g:, g:] - gain @ cov[:g, g:]
            chol = np.linalg.cholesky(0.5 * (cond_cov + cond_cov.T))
            noise = rng.standard_normal((num, n, width)) @ chol.T
            hit = picks == k
            out[hit] = (cond_mean[None] + noise)[hit]
        result, start = {}, 0
        for t in targets:
            result[t] = LINKS[self.links[t]][0](out[:, :, start:start + self.dim(t)])
            start += self.dim(t)
        return result


def mixture_cohort(model: MixtureModel, num_samples: int, *, seed: int,
                   missing_rates: Mapping[str, float] | None = None) -> Cohort:
    """Complete (or seeded-holed) patients of a MixtureModel; the subtype is the label
    'cancer_type' (named 'S0', 'S1', ...), features '<modality>_<j>'.

    Args:
        model: the model (e.g. `MixtureModel.random` or `hidden_subtype_model`).
        num_samples: patients N.
        seed: numpy seed of the draw (and of the holes).
        missing_rates: optional modality -> share removed (never all of a patient's).
    """
    values, subtype = model.sample(num_samples, seed)
    ids = pd.Index([f"MIX-{i:06d}" for i in range(num_samples)], name="sample_id")
    tables = {m: pd.DataFrame(v.astype(np.float32), index=ids,
                              columns=[f"{m}_{j}" for j in range(v.shape[1])])
              for m, v in values.items()}
    labels = labels_lib.standard_labels(ids, cancer_type=np.array(
        [f"S{k}" for k in range(model.num_subtypes)])[subtype])
    cohort = Cohort.from_tables(tables, labels, name=f"mixture-{num_samples}")
    if missing_rates is None:
        return cohort
    return induce_missingness(cohort, missing_rates, seed=seed + 1, splits=None)


def hidden_subtype_model(width: int = 16, seed: int = 0, target_link: str = "sinh"
                         ) -> MixtureModel:
    """The standard hard case: three subtypes, 'hide' blind to them, 'reveal' and 'target'
    shifted by them (so the target given 'hide' alone has three modes, given 'reveal' one),
    the target observed through `target_link` (`LINKS`; 'identity': a Gaussian mixture
    throughout), subtype-dependent noise."""
    return MixtureModel.random({"hide": width, "reveal": width, "target": width},
                               {"hide": 0.0, "reveal": 3.0, "target": 3.0}, num_subtypes=3,
                               num_factors=4, noise_std=0.5, noise_spread=2.0,
                               links={"target": target_link}, seed=seed)
