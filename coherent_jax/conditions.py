"""The condition values a target's models take: one home for imputation and calibration.

Plain models condition on the sources' latents. Models with `condition_maps` condition on
ridge predictions of the target from each source's features (`anchor.fit_condition_map`,
fitted with the models in `model_set`): `Conditions` applies them to the patients' observed
features (with their covariate level when the models have one, `covariates.py`) and, in an
imputation cascade, to sources drawn earlier. `fill.fill_target` and
`calibrate.full_source_disagreement` both read their conditions here.

Rows: K draws x N patients, draw-major (row = draw * N + patient).
"""

from __future__ import annotations

import dataclasses

import numpy as np

from coherent_jax.anchor import apply_condition_map
from coherent_jax.data.validate import DataError


@dataclasses.dataclass(frozen=True)
class Work:
    """The draw-major work arrays a target is drawn from.

    Attributes:
        values: modality -> [K*N, D] values so far (observed rows, then earlier draws).
        known: modality -> [K*N] bool, rows a target may condition on: observed or, in a
            cascade, already drawn.
    """

    values: dict
    known: dict


class Conditions:
    """The condition values of a target's models for rows of the draw-major work arrays.

    Plain models condition on the sources' latents. Models with `condition_maps` condition on
    ridge predictions from each source's features: observed sources from `feature_cohort`
    (projected once per patient), sources imputed earlier in the cascade from their decoded
    draws (the latent space's expected features); with a known covariate, each patient's
    features are expanded with its level (`covariates.py`).
    """

    def __init__(self, models, present: dict, ids, latent_space, feature_cohort):
        """present: modality -> [N] bool, observed rows; ids: the N patients' sample IDs."""
        self.present, self.n, self.space = present, len(ids), latent_space
        self.features, self._projected = None, {}
        self.covariate, self.codes = models.covariate, None
        if any(tm.condition_maps is not None for tm in models.targets.values()):
            if feature_cohort is None:
                raise ValueError("these models condition on the sources' features: pass "
                                 "feature_cohort (the patients' preprocessed features; to "
                                 "impute, the latent space too).")
            self.features = {m: feature_cohort.tables[m].reindex(ids).to_numpy(np.float32)
                             for m in feature_cohort.modalities}
            if models.covariate is not None:
                if feature_cohort.labels is None:
                    raise DataError(f"these models condition on the covariate "
                                    f"{models.covariate.column!r}: give the patients' labels "
                                    "(a clinical.csv with that column).")
                self.codes = models.covariate.codes(feature_cohort.labels.reindex(ids))  # [N]

    def values(self, tm, source: str, rows: np.ndarray, work: Work) -> np.ndarray:
        """[R, D_c] condition values of `source` for work rows `rows` (zeros where unknown)."""
        if tm.condition_maps is None:
            return work.values[source][rows]
        cmap = tm.condition_maps[source]
        width = np.asarray(cmap["bias"]).shape[0]
        out = np.zeros((rows.size, width), np.float32)
        patient = rows % self.n
        given = self.present[source][patient]
        if given.any():
            out[given] = self._projection(tm.target, source, cmap, width)[patient[given]]
        generated = work.known[source][rows] & ~given
        if generated.any():
            if self.space is None:
                raise ValueError(f"{source!r} was imputed earlier in the cascade and these "
                                 "models condition on its features: pass latent_space to "
                                 "impute (or cascade=False).")
            decoded = self.space.decode(source, work.values[source][rows[generated]]).to_numpy()
            out[generated] = apply_condition_map(cmap, self._inputs(decoded, patient[generated]))
        return out

    def _projection(self, target: str, source: str, cmap: dict, width: int) -> np.ndarray:
        """[N, k] the condition map applied to the observed features, once per patient."""
        key = (target, source)
        if key not in self._projected:
            rows = self.present[source]
            projected = np.zeros((self.n, width), np.float32)
            projected[rows] = apply_condition_map(
                cmap, self._inputs(self.features[source][rows], np.flatnonzero(rows)))
            self._projected[key] = projected
        return self._projected[key]

    def _inputs(self, features: np.ndarray, patients: np.ndarray) -> np.ndarray:
        """Feature rows [R, D_s] of `patients` [R] (indices among the N) as the condition
        maps take them: expanded with the patients' covariate when the models have one."""
        if self.covariate is None:
            return features
        return self.covariate.expand(features, self.codes[patients])
