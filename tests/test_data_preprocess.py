"""Preprocessing learned on train only: drop rule, fills, z-scoring."""

import numpy as np
import pandas as pd
import pytest

from coherent_jax.data import Cohort, DataError, Preprocessor


def _cohort(rng, n_train=40, n_test=10):
    n = n_train + n_test
    ids = [f"s{i:03d}" for i in range(n)]
    rna = pd.DataFrame(rng.normal(5, 2, (n, 4)), index=ids, columns=["g0", "g1", "g2", "g3"])
    rna.iloc[:4, 0] = np.nan  # 4/40 = 10% of train missing -> dropped
    rna.iloc[:3, 1] = np.nan  # 7.5% -> kept, filled
    rna.iloc[n_train:, 2] = np.nan  # missing only in test: kept (train decides)
    cna = pd.DataFrame(rng.integers(-2, 3, (n, 3)).astype(float), index=ids,
                       columns=["c0", "c1", "c2"])
    cna.iloc[5, 1] = np.nan
    cna = cna.drop(index=ids[10:12])  # two train samples without cna
    splits = {s: ("train" if i < n_train else "test") for i, s in enumerate(ids)}
    return Cohort.from_tables({"rna": rna, "cna": cna}, splits=splits)


def test_drop_rule_fills_and_zscore():
    cohort = _cohort(np.random.default_rng(0))
    prep = Preprocessor.fit(cohort)
    assert prep.dropped["rna"] == ("g0",)
    assert prep.transforms["rna"].features == ("g1", "g2", "g3")
    assert prep.transforms["rna"].fill == "lowrank" and prep.transforms["cna"].fill == "median"
    out = prep.transform(cohort)
    values, present = out.split("train").matrix("rna")  # no NaN left in present rows
    np.testing.assert_allclose(values[present].mean(0), 0, atol=1e-5)
    np.testing.assert_allclose(values[present].std(0), 1, atol=1e-5)
    assert out.presence["cna"].sum() == cohort.presence["cna"].sum()  # absent stays absent
    cna_raw = cohort.tables["cna"]
    step = prep.transforms["cna"]
    filled = out.tables["cna"].iloc[5, 1] * step.std[1] + step.mean[1]
    train_rows = cna_raw.loc[cohort.splits == "train"]
    assert filled == pytest.approx(np.nanmedian(train_rows["c1"]), abs=1e-5)


def test_lowrank_fill_follows_the_rows_structure():
    rng = np.random.default_rng(3)
    ids = [f"s{i:02d}" for i in range(60)]
    level = rng.normal(0, 1, 60)
    x = level[:, None] * np.array([1.0, 2.0, 10.0]) + rng.normal(0, 0.01, (60, 3)) + 5
    truth = x[11, 2]
    x[11, 2] = np.nan
    table = pd.DataFrame(x, index=ids, columns=["a", "b", "c"])
    cohort = Cohort.from_tables({"rppa": table}, splits={s: "train" for s in ids})
    prep = Preprocessor.fit(cohort, max_missing=0.5)
    out = prep.transform(cohort).tables["rppa"]
    step = prep.transforms["rppa"]
    assert out.iloc[11, 2] * step.std[2] + step.mean[2] == pytest.approx(truth, abs=0.1)


def test_knn_is_read_as_lowrank_with_a_warning():
    cohort = _cohort(np.random.default_rng(0))
    with pytest.warns(UserWarning, match="keep every training row"):
        prep = Preprocessor.fit(cohort, fill={"rna": "knn"})
    assert prep.transforms["rna"].fill == "lowrank"
    with pytest.raises(DataError, match="one of"):
        Preprocessor.fit(cohort, fill={"rna": "bogus"})


def test_saved_preprocessing_round_trips_without_rows(tmp_path):
    cohort = _cohort(np.random.default_rng(2))
    prep = Preprocessor.fit(cohort)
    prep.save(str(tmp_path))
    back = Preprocessor.load(str(tmp_path))
    assert not back.holds_training_rows
    pd.testing.assert_frame_equal(prep.transform(cohort).tables["rna"],
                                  back.transform(cohort).tables["rna"])
    train = cohort.split("train").tables["rna"].to_numpy(np.float64)
    with np.load(tmp_path / "preprocessing.npz") as arrays:
        assert not any("donor" in k for k in arrays.files)
        for key in arrays.files:  # no saved vector equals a training row
            value = arrays[key]
            for vector in (value.reshape(-1, value.shape[-1]) if value.ndim else []):
                if vector.shape[0] == train.shape[1]:
                    assert not np.any(np.all(np.isclose(train, vector), axis=1))


def test_preprocessing_with_knn_donors_warns_and_is_rewritten(tmp_path):
    """A work directory of an earlier version (format /1, donors = training rows): loading
    warns, and the pipeline's preprocessing stage rewrites it without the rows."""
    import json

    from coherent_jax import pipeline, safe_io

    cohort = _cohort(np.random.default_rng(4))
    prep = Preprocessor.fit(cohort)
    folder = tmp_path / "preprocessing"
    with safe_io.output_folder(str(folder), kind="preprocessing") as tmp:
        prep.save(tmp)
    meta = json.loads((folder / "preprocessing.json").read_text())
    meta["format"] = "coherent_jax.Preprocessor/1"
    meta["modalities"]["rna"]["fill"] = "knn"
    (folder / "preprocessing.json").write_text(json.dumps(meta))
    with np.load(folder / "preprocessing.npz") as arrays:
        old = {k: arrays[k] for k in arrays.files if "/fill_" not in k}
    train_rna = cohort.split("train").tables["rna"][list(prep.transforms["rna"].features)]
    old["rna/knn_donors"] = train_rna.dropna(how="all").to_numpy(np.float64)
    np.savez(folder / "preprocessing.npz", **old)
    with pytest.warns(UserWarning, match="training patients' rows"):
        loaded = Preprocessor.load(str(folder))
    assert loaded.holds_training_rows and loaded.transforms["rna"].fill == "lowrank"
    pipeline.stage_preprocessing(str(tmp_path), prep)
    with np.load(folder / "preprocessing.npz") as arrays:
        assert not any("donor" in k for k in arrays.files)
        np.testing.assert_array_equal(arrays["rna/mean"], old["rna/mean"])
    again = Preprocessor.load(str(folder))
    assert not again.holds_training_rows


def test_statistics_come_from_train_only():
    rng = np.random.default_rng(1)
    cohort = _cohort(rng)
    prep = Preprocessor.fit(cohort)
    wild = {m: t.copy() for m, t in cohort.tables.items()}
    test = (cohort.splits == "test").to_numpy()
    for m in wild:
        wild[m].iloc[test] = wild[m].iloc[test] * 100 + 1e3
    changed = cohort.replace(tables={m: t.astype(np.float32) for m, t in wild.items()})
    other = Preprocessor.fit(changed)
    for m in cohort.modalities:
        a, b = prep.transforms[m], other.transforms[m]
        assert a.features == b.features
        np.testing.assert_array_equal(a.mean, b.mean)
        np.testing.assert_array_equal(a.std, b.std)
        np.testing.assert_array_equal(a.median, b.median)
    pd.testing.assert_frame_equal(prep.transform(cohort).split("train").tables["rna"],
                                  other.transform(changed).split("train").tables["rna"])
    # and the fit really depends on train: moving train values moves the statistics
    moved = cohort.replace(tables={m: (t + 1).astype(np.float32)
                                   for m, t in cohort.tables.items()})
    assert not np.allclose(Preprocessor.fit(moved).transforms["rna"].mean,
                           prep.transforms["rna"].mean)


def test_needs_a_split():
    table = pd.DataFrame({"a": [1.0, 2.0]}, index=["x", "y"])
    with pytest.raises(DataError, match="paper_split"):
        Preprocessor.fit(Cohort.from_tables({"rna": table}))


def test_inverse_keeps_draws_in_each_features_domain(tmp_path):
    rng = np.random.default_rng(3)
    n = 50
    ids = [f"s{i:03d}" for i in range(n)]
    table = pd.DataFrame({"beta": rng.uniform(0.01, 0.99, n), "count": rng.poisson(3, n) * 1.0,
                          "signed": rng.normal(0, 1, n)}, index=ids)
    cohort = Cohort.from_tables({"meth": table}, splits={s: "train" for s in ids})
    prep = Preprocessor.fit(cohort)
    step = prep.transforms["meth"]
    np.testing.assert_array_equal(step.lower, [0, 0, -np.inf])
    np.testing.assert_array_equal(step.upper, [1, np.inf, np.inf])
    far = pd.DataFrame([[8.0, -8.0, -8.0], [-8.0, 8.0, 8.0]], columns=list(step.features))
    prep.save(str(tmp_path))
    for loaded in (step, Preprocessor.load(str(tmp_path)).transforms["meth"]):
        back = loaded.inverse(far).to_numpy()
        assert back[0, 0] == 1.0 and back[1, 0] == 0.0 and back[0, 1] == 0.0
        assert back[1, 1] > table["count"].max() and back[0, 2] < table["signed"].min()
    # inside the domain the inverse is the plain z-score inverse
    z = prep.transform(cohort).tables["meth"]
    np.testing.assert_allclose(step.inverse(z).to_numpy(), table.to_numpy(), atol=1e-5)
