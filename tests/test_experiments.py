"""The absl scripts end to end on the tiny config: pipeline, reuse, refusal, imputing CSVs."""

import json
import os
import subprocess
import sys

import numpy as np
import pandas as pd
import pytest

from coherent_jax.data import LinearGaussianModel, linear_gaussian_cohort

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
CONFIG = os.path.join(ROOT, "experiments", "configs", "test.py")


def _run(script, *args):
    return subprocess.run([sys.executable, os.path.join(ROOT, "experiments", script), *args],
                          capture_output=True, text=True, timeout=900, cwd=ROOT,
                          env=dict(os.environ, JAX_PLATFORMS="cpu"))


@pytest.fixture(scope="module")
def workdir(tmp_path_factory):
    path = str(tmp_path_factory.mktemp("run"))
    out = _run("run_pipeline.py", f"--config={CONFIG}", f"--workdir={path}")
    assert out.returncode == 0, out.stderr[-4000:]
    return path


def test_pipeline_writes_everything(workdir):
    info = json.load(open(os.path.join(workdir, "config.json")))
    assert info["seed"] == 0 and info["data_fingerprint"] and info["versions"]["packages"]["jax"]
    for part in ("latent_space/latent_quality.csv", "models/reports.json", "metrics.jsonl",
                 "imputation/summary.json", "report/index.md", "report/report.json"):
        assert os.path.exists(os.path.join(workdir, part)), part
    metrics = pd.read_json(os.path.join(workdir, "metrics.jsonl"), lines=True)
    assert set(metrics["family"]) == {"specialists", "multi"} and metrics["step"].max() == 40


def test_other_config_on_same_workdir_is_refused(workdir):
    out = _run("train_denoisers.py", f"--config={CONFIG}", f"--workdir={workdir}",
               "--config.denoisers.num_steps=41")
    assert out.returncode != 0 and "different configuration" in out.stderr
    assert "differs in: ['denoisers']" in out.stderr


def test_evaluation_settings_may_change_on_a_trained_workdir(workdir):
    out = _run("evaluate.py", f"--config={CONFIG}", f"--workdir={workdir}",
               "--config.evaluate.num_samples=3", "--config.evaluate.methods=('coherent',)")
    assert out.returncode == 0, out.stderr[-4000:]
    assert "report:" in out.stdout and "coherent" in out.stdout
    report = json.load(open(os.path.join(workdir, "report", "report.json")))
    assert report["config"]["evaluate"]["num_samples"] == 3
    text = open(os.path.join(workdir, "report", "index.md")).read()
    assert "label 'cancer_type' is unknown" in text  # the Gaussian cohort has no labels


def test_unknown_config_field_is_an_error(tmp_path):
    out = _run("train_denoisers.py", f"--config={CONFIG}", f"--workdir={tmp_path}",
               "--config.denoisers.hiden_dim=3")
    assert out.returncode != 0 and "hiden_dim" in out.stderr


def test_impute_script_fills_a_csv_folder(workdir, tmp_path):
    # Same generator as the 'gaussian' data source: same feature names.
    model = LinearGaussianModel.random({m: 8 for m in ("cna", "rna", "rppa", "wsi")},
                                       num_factors=6, noise_std=0.4, seed=42)
    cohort = linear_gaussian_cohort(model, 6, seed=7)
    folder = tmp_path / "mine"
    folder.mkdir()
    for i, (m, table) in enumerate(cohort.tables.items()):
        keep = table.drop(index=table.index[i:i + 2])  # two patients lack each modality
        keep.to_csv(folder / f"{m}.csv")
    out_dir = tmp_path / "filled"
    out = _run("impute.py", f"--workdir={workdir}", f"--input={folder}", f"--out={out_dir}")
    assert out.returncode == 0, out.stderr[-4000:]
    means = pd.read_csv(out_dir / "rna_features_mean.csv", index_col=0)
    assert sorted(means.index) == sorted(cohort.sample_ids) and np.isfinite(means.to_numpy()).all()
    imputed = pd.read_csv(out_dir / "imputed.csv", index_col=0)
    assert imputed.to_numpy().sum() == 8
    summary = json.load(open(out_dir / "summary.json"))
    assert summary["num_samples"] == 2 and summary["versions"]["packages"]["jax"]
