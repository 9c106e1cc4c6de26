"""Users' own cohorts: a folder with one table per modality plus an optional labels table.

    my_cohort/
        rna.csv          sample_id,GENE1,GENE2,...     one row per sample, ID in column 1
        rppa.tsv         (tab-separated works too; .gz too)
        wsi.csv          (.parquet and AnnData .h5ad too: see formats.py)
        clinical.csv     sample_id,cancer_type,stage,os_time,os_event,split,...  (optional)

The modality is the file name without extension. The labels file is named clinical.* or
labels.*; recognised columns: cancer_type (or cancertype), stage (strings like 'Stage IIA' or
1-4), os_time (or OS.time), os_event (or OS), split (train/val/test); other columns are kept.
The obs columns of .h5ad files are labels too (they must agree with each other and the labels
file where both give a value).
"""

from __future__ import annotations

import gzip
import pathlib
from typing import Sequence

import pandas as pd

from coherent_jax.data import formats, validate
from coherent_jax.data.cohort import Cohort

LABEL_FILES = ("clinical", "labels")
_SUFFIXES = (".csv", ".tsv", ".txt", ".csv.gz", ".tsv.gz", ".txt.gz", ".parquet", ".h5ad")
_ALIASES = {"cancertype": "cancer_type", "OS.time": "os_time", "OS": "os_event"}


def csv_stem(path: pathlib.Path) -> str | None:
    """The modality a table file holds (its name without a known suffix), or None."""
    for suffix in _SUFFIXES:
        if path.name.endswith(suffix):
            return path.name[: -len(suffix)]
    return None


def _separator(path: pathlib.Path, first_line: str) -> str:
    """The column separator of a table file: tab for .tsv/.txt, else the most frequent of
    ',', ';' and tab in the header line (',' when none occurs)."""
    if ".tsv" in path.suffixes or ".txt" in path.suffixes:
        return "\t"
    counts = {sep: first_line.count(sep) for sep in (",", ";", "\t")}
    best = max(counts, key=counts.get)
    return best if counts[best] > 0 else ","


def read_table(path: pathlib.Path | str) -> pd.DataFrame:
    """Reads a samples-as-rows table: first column = sample ID (kept as text), header row.

    The separator is detected from the header (',', ';' or tab; .tsv/.txt are tab). Parquet
    and AnnData .h5ad files are read by `formats.read_parquet` / `formats.read_h5ad` (X).

    Raises:
        DataError: an empty file, or a header with no feature column (naming the file and
            the separator it was read with).
    """
    path = pathlib.Path(path)
    if path.suffix in (".parquet", ".h5ad"):
        return _read_with_labels(path)[0]
    with (gzip.open(path, "rt") if path.suffix == ".gz" else open(path)) as f:
        first_line = f.readline()
    if not first_line.strip():
        raise validate.DataError(f"file {path} is empty: expected a header row whose first "
                                 "column holds sample IDs, then one row per sample. Fill it, "
                                 "or delete the file if no patient has this modality.")
    sep = _separator(path, first_line)
    header = pd.read_csv(path, sep=sep, nrows=0)
    if header.shape[1] < 2:
        raise validate.DataError(f"file {path}: only one column was found when reading it with "
                                 f"separator {sep!r}; separate the sample-ID column and the "
                                 "features with ',', ';' or a tab.")
    table = pd.read_csv(path, sep=sep, index_col=0, dtype={header.columns[0]: str})
    table.index = table.index.astype(str)
    return table


def _read_with_labels(path: pathlib.Path) -> tuple[pd.DataFrame, pd.DataFrame | None]:
    """A table and, for .h5ad files, its obs columns as labels."""
    if path.suffix == ".h5ad":
        return formats.read_h5ad(path)
    if path.suffix == ".parquet":
        return formats.read_parquet(path), None
    return read_table(path), None


def load_csv_folder(folder: pathlib.Path | str, modalities: Sequence[str] | None = None,
                    name: str | None = None, allow_empty: bool = False,
                    distinct_ids: bool = False) -> Cohort:
    """Loads and checks a folder of per-modality tables (see the module docstring):
    .csv/.tsv/.txt (.gz), .parquet and AnnData .h5ad, mixed as you like.

    Args:
        folder: the folder.
        modalities: the modalities to load, in order (default: every table file, sorted,
            except the labels file).
        name: the cohort's name (default: the folder's name).
        allow_empty: a table with a header but no value (no row, or only empty rows) means
            "no patient has this modality" and is left out, instead of being an error (for
            new patients to impute).
        distinct_ids: see `Cohort.from_tables`.

    Raises:
        DataError: no table found, a named modality has no file, or any check of
            `Cohort.from_tables` fails (the message names the file).
    """
    folder = pathlib.Path(folder)
    if not folder.is_dir():
        raise validate.DataError(f"{folder} is not a folder.")
    files, labels_path = _table_files(folder)
    chosen = list(modalities) if modalities else sorted(files)
    if not chosen:
        raise validate.DataError(f"no modality table (.csv/.tsv/.parquet/.h5ad) found in "
                                 f"{folder}.")
    missing = [m for m in chosen if m not in files]
    if missing:
        raise validate.DataError(f"no file for modality {missing[0]!r} in {folder}; found "
                                 f"{sorted(files)}.")
    read = {m: _read_with_labels(files[m]) for m in chosen}
    tables = {m: table for m, (table, _) in read.items()}
    if allow_empty:
        tables = {m: t for m, t in tables.items() if t.notna().to_numpy().any()}
        if not tables:
            raise validate.DataError(f"every modality table in {folder} is empty: give at "
                                     "least one patient with at least one modality.")
    labels = _folder_labels(labels_path, read, tables, files)
    splits = None
    if labels is not None and "split" in labels.columns:
        splits = labels.pop("split").dropna()
    return Cohort.from_tables(tables, labels, splits, name=name or folder.name,
                              sources={m: str(files[m]) for m in tables},
                              labels_source=str(labels_path) if labels_path else None,
                              distinct_ids=distinct_ids)


def _table_files(folder: pathlib.Path) -> tuple[dict[str, pathlib.Path], pathlib.Path | None]:
    """({modality: its table file}, the labels file or None) of a folder.

    Raises:
        DataError: two files for one modality, or both a clinical and a labels file.
    """
    files = {}
    for path in sorted(folder.iterdir()):
        stem = csv_stem(path)
        if stem is not None and path.is_file():
            if stem in files:
                raise validate.DataError(f"two files for modality {stem!r} in {folder}: "
                                         f"{files[stem].name} and {path.name}. Keep one.")
            files[stem] = path
    label_names = [s for s in LABEL_FILES if s in files]
    if len(label_names) > 1:
        raise validate.DataError(f"{folder} has both clinical and labels files; keep one.")
    labels_path = files.pop(label_names[0]) if label_names else None
    return files, labels_path


def _folder_labels(labels_path: pathlib.Path | None, read: dict, tables: dict,
                   files: dict) -> pd.DataFrame | None:
    """The labels file's table merged with the obs columns of the .h5ad tables kept (`read`:
    modality -> (table, obs or None); `tables`: the tables kept), or None without either."""
    labels = None
    if labels_path is not None:
        labels = read_table(labels_path).rename(columns=_ALIASES)
    obs = [(str(files[m]), o) for m, (_, o) in read.items() if m in tables and o is not None
           and o.shape[1]]
    if obs:  # .h5ad obs columns: labels too, merged with the labels file
        ids = set().union(*(t.index for t in tables.values()))
        labels = formats.merge_labels(([(str(labels_path), labels)] if labels is not None
                                       else []) + [(f, o.loc[o.index.isin(ids)])
                                                   for f, o in obs])
    return labels
