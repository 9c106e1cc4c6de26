"""The absl scripts end to end on the tiny config: pipeline, reuse, refusal, imputing CSVs."""

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


def _run(script, *args, env=None):
    return subprocess.run([sys.executable, os.path.join(ROOT, "experiments", script), *args],
                          capture_output=True, text=True, timeout=900, cwd=ROOT,
                          env=dict(os.environ, JAX_PLATFORMS="cpu", **(env or {})))


@pytest.fixture(scope="module")
def workdir(tmp_path_factory):
    path = str(tmp_path_factory.mktemp("run"))
    out = _run("run_pipeline.py", f"--config={CONFIG}", f"--workdir={path}")
    assert out.returncode == 0, out.stderr[-4000:]
    # the first report, kept for comparisons (later tests re-evaluate with other settings)
    shutil.copy(os.path.join(path, "report", "tables", "reconstruction.csv"),
                os.path.join(os.path.dirname(path), "first_reconstruction.csv"))
    return path


def test_pipeline_writes_everything(workdir):
    info = json.load(open(os.path.join(workdir, "config.json")))
    assert info["seed"] == 0 and info["data_fingerprint"] and info["versions"]["packages"]["jax"]
    for part in ("latent_space/latent_quality.csv", "models/reports.json", "metrics.jsonl",
                 "report/index.md", "report/report.json"):
        assert os.path.exists(os.path.join(workdir, part)), part
    # the patients' imputation lies beside the work directory, not inside it
    assert not os.path.exists(os.path.join(workdir, "imputation"))
    assert os.path.exists(os.path.join(workdir + "_imputed", "summary.json"))
    metrics = pd.read_json(os.path.join(workdir, "metrics.jsonl"), lines=True)
    assert set(metrics["family"]) == {"specialists", "multi"} and metrics["step"].max() == 40


def test_generative_rows_are_close_to_the_exact_posterior_mean(workdir):
    """The test config's own data are linear-Gaussian: the exact posterior mean of each target
    given all other modalities is known, and the mean of K = 8 draws of every method must score
    close to it. Measured (seed 0, 2026-11-26): exact 0.724-0.784; coherent 0.631-0.664,
    multi 0.570-0.656, product 0.508-0.557 (the product of experts double-counts what the
    sources share), raw-feature ridge 0.622-0.687 (150 training rows cost every estimator
    0.07-0.10). Tolerances: coherent and multi within 0.2 of the exact R^2, product within
    0.3, nobody above it by more than noise. Before the anchored denoisers these rows were
    -4,805 to -15,569."""
    from coherent_jax import pipeline  # noqa: PLC0415

    data = pipeline.DataConfig(source="gaussian", num_samples=300, missing="0.3")
    raw = pipeline.load_raw_cohort(data).split("test")
    _, prep = pipeline.load_cohort(data)
    truth = prep.transform(raw)
    model = LinearGaussianModel.random({m: 8 for m in ("cna", "rna", "rppa", "wsi")},
                                       num_factors=6, noise_std=0.4, seed=42)
    table = pd.read_csv(os.path.join(os.path.dirname(workdir), "first_reconstruction.csv"),
                        index_col=0)
    k = 8
    for target in raw.modalities:
        given = {m: raw.tables[m].to_numpy() for m in raw.modalities if m != target}
        mean, _ = model.conditional(target, given)
        step = prep.transforms[target]
        exact = 1 - (((truth.tables[target].to_numpy() - (mean - step.mean) / step.std) ** 2).sum()
                     / ((truth.tables[target] - truth.tables[target].mean()) ** 2).to_numpy().sum())
        for method, tolerance in (("coherent", 0.2), ("multi", 0.2), ("product", 0.4)):
            got = table.loc[f"{method}: mean of {k} draws", target]
            assert exact - tolerance < got < exact + 0.03, (method, target, got, exact)


def test_other_config_on_same_workdir_is_refused(workdir):
    out = _run("train_denoisers.py", f"--config={CONFIG}", f"--workdir={workdir}",
               "--config.denoisers.train_steps=41")
    assert out.returncode != 0 and "different configuration" in out.stderr
    assert "differs in: ['denoisers']" in out.stderr


def test_evaluation_settings_may_change_on_a_trained_workdir(workdir):
    out = _run("evaluate.py", f"--config={CONFIG}", f"--workdir={workdir}",
               "--config.evaluate.imputation.num_samples=3",
               "--config.evaluate.methods=('coherent',)")
    assert out.returncode == 0, out.stderr[-4000:]
    assert "report:" in out.stdout and "coherent" in out.stdout
    report = json.load(open(os.path.join(workdir, "report", "report.json")))
    assert report["config"]["evaluate"]["imputation"]["num_samples"] == 3
    text = open(os.path.join(workdir, "report", "index.md")).read()
    assert "label 'cancer_type' is unknown" in text  # the Gaussian cohort has no labels


def test_unknown_config_field_is_an_error(tmp_path):
    out = _run("train_denoisers.py", f"--config={CONFIG}", f"--workdir={tmp_path}",
               "--config.denoisers.hiden_dim=3")
    assert out.returncode != 0 and "hiden_dim" in out.stderr


@pytest.mark.parametrize("setting", ["--config.impute.num_samples=0",
                                     "--config.impute.method=bogus"])
def test_a_bad_setting_stops_the_pipeline_in_one_line_before_any_work(tmp_path, setting):
    out = _run("run_pipeline.py", f"--config={CONFIG}", f"--workdir={tmp_path / 'run'}", setting)
    assert out.returncode == 2 and len(out.stderr.strip().splitlines()) == 1, out.stderr
    assert out.stderr.startswith("error: ImputeConfig: ")
    assert not (tmp_path / "run").exists()  # nothing recorded, nothing trained


@pytest.mark.parametrize("flag, message", [("--num_samples=0", "num_samples must be >= 1"),
                                           ("--num_samples=-3", "num_samples must be >= 1"),
                                           ("--method=bogus", "unknown method 'bogus'")])
def test_a_bad_impute_flag_is_one_line_and_status_2(workdir, tmp_path, flag, message):
    folder = tmp_path / "mine"
    _write_new_patients(folder)
    out = _run("impute.py", f"--workdir={workdir}", f"--input={folder}",
               f"--out={tmp_path / 'out'}", flag)
    assert out.returncode == 2 and len(out.stderr.strip().splitlines()) == 1, out.stderr
    assert message in out.stderr and not (tmp_path / "out").exists()


def _write_holed_patients(folder):
    """6 new patients as a CSV folder, two lacking each modality; returns their cohort."""
    # Same generator as the 'gaussian' data source: same feature names.
    model = LinearGaussianModel.random({m: 8 for m in ("cna", "rna", "rppa", "wsi")},
                                       num_factors=6, noise_std=0.4, seed=42)
    cohort = linear_gaussian_cohort(model, 6, seed=7)
    folder.mkdir()
    for i, (m, table) in enumerate(cohort.tables.items()):
        table.drop(index=table.index[i:i + 2]).to_csv(folder / f"{m}.csv")
    return cohort


def test_impute_script_fills_a_csv_folder(workdir, tmp_path):
    folder = tmp_path / "mine"
    cohort = _write_holed_patients(folder)
    out_dir = tmp_path / "filled"
    out = _run("impute.py", f"--workdir={workdir}", f"--input={folder}", f"--out={out_dir}")
    assert out.returncode == 0, out.stderr[-4000:]
    means = pd.read_csv(out_dir / "rna_features_mean.csv", index_col=0)
    assert sorted(means.index) == sorted(cohort.sample_ids) and np.isfinite(means.to_numpy()).all()
    imputed = pd.read_csv(out_dir / "imputed.csv", index_col=0)
    assert imputed.to_numpy().sum() == 8
    summary = json.load(open(out_dir / "summary.json"))
    assert summary["num_samples"] == 2 and summary["versions"]["packages"]["jax"]


def test_impute_script_shards_over_devices_with_the_same_draws(workdir, tmp_path):
    folder = tmp_path / "mine"
    _write_holed_patients(folder)
    two = {"XLA_FLAGS": "--xla_force_host_platform_device_count=2"}
    means = {}
    for devices in (1, 2):
        out = _run("impute.py", f"--workdir={workdir}", f"--input={folder}",
                   f"--out={tmp_path / f'filled{devices}'}", f"--num_devices={devices}",
                   "--bucket=16", env=two)
        assert out.returncode == 0, out.stderr[-4000:]
        assert "coherent/" in out.stdout and "no chain" not in out.stdout  # the mesh works
        means[devices] = pd.read_csv(tmp_path / f"filled{devices}" / "rna_features_mean.csv",
                                     index_col=0)
    pd.testing.assert_frame_equal(means[1], means[2], rtol=1e-4, atol=1e-5)
    for flag in ("--num_devices=3", "--num_devices=-1", "--bucket=0"):
        bad = _run("impute.py", f"--workdir={workdir}", f"--input={folder}",
                   f"--out={tmp_path / 'bad'}", flag, env=two)
        assert bad.returncode == 2 and len(bad.stderr.strip().splitlines()) == 1, bad.stderr
        assert not (tmp_path / "bad").exists()


def _snapshot(folder):
    found = {}
    for d, _, files in os.walk(folder):
        for name in files:
            path = os.path.join(d, name)
            with open(path, "rb") as f:
                found[os.path.relpath(path, folder)] = f.read()
    return found


def _write_new_patients(folder):
    model = LinearGaussianModel.random({m: 8 for m in ("cna", "rna", "rppa", "wsi")},
                                       num_factors=6, noise_std=0.4, seed=42)
    cohort = linear_gaussian_cohort(model, 4, seed=3)
    folder.mkdir()
    for m, table in cohort.tables.items():
        table.drop(index=table.index[:1]).to_csv(folder / f"{m}.csv")


@pytest.mark.parametrize("where", ["notes", "input", "workdir", "cwd"])
def test_impute_script_never_deletes_user_files(workdir, tmp_path, where):
    folder = tmp_path / "mine"
    _write_new_patients(folder)
    notes = tmp_path / "notes"
    notes.mkdir()
    (notes / "notes.txt").write_text("my notes")
    out = {"notes": notes, "input": folder, "workdir": workdir, "cwd": ROOT}[where]
    before = {p: _snapshot(p) for p in (str(folder), str(notes), workdir)}
    for extra in ([], ["--overwrite"]):
        result = _run("impute.py", f"--workdir={workdir}", f"--input={folder}", f"--out={out}",
                      *extra)
        assert result.returncode == 2, result.stderr[-2000:]
        assert "Traceback" not in result.stderr and "error: --out" in result.stderr
    assert {p: _snapshot(p) for p in before} == before


def test_impute_script_replaces_its_own_output_only_with_overwrite(workdir, tmp_path):
    folder = tmp_path / "mine"
    _write_new_patients(folder)
    out = tmp_path / "filled"
    args = (f"--workdir={workdir}", f"--input={folder}", f"--out={out}")
    assert _run("impute.py", *args).returncode == 0
    first = _snapshot(out)
    again = _run("impute.py", *args)
    assert again.returncode == 2 and "--overwrite" in again.stderr and _snapshot(out) == first
    assert _run("impute.py", *args, "--overwrite").returncode == 0
    assert sorted(os.listdir(tmp_path)) == ["filled", "mine"]


KILL_HARNESS = """
import importlib, os, runpy, sys
target, when, count = os.environ["KILL_AT"].rsplit(":", 2)
module, attr = target.split(":")
owner = importlib.import_module(module)
*path, name = attr.split(".")
for part in path:
    owner = getattr(owner, part)
original, calls = getattr(owner, name), []
def dying(*args, **kwargs):
    calls.append(1)
    if when == "before" and len(calls) == int(count):
        os._exit(137)
    out = original(*args, **kwargs)
    if when == "after" and len(calls) == int(count):
        os._exit(137)
    return out
setattr(owner, name, dying)
script = sys.argv[1]
sys.path.insert(0, os.path.dirname(script))
sys.argv = sys.argv[1:]
runpy.run_path(script, run_name="__main__")
"""


def test_pipeline_killed_anywhere_resumes_to_the_same_result(workdir, tmp_path):
    killed = str(tmp_path / "killed")
    script = os.path.join(ROOT, "experiments", "run_pipeline.py")
    kills = [
        ("coherent_jax.latent:LatentSpace.save:after:1", "latent_space.partial"),
        ("coherent_jax.engine.checkpointing:TrainCheckpoints.save:after:2", "checkpoints"),
        ("coherent_jax.model_set:ModelSet.save:after:1", "models.partial"),
        ("coherent_jax.safe_io:commit:before:2", "../killed_imputed.partial"),  # 1: models
    ]  # the report's folder is committed by the same safe_io.commit as the imputation's
    for kill, left in kills:
        out = subprocess.run([sys.executable, "-c", KILL_HARNESS, script, f"--config={CONFIG}",
                              f"--workdir={killed}"], capture_output=True, text=True,
                             timeout=900, cwd=ROOT,
                             env=dict(os.environ, JAX_PLATFORMS="cpu", KILL_AT=kill))
        assert out.returncode == 137, (kill, out.stderr[-3000:])
        assert os.path.exists(os.path.join(killed, left)), (kill, os.listdir(killed))
    out = _run("run_pipeline.py", f"--config={CONFIG}", f"--workdir={killed}")
    assert out.returncode == 0, out.stderr[-3000:]
    assert not [n for n in os.listdir(killed) if n.endswith((".partial", ".old"))]
    for part, reference in (
            ("../killed_imputed/rna_latent_mean.csv",
             os.path.join(workdir + "_imputed", "rna_latent_mean.csv")),
            ("../killed_imputed/imputed.csv", os.path.join(workdir + "_imputed", "imputed.csv")),
            ("report/tables/reconstruction.csv",
             os.path.join(os.path.dirname(workdir), "first_reconstruction.csv"))):
        ours = pd.read_csv(os.path.join(killed, part), index_col=0)
        pd.testing.assert_frame_equal(ours, pd.read_csv(reference, index_col=0),
                                      check_exact=False, rtol=1e-5)


def test_audit_finds_no_stored_row_and_runs_every_attack(workdir, tmp_path):
    out = tmp_path / "audit"
    found = _run("audit.py", f"--workdir={workdir}", f"--out={out}", "--num_samples=2")
    assert found.returncode in (0, 1), found.stderr[-3000:]
    artefacts = pd.read_csv(out / "artefacts.csv")
    files = set(artefacts["file"])
    assert "preprocessing/preprocessing.npz" in files
    assert any(f.startswith("models") for f in files)  # the Orbax trees are read
    assert artefacts["near_copies"].sum() == 0
    attacks = pd.read_csv(out / "attacks.csv")
    assert {"conditional", "encoder", "unconditional", "no modality given"} <= set(
        attacks["attack"])
    assert attacks.loc[attacks["attack"] == "no modality given", "refused"].all()
    scored = attacks[attacks["attack"] != "no modality given"]
    assert scored["auc"].between(0, 1).all() and (scored["low"] <= scored["high"]).all()
    summary = json.load(open(out / "summary.json"))
    assert summary["near_copies"] == 0 and summary["versions"]


def test_audit_flags_a_planted_training_row(workdir, tmp_path):
    """The scan can fail: training rows saved anywhere in a copy of the work directory (as an
    earlier version kept the KNN donors) are found, in the input's units."""
    from coherent_jax import pipeline  # noqa: PLC0415

    copy = str(tmp_path / "copy")
    shutil.copytree(workdir, copy)
    raw = pipeline.load_raw_cohort(pipeline.DataConfig(source="gaussian", num_samples=300,
                                                       missing="0.3")).split("train")
    values, present = raw.matrix("rna")
    np.savez(os.path.join(copy, "preprocessing", "extra.npz"), rows=values[present][:5] + 1e-4)
    found = _run("audit.py", f"--workdir={copy}", "--noattacks")
    assert found.returncode == 1, found.stderr[-3000:]
    assert "near copies of a training row: 5" in found.stdout


def test_audit_refuses_bad_input_with_one_line(workdir, tmp_path):
    not_a_run = tmp_path / "empty"
    not_a_run.mkdir()
    other = tmp_path / "other"
    other.mkdir()
    pd.DataFrame(np.ones((4, 3)), index=[f"p{i}" for i in range(4)],
                 columns=["x", "y", "z"]).to_csv(other / "rna.csv")
    for args in ([f"--workdir={not_a_run}"], [f"--workdir={workdir}", f"--data={other}"]):
        found = _run("audit.py", *args)
        assert found.returncode == 2, (args, found.stderr[-2000:])
        assert found.stderr.strip().startswith("error:") and "Traceback" not in found.stderr


def test_pipeline_refuses_an_out_folder_of_the_user_before_any_work(workdir, tmp_path):
    theirs = tmp_path / "theirs"
    theirs.mkdir()
    (theirs / "notes.txt").write_text("mine")
    out = _run("run_pipeline.py", f"--config={CONFIG}", f"--workdir={workdir}",
               f"--out={theirs}")
    assert out.returncode == 2 and "did not write" in out.stderr, out.stderr[-2000:]
    assert os.listdir(theirs) == ["notes.txt"] and (theirs / "notes.txt").read_text() == "mine"
