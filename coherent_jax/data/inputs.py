"""A user's cohort from one path: a .h5mu file or a folder of per-modality tables.

The one door of the scripts and the `Imputer` to users' files: it dispatches to
`formats.load_h5mu` or `csv_folder.load_csv_folder`, and reads the stored values back in full
precision so observed values are written out exactly as given.
"""

from __future__ import annotations

import pathlib
from typing import Sequence

from coherent_jax.data import validate
from coherent_jax.data.cohort import Cohort
from coherent_jax.data.csv_folder import csv_stem, load_csv_folder, read_table
from coherent_jax.data.formats import is_h5mu, load_h5mu, read_h5mu


def load_path(path: str | pathlib.Path, **kwargs) -> Cohort:
    """A user's cohort from a .h5mu file or a folder of per-modality tables (.csv, .tsv,
    .parquet, .h5ad; see `load_csv_folder`); keyword arguments as `load_h5mu`."""
    if not str(path):
        raise validate.DataError("no input path given: pass a folder of per-modality tables or"
                                 " a .h5mu file (--config.data.path=... or --input=...).")
    if is_h5mu(path):
        return load_h5mu(path, **kwargs)
    if pathlib.Path(path).is_file():
        raise validate.DataError(f"{path} is a file but not a .h5mu file: give a .h5mu file or a "
                                 "folder with one table per modality (.csv, .tsv, .parquet, "
                                 ".h5ad).")
    return load_csv_folder(path, **kwargs)


def read_originals(path: str | pathlib.Path, modalities: Sequence[str]) -> dict:
    """modality -> the values as stored in the file(s) (float64 where the file has it), for
    the modalities named, so observed values can be written back exactly as given."""
    if is_h5mu(path):
        tables, _, _ = read_h5mu(path)
        return {m: t for m, t in tables.items() if m in modalities}
    found = {}
    for file in pathlib.Path(path).iterdir():
        stem = csv_stem(file)
        if stem in modalities:
            found[stem] = read_table(file)
    return found
