"""data_prep: Xena GDC tables -> tidy per-modality tables, on small generated fixtures."""

import numpy as np
import pandas as pd
import pytest

from coherent_jax.data import load_csv_folder
from data_prep import xena

SAMPLES = ["TCGA-AA-0001-01A", "TCGA-AA-0002-01A", "TCGA-AA-0003-01B", "TCGA-AA-0001-11A",
           "TCGA-AA-0004-01A"]  # -11A is normal tissue: dropped


def _xena(path, id_column, features, values):
    frame = pd.DataFrame(values, index=pd.Index(features, name=id_column), columns=SAMPLES)
    frame.to_csv(path, sep="\t")


@pytest.fixture
def raw(tmp_path):
    counts = np.array([[100, 0, 50, 7, 10],      # gene A: >= 1 CPM in 3 of 4 tumours
                       [0, 0, 0, 0, 5],          # gene B: 0.5 CPM at most -> filtered out
                       [1e7, 2e7, 1e7, 1e7, 1e7]])
    _xena(tmp_path / "TCGA-KIRC.star_counts.tsv", "Ensembl_ID", ["A", "B", "C"],
          np.log2(counts + 1))
    copies = np.array([[2, 0, 4, 2, 1], [8, 16, np.nan, 2, 3]], dtype=float)
    _xena(tmp_path / "TCGA-KIRC.gene-level_absolute.tsv", "Ensembl_ID", ["G1", "G2"], copies)
    protein = np.array([[1.0, 2, 3, 4, 5], [3, 3, 3, 3, 3], [5, 0, 1, 2, 9]])
    _xena(tmp_path / "TCGA-KIRC.protein.tsv", "peptide_target", ["P1", "P2", "P3"], protein)
    pd.DataFrame({"sample": SAMPLES[:3] + ["TCGA-ZZ-9999-01A"],
                  "ajcc_pathologic_stage.diagnoses": ["Stage IIA", "Stage IV", "Stage X",
                                                      "Stage I"]}
                 ).to_csv(tmp_path / "TCGA-KIRC.clinical.tsv", sep="\t", index=False)
    pd.DataFrame({"sample": SAMPLES[:2], "OS": [1, 0], "_PATIENT": ["p1", "p2"],
                  "OS.time": [300, 1200]}).to_csv(tmp_path / "TCGA-KIRC.survival.tsv", sep="\t",
                                                  index=False)
    return tmp_path


def test_rna_cpm_filter_and_log(raw):
    log_counts = xena.tidy_barcodes(xena.read_xena_matrix(raw / "TCGA-KIRC.star_counts.tsv"))
    assert list(log_counts.index) == ["TCGA-AA-0001-01", "TCGA-AA-0002-01", "TCGA-AA-0003-01",
                                      "TCGA-AA-0004-01"]
    rna = xena.rna_from_star_counts(log_counts)
    assert list(rna.columns) == ["A", "C"]
    counts = np.array([[100, 0, 1e7], [0, 0, 2e7], [50, 0, 1e7], [10, 5, 1e7]])
    cpm = counts / counts.sum(1, keepdims=True) * 1e6
    np.testing.assert_allclose(rna.to_numpy(), np.log2(cpm[:, [0, 2]] + 1), rtol=1e-9)


def test_cna_zero_copies_are_deletions_not_missing(raw):
    copies = xena.tidy_barcodes(xena.read_xena_matrix(raw / "TCGA-KIRC.gene-level_absolute.tsv"))
    cna = xena.cna_from_copy_number(copies)
    np.testing.assert_allclose(cna["G1"], [0, -2, 1, -1])  # CN 0 -> -2, not NaN
    assert cna["G2"].iloc[0] == 2 and cna["G2"].iloc[1] == 2  # 8 and 16 copies clip at +2
    assert np.isnan(cna["G2"].iloc[2])  # unknown stays unknown
    assert cna["G2"].iloc[3] == pytest.approx(np.log2(1.5))


def test_rppa_median_centring(raw):
    rppa = xena.rppa_centered(xena.read_xena_matrix(raw / "TCGA-KIRC.protein.tsv"))
    np.testing.assert_allclose(rppa.median(axis=1), 0)
    np.testing.assert_allclose(rppa.iloc[0], [1 - 3, 0, 5 - 3])


def test_prepare_project_end_to_end(raw, tmp_path):
    out = tmp_path / "tidy"
    shapes = xena.prepare_project(raw, "TCGA-KIRC", out)
    assert shapes == {"rna": (4, 2), "cna": (4, 2), "rppa": (4, 3), "clinical": (3, 4)}
    cohort = load_csv_folder(out)
    assert cohort.modalities == ("cna", "rna", "rppa") and cohort.num_samples == 4
    labels = cohort.labels
    assert labels["cancer_type"].dropna().unique().tolist() == ["KIRC"]
    assert labels["stage"].tolist()[:2] == [2, 4] and labels["stage"].isna().sum() == 2
    assert labels.loc["TCGA-AA-0001-01", "os_time"] == 300
    assert labels.loc["TCGA-AA-0001-01", "os_event"] == 1
    assert labels.loc["TCGA-AA-0002-01", "os_event"] == 0
    assert labels["os_time"].isna().sum() == 2
