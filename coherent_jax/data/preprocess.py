"""The paper's feature preprocessing, fitted on the training split only.

Per modality, from the TRAIN samples that have the modality:
  1. drop features missing in >= 10% of those samples;
  2. fill the remaining holes: KNN (k=5, nan-Euclidean distance to train samples) for
     expression-like modalities, the train median for copy number;
  3. z-score each feature with the train mean and standard deviation (after filling; a
     constant feature gets standard deviation 1).
The fitted `Preprocessor` is a plain object: fit once, transform the train, val and test parts
(or a new cohort with the same features) identically. Absent modalities stay absent.
`save`/`load` keep it with a work directory (JSON + .npz, no pickle), so new patients are
preprocessed without the training data; `inverse` maps z-scores back to the input's units.
"""

from __future__ import annotations

import dataclasses
import json
import os
from typing import Mapping

import numpy as np
import pandas as pd
from sklearn.impute import KNNImputer

from coherent_jax.data import validate
from coherent_jax.data.cohort import Cohort

COPY_NUMBER_NAMES = ("cna", "cnv", "copy_number")
FORMAT = "coherent_jax.Preprocessor/1"


def default_fill(modality: str) -> str:
    """'median' for copy number (the paper's choice), 'knn' for everything else."""
    return "median" if modality.lower() in COPY_NUMBER_NAMES else "knn"


@dataclasses.dataclass(frozen=True, eq=False)
class ModalityTransform:
    """What was learned on train for one modality.

    Attributes:
        features: the kept feature names, in order (D_kept of them).
        fill: 'knn' or 'median'.
        median: [D_kept] train medians (the median fill, and KNN's fallback).
        imputer: the KNN imputer fitted on the train rows (None for median fill); its donor
            rows are training rows (saved with the work directory).
        mean: [D_kept] train means after filling.
        std: [D_kept] train standard deviations after filling (1 where constant).
    """

    features: tuple[str, ...]
    fill: str
    median: np.ndarray
    imputer: KNNImputer | None
    mean: np.ndarray
    std: np.ndarray

    def apply(self, table: pd.DataFrame) -> pd.DataFrame:
        """Selects, fills and z-scores rows of one modality: [n, D] -> [n, D_kept] float32.

        All-NaN rows (absent samples) stay all-NaN.
        """
        values = np.array(table.reindex(columns=list(self.features)), dtype=np.float64)
        present = ~np.isnan(values).all(axis=1)  # [n]
        rows = values[present]
        if np.isnan(rows).any():
            if self.imputer is not None:
                rows = self.imputer.transform(rows)
            rows = np.where(np.isnan(rows), self.median, rows)
        values[present] = (rows - self.mean) / self.std
        return pd.DataFrame(values.astype(np.float32), index=table.index,
                            columns=list(self.features))

    def inverse(self, table: pd.DataFrame) -> pd.DataFrame:
        """z-scores [n, D_kept] (columns `features`, any index) -> the input's units."""
        values = table[list(self.features)].to_numpy(np.float64) * self.std + self.mean
        return pd.DataFrame(values, index=table.index, columns=list(self.features))


@dataclasses.dataclass(frozen=True, eq=False)
class Preprocessor:
    """Fitted per-modality preprocessing; see the module docstring.

    Attributes:
        transforms: modality -> its fitted ModalityTransform.
        dropped: modality -> names of the features dropped for missingness.
    """

    transforms: Mapping[str, ModalityTransform]
    dropped: Mapping[str, tuple[str, ...]]

    @classmethod
    def fit(cls, cohort: Cohort, fill: Mapping[str, str] | None = None,
            max_missing: float = 0.1, num_neighbors: int = 5,
            split: str = "train") -> "Preprocessor":
        """Learns the preprocessing from one split (train) of a cohort.

        Args:
            cohort: a cohort with a split assigned.
            fill: modality -> 'knn' or 'median'; default `default_fill`.
            max_missing: features missing in at least this share of the split's samples that
                have the modality are dropped (the paper: 0.1).
            num_neighbors: k of the KNN fill (the paper: 5).
            split: the split to learn from.

        Raises:
            DataError: the split is empty, or a modality has no sample in it.
        """
        fill = dict(fill or {})
        if cohort.splits.isna().all():
            raise validate.DataError("the cohort has no split: call paper_split(cohort) first, "
                                     "so preprocessing is learned from training samples only.")
        part = cohort.split(split)
        if part.num_samples == 0:
            raise validate.DataError(f"split {split!r} is empty; nothing to fit on.")
        transforms, dropped = {}, {}
        for m in cohort.modalities:
            method = fill.get(m, default_fill(m))
            if method not in ("knn", "median"):
                raise ValueError(f"fill for {m!r} is {method!r}; use 'knn' or 'median'.")
            values, present = part.arrays(m)
            rows = values[present].astype(np.float64)  # [n, D]
            if rows.shape[0] == 0:
                raise validate.DataError(f"modality {m!r} has no sample in split {split!r}; "
                                         "cannot learn its preprocessing.")
            missing = np.isnan(rows).mean(axis=0)  # [D]
            keep = missing < max_missing
            if not keep.any():
                raise validate.DataError(
                    f"modality {m!r}: every feature is missing in >= {max_missing:.0%} of the "
                    f"{split} samples; raise max_missing or drop the modality.")
            names = cohort.tables[m].columns
            dropped[m] = tuple(names[~keep])
            rows = rows[:, keep]
            median = np.nanmedian(rows, axis=0)
            median = np.where(np.isnan(median), 0.0, median)
            imputer = None
            if method == "knn":
                imputer = KNNImputer(n_neighbors=num_neighbors, keep_empty_features=True)
                imputer.fit(rows)
                filled = imputer.transform(rows) if np.isnan(rows).any() else rows
            else:
                filled = np.where(np.isnan(rows), median, rows)
            mean = filled.mean(axis=0)
            std = filled.std(axis=0)
            transforms[m] = ModalityTransform(tuple(names[keep]), method, median, imputer,
                                              mean, np.where(std > 0, std, 1.0))
        return cls(transforms, dropped)

    def save(self, folder: str) -> None:
        """Writes preprocessing.json (features, fills, dropped) and preprocessing.npz (arrays)."""
        os.makedirs(folder, exist_ok=True)
        meta = {"format": FORMAT, "modalities": {}}
        arrays = {}
        for m, t in self.transforms.items():
            meta["modalities"][m] = {
                "features": list(t.features), "fill": t.fill, "dropped": list(self.dropped[m]),
                "num_neighbors": None if t.imputer is None else t.imputer.n_neighbors}
            arrays.update({f"{m}/median": t.median, f"{m}/mean": t.mean, f"{m}/std": t.std})
            if t.imputer is not None:
                arrays[f"{m}/knn_donors"] = t.imputer._fit_X  # noqa: SLF001 - the fitted rows
        np.savez(os.path.join(folder, "preprocessing.npz"), **arrays)
        with open(os.path.join(folder, "preprocessing.json"), "w") as f:
            json.dump(meta, f, indent=2)

    @classmethod
    def load(cls, folder: str) -> "Preprocessor":
        """Reads what `save` wrote; transforms exactly as the saved Preprocessor did."""
        path = os.path.join(folder, "preprocessing.json")
        if not os.path.exists(path):
            raise validate.DataError(f"no saved preprocessing in {folder!r} (expected {path}).")
        with open(path) as f:
            meta = json.load(f)
        if meta.get("format") != FORMAT:
            raise validate.DataError(f"{path} is not a saved Preprocessor (format "
                                     f"{meta.get('format')!r}, expected {FORMAT!r}).")
        transforms, dropped = {}, {}
        with np.load(os.path.join(folder, "preprocessing.npz")) as arrays:
            for m, info in meta["modalities"].items():
                imputer = None
                if info["num_neighbors"] is not None:
                    imputer = KNNImputer(n_neighbors=info["num_neighbors"],
                                         keep_empty_features=True)
                    imputer.fit(arrays[f"{m}/knn_donors"])
                transforms[m] = ModalityTransform(tuple(info["features"]), info["fill"],
                                                  arrays[f"{m}/median"], imputer,
                                                  arrays[f"{m}/mean"], arrays[f"{m}/std"])
                dropped[m] = tuple(info["dropped"])
        return cls(transforms, dropped)

    def transform(self, cohort: Cohort) -> Cohort:
        """Applies the learned preprocessing to every sample of a cohort (and its held-out
        rows). The cohort must have the modalities, and at least the kept features, seen in fit.
        """
        tables, held = {}, {}
        for m, table in cohort.tables.items():
            if m not in self.transforms:
                raise validate.DataError(f"modality {m!r} was not seen when fitting (fitted: "
                                         f"{list(self.transforms)}); rename its file to one of "
                                         "them or leave it out.")
            step = self.transforms[m]
            lacking = pd.Index(step.features).difference(table.columns)
            if len(lacking):
                raise validate.DataError(
                    f"modality {m!r} lacks {len(lacking)} of the {len(step.features)} features "
                    f"the models were trained with, e.g. {validate._show(lacking)}; give every "
                    "trained feature (empty cells are filled), or leave the modality out.")
            tables[m] = step.apply(table)
            if m in cohort.held_out:
                held[m] = step.apply(cohort.held_out[m])
        return cohort.replace(tables=tables, held_out=held)
