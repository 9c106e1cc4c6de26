"""Input checks with errors that say what is wrong, where, and how to fix it.

Every loader funnels its tables through these checks, so a user's folder of CSV files fails
early with a message naming the file, the modality and the first offending sample, instead of
failing deep inside training with a NaN loss.
"""

from __future__ import annotations

from typing import Iterable, Mapping

import numpy as np
import pandas as pd

from coherent_jax.errors import UserError

SPLITS = ("train", "val", "test")


class DataError(UserError):
    """A cohort's input is malformed; the message says where and how to fix it."""


def _where(modality: str, source: str | None) -> str:
    return f"modality {modality!r}" + (f" (file {source})" if source else "")


def _show(items: Iterable, limit: int = 5) -> str:
    items = list(items)
    head = ", ".join(repr(str(i)) for i in items[:limit])
    return head + (f" and {len(items) - limit} more" if len(items) > limit else "")


def check_table(table: pd.DataFrame, modality: str, source: str | None = None) -> pd.DataFrame:
    """Checks one modality table (samples as rows) and returns it as float32.

    Args:
        table: [N, D] samples as rows, sample IDs as the index, features as columns.
        modality: the modality name, for messages.
        source: the file it came from, for messages.

    Returns:
        The table as float32 with a string index and string column names.

    Raises:
        DataError: no samples or no features, duplicate sample IDs or feature names, values that
            are not numbers, or infinite values.
    """
    where = _where(modality, source)
    if table.shape[0] == 0:
        raise DataError(f"{where} has no samples. Give at least one row (one sample per row, the "
                        "sample ID in the first column) or leave the modality out.")
    if table.shape[1] == 0:
        raise DataError(f"{where} has no features: only a sample-ID column was found. Put one "
                        "feature per column after the sample-ID column.")
    index = pd.Index(table.index.astype(str), name="sample_id")
    if index.hasnans or (index.str.strip() == "").any():
        raise DataError(f"{where} has an empty sample ID. Every row needs an ID in its first "
                        "column.")
    dup = index[index.duplicated()].unique()
    if len(dup):
        raise DataError(f"{where} has duplicate sample IDs: {_show(dup)}. Keep one row per "
                        "sample (average or drop replicates before loading).")
    columns = pd.Index(table.columns.astype(str))
    dup = columns[columns.duplicated()].unique()
    if len(dup):
        raise DataError(f"{where} has duplicate feature names: {_show(dup)}. Rename or drop them.")
    non_numeric = [c for c, t in table.dtypes.items() if not pd.api.types.is_numeric_dtype(t)
                   or pd.api.types.is_bool_dtype(t)]
    if non_numeric:
        column = non_numeric[0]
        values = pd.to_numeric(table[column], errors="coerce")
        bad = table[column][values.isna() & table[column].notna()]
        example = (f"; sample {str(bad.index[0])!r} has {bad.iloc[0]!r}" if len(bad) else "")
        raise DataError(f"{where} has non-numeric values in feature {str(column)!r}{example} "
                        f"({len(non_numeric)} non-numeric column(s) in all). Only numbers and "
                        "empty cells (missing) are allowed; fix or drop those columns.")
    values = table.to_numpy(dtype=np.float64, na_value=np.nan)  # [N, D]
    infinite = np.isinf(values)
    if infinite.any():
        row, col = np.argwhere(infinite)[0]
        raise DataError(f"{where} has {int(infinite.sum())} infinite value(s), e.g. sample "
                        f"{str(index[row])!r}, feature {str(columns[col])!r}. Replace them with "
                        "finite numbers or leave the cells empty (missing).")
    return pd.DataFrame(values.astype(np.float32), index=index, columns=columns)


def check_overlap(tables: Mapping[str, pd.DataFrame],
                  sources: Mapping[str, str] | None = None) -> None:
    """Fails when a modality's sample IDs match no other modality's IDs at all.

    Samples present in only some modalities are normal (that is missingness); a whole modality
    sharing no ID with the others means the IDs are spelled differently (e.g. TCGA sample
    barcodes 'TCGA-AB-1234-01A' in one file and patient barcodes 'TCGA-AB-1234' in another).
    """
    sources = sources or {}
    if len(tables) < 2:
        return
    for name, table in tables.items():
        others = pd.Index([]).append([t.index for m, t in tables.items() if m != name])
        if not table.index.isin(others).any():
            other = next(m for m in tables if m != name)
            raise DataError(
                f"{_where(name, sources.get(name))} shares no sample ID with any other modality: "
                f"its IDs look like {_show(table.index, 2)}, those of {other!r} like "
                f"{_show(tables[other].index, 2)}. Use the same ID for a sample in every file.")


def _normalised_id(sample_id: str) -> str:
    """Case- and whitespace-free ID; TCGA barcodes cut to the sample (TCGA-XX-XXXX-01)."""
    key = "".join(str(sample_id).split()).upper()
    if key.startswith("TCGA-") and len(key) > 15:
        key = key[:15]
    return key


def check_id_spelling(tables: Mapping[str, pd.DataFrame],
                      sources: Mapping[str, str] | None = None) -> None:
    """Fails when different IDs become the same after normalising case, whitespace or a TCGA
    barcode suffix ('tcga-ab-1234-01' / 'TCGA-AB-1234-01A'): such near-duplicates would
    silently become extra patients. Callers accept them as distinct with distinct_ids=True.
    """
    sources = sources or {}
    owners: dict[str, dict[str, str]] = {}  # normalised -> {raw id: modality}
    for m, table in tables.items():
        for raw in table.index:
            owners.setdefault(_normalised_id(raw), {}).setdefault(str(raw), m)
    clashes = [spellings for spellings in owners.values() if len(spellings) > 1]
    if clashes:
        examples = "; ".join(" vs ".join(f"{raw!r} ({_where(m, sources.get(m))})"
                                          for raw, m in list(spellings.items())[:2])
                             for spellings in clashes[:3])
        raise DataError(f"{len(clashes)} sample ID(s) are spelled differently across or within "
                        f"files (case, spaces or a TCGA barcode suffix), e.g. {examples}. Use "
                        "one spelling per sample; if they really are different samples, pass "
                        "--config.data.distinct_ids=true (Cohort.from_tables(distinct_ids=True)).")


def check_labels(labels: pd.DataFrame, sample_ids: pd.Index, source: str | None = None) -> None:
    """Fails on duplicate label rows or labels for samples that are in no modality."""
    where = "labels" + (f" (file {source})" if source else "")
    dup = labels.index[labels.index.duplicated()].unique()
    if len(dup):
        raise DataError(f"{where} has duplicate sample IDs: {_show(dup)}. Keep one row per sample.")
    unknown = labels.index.difference(sample_ids)
    if len(unknown):
        raise DataError(f"{where} name {len(unknown)} sample(s) found in no modality: "
                        f"{_show(unknown)}. Remove those rows or add the samples' data; check that "
                        "the labels use the same sample IDs as the modality files.")


def check_split(split: pd.Series, presence: pd.DataFrame) -> None:
    """Fails on unknown split names, or on a val/test split without any complete sample.

    Val and test may hold incomplete samples (patients to impute); evaluations score the
    complete ones, so a non-empty val or test split needs at least one.

    Args:
        split: [N] 'train' / 'val' / 'test' or missing (unassigned), indexed by sample ID.
        presence: [N, M] bool, which modality each sample has.
    """
    names = set(split.dropna().unique())
    unknown = names - set(SPLITS)
    if unknown:
        raise DataError(f"split has unknown names {sorted(unknown)}; use {list(SPLITS)}.")
    complete = presence.all(axis=1)
    for name in ("val", "test"):
        members = split.index[split.isin([name]).to_numpy()]
        if len(members) and not complete.loc[members].any():
            sample = members[0]
            lacks = [m for m in presence.columns if not presence.at[sample, m]]
            raise DataError(
                f"split {name!r} has {len(members)} sample(s) and none is complete, e.g. "
                f"{str(sample)!r} lacks modality {lacks[0]!r}. Validation and test need complete "
                "samples (the ground truth of every evaluation); assign some complete samples to "
                f"{name!r} or use paper_split.")
