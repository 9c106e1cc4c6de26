"""Formats users bring and get back: MuData .h5mu, AnnData .h5ad folders and Parquet tables read
as the same Cohort as a CSV folder; the imputation written as .h5mu and Parquet; clear errors
for bad files and missing packages. Files are written with anndata/mudata/pandas directly, as a
user's tools would."""

import json
import os
import subprocess
import sys
import warnings

import numpy as np
import pandas as pd
import pytest

anndata = pytest.importorskip("anndata")
mudata = pytest.importorskip("mudata")
pytest.importorskip("pyarrow")

from coherent_jax import pipeline  # noqa: E402
from coherent_jax.data import (DataError, LinearGaussianModel, formats,  # noqa: E402
                               linear_gaussian_cohort, load_csv_folder, load_path)
from coherent_jax.errors import UserError  # noqa: E402
from coherent_jax.formats_out import write_csv, write_imputation  # noqa: E402
from coherent_jax.impute import Imputation  # noqa: E402
from coherent_jax.model_set import cohort_fingerprint  # noqa: E402

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
CONFIG = os.path.join(ROOT, "experiments", "configs", "test.py")
MODALITIES = ("cna", "rna", "rppa", "wsi")


def _tables(num=40, seed=1, holes=0.25, width=6):
    """Raw per-modality tables (rows of the samples that have the modality) and labels."""
    model = LinearGaussianModel.random({m: width for m in MODALITIES}, num_factors=4,
                                       noise_std=0.4, seed=42)
    cohort = linear_gaussian_cohort(model, num, seed=seed)
    rng = np.random.default_rng(seed)
    tables = {}
    for i, (m, table) in enumerate(cohort.tables.items()):
        table = table * (i + 1) + 3 * i
        keep = rng.random(num) >= holes
        keep[i] = True  # every modality has someone
        tables[m] = table[keep]
    ids = cohort.sample_ids
    labels = pd.DataFrame({"cancer_type": np.where(np.arange(num) % 2, "KIRC", "KIRP"),
                           "stage": [f"Stage {'I' * (1 + i % 3)}" for i in range(num)],
                           "os_time": np.arange(num) * 10.0 + 1,
                           "os_event": np.arange(num) % 2,
                           "split": np.array(["train", "train", "val", "test"])[np.arange(num) % 4],
                           "site": [f"site{i % 3}" for i in range(num)]},
                          index=pd.Index([str(i) for i in ids], name="sample_id"))
    return tables, labels


def _adata(table, obs=None):
    """AnnData as a user builds it: obs_names = sample IDs, var_names = features, X."""
    with formats.plain_strings():
        obs = pd.DataFrame(index=[str(i) for i in table.index]) if obs is None else obs
        return anndata.AnnData(X=table.to_numpy(), obs=formats.as_objects(obs),
                               var=pd.DataFrame(index=[str(c) for c in table.columns]))


def _write_h5mu(path, tables, labels=None, mod_obs=None):
    with formats.plain_strings():
        mods = {m: _adata(t, (mod_obs or {}).get(m)) for m, t in tables.items()}
        mdata = mudata.MuData(mods)
        if labels is not None:
            mdata.obs = formats.as_objects(labels.reindex(mdata.obs_names))
        mdata.write(str(path))


def _write_folder(folder, tables, labels, kind):
    folder.mkdir()
    for m, table in tables.items():
        if kind == "h5ad":
            with formats.plain_strings():
                _adata(table).write_h5ad(folder / f"{m}.h5ad")
        elif kind == "parquet":
            table.rename_axis("sample_id").to_parquet(folder / f"{m}.parquet")
        else:
            table.to_csv(folder / f"{m}.csv")
    if labels is not None:
        labels.to_csv(folder / "clinical.csv")


def _assert_same_cohort(a, b):
    assert a.modalities == b.modalities
    assert list(a.sample_ids) == list(b.sample_ids)
    for m in a.modalities:
        pd.testing.assert_frame_equal(a.tables[m], b.tables[m])
    pd.testing.assert_frame_equal(a.labels, b.labels)
    pd.testing.assert_series_equal(a.splits, b.splits)
    pd.testing.assert_frame_equal(a.presence, b.presence)


def test_h5mu_h5ad_and_parquet_read_as_the_csv_folder(tmp_path):
    tables, labels = _tables()
    _write_folder(tmp_path / "csv", tables, labels, "csv")
    reference = load_csv_folder(tmp_path / "csv")
    assert not reference.presence.all().all()  # patients missing from some modalities
    _write_h5mu(tmp_path / "cohort.h5mu", tables, labels)
    _write_folder(tmp_path / "h5ad", tables, labels, "h5ad")
    _write_folder(tmp_path / "parquet", tables, labels, "parquet")
    for path in ("cohort.h5mu", "h5ad", "parquet"):
        _assert_same_cohort(reference, load_path(tmp_path / path))
    # the pipeline: the same data, the same fingerprint, whatever the format
    fingerprints = set()
    for source, path in (("csv", "csv"), ("h5mu", "cohort.h5mu"), ("h5ad", "h5ad"),
                         ("csv", "parquet")):
        config = pipeline.DataConfig(source=source, path=str(tmp_path / path), missing="none")
        fingerprints.add(cohort_fingerprint(pipeline.load_cohort(config)[0]))
    assert len(fingerprints) == 1


def test_labels_from_the_obs_of_mods_and_h5ad_files(tmp_path):
    tables, labels = _tables()
    # a label column on each mod (for its samples), the rest on the MuData itself
    mod_obs = {m: labels.loc[[str(i) for i in t.index], ["cancer_type"]]
               for m, t in tables.items()}
    _write_h5mu(tmp_path / "c.h5mu", tables, labels.drop(columns="cancer_type"), mod_obs)
    _write_folder(tmp_path / "csv", tables, labels, "csv")
    _assert_same_cohort(load_csv_folder(tmp_path / "csv"), load_path(tmp_path / "c.h5mu"))
    # .h5ad obs columns plus a clinical.csv beside
    folder = tmp_path / "h5ad"
    folder.mkdir()
    for m, t in tables.items():
        with formats.plain_strings():
            _adata(t, mod_obs[m]).write_h5ad(folder / f"{m}.h5ad")
    labels.drop(columns="cancer_type").to_csv(folder / "clinical.csv")
    _assert_same_cohort(load_csv_folder(tmp_path / "csv"), load_path(folder))
    # mods that disagree about a sample's label
    bad = {m: o.copy() for m, o in mod_obs.items()}
    shared = sorted(set(bad["cna"].index) & set(bad["rna"].index))[0]
    bad["rna"].loc[shared, "cancer_type"] = "LUAD"
    _write_h5mu(tmp_path / "bad.h5mu", tables, None, bad)
    with pytest.raises(DataError, match=rf"label 'cancer_type' of sample '{shared}' differs"):
        load_path(tmp_path / "bad.h5mu")


def test_whole_modality_absent_or_empty_for_new_patients(tmp_path):
    tables, _ = _tables()
    present = {m: t for m, t in tables.items() if m != "rna"}  # rna left out of the file
    _write_h5mu(tmp_path / "new.h5mu", present)
    cohort = load_path(tmp_path / "new.h5mu", allow_empty=True)
    assert cohort.modalities == ("cna", "rppa", "wsi")
    # a mod with features but no patient: fine for new patients, an error for training
    with_empty = dict(present, rna=tables["rna"].iloc[:0])
    _write_h5mu(tmp_path / "empty.h5mu", with_empty)
    assert load_path(tmp_path / "empty.h5mu", allow_empty=True).modalities == cohort.modalities
    with pytest.raises(DataError, match="'rna'.*has no samples"):
        load_path(tmp_path / "empty.h5mu")


@pytest.mark.parametrize("case, message", [
    ("duplicate_h5mu", r"modality 'rna' \(file .*dup.h5mu, mod 'rna'\) has duplicate sample IDs"),
    ("duplicate_h5ad", r"modality 'rna' \(file .*rna.h5ad\) has duplicate sample IDs"),
    ("infinite", r"modality 'cna' \(file .*, mod 'cna'\) has 1 infinite value"),
    ("all_nan", r"modality 'wsi' \(file .*, mod 'wsi'\) has no sample with any value"),
    ("id_spelling", r"spelled differently .*--config.data.distinct_ids=true"),
    ("not_mudata", r"could not be read as MuData"),
    ("no_x", r"has no X: put the values to use in X"),
])
def test_bad_files_get_clear_errors(tmp_path, case, message):
    tables, _ = _tables()
    path = tmp_path / "dup.h5mu"
    if case == "duplicate_h5mu":
        tables["rna"] = pd.concat([tables["rna"], tables["rna"].iloc[:1]])
    elif case == "duplicate_h5ad":
        path = tmp_path / "folder"
        tables["rna"] = pd.concat([tables["rna"], tables["rna"].iloc[:1]])
        _write_folder(path, tables, None, "h5ad")
    elif case == "infinite":
        tables["cna"].iloc[0, 0] = np.inf
    elif case == "all_nan":
        tables["wsi"].iloc[:, :] = np.nan
    elif case == "id_spelling":
        tables["rna"].index = [str(i).lower() if n % 2 else str(i)
                               for n, i in enumerate(tables["rna"].index)]
    if case == "not_mudata":
        path.write_text("not an HDF5 file")
    elif case == "no_x":
        with formats.plain_strings():
            adata = _adata(tables["cna"])
            adata.X = None
            mudata.MuData({"cna": adata, "rna": _adata(tables["rna"])}).write(str(path))
    elif case != "duplicate_h5ad":
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            _write_h5mu(path, tables)
    with pytest.raises(DataError, match=message):
        load_path(path)


def test_missing_packages_name_the_install_command(tmp_path, monkeypatch):
    tables, _ = _tables()
    _write_h5mu(tmp_path / "c.h5mu", tables)
    _write_folder(tmp_path / "pq", tables, None, "parquet")
    monkeypatch.setitem(sys.modules, "mudata", None)  # import mudata -> ImportError
    monkeypatch.setitem(sys.modules, "pyarrow", None)
    with pytest.raises(formats.MissingPackageError) as error:
        load_path(tmp_path / "c.h5mu")
    assert str(error.value) == (
        f"reading {tmp_path / 'c.h5mu'} needs the Python package 'mudata', which is not "
        "installed. Install the file-format extra: pip install -e '.[formats]' (or pip install "
        "mudata).")
    with pytest.raises(UserError, match=r"needs the Python package 'pyarrow'.*\.\[formats\]"):
        load_path(tmp_path / "pq")
    with pytest.raises(UserError, match=r"writing the imputation as h5mu needs .*'mudata'"):
        write_imputation(_imputation(), str(tmp_path / "out"), formats=("csv", "h5mu"))
    assert not (tmp_path / "out").exists()


def _imputation(num=6, k=3, seed=0):
    """An Imputation as `impute` returns it (2 modalities, rna generated for half)."""
    rng = np.random.default_rng(seed)
    ids = pd.Index([f"P{i}" for i in range(num)], name="sample_id")
    index = pd.MultiIndex.from_arrays([np.tile(ids, k), np.repeat(np.arange(k), num)],
                                      names=["sample_id", "draw"])
    draws = {m: pd.DataFrame(rng.normal(size=(num * k, 3)).astype(np.float32), index=index,
                             columns=[f"{m}_z{j}" for j in range(3)]) for m in ("cna", "rna")}
    features = {m: pd.DataFrame(rng.normal(size=(num * k, 4)), index=index,
                                columns=[f"{m}_g{j}" for j in range(4)]) for m in draws}
    means = {m: t.groupby(level="sample_id", sort=False).mean() for m, t in features.items()}
    imputed = pd.DataFrame({"cna": False, "rna": np.arange(num) % 2 == 1}, index=ids)
    diagnostics = pd.DataFrame([{"target": "rna", "rows": num // 2 * k, "acceptance": 0.75,
                                 "mean_bad_fraction": 0.05}])
    gen = imputed.to_numpy()
    acceptance = pd.DataFrame(np.where(gen, np.linspace(0, 1, num)[:, None], np.nan),
                              index=ids, columns=imputed.columns)
    return Imputation(draws=draws, imputed=imputed, diagnostics=diagnostics, features=features,
                      num_samples=k, feature_means=means, acceptance=acceptance,
                      bad_fraction=acceptance / 10)


def test_imputation_written_as_h5mu_and_parquet(tmp_path):
    result = _imputation()
    folder = tmp_path / "filled"
    write_imputation(result, str(folder), {"seed": 0}, formats="csv,h5mu,parquet")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        mdata = mudata.read_h5mu(folder / "imputation.h5mu")
    assert set(mdata.mod) == {"cna", "rna"}
    rna = mdata["rna"]
    for stat in ("mean", "std", "lower", "upper"):
        csv = pd.read_csv(folder / f"rna_features_{stat}.csv", index_col=0)
        np.testing.assert_array_equal(rna.X if stat == "mean" else rna.layers[stat],
                                      csv.to_numpy())
        assert list(rna.obs_names) == list(csv.index) and list(rna.var_names) == list(csv.columns)
        parquet = pd.read_parquet(folder / f"rna_features_{stat}.parquet")
        np.testing.assert_array_equal(parquet.to_numpy(), csv.to_numpy())
    np.testing.assert_array_equal(rna.obs["imputed"].to_numpy(), result.imputed["rna"])
    np.testing.assert_allclose(rna.obs["acceptance"].iloc[1], 0.2)  # per patient
    np.testing.assert_allclose(rna.obs["disagreement"].iloc[3], 0.06)
    assert np.isnan(rna.obs["acceptance"].iloc[0])  # observed: nothing was generated
    assert rna.obsm["draws"].shape == (6, 3, 4) and rna.obsm["latent_draws"].shape == (6, 3, 3)
    draw2 = result.features["rna"].xs(2, level="draw")
    np.testing.assert_allclose(rna.obsm["draws"][:, 2, :], draw2.to_numpy(), rtol=1e-6)
    assert json.loads(mdata.uns["coherent_jax"])["metadata"] == {"seed": 0}
    draws = pd.read_parquet(folder / "rna_features_draws.parquet")
    pd.testing.assert_frame_equal(draws, result.features["rna"])
    # only what was asked: h5mu alone writes no per-modality CSV, next to the small tables
    write_imputation(result, str(tmp_path / "only"), formats=["h5mu"])
    assert sorted(os.listdir(tmp_path / "only")) == [
        ".coherent_jax_output.json", "diagnostics.csv", "imputation.h5mu", "imputed.csv",
        "summary.json"]
    with pytest.raises(UserError, match="unknown output format.*'xlsx'.*csv, h5mu, parquet"):
        write_imputation(result, str(tmp_path / "x"), formats="csv,xlsx")


def _run(script, *args):
    return subprocess.run([sys.executable, os.path.join(ROOT, "experiments", script), *args],
                          capture_output=True, text=True, timeout=900, cwd=ROOT,
                          env=dict(os.environ, JAX_PLATFORMS="cpu"))


@pytest.mark.slow
def test_impute_script_reads_and_writes_h5mu(tmp_path):
    """Train on an .h5mu file; new patients as .h5mu (no rna mod at all) and as the same CSV
    folder give the same numbers; the written .h5mu holds them with the mask."""
    tables, labels = _tables(num=300, seed=1, holes=0.1, width=8)
    _write_h5mu(tmp_path / "train.h5mu", tables, labels)
    workdir = tmp_path / "run"
    out = _run("train_denoisers.py", f"--config={CONFIG}", f"--workdir={workdir}",
               "--config.data.source=h5mu", f"--config.data.path={tmp_path / 'train.h5mu'}",
               "--config.data.missing=none",  # the formats are under test, not the models:
               "--config.denoisers.train_steps=0", "--config.denoisers.anchor_components=1")
    assert out.returncode == 0, out.stderr[-4000:]
    new, _ = _tables(num=8, seed=7, holes=0.3, width=8)
    new = {m: t.rename(index=lambda i: f"new-{i}") for m, t in new.items() if m != "rna"}
    _write_h5mu(tmp_path / "new.h5mu", new)
    _write_folder(tmp_path / "new_csv", new, None, "csv")
    runs = {}
    for name, given in (("h5mu", tmp_path / "new.h5mu"), ("csv", tmp_path / "new_csv")):
        out = _run("impute.py", f"--workdir={workdir}", f"--input={given}",
                   f"--out={tmp_path / name}", "--format=csv,h5mu")
        assert out.returncode == 0, out.stderr[-4000:]
        runs[name] = tmp_path / name
    for file in ("rna_features_mean.csv", "cna_features_std.csv", "imputed.csv"):
        pd.testing.assert_frame_equal(pd.read_csv(runs["h5mu"] / file, index_col=0),
                                      pd.read_csv(runs["csv"] / file, index_col=0))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        mdata = mudata.read_h5mu(runs["h5mu"] / "imputation.h5mu")
    assert mdata["rna"].obs["imputed"].all()  # nobody had rna
    cna = mdata["cna"]
    observed = ~cna.obs["imputed"].to_numpy()
    given = new["cna"].reindex(cna.obs_names[observed])
    np.testing.assert_array_equal(cna.X[observed], given.to_numpy(np.float64))  # as given
    # a bad --format is refused before any work, in one line
    out = _run("impute.py", f"--workdir={workdir}", f"--input={tmp_path / 'new.h5mu'}",
               f"--out={tmp_path / 'x'}", "--format=csv,xlsx")
    assert out.returncode == 2 and "Traceback" not in out.stderr
    assert "unknown output format" in out.stderr and not (tmp_path / "x").exists()


@pytest.mark.parametrize("arrow", [True, False])
@pytest.mark.parametrize("name", ["draws.csv", "draws.csv.gz"])
def test_csv_tables_read_back_exactly_with_or_without_pyarrow(tmp_path, monkeypatch, arrow, name):
    rng = np.random.default_rng(0)
    index = pd.MultiIndex.from_product([["p,1", "p2", 'p"3'], [0, 1]], names=["sample_id", "draw"])
    table = pd.DataFrame(rng.normal(size=(6, 3)).astype(np.float32), index=index,
                         columns=["g1", "g,2", "g3"])
    table.iloc[2, 1] = np.nan
    with monkeypatch.context() as patch:
        if not arrow:
            patch.setitem(sys.modules, "pyarrow", None)  # import pyarrow now fails
        write_csv(table, str(tmp_path / name))
    back = pd.read_csv(tmp_path / name, index_col=[0, 1])
    assert list(back.columns) == list(table.columns) and back.index.equals(table.index)
    np.testing.assert_array_equal(back.to_numpy(np.float32), table.to_numpy())
