"""Bad inputs fail with messages naming the file, the modality and the sample."""

import numpy as np
import pandas as pd
import pytest

from coherent_jax.data import Cohort, DataError, load_csv_folder, paper_split


def _write(folder, name, text):
    (folder / name).write_text(text)


@pytest.fixture
def folder(tmp_path):
    _write(tmp_path, "rna.csv", "sample_id,g1,g2\nA,1,2\nB,3,4\nC,5,6\n")
    _write(tmp_path, "rppa.csv", "sample_id,p1\nA,0.1\nB,0.2\n")
    return tmp_path


def test_good_folder_loads(folder):
    cohort = load_csv_folder(folder)
    assert cohort.modalities == ("rna", "rppa") and cohort.num_samples == 3


# (file written over the good folder, its text, the message the user must see)
BAD_FILES = {
    "duplicate_ids": ("rppa.csv", "sample_id,p1\nA,0.1\nA,0.2\n",
                      r"'rppa' \(file .*rppa.csv\).*duplicate sample IDs: 'A'"),
    "non_numeric": ("rna.csv", "sample_id,g1,g2\nA,1,2\nB,oops,4\n",
                    r"rna.csv.*feature 'g1'; sample 'B' has 'oops'"),
    "infinite": ("rna.csv", "sample_id,g1,g2\nA,1,inf\nB,3,4\n",
                 r"rna.csv.*infinite.*sample 'A', feature 'g2'"),
    "no_samples": ("rppa.csv", "sample_id,p1\n", r"'rppa' \(file .*\) has no samples"),
    "no_features": ("rppa.csv", "sample_id\nA\nB\n",
                    r"rppa.csv: only one column .* separator ','"),
    "zero_bytes": ("rppa.csv", "", r"rppa.csv is empty"),
    "all_empty_modality": ("rppa.csv", "sample_id,p1\nA,\nB,\n",
                           r"'rppa'.*no sample with any value"),
    "ids_matching_nothing": ("rppa.csv", "sample_id,p1\nA-01,0.1\nB-01,0.2\n",
                             r"'rna' \(file .*rna.csv\) shares no sample ID.*'rppa' like 'A-01'"),
    "labels_for_unknown_samples": ("clinical.csv", "sample_id,cancer_type\nA,X\nZ,Y\n",
                                   r"labels \(file .*clinical.csv\).*'Z'"),
    "incomplete_sample_in_test_split": (
        "clinical.csv", "sample_id,split\nA,train\nB,val\nC,test\n",
        r"split 'test' has 1 sample.*none is complete.*'C' lacks modality 'rppa'"),
    "unknown_split_name": ("clinical.csv", "sample_id,split\nA,training\n", "unknown names"),
}


@pytest.mark.parametrize("case", sorted(BAD_FILES))
def test_bad_file_is_refused_with_a_message_naming_it(folder, case):
    name, text, message = BAD_FILES[case]
    _write(folder, name, text)
    with pytest.raises(DataError, match=message):
        load_csv_folder(folder)


@pytest.mark.parametrize("sep", [";", "\t"])
def test_other_separators_are_detected(folder, sep):
    _write(folder, "rppa.csv", f"sample_id{sep}p1{sep}p2\nA{sep}0.1{sep}1\nB{sep}0.2{sep}2\n")
    assert load_csv_folder(folder).widths()["rppa"] == 2


def test_missing_modality_file(folder):
    with pytest.raises(DataError, match="no file for modality 'wsi'"):
        load_csv_folder(folder, modalities=["rna", "wsi"])


def test_split_without_complete_samples():
    # a and b share s0-s19, b and c share s20-s39: every sample lacks one modality.
    ids = [f"s{i}" for i in range(40)]
    tables = {"a": pd.DataFrame({"x": np.arange(20.0)}, index=ids[:20]),
              "b": pd.DataFrame({"y": np.arange(40.0)}, index=ids),
              "c": pd.DataFrame({"z": np.arange(20.0)}, index=ids[20:])}
    cohort = Cohort.from_tables(tables)
    assert not cohort.complete.any()
    with pytest.raises(DataError, match="no complete sample"):
        paper_split(cohort)
    assert (paper_split(cohort, 0.0, 0.0).splits == "train").all()


@pytest.mark.parametrize("other_spelling", ["p001".upper(), " p001", "p001 "])
def test_ids_spelled_differently_are_an_error_unless_accepted(other_spelling):
    ids = ["p000", "p001", "p002"]
    rna = pd.DataFrame(np.ones((3, 2), np.float32), index=ids, columns=["g1", "g2"])
    cna = pd.DataFrame(np.ones((3, 2), np.float32), index=["p000", other_spelling, "p002"],
                       columns=["c1", "c2"])
    with pytest.raises(DataError, match="spelled differently.*distinct_ids"):
        Cohort.from_tables({"rna": rna, "cna": cna})
    assert Cohort.from_tables({"rna": rna, "cna": cna}, distinct_ids=True).num_samples == 4


def test_tcga_barcode_suffixes_are_caught_and_unpaired_patients_stay_legal():
    rna = pd.DataFrame(np.ones((2, 2), np.float32), index=["TCGA-AB-1234-01A", "TCGA-AB-9999-01A"],
                       columns=["g1", "g2"])
    cna = pd.DataFrame(np.ones((2, 2), np.float32), index=["TCGA-AB-1234-01", "TCGA-AB-5555-01"],
                       columns=["c1", "c2"])
    with pytest.raises(DataError, match="TCGA-AB-1234-01A"):
        Cohort.from_tables({"rna": rna, "cna": cna})
    cna.index = ["TCGA-AB-1234-01A", "TCGA-AB-5555-01A"]  # one paired, two unpaired patients
    assert Cohort.from_tables({"rna": rna, "cna": cna}).num_samples == 3
