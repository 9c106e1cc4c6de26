"""Held-out complete patients copied once per source subset, so ONE imputation call per method
serves the whole reconstruction study (every target x every available set).

A copy keeps only its subset's modalities; its ID is '<sample_id>@<subset>' with the subset's
modalities joined by '+'. `impute` then fills each copy's missing modalities, and `draws_of`
maps the draws of one subset back to the original sample IDs for scoring.
"""

from __future__ import annotations

import dataclasses
import itertools
from typing import Mapping, Sequence

import numpy as np
import pandas as pd

from coherent_jax.data import Cohort
from coherent_jax.data.cohort import conform_labels

SEPARATOR = "@"


def source_subsets(modalities: Sequence[str]) -> list[tuple[str, ...]]:
    """Every non-empty proper subset of `modalities` (2^M - 2), smallest first."""
    return [s for r in range(1, len(modalities))
            for s in itertools.combinations(modalities, r)]


def tag(subset: Sequence[str]) -> str:
    """'rna+mirna' for ('rna', 'mirna')."""
    return "+".join(subset)


@dataclasses.dataclass(frozen=True)
class PatternCopies:
    """The copies and where they came from.

    Attributes:
        cohort: [P * S] copies; copy (p, s) holds only the modalities of subset s.
        origin: [P * S] DataFrame indexed by copy ID: sample_id (original), subset (tag).
        sample_ids: [P] the original complete patients, in order.
        subsets: the S source subsets.
    """

    cohort: Cohort
    origin: pd.DataFrame
    sample_ids: pd.Index
    subsets: tuple

    def available(self, subset: Sequence[str]) -> tuple[pd.Index, Cohort]:
        """(copy IDs [P], the P original patients with only `subset`'s modalities, under their
        own sample IDs, in `sample_ids` order): what a user would impute for that set."""
        copy_ids = self.origin.index[np.asarray(self.origin["subset"] == tag(subset))]
        part = self.cohort.subset(copy_ids)
        ids = pd.Index(self.origin["sample_id"].reindex(copy_ids).to_numpy(), dtype="string",
                       name="sample_id")
        relabel = lambda t: t.set_axis(ids, axis=0)
        return copy_ids, part.replace(
            tables={m: relabel(t) for m, t in part.tables.items()},
            labels=relabel(part.labels),
            splits=pd.Series(pd.NA, index=ids, dtype="string", name="split"),
            induced=relabel(part.induced), held_out={})

    def draws_of(self, tables: Mapping[str, pd.DataFrame], target: str,
                 subset: Sequence[str]) -> pd.DataFrame:
        """The draws of `target` for the copies of `subset`, indexed (original sample_id, draw).

        Args:
            tables: modality -> DataFrame indexed (copy ID, draw), e.g. `Imputation.draws`
                or `Imputation.features`, or by copy ID alone (`Imputation.feature_means`).
        """
        if target in subset:
            raise ValueError(f"{target!r} is given in subset {tag(subset)!r}: nothing to score.")
        table = tables[target]
        copy_ids = table.index.get_level_values("sample_id")
        keep = np.asarray(self.origin["subset"].reindex(copy_ids) == tag(subset))
        part = table[keep]
        original = self.origin["sample_id"].reindex(part.index.get_level_values("sample_id"))
        if part.index.nlevels == 1:  # one row per copy (e.g. Imputation.feature_means)
            part.index = pd.Index(original.to_numpy(), dtype="string", name="sample_id")
            return part
        part.index = pd.MultiIndex.from_arrays(
            [pd.Index(original.to_numpy(), dtype="string"),
             part.index.get_level_values("draw")], names=["sample_id", "draw"])
        return part


def pattern_copies(cohort: Cohort, subsets: Sequence[Sequence[str]] | None = None
                   ) -> PatternCopies:
    """Copies every complete patient of `cohort` once per source subset.

    Args:
        cohort: e.g. the latent test split; only patients with every modality are used.
        subsets: the available sets to simulate (default: every non-empty proper subset).

    Raises:
        ValueError: no complete patient, or a subset naming an unknown or no modality.
    """
    modalities = cohort.modalities
    subsets = tuple(tuple(s) for s in (subsets or source_subsets(modalities)))
    for s in subsets:
        if not s or set(s) - set(modalities) or len(s) == len(modalities):
            raise ValueError(f"source subset {s!r} must be a non-empty proper subset of "
                             f"{list(modalities)}.")
    ids = cohort.sample_ids[cohort.complete]
    if not len(ids):
        raise ValueError(f"cohort {cohort.name!r} has no patient with every modality "
                         f"{list(modalities)}: nothing to hold out and reconstruct.")
    copy_ids, origin_ids, origin_tags = [], [], []
    for s in subsets:
        copy_ids += [f"{i}{SEPARATOR}{tag(s)}" for i in ids]
        origin_ids += list(ids)
        origin_tags += [tag(s)] * len(ids)
    origin = pd.DataFrame({"sample_id": origin_ids, "subset": origin_tags},
                          index=pd.Index(copy_ids, dtype="string", name="sample_id"))
    tables = {}
    for m in modalities:  # a modality no subset gives stays all-missing: a pure target
        rows = origin[[m in t.split("+") for t in origin["subset"]]]
        table = cohort.tables[m].loc[rows["sample_id"]]  # [copies holding m, D_m]
        table.index = rows.index
        tables[m] = table.reindex(origin.index)  # [P * S, D_m], NaN rows where not given
    labels = cohort.labels.loc[origin["sample_id"]]  # each copy keeps its patient's labels
    labels.index = origin.index  # (a known covariate among them)
    copies = Cohort(tables, conform_labels(labels, origin.index),
                    pd.Series(pd.NA, index=origin.index, dtype="string", name="split"),
                    pd.DataFrame(False, index=origin.index, columns=list(modalities)), {},
                    f"{cohort.name}-patterns")
    return PatternCopies(copies, origin, ids, subsets)


@dataclasses.dataclass(frozen=True)
class HeldOut:
    """The evaluated patients: one split in latent and in feature space, and the pattern copies
    of its complete patients.

    Attributes:
        latent: the split of the latent cohort.
        features: the same split of the feature cohort.
        copies: every complete patient of `latent` once per source subset (`pattern_copies`).
    """

    latent: Cohort
    features: Cohort
    copies: PatternCopies

    @classmethod
    def of(cls, latent: Cohort, features: Cohort) -> HeldOut:
        """The split in both spaces, with the pattern copies of every source subset."""
        return cls(latent, features, pattern_copies(latent))
