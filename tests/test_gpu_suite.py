"""The GPU benchmark suite's CPU dry run: every part runs, with tiny sizes, and reports.

benchmarks/gpu_suite.py is a program for one GPU; its `--dry_run` runs each part (matmul
peak, coherent sampling, the PyTorch reference, population training, the paper workload) on
the CPU in seconds, in a subprocess as it is run on the device, with the packages the GPU
machine lacks (ml_collections, scikit-survival, mofapy2) made unimportable.
"""

import json
import math
import os
import subprocess
import sys

import pytest

pytestmark = pytest.mark.slow  # trains models or runs scripts end to end

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SUITE = os.path.join(ROOT, "benchmarks", "gpu_suite.py")
ABSENT_ON_GPU = ("ml_collections", "sksurv", "mofapy2")
# Runs the suite as `python3 benchmarks/gpu_suite.py ...` would, those modules unimportable.
LAUNCH = """
import importlib.abc, runpy, sys

class Absent(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path, target=None):
        if name.split(".")[0] in {absent!r}:
            raise ModuleNotFoundError(f"No module named {{name!r}}", name=name)

sys.meta_path.insert(0, Absent())
sys.argv = [{suite!r}] + sys.argv[1:]
runpy.run_path({suite!r}, run_name="__main__")
"""


def _positive(value) -> bool:
    return isinstance(value, (int, float)) and math.isfinite(value) and value > 0


@pytest.fixture(scope="module")
def dry_run(tmp_path_factory):
    out = tmp_path_factory.mktemp("gpu_dry")
    env = dict(os.environ, JAX_PLATFORMS="cpu")
    proc = subprocess.run(
        [sys.executable, "-c", LAUNCH.format(absent=ABSENT_ON_GPU, suite=SUITE), "--dry_run",
         f"--out={out}"], cwd=ROOT, env=env, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    with open(out / "results.json") as f:
        results = json.load(f)
    return results, (out / "results.md").read_text(), proc.stdout


def test_dry_run_writes_every_section(dry_run):
    results, markdown, _ = dry_run
    for key in ("config", "seed", "versions", "device", "matmul_peak", "sampling", "training",
                "paper_generation", "torch_reference"):
        assert key in results, key
    assert results["config"]["dry_run"] is True
    assert results["device"]["backend"] == "cpu"
    assert results["versions"]["jax"]
    assert results["skipped"] == [] and results["errors"] == []
    for heading in ("## Matmul peak", "## Coherent sampling", "## Training",
                    "## Paper test-set generation", "## PyTorch reference"):
        assert heading in markdown, heading
    assert "DRY RUN" in markdown


def test_dry_run_numbers_are_finite_and_positive(dry_run):
    results, _, _ = dry_run
    peak = results["matmul_peak"]
    for name in ("fp32_default", "fp32_highest", "bf16"):
        assert _positive(peak[name]["tflops"]) and _positive(peak[name]["seconds"]), name
    assert peak["default_fp32_is"]

    cases = {(c["sampler"], c["K"], c["N"]) for c in results["sampling"]}
    config = results["config"]
    assert {"ddpm", config["few_sampler"]} == {s for s, _, _ in cases}
    assert {(config["n_sweep_k"], n) for n in config["n"]} <= {(k, n) for _, k, n in cases}
    for case in results["sampling"]:
        for key in ("seconds", "first_call_s", "samples_per_s", "tflops", "pct_peak",
                    "pct_peak_executed"):
            assert _positive(case[key]), (case, key)
        assert case["steps"] == (config["few_steps"] if case["sampler"] != "ddpm"
                                 else config["ddpm_steps"])

    assert [r["population"] for r in results["training"]] == config["train_sizes"]
    for row in results["training"]:
        assert _positive(row["model_steps_per_s"]) and _positive(row["pct_peak"])

    modes = [r["mode"] for r in results["paper_generation"]]
    assert modes == config["paper_modes"]
    for row in results["paper_generation"]:
        assert row["generations"] == (config["paper_targets"] * 14 * config["paper_draws"]
                                      * config["paper_patients"])
        assert _positive(row["seconds"]) and _positive(row["generations_per_s"])


def test_dry_run_torch_reference_or_reason(dry_run):
    results, markdown, _ = dry_run
    ref = results["torch_reference"]
    if results["versions"]["torch"] is None:  # not installed: the suite says so instead
        assert ref["available"] is False and "torch" in ref["reason"]
        assert ref["reason"] in markdown
        return
    assert ref["available"] is True and ref["device"] == "cpu"
    assert _positive(ref["sampling"]["seconds"])
    assert _positive(ref["training"]["model_steps_per_s"])
    assert "ours / reference" in markdown
