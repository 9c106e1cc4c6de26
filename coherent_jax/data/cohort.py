"""The Cohort container: per-modality tables on one sample index, labels, split, missingness.

Every modality table holds a row for EVERY sample of the cohort, in the same order
(`cohort.sample_ids`); a sample lacking the modality has an all-NaN row. This makes every view
a cheap slice: `cohort.matrix('rna')` is the [N, D] float32 array the models consume, aligned
row by row with every other modality and with the labels.

    cohort = load_tcga("KIPAN")
    cohort = paper_split(cohort, seed=42)
    cohort = induce_missingness(cohort, tcga_like_rates(cohort.modalities), seed=0)
    prep = Preprocessor.fit(cohort)
    cohort = prep.transform(cohort)
    values, present = cohort.split("train").matrix("rna")   # [N, D] float32, [N] bool
"""

from __future__ import annotations

import dataclasses
import functools
from typing import Iterable, Mapping

import numpy as np
import pandas as pd

from coherent_jax.data import labels as labels_lib
from coherent_jax.data import validate
from coherent_jax.errors import UnknownModalityError

SPLITS = validate.SPLITS


@dataclasses.dataclass(frozen=True, eq=False)
class Cohort:
    """Multimodal cohort with holes. Build it with `Cohort.from_tables` or a loader.

    Attributes:
        tables: modality -> [N, D_m] float32 DataFrame indexed by `sample_ids` (same order for
            every modality); all-NaN rows where the sample lacks the modality. Before
            preprocessing a present row may still hold NaN cells (missing features).
        labels: [N, ...] DataFrame on the same index; columns cancer_type (string), stage
            (Int64 1-4), os_time (float64 days), os_event (Int64), then cohort-specific ones.
        splits: [N] string Series: 'train', 'val', 'test', or <NA> while unassigned.
        induced: [N, M] bool DataFrame: True where `induce_missingness` removed a modality.
        held_out: modality -> the true rows that missingness induction removed
            ([n_removed, D_m] float32), to score imputations against; empty otherwise.
        name: a short name, e.g. 'KIPAN'.
    """

    tables: Mapping[str, pd.DataFrame]
    labels: pd.DataFrame
    splits: pd.Series
    induced: pd.DataFrame
    held_out: Mapping[str, pd.DataFrame]
    name: str = "cohort"

    def __post_init__(self):
        self.validate()

    # ----------------------------------------------------------------------------------------
    # construction
    @classmethod
    def from_tables(cls, tables: Mapping[str, pd.DataFrame], labels: pd.DataFrame | None = None,
                    splits: pd.Series | Mapping[str, str] | None = None, name: str = "cohort",
                    sources: Mapping[str, str] | None = None,
                    labels_source: str | None = None, distinct_ids: bool = False) -> "Cohort":
        """Checks raw per-modality tables and aligns them on the union of their sample IDs.

        Args:
            tables: modality -> [N_m, D_m] table, samples as rows, sample IDs as the index.
                Samples absent from a modality, and all-NaN rows, are that modality's holes.
            labels: optional table indexed by sample ID; standard columns (see labels.py) are
                added where absent, 'stage' strings are encoded to 1-4. Samples without a row
                get missing labels; rows for samples in no modality are an error.
            splits: optional sample ID -> 'train' / 'val' / 'test'.
            name: the cohort's name.
            sources: modality -> file name, used in error messages.
            labels_source: the labels' file name, used in error messages.
            distinct_ids: accept IDs that differ only in case, whitespace or a TCGA barcode
                suffix as different samples (by default they are an error).

        Returns:
            A validated Cohort whose sample order is the sorted union of all IDs.

        Raises:
            DataError: see `validate.check_table`, `check_overlap`, `check_labels`, `check_split`.
        """
        sources = dict(sources or {})
        if not tables:
            raise validate.DataError("no modality given: a cohort needs at least one table.")
        checked = {m: validate.check_table(t, m, sources.get(m)) for m, t in tables.items()}
        validate.check_overlap(checked, sources)
        if not distinct_ids:
            validate.check_id_spelling(checked, sources)
        ids = pd.Index(sorted(set().union(*(t.index for t in checked.values()))), dtype="string",
                       name="sample_id")
        aligned = {m: t.reindex(ids) for m, t in checked.items()}
        for m, t in aligned.items():
            if np.isnan(t.to_numpy()).all():
                raise validate.DataError(
                    f"modality {m!r}" + (f" (file {sources[m]})" if m in sources else "")
                    + " has no sample with any value: every row is empty. Fill it or leave the "
                    "modality out.")
        table = conform_labels(labels, ids, labels_source)
        assignment = pd.Series(pd.NA, index=ids, dtype="string", name="split")
        if splits is not None:
            given = pd.Series(splits, dtype="string")
            given.index = given.index.astype("string")
            unknown = given.index.difference(ids)
            if len(unknown):
                raise validate.DataError(f"split assigns {len(unknown)} sample(s) found in no "
                                         f"modality, e.g. {str(unknown[0])!r}.")
            assignment.loc[given.index] = given.to_numpy()
        induced = pd.DataFrame(False, index=ids, columns=list(aligned))
        return cls(aligned, table, assignment, induced, {}, name)

    # ----------------------------------------------------------------------------------------
    # checks
    def validate(self) -> None:
        """Checks internal consistency; raises DataError naming the offending part."""
        if not self.tables:
            raise validate.DataError("a cohort needs at least one modality.")
        ids = self.sample_ids
        for m, t in self.tables.items():
            if not t.index.equals(ids):
                raise validate.DataError(f"table {m!r} is not aligned on the cohort's sample IDs; "
                                         "build cohorts with Cohort.from_tables.")
            if not all(dtype == np.float32 for dtype in t.dtypes):
                raise validate.DataError(f"table {m!r} must be float32.")
            if t.shape[1] == 0:
                raise validate.DataError(f"modality {m!r} has no features.")
            if np.isinf(t.to_numpy()).any():
                raise validate.DataError(f"table {m!r} holds infinite values.")
        for what, obj in (("labels", self.labels), ("splits", self.splits),
                          ("induced", self.induced)):
            if not obj.index.equals(ids):
                raise validate.DataError(f"{what} are not aligned on the cohort's sample IDs.")
        if list(self.induced.columns) != list(self.tables):
            raise validate.DataError("induced must have one column per modality.")
        validate.check_split(self.splits, self.presence)

    # ----------------------------------------------------------------------------------------
    # views
    @property
    def sample_ids(self) -> pd.Index:
        """[N] sample IDs, the row order of every table and array."""
        return next(iter(self.tables.values())).index

    @property
    def modalities(self) -> tuple[str, ...]:
        return tuple(self.tables)

    @property
    def num_samples(self) -> int:
        return len(self.sample_ids)

    @property
    def feature_names(self) -> dict[str, list[str]]:
        """modality -> its feature names, in column order."""
        return {m: list(t.columns) for m, t in self.tables.items()}

    def widths(self) -> dict[str, int]:
        """modality -> feature count D_m."""
        return {m: t.shape[1] for m, t in self.tables.items()}

    @functools.cached_property
    def presence(self) -> pd.DataFrame:
        """[N, M] bool: True where the sample has the modality (a row that is not all NaN)."""
        return pd.DataFrame({m: ~np.isnan(t.to_numpy()).all(axis=1)
                             for m, t in self.tables.items()}, index=self.sample_ids)

    @property
    def complete(self) -> np.ndarray:
        """[N] bool: the sample has every modality."""
        return self.presence.to_numpy().all(axis=1)

    def arrays(self, modality: str) -> tuple[np.ndarray, np.ndarray]:
        """(values [N, D] float32 with NaN rows where missing, present [N] bool).

        `values` is a read-only view of the table; copy it before writing into it.
        """
        table = self._table(modality)
        return table.to_numpy(), self.presence[modality].to_numpy()

    def matrix(self, modality: str) -> tuple[np.ndarray, np.ndarray]:
        """What the models consume: (values [N, D] float32, present [N] bool).

        Rows are aligned with `sample_ids`; rows of absent samples are zero-filled.

        Raises:
            DataError: a present row still has missing cells (run `Preprocessor` first).
        """
        values, present = self.arrays(modality)
        holes = np.isnan(values[present])
        if holes.any():
            row, col = np.argwhere(holes)[0]
            sample = self.sample_ids[np.flatnonzero(present)[row]]
            raise validate.DataError(
                f"modality {modality!r} has {int(holes.sum())} missing value(s) inside present "
                f"samples, e.g. sample {sample!r}, feature {self.tables[modality].columns[col]!r}."
                " Fill them first: Preprocessor.fit(cohort).transform(cohort).")
        return np.where(present[:, None], values, np.float32(0)), present

    def patterns(self) -> pd.DataFrame:
        """Missingness patterns: one row per distinct set of present modalities.

        Returns:
            DataFrame with one bool column per modality, then 'count' (samples with that
            pattern), most common pattern first.
        """
        presence = self.presence
        counts = presence.groupby(list(presence.columns), sort=False).size()
        out = counts.rename("count").reset_index()
        return out.sort_values(["count"] + list(presence.columns), ascending=False,
                               kind="stable").reset_index(drop=True)

    def split(self, *names: str) -> "Cohort":
        """The sub-cohort of the samples assigned to the named split(s), e.g. split('train')."""
        for name in names:
            if name not in SPLITS:
                raise ValueError(f"unknown split {name!r}; use one of {list(SPLITS)}.")
        if self.splits.isna().all():
            raise validate.DataError("this cohort has no split yet: call paper_split(cohort) "
                                     "or give one to the loader.")
        return self.subset(self.sample_ids[self.splits.isin(names).to_numpy()])

    def subset(self, sample_ids: Iterable[str]) -> "Cohort":
        """The sub-cohort of the given samples, in the given order."""
        ids = pd.Index(list(sample_ids), dtype="string", name="sample_id")
        unknown = ids.difference(self.sample_ids)
        if len(unknown):
            raise KeyError(f"{len(unknown)} sample(s) not in cohort {self.name!r}, "
                           f"e.g. {unknown[0]!r}.")
        held = {m: h.loc[h.index.intersection(ids, sort=False)] for m, h in self.held_out.items()}
        return Cohort({m: t.loc[ids] for m, t in self.tables.items()}, self.labels.loc[ids],
                      self.splits.loc[ids], self.induced.loc[ids], held, self.name)

    def replace(self, **changes) -> "Cohort":
        """A copy with some fields replaced; validated."""
        return dataclasses.replace(self, **changes)

    def summary(self) -> dict:
        """The cohort in numbers: samples, widths, label counts, patterns, split sizes."""
        labels = self.labels
        counts = {}
        for column in labels.columns:
            if column == "os_time":
                counts[column] = {"known": int(labels[column].notna().sum())}
            elif labels[column].nunique() <= 30:
                values = labels[column].astype("string").fillna("<missing>")
                counts[column] = {str(k): int(v) for k, v in values.value_counts().items()}
            else:
                counts[column] = {"known": int(labels[column].notna().sum())}
        patterns = self.patterns()
        return {
            "name": self.name,
            "samples": self.num_samples,
            "features": self.widths(),
            "labels": counts,
            "patterns": [("+".join(m for m in self.modalities if row[m]) or "none",
                          int(row["count"])) for _, row in patterns.iterrows()],
            "splits": {str(k): int(v) for k, v in
                       self.splits.fillna("unassigned").value_counts().items()},
        }

    def _table(self, modality: str) -> pd.DataFrame:
        if modality not in self.tables:
            raise UnknownModalityError(f"unknown modality {modality!r}; cohort {self.name!r} "
                                       f"has {list(self.tables)}.")
        return self.tables[modality]


def conform_labels(labels: pd.DataFrame | None, ids: pd.Index,
                   source: str | None = None) -> pd.DataFrame:
    """Aligns a labels table on `ids` with the standard columns and dtypes (see labels.py)."""
    if labels is None:
        return labels_lib.standard_labels(ids)
    labels = labels.copy()
    labels.index = pd.Index(labels.index.astype("string"), name="sample_id")
    validate.check_labels(labels, ids, source)
    labels = labels.reindex(ids)
    return labels_lib.standard_labels(ids, **{c: labels[c] for c in labels.columns})

