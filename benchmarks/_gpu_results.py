"""Timing and the results file of benchmarks/gpu_suite.py: `time_call` times one
measurement; `Results` holds the suite's clock, its budget and everything measured, and
rewrites results.json and results.md after each measurement."""

from __future__ import annotations

import argparse
import datetime
import importlib.metadata
import json
import math
import os
import platform
import statistics
import subprocess
import sys
import time
import traceback

import jax

from _gpu_report import render_markdown
from _machine import COND_DIM, ForeignLoad, Timing, denoiser_flops, describe_machine


def time_call(fn, repeats: int, max_timed_s: float, sync=None) -> tuple[float, Timing]:
    """(seconds of the first call, incl. compilation; median Timing of up to `repeats` calls).

    Unlike _machine.time_it this does not wait for a quiet CPU before each call (the work is
    on the accelerator, and its 0.25 s probe per call would eat the budget); it still reports
    the foreign CPU load seen during the timed calls.
    """
    def run():
        jax.block_until_ready(fn())
        if sync is not None:
            sync()

    start = time.perf_counter()
    run()
    first = time.perf_counter() - start
    times, loads = [], []
    while len(times) < max(1, repeats):
        with ForeignLoad() as load:
            start = time.perf_counter()
            run()
            times.append(time.perf_counter() - start)
        loads.append(load.cores)
        if sum(times) >= max_timed_s:
            break
    foreign = max((c for c in loads if not math.isnan(c)), default=float("nan"))
    return first, Timing(seconds=statistics.median(times), kept=len(times), discarded=0,
                         foreign=foreign)


def _version(dist: str) -> str | None:
    try:
        return importlib.metadata.version(dist)
    except importlib.metadata.PackageNotFoundError:
        return None


def _nvidia_smi() -> str | None:
    try:
        out = subprocess.run(
            ["nvidia-smi", "--query-gpu=name,driver_version,memory.total,clocks.max.sm,"
             "power.limit", "--format=csv,noheader"], capture_output=True, text=True, timeout=15)
    except (OSError, subprocess.SubprocessError):
        return None
    return out.stdout.strip() or None


class Results:
    """Everything measured, written to results.json and results.md after each measurement.

    `t0` is the suite's start (`time.perf_counter()` before its imports): the budget and the
    log's clock count from it. `missing_for_init` is the optional package whose absence made
    `coherent_jax/__init__` fail (None when it imported)."""

    def __init__(self, args: argparse.Namespace, t0: float, missing_for_init: str | None):
        self.args = args
        self.t0 = t0
        os.makedirs(args.out, exist_ok=True)
        device = jax.devices()[0]
        self.data = {
            "startup_s": time.perf_counter() - t0,  # interpreter imports and device start
            "suite": "benchmarks/gpu_suite.py",
            "command": " ".join([os.path.basename(sys.executable)] + sys.argv),
            "date": datetime.datetime.now().isoformat(timespec="seconds"),
            "config": dict(vars(args)),
            "seed": args.seed,
            "versions": {"python": platform.python_version(),
                         **{d: _version(d) for d in (
                             "jax", "jaxlib", "jax-cuda12-plugin", "jax-cuda13-plugin", "flax",
                             "optax", "numpy", "torch")}},
            "device": {"backend": jax.default_backend(), "kind": device.device_kind,
                       "count": jax.device_count(), "platform": device.platform,
                       "compute_capability": getattr(device, "compute_capability", None),
                       "nvidia_smi": _nvidia_smi() if jax.default_backend() == "gpu" else None},
            "machine": describe_machine(),
            "env": {k: os.environ.get(k) for k in ("XLA_FLAGS", "XLA_PYTHON_CLIENT_MEM_FRACTION",
                                                   "JAX_PLATFORMS")},
            "jax_default_matmul_precision": getattr(jax.config, "jax_default_matmul_precision",
                                                    None),
            "coherent_jax": os.path.dirname(os.path.dirname(
                sys.modules["coherent_jax.engine.sampling"].__file__)),
            "coherent_jax_init_skipped_for": missing_for_init,
            "model": {"arch": args.arch, "cond_dim": COND_DIM,
                      "mflop_per_row_member_step": denoiser_flops(**args.arch) / 1e6,
                      "mflop_per_row_member_step_folded":
                          denoiser_flops(**args.arch, time_folded=True) / 1e6},
            "matmul_peak": {}, "sampling": [], "torch_reference": {}, "training": [],
            "paper_generation": [], "skipped": [], "errors": [], "wall_s": 0.0,
        }

    def elapsed(self) -> float:
        """Seconds since the suite started (what --budget_s bounds)."""
        return time.perf_counter() - self.t0

    def log(self, msg: str) -> None:
        """Prints with the seconds since the suite started (imports included)."""
        print(f"[{self.elapsed():6.1f} s] {msg}", flush=True)

    def within_budget(self, what: str, flops: float = 0.0) -> bool:
        """Whether to start a measurement: the budget is not spent, and a first call plus one
        timed call of `flops` (executed) at the best sampling rate seen so far fit in it."""
        rates = [c["tflops_executed"] * 1e12 for c in self.data["sampling"]]
        predicted = 2 * flops / max(rates) if rates and flops else 0.0
        if self.elapsed() + predicted < self.args.budget_s:
            return True
        self.data["skipped"].append(
            f"{what} (budget of {self.args.budget_s:.0f} s: {self.elapsed():.0f} s spent"
            + (f", {predicted:.0f} s predicted)" if predicted else ")"))
        self.write()
        self.log(f"skipped {self.data['skipped'][-1]}")
        return False

    def peak_tflops(self) -> float:
        """The default-precision fp32 peak (what the library's fp32 matmuls run at)."""
        return self.data["matmul_peak"]["fp32_default"]["tflops"]

    def guard(self, what: str, fn, *args) -> None:
        """Runs one measurement; an exception is recorded (and printed), and the run goes on."""
        try:
            fn(*args)
        except Exception as err:  # pylint: disable=broad-except  (one failure, not the run)
            traceback.print_exc()
            self.data["errors"].append(f"{what} failed: {type(err).__name__}: {err}"[:2000])
            self.write()

    def write(self) -> None:
        """Rewrites results.json and results.md (beside, then renamed into place)."""
        self.data["wall_s"] = self.elapsed()
        for name, text in (("results.json", json.dumps(_finite(self.data), indent=1,
                                                       default=str)),
                           ("results.md", render_markdown(self.data))):
            path = os.path.join(self.args.out, name)
            with open(path + ".tmp", "w") as f:
                f.write(text + "\n")
            os.replace(path + ".tmp", path)


def _finite(tree):
    """NaN and inf -> None (strict JSON)."""
    if isinstance(tree, dict):
        return {k: _finite(v) for k, v in tree.items()}
    if isinstance(tree, (list, tuple)):
        return [_finite(v) for v in tree]
    if isinstance(tree, float) and not math.isfinite(tree):
        return None
    return tree

