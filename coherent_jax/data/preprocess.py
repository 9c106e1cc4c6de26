"""The paper's feature preprocessing, fitted on the training split only.

Per modality, from the TRAIN samples that have the modality:
  1. drop features missing in >= 10% of those samples;
  2. fill the remaining holes: for expression-like modalities with the conditional mean of a
     low-rank Gaussian model of the training rows given the row's observed entries
     (`lowrank_fill`; the paper's KNN keeps every training row as donors, which a released
     work directory must not hold), the train median for copy number;
  3. optionally (`marginal='asinh'`), before 2, take heavy tails and skew out of each feature
     where the training values call for it (`data.marginal`: s asinh((x - m) / s), chosen by
     likelihood and BIC per feature; `inverse` puts it back);
  4. z-score each feature with the train mean and standard deviation (after filling; a
     constant feature gets standard deviation 1);
  5. record each feature's domain from its training values (`feature_domain`): [0, 1] when
     they all lie there (methylation beta values, proportions), [0, inf) when none is
     negative (counts, non-negative expression), else unbounded. `inverse` maps z-scores
     back into it, so decoded draws in the input's units are valid values of the feature.
The fitted `Preprocessor` is a plain object: fit once, transform the train, val and test parts
(or a new cohort with the same features) identically. Absent modalities stay absent.
`save`/`load` keep it with a work directory (JSON + .npz, no pickle, no patient's row), so new
patients are preprocessed without the training data; `inverse` maps z-scores back to the
input's units. Preprocessing saved before (format /1, KNN donors = training rows) still loads,
with a warning, its fill refitted in memory from the donors; `holds_training_rows` tells the
pipeline to rewrite it.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import os
import warnings
from typing import Mapping

import numpy as np
import pandas as pd

from coherent_jax.data import validate
from coherent_jax.data.cohort import Cohort
from coherent_jax.data.lowrank_fill import LowRankFill
from coherent_jax.data.marginal import MARGINALS, AsinhShape
from coherent_jax.data.marginal_choice import shape_helps

COPY_NUMBER_NAMES = ("cna", "cnv", "copy_number")
FORMAT = "coherent_jax.Preprocessor/3"
READABLE = ("coherent_jax.Preprocessor/2", FORMAT)  # /3 added the shape transform
OLD_FORMAT = "coherent_jax.Preprocessor/1"  # KNN fill: its donors were training rows
logger = logging.getLogger(__name__)
FILLS = ("lowrank", "median")


def default_fill(modality: str) -> str:
    """'median' for copy number (the paper's choice), 'lowrank' for everything else."""
    return "median" if modality.lower() in COPY_NUMBER_NAMES else "lowrank"


def check_fill(modality: str, method: str) -> str:
    """A fill name as used: 'knn' (the paper's; it keeps every training row) becomes
    'lowrank' with a warning; anything else unknown is an error."""
    if method == "knn":
        warnings.warn(f"fill 'knn' for {modality!r} would keep every training row in the work "
                      "directory (its donors); using 'lowrank', which keeps no row and filled "
                      "held-out entries of KIPAN better (README, Privacy).", stacklevel=3)
        return "lowrank"
    if method not in FILLS:
        raise validate.DataError(f"fill for {modality!r} is {method!r}; use one of {FILLS}.")
    return method


def feature_domain(rows: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(lower [D], upper [D]) domain of each column of training rows [n, D] (NaN: holes):
    [0, 1] when every value lies in it, [0, inf) when none is negative, else unbounded."""
    low, high = np.nanmin(rows, axis=0), np.nanmax(rows, axis=0)
    lower = np.where(low >= 0, 0.0, -np.inf)
    upper = np.where((low >= 0) & (high <= 1), 1.0, np.inf)
    return lower, upper


@dataclasses.dataclass(frozen=True, eq=False)
class ModalityTransform:
    """What was learned on train for one modality.

    Attributes:
        features: the kept feature names, in order (D_kept of them).
        fill: 'lowrank' or 'median'.
        median: [D_kept] train medians (the median fill).
        imputer: the low-rank Gaussian fitted on the train rows (None for median fill).
        mean: [D_kept] train means after filling.
        std: [D_kept] train standard deviations after filling (1 where constant).
        lower, upper: [D_kept] each feature's domain in the input's units (-inf / inf:
            unbounded; `feature_domain`).
        shape: the per-feature shape transform applied before the fill (`data.marginal`;
            None: none). `median`, `imputer`, `mean` and `std` are in its units.
    """

    features: tuple[str, ...]
    fill: str
    median: np.ndarray
    imputer: LowRankFill | None
    mean: np.ndarray
    std: np.ndarray
    lower: np.ndarray | None = None
    upper: np.ndarray | None = None
    shape: AsinhShape | None = None

    def apply(self, table: pd.DataFrame) -> pd.DataFrame:
        """Selects, fills and z-scores rows of one modality: [n, D] -> [n, D_kept] float32.

        All-NaN rows (absent samples) stay all-NaN.
        """
        values = np.array(table.reindex(columns=list(self.features)), dtype=np.float64)
        present = ~np.isnan(values).all(axis=1)  # [n]
        rows = values[present]
        if self.shape is not None:
            rows = self.shape.apply(rows)
        if np.isnan(rows).any():
            if self.imputer is not None:
                rows = self.imputer.transform(rows)
            rows = np.where(np.isnan(rows), self.median, rows)
        values[present] = (rows - self.mean) / self.std
        return pd.DataFrame(values.astype(np.float32), index=table.index,
                            columns=list(self.features))

    def inverse(self, table: pd.DataFrame) -> pd.DataFrame:
        """z-scores [n, D_kept] (columns `features`, any index) -> the input's units, within
        each feature's domain (a value past a bound is set to the bound)."""
        values = table[list(self.features)].to_numpy(np.float64) * self.std + self.mean
        if self.shape is not None:
            values = self.shape.inverse(values)
        if self.lower is not None:
            values = np.clip(values, self.lower, self.upper)
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
            max_missing: float = 0.1, split: str = "train", marginal: str = "none"
            ) -> "Preprocessor":
        """Learns the preprocessing from one split (train) of a cohort.

        Args:
            cohort: a cohort with a split assigned.
            fill: modality -> 'lowrank' or 'median'; default `default_fill`.
            max_missing: features missing in at least this share of the split's samples that
                have the modality are dropped (the paper: 0.1).
            split: the split to learn from.
            marginal: 'none'; 'asinh' to fit `data.marginal.AsinhShape` per modality (each
                feature transformed only where its training values call for it); 'auto' to
                keep a modality's shape only where it gives the closed form better validation
                draws (`data.marginal_choice`; needs a 'val' split).

        Raises:
            DataError: the split is empty, or a modality has no sample in it.
        """
        if marginal not in MARGINALS:
            raise validate.DataError(f"marginal is {marginal!r}; use one of {MARGINALS}.")
        fill = dict(fill or {})
        if cohort.splits.isna().all():
            raise validate.DataError("the cohort has no split: call paper_split(cohort) first, "
                                     "so preprocessing is learned from training samples only.")
        part = cohort.split(split)
        if part.num_samples == 0:
            raise validate.DataError(f"split {split!r} is empty; nothing to fit on.")
        transforms, dropped = {}, {}
        for m in cohort.modalities:
            method = check_fill(m, fill.get(m, default_fill(m)))
            rows, names, keep = _kept_rows(part, m, split, max_missing)
            dropped[m] = tuple(names[~keep])
            transforms[m] = _fit_transform(rows, tuple(names[keep]), method,
                                           shaped=marginal == "asinh")
        if marginal == "auto":  # each shape kept where validation says it helps
            for m in cohort.modalities:
                rows, names, keep = _kept_rows(part, m, split, max_missing)
                shaped = _fit_transform(rows, tuple(names[keep]), transforms[m].fill, True)
                if shaped.shape is not None and shape_helps(cohort, m, transforms, shaped):
                    transforms[m] = shaped
                    logger.info("%s: %d of %d features reshaped (asinh; validation draws of "
                                "the closed form better)", m, shaped.shape.transformed.sum(),
                                len(shaped.features))
        return cls(transforms, dropped)

    @property
    def holds_training_rows(self) -> bool:
        """True when loaded from a preprocessing saved with KNN donors (training rows):
        the pipeline's next run rewrites it without them."""
        return bool(getattr(self, "_loaded_with_donors", False))

    def save(self, folder: str) -> None:
        """Writes preprocessing.json (features, fills, dropped, fill ranks) and
        preprocessing.npz (per-feature statistics and the low-rank fills; no patient's row)."""
        os.makedirs(folder, exist_ok=True)
        shaped = any(t.shape is not None for t in self.transforms.values())
        meta = {"format": FORMAT if shaped else READABLE[0], "modalities": {}}  # /2 readers
        arrays = {}
        for m, t in self.transforms.items():
            meta["modalities"][m] = {
                "features": list(t.features), "fill": t.fill, "dropped": list(self.dropped[m]),
                "fill_rank": None if t.imputer is None else t.imputer.rank}
            arrays.update({f"{m}/median": t.median, f"{m}/mean": t.mean, f"{m}/std": t.std})
            if t.lower is not None:
                arrays.update({f"{m}/lower": t.lower, f"{m}/upper": t.upper})
            if t.imputer is not None:
                arrays.update({f"{m}/fill_{k}": v for k, v in t.imputer.arrays().items()})
            if t.shape is not None:
                arrays.update({f"{m}/shape_{k}": v for k, v in t.shape.arrays().items()})
        np.savez(os.path.join(folder, "preprocessing.npz"), **arrays)
        with open(os.path.join(folder, "preprocessing.json"), "w") as f:
            json.dump(meta, f, indent=2)

    @classmethod
    def load(cls, folder: str) -> "Preprocessor":
        """Reads what `save` wrote; transforms exactly as the saved Preprocessor did. A
        preprocessing saved with KNN donors (format /1) loads with a warning, its fill refitted
        in memory as the low-rank fill of the same rows (`holds_training_rows` is then True)."""
        path = os.path.join(folder, "preprocessing.json")
        if not os.path.exists(path):
            raise validate.DataError(f"no saved preprocessing in {folder!r} (expected {path}).")
        with open(path) as f:
            meta = json.load(f)
        if meta.get("format") not in READABLE + (OLD_FORMAT,):
            raise validate.DataError(f"{path} is not a saved Preprocessor (format "
                                     f"{meta.get('format')!r}, expected {FORMAT!r}).")
        old = meta["format"] == OLD_FORMAT
        transforms, dropped = {}, {}
        with np.load(os.path.join(folder, "preprocessing.npz")) as arrays:
            donors = old and any(k.endswith("/knn_donors") for k in arrays.files)
            for m, info in meta["modalities"].items():
                imputer, fill = None, info["fill"]
                if old and fill == "knn":
                    imputer, fill = LowRankFill.fit(arrays[f"{m}/knn_donors"]), "lowrank"
                elif fill == "lowrank":
                    imputer = LowRankFill(*(arrays[f"{m}/fill_{k}"]
                                            for k in ("mean", "loadings", "noise")))
                bounds = ((arrays[f"{m}/lower"], arrays[f"{m}/upper"])  # saved without: none
                          if f"{m}/lower" in arrays.files else (None, None))
                shape = (AsinhShape(*(arrays[f"{m}/shape_{k}"]
                                      for k in ("loc", "scale", "low", "high")))
                         if f"{m}/shape_loc" in arrays.files else None)
                transforms[m] = ModalityTransform(tuple(info["features"]), fill,
                                                  arrays[f"{m}/median"], imputer,
                                                  arrays[f"{m}/mean"], arrays[f"{m}/std"],
                                                  *bounds, shape)
                dropped[m] = tuple(info["dropped"])
        prep = cls(transforms, dropped)
        if donors:
            warnings.warn(
                f"{folder} holds the training patients' rows (the KNN fill's donors of an "
                "earlier version): do not share this work directory as it is. Run the pipeline "
                "on it again (experiments/run_pipeline.py or train_denoisers.py with the same "
                "config and data) to rewrite it without them; until then holes are filled by "
                "the low-rank fill refitted from those rows in memory.", stacklevel=2)
            object.__setattr__(prep, "_loaded_with_donors", True)
        return prep

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


def _kept_rows(part: Cohort, modality: str, split: str, max_missing: float):
    """(rows [n, D_kept] of the split's samples that have the modality, all feature names,
    keep [D] bool): features missing in >= max_missing of those rows are dropped."""
    values, present = part.arrays(modality)
    rows = values[present].astype(np.float64)  # [n, D]
    if rows.shape[0] == 0:
        raise validate.DataError(f"modality {modality!r} has no sample in split {split!r}; "
                                 "cannot learn its preprocessing.")
    keep = np.isnan(rows).mean(axis=0) < max_missing  # [D]
    if not keep.any():
        raise validate.DataError(
            f"modality {modality!r}: every feature is missing in >= {max_missing:.0%} of the "
            f"{split} samples; raise max_missing or drop the modality.")
    return rows[:, keep], part.tables[modality].columns, keep


def _fit_transform(rows: np.ndarray, features: tuple[str, ...], method: str,
                   shaped: bool) -> ModalityTransform:
    """The ModalityTransform of training rows [n, D_kept] (NaN: holes): the shape transform
    when `shaped` and it changes some feature, then the fill, the z-scores and the domain."""
    domain = feature_domain(rows)
    shape = AsinhShape.fit(rows) if shaped else None
    if shape is not None and not shape.transformed.any():
        shape = None
    if shape is not None:
        rows = shape.apply(rows)
    median = np.nanmedian(rows, axis=0)
    median = np.where(np.isnan(median), 0.0, median)
    imputer = None
    if method == "lowrank":
        imputer = LowRankFill.fit(rows)
        filled = imputer.transform(rows)
    else:
        filled = np.where(np.isnan(rows), median, rows)
    std = filled.std(axis=0)
    return ModalityTransform(features, method, median, imputer, filled.mean(axis=0),
                             np.where(std > 0, std, 1.0), *domain, shape)
