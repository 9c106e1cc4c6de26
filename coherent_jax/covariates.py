"""A known categorical covariate (e.g. the cancer type) as an input of every linear map.

On a heterogeneous cohort the relation between modalities differs by group: on the pan-cancer
union (BRCA + KIPAN + LGG) one ridge per cohort predicts every target better than a pooled
ridge, and the cohort as an additive covariate barely helps (README, "Pan-cancer"). A
`Covariate` expands a source's feature rows with their interactions with the group,

    x -> [x, x * 1{g = 1}, ..., x * 1{g = G}, SCALE * onehot(g)]     ([N, D] -> [N, (G+1) D + G])

so that one ridge on the expanded rows fits a shared slope plus a deviation per group (both
penalised: small groups borrow strength from the pooled fit) and an intercept per group
(scaled so that its penalty is negligible). The condition maps, the anchors built on them,
the networks conditioned on them and the closed form all see the group this way. The
covariate is saved with the models (its column name and levels); new patients must carry the
column, with a level seen in training.
"""

from __future__ import annotations

import dataclasses

import numpy as np
import pandas as pd

from coherent_jax.data.validate import DataError

SCALE = 100.0
"""The one-hot columns' scale: a ridge coefficient of 0.01 per unit of group mean, so the
group intercepts are practically unpenalised."""


@dataclasses.dataclass(frozen=True)
class Covariate:
    """A categorical label column and its levels (as strings, in training order)."""

    column: str
    levels: tuple[str, ...]

    @classmethod
    def fit(cls, labels: pd.DataFrame, column: str) -> "Covariate":
        """The levels of `column` among the training patients' labels [N, ...].

        Raises:
            DataError: the column is absent, some patient lacks it, or it has one level.
        """
        values = _column(labels, column, "the training patients")
        levels = tuple(sorted(set(values)))
        if len(levels) < 2:
            raise DataError(f"covariate {column!r} has a single level {levels} among the "
                            "training patients: it carries nothing; leave the covariate unset.")
        return cls(column, levels)

    def codes(self, labels: pd.DataFrame) -> np.ndarray:
        """[N] the level index of each row of `labels`.

        Raises:
            DataError: the column is absent, some patient lacks it, or has a level not seen in
                training.
        """
        values = _column(labels, self.column, "the patients")
        index = {level: i for i, level in enumerate(self.levels)}
        unknown = sorted(set(values) - set(index))
        if unknown:
            raise DataError(f"covariate {self.column!r}: levels {unknown} were not among the "
                            f"training patients' {list(self.levels)}; the models cannot "
                            "condition on them (impute those patients with a model trained "
                            "without the covariate).")
        return np.array([index[v] for v in values], np.int64)

    def expand(self, features: np.ndarray, codes: np.ndarray) -> np.ndarray:
        """[N, D] feature rows and their [N] level codes -> [N, (G+1) D + G] (module
        docstring); float32 in, float32 out."""
        features = np.asarray(features)
        onehot = np.eye(len(self.levels), dtype=features.dtype)[np.asarray(codes)]  # [N, G]
        blocks = [features] + [features * onehot[:, [g]] for g in range(len(self.levels))]
        return np.concatenate(blocks + [SCALE * onehot], axis=1)

    def metadata(self) -> dict:
        return {"column": self.column, "levels": list(self.levels)}

    @classmethod
    def from_metadata(cls, meta: dict | None) -> "Covariate | None":
        return None if not meta else cls(meta["column"], tuple(meta["levels"]))


def inputs(covariate: Covariate | None, features: np.ndarray, labels: pd.DataFrame | None
           ) -> np.ndarray:
    """A source's rows as the linear maps take them: `features` [N, D] unchanged without a
    covariate, else expanded with the covariate of `labels` (the same N patients)."""
    if covariate is None:
        return features
    if labels is None:
        raise DataError(f"these models condition on the covariate {covariate.column!r}: give "
                        "the patients' labels (a clinical.csv with that column).")
    return covariate.expand(features, covariate.codes(labels))


def _column(labels: pd.DataFrame, column: str, whose: str) -> list[str]:
    if column not in labels.columns:
        raise DataError(f"the covariate column {column!r} is not among {whose}' labels "
                        f"(columns: {list(labels.columns)}); add it to clinical.csv.")
    series = labels[column]
    missing = series.isna()
    if missing.any():
        ids = list(series.index[missing][:5])
        raise DataError(f"{int(missing.sum())} of {whose} lack the covariate "
                        f"{column!r} (e.g. {ids}); every patient needs it: fill it in "
                        "clinical.csv.")
    return [str(v) for v in series]
