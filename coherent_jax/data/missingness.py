"""Seeded removal of modalities from complete cohorts, recorded in the cohort."""

from __future__ import annotations

from typing import Mapping, Sequence

import numpy as np
import pandas as pd

from coherent_jax.data.cohort import Cohort
from coherent_jax.errors import UnknownModalityError

# Rough per-modality probabilities that a TCGA sample lacks the modality (GDC availability):
# RPPA is the sparsest, whole-slide images next; copy number and RNA are nearly always there.
TCGA_LIKE_RATES = {"cna": 0.04, "rna": 0.03, "rppa": 0.25, "wsi": 0.10, "mirna": 0.05,
                   "meth": 0.07}
_ALIASES = {"cnv": "cna", "rnaseq": "rna", "protein": "rppa", "methylation": "meth"}


def tcga_like_rates(modalities: Sequence[str]) -> dict[str, float]:
    """TCGA-like missing rates for the given modality names (cna/cnv, rna/rnaseq, rppa, wsi,
    mirna, meth)."""
    rates = {}
    for m in modalities:
        key = _ALIASES.get(m.lower(), m.lower())
        if key not in TCGA_LIKE_RATES:
            raise KeyError(f"no TCGA-like missing rate for modality {m!r}; known: "
                           f"{sorted(TCGA_LIKE_RATES)}. Pass explicit rates instead.")
        rates[m] = TCGA_LIKE_RATES[key]
    return rates


def induce_missingness(cohort: Cohort, rates: Mapping[str, float] | float, seed: int,
                       splits: Sequence[str] | None = ("train",)) -> Cohort:
    """Removes modalities from samples at random, never all of a sample's modalities.

    Each (sample, modality) present in the eligible samples is removed independently with
    probability rates[modality]. Where that would leave a sample with nothing, one of its
    modalities, drawn uniformly, is kept. Removed rows become NaN in `tables`, are flagged in
    `induced`, and their true values move to `held_out` (to score imputations against).

    Args:
        cohort: the cohort (usually complete, after `paper_split`).
        rates: modality -> removal probability, or one probability for every modality.
            Modalities not named are left alone.
        seed: numpy seed.
        splits: only samples of these splits lose modalities (default train only, so val/test
            stay complete); None for every sample regardless of split.

    Returns:
        The cohort with the holes made.
    """
    if not isinstance(rates, Mapping):
        rates = {m: float(rates) for m in cohort.modalities}
    for m, rate in rates.items():
        if m not in cohort.tables:
            raise UnknownModalityError(f"unknown modality {m!r}; the cohort has "
                                       f"{list(cohort.modalities)}.")
        if not 0 <= rate <= 1:
            raise ValueError(f"rate for {m!r} is {rate}; it must lie in [0, 1].")
    names = list(cohort.modalities)
    eligible = (np.ones(cohort.num_samples, bool) if splits is None
                else cohort.splits.isin(list(splits)).to_numpy())  # [N]
    if splits is not None and cohort.splits.isna().all():
        raise ValueError("the cohort has no split yet; call paper_split first or pass "
                         "splits=None to remove modalities from every sample.")
    present = cohort.presence.to_numpy()  # [N, M]
    rng = np.random.default_rng(seed)
    draws = rng.random(present.shape)  # [N, M]
    limits = np.array([rates.get(m, 0.0) for m in names])  # [M]
    drop = (draws < limits) & present & eligible[:, None]
    emptied = np.flatnonzero(present.any(axis=1) & ~(present & ~drop).any(axis=1))
    for row in emptied:
        keep = rng.choice(np.flatnonzero(present[row]))
        drop[row, keep] = False
    tables, held = dict(cohort.tables), dict(cohort.held_out)
    for j, m in enumerate(names):
        rows = drop[:, j]
        if not rows.any():
            continue
        removed = tables[m].iloc[rows]
        held[m] = pd.concat([held[m], removed]) if m in held else removed
        values = tables[m].to_numpy().copy()
        values[rows] = np.nan
        tables[m] = pd.DataFrame(values, index=tables[m].index, columns=tables[m].columns)
    induced = cohort.induced | pd.DataFrame(drop, index=cohort.sample_ids, columns=names)
    return cohort.replace(tables=tables, induced=induced, held_out=held)
