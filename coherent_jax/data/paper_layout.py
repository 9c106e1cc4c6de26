"""The processed data layout released with the original paper, so its users can run ours on it.

    <root>/07_normalized/<dim>/<modality>_<split>.csv   sample_id + <dim> latent columns,
                                                         z-scored on train; train rows of
                                                         samples lacking the modality are NaN
    <root>/06_masked/<dim>/masks_train.csv             sample_id + one 0/1 column per modality
    <root>/downstream_labels/<split>_cancer_type.csv   sample_id, cancertype        (optional)
    <root>/downstream_labels/<split>_stage.csv         sample_id, stage             (optional)
    <root>/downstream_labels/survival/*.survival.tsv   Xena survival: sample, OS, OS.time
                                                       (sample barcodes carry a vial letter,
                                                       dropped to match)         (optional)
modalities: cna, rnaseq, rppa, wsi; splits: train, val, test.
"""

from __future__ import annotations

import pathlib
from typing import Sequence

import numpy as np
import pandas as pd

from coherent_jax.data import validate
from coherent_jax.data.cohort import SPLITS, Cohort
from coherent_jax.data.csv_folder import read_table

PAPER_MODALITIES = ("cna", "rnaseq", "rppa", "wsi")


def _labels(folder: pathlib.Path, ids: pd.Index) -> pd.DataFrame | None:
    parts = []
    for split in SPLITS:
        columns = []
        for kind, column in (("cancer_type", "cancertype"), ("stage", "stage")):
            path = folder / f"{split}_{kind}.csv"
            if path.exists():
                table = read_table(path)
                if column not in table.columns:
                    raise validate.DataError(f"file {path} has no column {column!r}.")
                columns.append(table[column].rename(kind))
        if columns:
            parts.append(pd.concat(columns, axis=1))
    labels = pd.concat(parts) if parts else pd.DataFrame(index=pd.Index([], dtype=str))
    survival_files = sorted((folder / "survival").glob("*.survival.tsv"))
    if survival_files:
        survival = pd.concat([read_table(p) for p in survival_files])
        survival.index = survival.index.str[:-1]
        survival = survival[~survival.index.duplicated()]
        survival = survival.loc[survival.index.intersection(ids)]
        labels = labels.join(survival.rename(columns={"OS.time": "os_time", "OS": "os_event"})
                             [["os_time", "os_event"]], how="outer")
    return labels if len(labels) else None


def load_paper_layout(root: pathlib.Path | str, dim: int = 32,
                      modalities: Sequence[str] = PAPER_MODALITIES) -> Cohort:
    """Reads the paper's released train/val/test latents, masks and labels as one Cohort.

    Args:
        root: the folder holding 06_masked/ and 07_normalized/ (the paper's datasets_TCGA).
        dim: the latent width subfolder (the paper: 32).
        modalities: the modality file prefixes.

    Raises:
        DataError: a file is missing, a sample is in two splits, or a check fails.
    """
    root = pathlib.Path(root)
    data_dir = root / "07_normalized" / str(dim)
    mask_path = root / "06_masked" / str(dim) / "masks_train.csv"
    if not mask_path.exists():
        raise validate.DataError(f"missing {mask_path}: is {root} the paper's datasets folder?")
    masks = read_table(mask_path)
    parts = {m: [] for m in modalities}
    splits = []
    for split in SPLITS:
        ids = None
        for m in modalities:
            path = data_dir / f"{m}_{split}.csv"
            if not path.exists():
                raise validate.DataError(f"missing {path} (modality {m!r}, split {split!r}).")
            table = read_table(path)
            if split == "train":
                if m not in masks.columns:
                    raise validate.DataError(f"{mask_path} has no column for modality {m!r}.")
                absent = masks[m].reindex(table.index).fillna(0).to_numpy() == 0
                table = table.astype(np.float64)
                table.iloc[absent] = np.nan
            parts[m].append(table)
            ids = table.index if ids is None else ids.union(table.index)
        splits.append(pd.Series(split, index=ids))
    splits = pd.concat(splits)
    twice = splits.index[splits.index.duplicated()]
    if len(twice):
        raise validate.DataError(f"sample {twice[0]!r} appears in more than one split of "
                                 f"{data_dir}; each sample belongs to exactly one split.")
    tables = {m: pd.concat(p) for m, p in parts.items()}
    labels = _labels(root / "downstream_labels", splits.index)
    return Cohort.from_tables(tables, labels, splits, name=f"paper-{dim}",
                              sources={m: str(data_dir / f"{m}_*.csv") for m in modalities})
