"""A trained work directory imputes new patients on its own, in their units: the training files
may be gone, whole modalities may be absent, observed values come back exactly."""

import json
import os
import shutil
import subprocess
import sys

import numpy as np
import pandas as pd
import pytest

from coherent_jax.data import LinearGaussianModel, linear_gaussian_cohort

pytestmark = pytest.mark.slow  # trains models or runs scripts end to end

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
CONFIG = os.path.join(ROOT, "experiments", "configs", "test.py")
MODALITIES = ("cna", "rna", "rppa", "wsi")
# raw units differ from z-scores: each modality on its own scale and offset
SCALE = {"cna": 0.5, "rna": 3.0, "rppa": 1.0, "wsi": 10.0}
OFFSET = {"cna": 0.0, "rna": 8.0, "rppa": -2.0, "wsi": 50.0}


def _run(script, *args):
    return subprocess.run([sys.executable, os.path.join(ROOT, "experiments", script), *args],
                          capture_output=True, text=True, timeout=900, cwd=ROOT,
                          env=dict(os.environ, JAX_PLATFORMS="cpu"))


def _cohort_tables(num, seed):
    model = LinearGaussianModel.random({m: 8 for m in MODALITIES}, num_factors=6,
                                       noise_std=0.4, seed=42)
    cohort = linear_gaussian_cohort(model, num, seed=seed)
    return {m: (t * SCALE[m] + OFFSET[m]).rename(index=lambda i: f"{i}-s{seed}")
            for m, t in cohort.tables.items()}


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    base = tmp_path_factory.mktemp("imputer")
    data = base / "A"
    data.mkdir()
    for m, table in _cohort_tables(300, seed=1).items():
        table.to_csv(data / f"{m}.csv")
    workdir = str(base / "run")
    out = _run("train_denoisers.py", f"--config={CONFIG}", f"--workdir={workdir}",
               "--config.data.source=csv", f"--config.data.path={data}",
               "--config.denoisers.train_steps=0")  # the imputer is under test, not training
    assert out.returncode == 0, out.stderr[-4000:]
    return base, workdir


def _new_patients(folder):
    """Six new patients: nobody has rna (no file), cna is header-only, rppa/wsi partly."""
    tables = _cohort_tables(6, seed=9)
    folder.mkdir()
    tables["cna"].iloc[:0].to_csv(folder / "cna.csv")
    tables["rppa"].iloc[:4].to_csv(folder / "rppa.csv")
    tables["wsi"].iloc[2:].to_csv(folder / "wsi.csv")
    return tables


def test_new_patients_after_the_training_data_is_gone(trained):
    base, workdir = trained
    given = _new_patients(base / "B")
    first = _run("impute.py", f"--workdir={workdir}", f"--input={base / 'B'}",
                 f"--out={base / 'C1'}")
    assert first.returncode == 0, first.stderr[-4000:]
    shutil.move(base / "A", base / "A_moved")
    try:
        second = _run("impute.py", f"--workdir={workdir}", f"--input={base / 'B'}",
                      f"--out={base / 'C2'}")
    finally:
        shutil.move(base / "A_moved", base / "A")
    assert second.returncode == 0, second.stderr[-4000:]
    for name in ("rna_features_mean.csv", "cna_features_mean.csv", "wsi_features_std.csv",
                 "imputed.csv"):
        pd.testing.assert_frame_equal(pd.read_csv(base / "C1" / name, index_col=0),
                                      pd.read_csv(base / "C2" / name, index_col=0))
    imputed = pd.read_csv(base / "C1" / "imputed.csv", index_col=0)
    assert imputed["rna"].all() and imputed["cna"].all()  # whole modalities were absent
    # observed values come back exactly as given, generated ones in the input's units
    for m, rows in (("rppa", given["rppa"].iloc[:4]), ("wsi", given["wsi"].iloc[2:])):
        mean = pd.read_csv(base / "C1" / f"{m}_features_mean.csv", index_col=0)
        written = pd.read_csv(base / "B" / f"{m}.csv", index_col=0)  # exactly, not float32
        np.testing.assert_array_equal(mean.loc[rows.index].to_numpy(), written.to_numpy())
    rna = pd.read_csv(base / "C1" / "rna_features_mean.csv", index_col=0)
    truth = given["rna"].loc[rna.index]
    # in the input's units (offset 8, scale 3), and informative: pooled R^2 against the truth
    residual = ((rna - truth) ** 2).to_numpy().sum()
    total = ((truth - truth.mean()) ** 2).to_numpy().sum()
    assert abs(rna.to_numpy().mean() - OFFSET["rna"]) < SCALE["rna"] and 1 - residual / total > 0.2
    zscores = _run("impute.py", f"--workdir={workdir}", f"--input={base / 'B'}",
                   f"--out={base / 'Z'}", "--units=zscore")
    assert zscores.returncode == 0, zscores.stderr[-3000:]
    z = pd.read_csv(base / "Z" / "rna_features_mean.csv", index_col=0)
    assert abs(z.to_numpy().mean()) < 1.5 and z.to_numpy().std() < rna.to_numpy().std()


def test_new_patients_on_another_scale_are_refused(trained, tmp_path):
    _, workdir = trained
    folder = tmp_path / "scaled"
    folder.mkdir()
    for m, table in _cohort_tables(4, seed=5).items():
        (table * (1000 if m == "rppa" else 1)).to_csv(folder / f"{m}.csv")
    out = _run("impute.py", f"--workdir={workdir}", f"--input={folder}",
               f"--out={tmp_path / 'out'}")
    assert out.returncode == 2 and "Traceback" not in out.stderr
    assert "'rppa'" in out.stderr and "scale or unit" in out.stderr
    assert not (tmp_path / "out").exists()


@pytest.mark.parametrize("case, message", [
    ("unknown_modality", "were not in the training data"),
    ("missing_features", "lacks 2 of the 8 features"),
    ("zero_bytes", "is empty"),
    ("semicolons", None),
])
def test_bad_new_patients_get_one_clear_message(trained, tmp_path, case, message):
    _, workdir = trained
    folder = tmp_path / "in"
    folder.mkdir()
    tables = _cohort_tables(4, seed=6)
    for m, table in tables.items():
        table.to_csv(folder / f"{m}.csv")
    if case == "unknown_modality":
        tables["rna"].to_csv(folder / "proteome.csv")
    elif case == "missing_features":
        tables["rna"].iloc[:, 2:].to_csv(folder / "rna.csv")
    elif case == "zero_bytes":
        (folder / "rna.csv").write_text("")
    else:
        tables["rna"].to_csv(folder / "rna.csv", sep=";")
    out = _run("impute.py", f"--workdir={workdir}", f"--input={folder}",
               f"--out={tmp_path / 'out'}")
    if message is None:  # ';' is detected
        assert out.returncode == 0, out.stderr[-3000:]
        return
    assert out.returncode == 2, out.stderr[-3000:]
    assert message in out.stderr and "Traceback" not in out.stderr


def test_nocascade_draws_each_modality_from_the_observed_ones_alone(trained, tmp_path):
    """Every patient lacks cna and rna: with the cascade (default) rna is drawn given the cna
    just drawn, with --nocascade given the observed rppa/wsi only; cna, drawn first (named: the
    order per availability pattern is otherwise each pattern's, chosen on held-out patients,
    and a modality's rows are drawn in one batch per place), is the same either way, and the
    summary records the choice."""
    base, workdir = trained
    _new_patients(tmp_path / "B")
    runs = {}
    for name, extra in (("cascade", ["--first=cna"]),
                        ("independent", ["--nocascade", "--first=cna"]),
                        ("independent_rna", ["--nocascade", "--first=rna"])):
        out = _run("impute.py", f"--workdir={workdir}", f"--input={tmp_path / 'B'}",
                   f"--out={tmp_path / name}", *extra)
        assert out.returncode == 0, out.stderr[-3000:]
        runs[name] = {m: pd.read_csv(tmp_path / name / f"{m}_features_draws.csv.gz")
                      for m in ("cna", "rna")}
        with open(tmp_path / name / "summary.json") as f:
            assert json.load(f)["metadata"]["impute"]["cascade"] is (name == "cascade")
    pd.testing.assert_frame_equal(runs["cascade"]["cna"], runs["independent"]["cna"])
    assert not np.allclose(runs["cascade"]["rna"].iloc[:, 2:].to_numpy(),
                           runs["independent"]["rna"].iloc[:, 2:].to_numpy())
    # --first=rna: rna is drawn from the observed ones alone, cna then given that draw
    out = _run("impute.py", f"--workdir={workdir}", f"--input={tmp_path / 'B'}",
               f"--out={tmp_path / 'first'}", "--first=rna")
    assert out.returncode == 0, out.stderr[-3000:]
    first = {m: pd.read_csv(tmp_path / "first" / f"{m}_features_draws.csv.gz")
             for m in ("cna", "rna")}
    pd.testing.assert_frame_equal(first["rna"], runs["independent_rna"]["rna"])
    assert not np.allclose(first["cna"].iloc[:, 2:].to_numpy(),
                           runs["cascade"]["cna"].iloc[:, 2:].to_numpy())
    with open(tmp_path / "first" / "summary.json") as f:
        assert json.load(f)["metadata"]["first"] == ["rna"]
    from coherent_jax.errors import UnknownModalityError, UserError  # noqa: PLC0415
    from coherent_jax.imputer import cascade_order  # noqa: PLC0415

    assert cascade_order(["rna"], MODALITIES) == ("rna", "cna", "rppa", "wsi")
    with pytest.raises(UnknownModalityError, match=r"cannot draw \['dna'\] first"):
        cascade_order(["rna", "dna"], MODALITIES)  # a UserError: the script exits 2
    with pytest.raises(UserError, match="named twice"):
        cascade_order(["rna", "rna"], MODALITIES)
