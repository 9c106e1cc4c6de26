"""Cohorts in the files single-cell and multi-omics tools write: MuData, AnnData, Parquet.

    my_cohort.h5mu        MuData: one mod per modality, obs_names = sample IDs, var_names =
                          features, values in X; a sample missing from a mod lacks it
    my_cohort/            a folder with one table per modality (formats may be mixed):
        rna.h5ad          AnnData: obs_names = sample IDs, var_names = features, values in X
        rppa.parquet      samples as rows; the sample ID is the index pandas wrote, or else
                          the first column (as in a CSV file)
        wsi.csv           see csv_folder.py
        clinical.csv      optional labels (clinical.parquet too)

Labels: the obs columns of the MuData, then those of each mod or .h5ad file (and a clinical
file beside) are used the way clinical.csv is: cancer_type, stage, os_time, os_event, split,
other columns kept. A column found in several places must agree for every sample. The
MuData's copies of mod columns ('rna:cancer_type') are skipped: the mods' own columns are read.

The packages are optional (`pip install -e '.[formats]'`): mudata and anndata for .h5mu and
.h5ad, pyarrow for Parquet. Every table then goes through the checks of `Cohort.from_tables`
(duplicate IDs, non-numbers, infinite values, ID spellings, empty modalities).
"""

from __future__ import annotations

import contextlib
import importlib
import pathlib
import warnings
from typing import Sequence

import numpy as np
import pandas as pd

from coherent_jax.data import validate
from coherent_jax.data.cohort import Cohort

ALIASES = {"cancertype": "cancer_type", "OS.time": "os_time", "OS": "os_event"}
PACKAGES = {"mudata": "mudata", "anndata": "anndata", "pyarrow": "pyarrow"}


class MissingPackageError(validate.DataError):
    """An optional package needed for a file format is not installed."""


def require(module: str, path: str | pathlib.Path | None = None, action: str = "reading"):
    """Imports an optional package of the 'formats' extra, or raises MissingPackageError
    naming the file, the package and the install command."""
    try:
        return importlib.import_module(module)
    except ImportError as error:
        what = f"{action} {path}" if path else action
        raise MissingPackageError(
            f"{what} needs the Python package {module!r}, which is not installed. Install the "
            f"file-format extra: pip install -e '.[formats]' (or pip install {module}).") from error


@contextlib.contextmanager
def quiet():
    """Silences the deprecation chatter of anndata/mudata (FutureWarning, pandas' warnings
    about their calls) while they read or write; our own warnings are raised outside."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", FutureWarning)
        warnings.simplefilter("ignore", DeprecationWarning)
        warnings.filterwarnings("ignore", category=UserWarning, module=r"(anndata|mudata)")
        yield


def _obs_labels(obs: pd.DataFrame) -> pd.DataFrame:
    """obs columns as a labels table: string index, categoricals as plain values, columns
    that are empty for every sample dropped."""
    table = pd.DataFrame({c: (obs[c].astype(object) if isinstance(obs[c].dtype,
                                                                  pd.CategoricalDtype)
                              else obs[c]) for c in obs.columns}, index=obs.index)
    table.index = pd.Index(np.asarray(obs.index, dtype=object).astype(str), name="sample_id")
    return table.loc[:, table.notna().any(axis=0)].rename(columns=ALIASES)


def _matrix(adata, where: str) -> pd.DataFrame:
    """An AnnData's X as a samples-as-rows DataFrame (sparse X made dense)."""
    if adata.X is None:
        raise validate.DataError(f"{where} has no X: put the values to use in X (samples as "
                                 "obs, features as var).")
    values = adata.X.toarray() if hasattr(adata.X, "toarray") else np.asarray(adata.X)
    return pd.DataFrame(values, index=pd.Index(np.asarray(adata.obs_names, dtype=object)
                                               .astype(str)),
                        columns=pd.Index(np.asarray(adata.var_names, dtype=object).astype(str)))


def read_h5ad(path: str | pathlib.Path) -> tuple[pd.DataFrame, pd.DataFrame]:
    """One modality from an AnnData file: (table [N, D] samples as rows, obs labels)."""
    anndata = require("anndata", path)
    try:
        with quiet():
            adata = anndata.read_h5ad(path)
    except (OSError, KeyError, ValueError) as error:
        raise validate.DataError(f"file {path} could not be read as AnnData ({error}); write it "
                                 "with anndata's write_h5ad.") from error
    return _matrix(adata, f"file {path}"), _obs_labels(adata.obs)


def read_parquet(path: str | pathlib.Path) -> pd.DataFrame:
    """A samples-as-rows Parquet table: the index pandas stored, or else the first column,
    holds the sample IDs (kept as text)."""
    require("pyarrow", path)
    try:
        table = pd.read_parquet(path)
    except (OSError, ValueError) as error:
        raise validate.DataError(f"file {path} could not be read as Parquet ({error}).") from error
    if isinstance(table.index, pd.RangeIndex) and table.index.name is None:
        if table.shape[1] < 2:
            raise validate.DataError(f"file {path}: only one column and no stored index; give "
                                     "the sample ID as the index or the first column, then one "
                                     "column per feature.")
        table = table.set_index(table.columns[0])
    table.index = pd.Index(np.asarray(table.index, dtype=object).astype(str))
    table.columns = table.columns.astype(str)
    return table


def merge_labels(parts: Sequence[tuple[str, pd.DataFrame]]) -> pd.DataFrame | None:
    """Labels from several tables (source, table indexed by sample ID): for each column the
    first non-missing value per sample, in the order given.

    Raises:
        DataError: a sample has different values for one column in two places.
    """
    columns: dict[str, list[tuple[str, pd.Series]]] = {}
    for source, table in parts:
        for column in table.columns:
            columns.setdefault(column, []).append((source, table[column].dropna()))
    if not columns:
        return None
    merged = {}
    for column, found in columns.items():
        values = pd.concat([s.astype(object) for _, s in found])
        clash = values.groupby(level=0).nunique() > 1
        if clash.any():
            sample = clash.index[clash][0]
            where = [f"{src} has {s[sample]!r}" for src, s in found if sample in s.index]
            raise validate.DataError(
                f"label {column!r} of sample {sample!r} differs between files or mods: "
                f"{'; '.join(where[:2])} ({int(clash.sum())} sample(s) in all). Make them agree"
                " or keep the column in one place (e.g. the MuData's obs).")
        merged[column] = values[~values.index.duplicated()].infer_objects()
    return pd.DataFrame(merged).rename_axis("sample_id")


def _split_labels(labels: pd.DataFrame | None):
    if labels is None or "split" not in labels.columns:
        return labels, None
    labels = labels.copy()
    return labels, labels.pop("split").dropna().astype(str)


def is_h5mu(path: str | pathlib.Path) -> bool:
    """True for a path that names a MuData file (by its suffix)."""
    return str(path).lower().endswith(".h5mu")


def _explain_unreadable(path, error: Exception) -> validate.DataError:
    """A clear message for a .h5mu file mudata cannot open: duplicate obs names are the usual
    cause (mudata fails on them with a numpy error); read each mod with anndata to say so."""
    try:
        h5py = importlib.import_module("h5py")
        read_elem = importlib.import_module("anndata.io").read_elem
        with h5py.File(path, "r") as f, quiet():
            for name in f["mod"]:
                ids = pd.Index(read_elem(f["mod"][name]).obs_names)
                dup = ids[ids.duplicated()].unique()
                if len(dup):
                    return validate.DataError(
                        f"modality {name!r} (file {path}, mod {name!r}) has duplicate sample IDs "
                        f"(obs names): {', '.join(map(repr, dup[:5]))}. Keep one row per sample"
                        " (average or drop replicates), then write the file again.")
    except Exception:  # noqa: BLE001 - the diagnosis is best effort; report the original
        pass
    return validate.DataError(f"file {path} could not be read as MuData ({type(error).__name__}:"
                              f" {error}); write it with mudata's write_h5mu.")


def read_h5mu(path: str | pathlib.Path) -> tuple[dict, pd.DataFrame | None, dict]:
    """The modalities and labels of a MuData file.

    Returns:
        (modality -> table [N_m, D_m] samples as rows, in the file's dtype; labels merged from
        the MuData's obs and each mod's obs, or None; modality -> where it came from).

    Raises:
        DataError: the file is missing, not MuData, has duplicate obs names, a mod without X,
            or conflicting labels. MissingPackageError: mudata/anndata not installed.
    """
    path = pathlib.Path(path)
    mudata = require("mudata", path)
    require("anndata", path)
    if not path.is_file():
        raise validate.DataError(f"{path} is not a file: give the path of a .h5mu file.")
    try:
        with quiet():
            mdata = mudata.read_h5mu(path)
    except Exception as error:  # noqa: BLE001 - mudata raises many types for bad files
        raise _explain_unreadable(path, error) from error
    if getattr(mdata, "axis", 0) != 0:
        raise validate.DataError(f"file {path} shares observations across mods (axis="
                                 f"{mdata.axis}); give one mod per modality with samples as obs.")
    tables, sources, parts = {}, {}, []
    prefixes = tuple(f"{m}:" for m in mdata.mod)
    own = [c for c in mdata.obs.columns if not str(c).startswith(prefixes)]
    parts.append((f"{path} obs", _obs_labels(mdata.obs[own])))
    for name, adata in mdata.mod.items():
        sources[name] = f"{path}, mod '{name}'"
        tables[name] = _matrix(adata, f"modality {name!r} ({sources[name]})")
        parts.append((f"{path} mod '{name}' obs", _obs_labels(adata.obs)))
    if not tables:
        raise validate.DataError(f"file {path} holds no mod: give one mod per modality.")
    return tables, merge_labels(parts), sources


def load_h5mu(path: str | pathlib.Path, modalities: Sequence[str] | None = None,
              name: str | None = None, allow_empty: bool = False,
              distinct_ids: bool = False) -> Cohort:
    """Loads and checks a MuData file as a Cohort (one modality per mod).

    Args:
        path: the .h5mu file.
        modalities: the mods to load, in order (default: every mod, sorted).
        name: the cohort's name (default: the file's stem).
        allow_empty: a mod with no sample or no value means "no patient has this modality"
            and is left out (for new patients to impute), instead of being an error.
        distinct_ids: see `Cohort.from_tables`.

    Raises:
        DataError: see `read_h5mu` and `Cohort.from_tables` (messages name the file and mod).
    """
    path = pathlib.Path(path)
    tables, labels, sources = read_h5mu(path)
    chosen = list(modalities) if modalities else sorted(tables)
    missing = [m for m in chosen if m not in tables]
    if missing:
        raise validate.DataError(f"no mod {missing[0]!r} in {path}; found {sorted(tables)}.")
    tables = {m: tables[m] for m in chosen}
    if allow_empty:
        tables = {m: t for m, t in tables.items() if t.notna().to_numpy().any()}
        if not tables:
            raise validate.DataError(f"every mod of {path} is empty: give at least one patient "
                                     "with at least one modality.")
    ids = set().union(*(t.index for t in tables.values()))
    if labels is not None:
        labels = labels.loc[labels.index.isin(ids)]
    labels, splits = _split_labels(labels)
    return Cohort.from_tables(tables, labels, splits, name=name or path.stem,
                              sources={m: sources[m] for m in tables},
                              labels_source=f"{path} obs", distinct_ids=distinct_ids)


# --------------------------------------------------------------------------------------------
# writing input files (experiments/write_example.py; anything that hands cohorts to users)
@contextlib.contextmanager
def plain_strings():
    """Strings as Python objects while building and writing AnnData/MuData: anndata releases
    that run on Python 3.11 cannot store pandas 3's string arrays."""
    with quiet(), warnings.catch_warnings():
        warnings.simplefilter("ignore")
        try:
            context = pd.option_context("future.infer_string", False)
        except (KeyError, pd.errors.OptionError):  # pandas 4: the option is gone
            context = contextlib.nullcontext()
        with context:
            yield


def _storable(column: pd.Series):
    """A column anndata can store: text (with missing values) as a categorical of plain
    strings; numbers, booleans and nullable integers as they are."""
    if not (pd.api.types.is_string_dtype(column.dtype) or column.dtype == object
            or isinstance(column.dtype, pd.CategoricalDtype)):
        return column.to_numpy() if column.dtype.kind in "biuf" else column.array
    values = np.array(column.astype(object), dtype=object)
    missing = pd.isna(values)
    values[missing] = None
    categories = pd.Index(sorted({str(v) for v in values[~missing]}), dtype=object)
    return pd.Categorical([None if v is None else str(v) for v in values],
                          categories=categories)


def as_objects(table: pd.DataFrame) -> pd.DataFrame:
    """A copy anndata can write: object-dtype string index and column names, text columns as
    categoricals of plain strings."""
    index = pd.Index([str(i) for i in table.index], dtype=object)
    out = pd.DataFrame({str(c): _storable(table[c]) for c in table.columns}, index=index)
    out.columns = pd.Index([str(c) for c in table.columns], dtype=object)
    return out


def to_anndata(table: pd.DataFrame, obs: pd.DataFrame | None = None):
    """A samples-as-rows table (rows that are all missing dropped) as AnnData, with `obs`
    columns for its samples."""
    anndata = require("anndata", action="writing AnnData")
    table = table.dropna(how="all")
    obs = (obs.reindex(table.index) if obs is not None else pd.DataFrame(index=table.index))
    with plain_strings():
        var = pd.DataFrame(index=pd.Index([str(c) for c in table.columns], dtype=object))
        return anndata.AnnData(X=table.to_numpy(), obs=as_objects(obs), var=var)


def write_h5mu(tables: dict, path: str | pathlib.Path, labels: pd.DataFrame | None = None) -> None:
    """Writes per-modality tables as one MuData file: a mod per modality holding the samples
    that have it; `labels` become the MuData's obs columns."""
    mudata = require("mudata", path, "writing")
    with plain_strings():
        mdata = mudata.MuData({m: to_anndata(t) for m, t in tables.items()})
        if labels is not None:
            mdata.obs = as_objects(labels.reindex(mdata.obs_names))
        mdata.write(str(path))
