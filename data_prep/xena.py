"""UCSC Xena GDC hub tables -> tidy per-modality tables (the paper's section-2 recipe).

Inputs, per TCGA project (as downloaded from the GDC hub, .tsv or .tsv.gz):
    TCGA-XXXX.star_counts.tsv            genes x samples, log2(count + 1), id column first
    TCGA-XXXX.gene-level_absolute.tsv    genes x samples, ABSOLUTE integer copy number
    TCGA-XXXX.protein.tsv                proteins x samples, RPPA
    TCGA-XXXX.clinical.tsv               samples x fields ('sample' first), with the stage
    TCGA-XXXX.survival.tsv               sample, OS, _PATIENT, OS.time
Output: a folder that `coherent_jax.data.load_csv_folder` reads: rna.csv, cna.csv, rppa.csv
(samples as rows) and clinical.csv (cancer_type, stage 1-4, os_time, os_event).

Sample IDs: tumour samples only (sample-type code 01-09); the vial letter is dropped
('TCGA-AB-1234-01A' -> 'TCGA-AB-1234-01'), and where two vials remain the first in sorted order
is kept.

    python -m data_prep.xena --raw RAW_DIR --project TCGA-KIRC --out tables/KIRC
"""

from __future__ import annotations

import argparse
import pathlib

import numpy as np
import pandas as pd

from coherent_jax.data.labels import encode_stage, overall_survival

STAGE_COLUMNS = ("ajcc_pathologic_stage.diagnoses", "ajcc_pathologic_stage",
                 "tumor_stage.diagnoses", "pathologic_stage")


def read_xena_matrix(path: pathlib.Path | str) -> pd.DataFrame:
    """A Xena features x samples matrix as samples x features [N, D] float64."""
    table = pd.read_csv(path, sep="\t", index_col=0)
    table.index = table.index.astype(str)
    return table.T.astype(np.float64)


def tidy_barcodes(table: pd.DataFrame) -> pd.DataFrame:
    """Keeps tumour samples and drops the vial letter from TCGA sample barcodes."""
    ids = pd.Index(table.index.astype(str))
    sample_type = pd.to_numeric(ids.str[13:15], errors="coerce")
    keep = np.asarray((sample_type >= 1) & (sample_type <= 9))
    table = table.loc[keep].copy()
    table.index = ids[keep].str[:15]
    table = table.sort_index(kind="stable")
    return table[~table.index.duplicated(keep="first")]


def rna_from_star_counts(log_counts: pd.DataFrame, min_cpm: float = 1.0,
                         min_fraction: float = 0.2) -> pd.DataFrame:
    """STAR counts -> filtered log2(CPM + 1).

    Args:
        log_counts: [N, G] log2(count + 1), samples as rows (the Xena encoding).
        min_cpm: a gene is expressed in a sample when its CPM >= min_cpm.
        min_fraction: keep genes expressed in >= this share of samples.

    Returns:
        [N, G_kept] log2(CPM + 1); library sizes use every gene, before filtering.
    """
    counts = np.exp2(log_counts.to_numpy(dtype=np.float64)) - 1.0  # [N, G]
    counts = np.maximum(counts, 0.0)
    library = np.nansum(counts, axis=1, keepdims=True)  # [N, 1]
    cpm = counts / np.where(library > 0, library, 1.0) * 1e6
    keep = (cpm >= min_cpm).mean(axis=0) >= min_fraction  # [G]
    return pd.DataFrame(np.log2(cpm[:, keep] + 1.0), index=log_counts.index,
                        columns=log_counts.columns[keep])


def cna_from_copy_number(copies: pd.DataFrame, clip: float = 2.0) -> pd.DataFrame:
    """Absolute copy number -> log2(CN / 2), clipped to [-clip, clip].

    Zero copies (homozygous deletion) is a real and strong event, not a missing value: the
    paper's code turned it into NaN, which imputation then replaced by a typical value. Here
    CN is floored at 2 * 2^-clip (0.5 copies for clip 2) before the log, so a homozygous
    deletion maps to -clip, the most extreme loss the scale holds. Missing CN stays missing.
    """
    values = copies.to_numpy(dtype=np.float64)
    floor = 2.0 * 2.0 ** -clip
    with np.errstate(invalid="ignore"):
        ratio = np.log2(np.maximum(values, floor) / 2.0)
    return pd.DataFrame(np.clip(ratio, -clip, clip), index=copies.index, columns=copies.columns)


def rppa_centered(values: pd.DataFrame) -> pd.DataFrame:
    """Each sample minus its own median across proteins (NaN ignored)."""
    array = values.to_numpy(dtype=np.float64)
    return pd.DataFrame(array - np.nanmedian(array, axis=1, keepdims=True), index=values.index,
                        columns=values.columns)


def clinical_labels(clinical: pd.DataFrame, survival: pd.DataFrame | None,
                    cancer_type: str) -> pd.DataFrame:
    """Stage (1-4) from the clinical table joined with OS from the survival table by sample.

    Args:
        clinical: samples as rows (tidy barcodes), with one of STAGE_COLUMNS.
        survival: samples as rows with 'OS' (1 = died) and 'OS.time' (days), or None.
        cancer_type: the project's tumour type, e.g. 'KIRC'.

    Returns:
        [N, 4] cancer_type, stage (Int64), os_time, os_event (Int64) on the clinical index.
    """
    column = next((c for c in STAGE_COLUMNS if c in clinical.columns), None)
    stage = (encode_stage(clinical[column]) if column
             else pd.Series(pd.NA, index=clinical.index, dtype="Int64"))
    labels = pd.DataFrame({"cancer_type": cancer_type, "stage": stage}, index=clinical.index)
    if survival is None:
        labels["os_time"] = np.nan
        labels["os_event"] = pd.Series(pd.NA, index=labels.index, dtype="Int64")
        return labels
    survival = survival.reindex(labels.index)
    os = overall_survival(survival["OS"], survival["OS.time"], survival["OS.time"])
    return labels.join(os)


def _find(raw: pathlib.Path, project: str, kind: str) -> pathlib.Path | None:
    for suffix in (".tsv", ".tsv.gz"):
        path = raw / f"{project}.{kind}{suffix}"
        if path.exists():
            return path
    return None


def prepare_project(raw: pathlib.Path | str, project: str, out: pathlib.Path | str) -> dict:
    """Turns one project's Xena files into a csv folder; returns {table: (rows, columns)}.

    Modalities whose file is absent are skipped; the clinical file is required, and only its
    samples that have some modality are written.
    """
    raw, out = pathlib.Path(raw), pathlib.Path(out)
    out.mkdir(parents=True, exist_ok=True)
    steps = {"rna": ("star_counts", rna_from_star_counts),
             "cna": ("gene-level_absolute", cna_from_copy_number),
             "rppa": ("protein", rppa_centered)}
    shapes, ids = {}, pd.Index([], dtype=str)
    for modality, (kind, step) in steps.items():
        path = _find(raw, project, kind)
        if path is None:
            continue
        table = step(tidy_barcodes(read_xena_matrix(path)))
        table.index.name = "sample_id"
        table.to_csv(out / f"{modality}.csv")
        shapes[modality] = table.shape
        ids = ids.union(table.index)
    clinical_path = _find(raw, project, "clinical")
    if clinical_path is None:
        raise FileNotFoundError(f"no {project}.clinical.tsv(.gz) in {raw}.")
    clinical = tidy_barcodes(pd.read_csv(clinical_path, sep="\t", index_col=0))
    survival_path = _find(raw, project, "survival")
    survival = (tidy_barcodes(pd.read_csv(survival_path, sep="\t", index_col=0))
                if survival_path else None)
    labels = clinical_labels(clinical, survival, project.removeprefix("TCGA-"))
    labels = labels.loc[labels.index.intersection(ids, sort=False)]  # only samples with data
    labels.index.name = "sample_id"
    labels.to_csv(out / "clinical.csv")
    shapes["clinical"] = labels.shape
    return shapes


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--raw", required=True, help="folder with the Xena files")
    parser.add_argument("--project", required=True, help="e.g. TCGA-KIRC")
    parser.add_argument("--out", required=True, help="output folder")
    args = parser.parse_args()
    for name, shape in prepare_project(args.raw, args.project, args.out).items():
        print(f"{name}: {shape[0]} samples x {shape[1]} columns")


if __name__ == "__main__":
    main()
