"""One-GPU benchmark suite: matmul peak, coherent sampling, population training, the paper's
whole test-set generation and the PyTorch reference loop, in one run of a few minutes.

    python3 benchmarks/gpu_suite.py --out=gpu_results   # one GPU, ~4-5 min (--budget_s=240)
    python3 benchmarks/gpu_suite.py --out=/tmp/gpu_dry --dry_run   # every part, tiny, CPU

Writes DIR/results.json (config, seed, versions, device, every measurement) and DIR/results.md
(markdown tables), rewritten after each measurement so a run cut short keeps what it finished.

Parts, in the order they run (most important first). A measurement is skipped, and listed as
skipped, once `--budget_s` seconds have passed since the suite started, or when a first and
a timed call of it, predicted from its FLOPs at the best sampling rate seen so far, would
pass them. The sampling cases the issue's targets name run first; the rest of the grid and
the paper workload's batched layout after the training and the grouped layout.
  peak      the device's matmul throughput from a chain of [S, S] @ [S, S] jnp.dot products:
            fp32 with default precision (TF32 tensor cores on Ampere/Hopper GPUs: the suite
            says which from the measured ratio), fp32 with precision=HIGHEST, and bf16.
  sampling  coherent_jax.engine.sampling.coherent_sample with the folded sampling form `impute` uses
            (models/folded.py), per-sample availability weights as `impute` builds them, over
            N (patients) at K = 3 and over K (specialists) at N = 10,000, for DDPM with the
            full T-step chain and a few-step sampler (DDIM 50). samples/s, model TFLOP/s and %
            of the default-precision fp32 peak: FLOPs are counted as in the CPU benchmarks
            (the plain norm_mlp's matmuls, benchmarks/_machine.denoiser_flops), and also as the
            folded form executes them (25% fewer).
  torch     benchmarks/reference_torch.py (the paper's eager loop) on the same device, when
            torch can use it: coherent sampling at N = 1,350, K = 3, T = 1,000, and the
            one-model-per-process training loop (one model, one eager Adam step at a time).
  training  coherent_jax.engine.train.scan_train_steps on a population of P members (specialists x seeds x
            learning rates, as coherent_jax.engine.population builds them) in ONE vmapped step,
            P = 1 ... 64; model-steps/s = P x steps / s.
  paper     the paper's whole test-set generation (4 targets x 14 source subsets x 10 draws x
            1,350 patients, DDPM-1000: 756,000 patient generations) with
            benchmarks/bench_paper_generation.py's grouped (and, budget allowing, batched)
            calls in the folded form; one timed number after a first call that compiles.

Models are random paper-size norm_mlp denoisers (hidden 512, 5 layers, E 128: 1.13M parameters
each; benchmarks/_machine.PAPER_ARCH) initialised in JAX, so only the torch part needs torch.
Timing: a first call (compilation), then the median of up to `--repeats` calls, each ended by
`jax.block_until_ready` (torch: `torch.cuda.synchronize`).

The repository root is put on sys.path here (coherent_jax need not be installed). If
`import coherent_jax` fails on an optional package its __init__ pulls in, the suite loads
the submodules it needs without that __init__ and says so.
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import datetime
import functools
import importlib
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
import types
import warnings

_T0 = time.perf_counter()
if "--dry_run" in sys.argv[1:]:  # before jax is imported: the dry run is CPU only, and
    os.environ["JAX_PLATFORMS"] = "cpu"  # compiles without LLVM optimisation (2-3x faster)
    os.environ["XLA_FLAGS"] = (os.environ.get("XLA_FLAGS", "")
                               + " --xla_backend_optimization_level=0").strip()
# JAX takes 75% of the GPU's memory at start by default; leave room for torch's reference.
os.environ.setdefault("XLA_PYTHON_CLIENT_MEM_FRACTION", "0.6")

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
for _path in (os.path.join(REPO, "benchmarks"), REPO):
    if _path not in sys.path:
        sys.path.insert(0, _path)


def _import_coherent_jax() -> str | None:
    """Imports the coherent_jax package; returns None, or the optional module whose absence
    made the package __init__ fail (its submodules are then imported without that __init__)."""
    try:
        importlib.import_module("coherent_jax")
        return None
    except ImportError as err:
        missing = (err.name or "").split(".")[0]
        if not missing or missing == "coherent_jax":
            raise
        shell = types.ModuleType("coherent_jax")
        shell.__path__ = [os.path.join(REPO, "coherent_jax")]
        sys.modules["coherent_jax"] = shell
        return missing


_MISSING_FOR_INIT = _import_coherent_jax()

import jax  # noqa: E402  (after the environment above)
import jax.numpy as jnp  # noqa: E402
import numpy as np  # noqa: E402

from _machine import (COND_DIM, PAPER_ARCH, ForeignLoad, Specialists, Timing,  # noqa: E402
                      denoiser_flops, describe_machine, fmt_table)
from coherent_jax.engine.fusion import availability_weights  # noqa: E402
from coherent_jax.engine.denoiser import Condition, Denoiser, init_denoiser  # noqa: E402
from coherent_jax.engine.folded import fold_members  # noqa: E402
from coherent_jax.engine.population import Population, init_population, population_data  # noqa: E402
from coherent_jax.engine.sampling import (CoherentConfig, Members, SamplerConfig,  # noqa: E402
                                   coherent_sample)
from coherent_jax.engine.schedules import linear_schedule  # noqa: E402
from coherent_jax.engine.train import TrainConfig, make_member_data, scan_train_steps  # noqa: E402

TRAIN_ROWS = 8305  # the paper's training split size, as benchmarks/bench_train.py
LEARNING_RATES = (1e-3, 1e-4)  # the paper's random-search learning rates
NUM_SOURCES = 3  # specialists per target in the population and the paper workload
DRY_ARCH = dict(PAPER_ARCH, hidden_dim=32, num_layers=3, time_embed_dim=16, cond_embed_dim=8)

# Issue 14's targets on one H100, checked in results.md.
TARGET_SPEEDUP_SAMPLING = 10.0
TARGET_PEAK_SHARE = 50.0
TARGET_PAPER_S = 60.0
TARGET_SPEEDUP_TRAINING = 20.0


# ----------------------------------------------------------------------------------------------
# Configuration


def parse_args(argv=None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0], allow_abbrev=False,
                                formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    p.add_argument("--out", required=True, help="folder for results.json and results.md")
    p.add_argument("--dry_run", action="store_true",
                   help="every part with tiny sizes on the CPU (seconds); overrides the sizes")
    p.add_argument("--budget_s", type=float, default=240.0,
                   help="start no measurement that would end after this many seconds")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--repeats", type=int, default=3, help="timed calls per measurement (median)")
    p.add_argument("--max_timed_s", type=float, default=4.0,
                   help="stop repeating a measurement once its timed calls took this long")
    p.add_argument("--peak_size", type=int, default=8192, help="S of the [S, S] matmuls")
    p.add_argument("--peak_chain", type=int, default=8, help="matmuls per timed call")
    p.add_argument("--n", type=int, nargs="+", default=[10, 100, 1350, 10000, 100000],
                   help="sampling: numbers of patients N (at K = --n_sweep_k)")
    p.add_argument("--n_sweep_k", type=int, default=3)
    p.add_argument("--k", type=int, nargs="+", default=[2, 3, 7, 14],
                   help="sampling: numbers of specialists K (at N = --k_sweep_n)")
    p.add_argument("--k_sweep_n", type=int, default=10000)
    p.add_argument("--corner", type=int, nargs=2, default=[14, 100000], metavar=("K", "N"),
                   help="one more (K, N) sampling case, the largest (DDPM last of all)")
    p.add_argument("--ddpm_steps", type=int, default=1000, help="T of the schedule and of DDPM")
    p.add_argument("--few_sampler", default="ddim", help="the few-step sampler's name")
    p.add_argument("--few_steps", type=int, default=50)
    p.add_argument("--train_sizes", type=int, nargs="+", default=[36, 1, 64, 16, 4],
                   help="population sizes P (run in this order)")
    p.add_argument("--train_batch", type=int, default=128)
    p.add_argument("--train_steps", type=int, default=200, help="optimizer steps per timed call")
    p.add_argument("--train_rows", type=int, default=TRAIN_ROWS)
    p.add_argument("--paper_modes", nargs="+", default=["grouped", "batched"],
                   choices=["grouped", "batched"], help="bench_paper_generation call layouts")
    p.add_argument("--paper_targets", type=int, default=4)
    p.add_argument("--paper_patients", type=int, default=1350)
    p.add_argument("--paper_draws", type=int, default=10)
    p.add_argument("--torch_n", type=int, default=1350)
    p.add_argument("--torch_k", type=int, default=3)
    p.add_argument("--no_torch", action="store_true", help="skip the PyTorch reference")
    args = p.parse_args(argv)
    args.arch = dict(DRY_ARCH if args.dry_run else PAPER_ARCH)
    if args.dry_run:
        args.__dict__.update(
            budget_s=float("inf"), repeats=2, max_timed_s=1.0, peak_size=128, peak_chain=2,
            n=[5], n_sweep_k=3, k=[2], k_sweep_n=5, corner=[2, 5], ddpm_steps=8,
            few_steps=3, train_sizes=[2], train_batch=8, train_steps=3, train_rows=64,
            paper_targets=1, paper_patients=6, paper_draws=2, torch_n=5, torch_k=3)
    return args


# ----------------------------------------------------------------------------------------------
# Timing and results


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
    """Everything measured, written to results.json and results.md after each measurement."""

    def __init__(self, args: argparse.Namespace):
        self.args = args
        os.makedirs(args.out, exist_ok=True)
        device = jax.devices()[0]
        self.data = {
            "startup_s": time.perf_counter() - _T0,  # interpreter imports and device start
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
            "coherent_jax": os.path.dirname(sys.modules["coherent_jax.engine.sampling"].__file__),
            "coherent_jax_init_skipped_for": _MISSING_FOR_INIT,
            "model": {"arch": args.arch, "cond_dim": COND_DIM,
                      "mflop_per_row_member_step": denoiser_flops(**args.arch) / 1e6,
                      "mflop_per_row_member_step_folded":
                          denoiser_flops(**args.arch, time_folded=True) / 1e6},
            "matmul_peak": {}, "sampling": [], "torch_reference": {}, "training": [],
            "paper_generation": [], "skipped": [], "errors": [], "wall_s": 0.0,
        }

    def elapsed(self) -> float:
        """Seconds since the suite started (what --budget_s bounds)."""
        return time.perf_counter() - _T0

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
        log(f"skipped {self.data['skipped'][-1]}")
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


def log(msg: str) -> None:
    """Prints with the seconds since the suite started (imports included)."""
    print(f"[{time.perf_counter() - _T0:6.1f} s] {msg}", flush=True)


# ----------------------------------------------------------------------------------------------
# Models


def jax_members(arch: dict, num_members: int, diffusion_steps: int, seed: int,
                cond_dims=(COND_DIM,)) -> Specialists:
    """K random denoisers initialised in JAX (no torch), stacked and folded for a schedule of
    `diffusion_steps` as `impute` folds them (TargetModels.sampling_specialists)."""
    model = Denoiser(**arch)
    keys = jax.random.split(jax.random.key(seed), num_members)
    params = jax.jit(jax.vmap(lambda k: init_denoiser(model, k, list(cond_dims))))(keys)
    folded_apply, folded_params = fold_members(model, params, diffusion_steps)
    return Specialists(torch_models=[], model=model, params=params, folded_apply=folded_apply,
                       folded_params=folded_params, schedule=linear_schedule(diffusion_steps))


def first_members(spec: Specialists, start: int, k: int) -> Specialists:
    """Members start .. start + k - 1 of a pool (one init and fold for every case)."""
    take = lambda tree: jax.tree.map(lambda a: a[start:start + k], tree)
    return dataclasses.replace(spec, params=take(spec.params),
                               folded_params=take(spec.folded_params))


def val_losses(k: int) -> np.ndarray:
    """Stand-in validation MSEs of K specialists (their softmax(1/MSE) fusion weights)."""
    return np.linspace(0.30, 0.50, k)


# ----------------------------------------------------------------------------------------------
# Parts


def measure_peak(res: Results) -> None:
    """Chained [S, S] @ [S, S] products in one jit (fp32 default, fp32 HIGHEST, bf16)."""
    args = res.args
    size, chain = args.peak_size, args.peak_chain
    key_a, key_b = jax.random.split(jax.random.key(args.seed))
    a32 = jax.random.normal(key_a, (size, size), jnp.float32)
    b32 = jax.random.normal(key_b, (size, size), jnp.float32) / math.sqrt(size)  # keeps scale
    cases = (("fp32_default", jnp.float32, None), ("fp32_highest", jnp.float32,
                                                    jax.lax.Precision.HIGHEST),
             ("bf16", jnp.bfloat16, None))
    for name, dtype, precision in cases:
        @jax.jit
        def chained(a, b, precision=precision):
            return jax.lax.fori_loop(0, chain, lambda i, x: jnp.dot(x, b, precision=precision), a)

        a, b = a32.astype(dtype), b32.astype(dtype)
        first, timing = time_call(lambda: chained(a, b), args.repeats, args.max_timed_s)
        flops = chain * 2.0 * size ** 3
        res.data["matmul_peak"][name] = {
            "size": size, "chain": chain, "dtype": jnp.dtype(dtype).name,
            "precision": "HIGHEST" if precision else "DEFAULT", "first_call_s": first,
            "seconds": timing.seconds, "repeats": timing.kept,
            "tflops": flops / timing.seconds / 1e12}
        log(f"peak {name}: {flops / timing.seconds / 1e12:.1f} TFLOP/s")
    peak = res.data["matmul_peak"]
    ratio = peak["fp32_default"]["tflops"] / peak["fp32_highest"]["tflops"]
    if jax.default_backend() == "gpu":
        used = ("TF32 tensor cores" if ratio > 1.8 else "full fp32") + (
            f" (default precision ran {ratio:.1f}x the precision=HIGHEST throughput)")
    else:
        used = f"{jax.default_backend()} fp32 (default/HIGHEST throughput ratio {ratio:.2f})"
    peak["default_fp32_is"] = used
    peak["default_over_highest"] = ratio
    res.write()


class Sampling:
    """Coherent sampling cases; K specialists are the first K of one pool."""

    def __init__(self, res: Results, pool: Specialists):
        self.res = res
        self.pool = pool

    def case(self, sampler: str, k: int, n: int) -> None:
        res, args = self.res, self.res.args
        few = sampler != "ddpm"
        label = f"sampling {sampler} K={k} N={n}"
        steps = args.few_steps if few else args.ddpm_steps
        if not res.within_budget(label, denoiser_flops(**args.arch, time_folded=True)
                                 * k * n * steps):
            return
        spec = first_members(self.pool, 0, k)
        rng = np.random.default_rng(args.seed + 1)
        member_conds = Condition.of(
            jnp.asarray(rng.standard_normal((k, n, COND_DIM), dtype=np.float32)),
            mask=jnp.ones((k, n, 1), jnp.float32))
        weights = availability_weights(val_losses(k), np.ones((n, k), bool))  # [N, K]
        key = jax.random.key(args.seed)
        chain = SamplerConfig(sampler, args.few_steps if few else None)
        fn = lambda: coherent_sample(
            spec.folded_apply, Members(spec.folded_params, member_conds, weights), spec.schedule,
            key, shape=(n, args.arch["data_dim"]), config=CoherentConfig(chain))
        first, timing = time_call(fn, args.repeats, args.max_timed_s)
        rate = k * n * steps / timing.seconds / 1e12  # 1e12 member-row-steps per second
        plain, folded = denoiser_flops(**args.arch), denoiser_flops(**args.arch, time_folded=True)
        peak = res.peak_tflops()
        res.data["sampling"].append({
            "sampler": sampler, "steps": steps, "K": k, "N": n, "first_call_s": first,
            "seconds": timing.seconds, "repeats": timing.kept, "samples_per_s": n / timing.seconds,
            "tflops": plain * rate, "pct_peak": 100 * plain * rate / peak,
            "tflops_executed": folded * rate, "pct_peak_executed": 100 * folded * rate / peak,
            "foreign_cores": timing.foreign})
        res.write()
        log(f"{label}: {timing.seconds:.4g} s, {n / timing.seconds:.4g} samples/s "
            f"(first call {first:.2f} s)")


def measure_training(res: Results, sizes) -> None:
    """Populations of P members (member x seed x learning rate) in ONE vmapped step."""
    args = res.args
    rng = np.random.default_rng(args.seed)
    target = rng.standard_normal((args.train_rows, args.arch["data_dim"])).astype(np.float32)
    conds = [Condition.of(jnp.asarray(rng.standard_normal((args.train_rows, COND_DIM),
                                                          dtype=np.float32)))
             for _ in range(NUM_SOURCES)]
    data = make_member_data(target, np.ones(args.train_rows, bool), conds)
    model, schedule = Denoiser(**args.arch), linear_schedule(args.ddpm_steps)
    for p in sizes:
        if not res.within_budget(f"training P={p}"):
            continue
        trial = np.arange(p)
        population = Population(
            member=(trial % NUM_SOURCES).astype(np.int32),
            seed=(args.seed + trial // NUM_SOURCES).astype(np.int64),
            learning_rate=np.asarray(LEARNING_RATES, np.float32)[
                (trial // NUM_SOURCES) % len(LEARNING_RATES)])
        state = jax.jit(lambda: init_population(  # one compiled init, not op by op
            model, schedule, population, cond_dims=[COND_DIM],
            config=TrainConfig(batch_size=args.train_batch)))()
        pdata = population_data(data, population)
        key = jax.random.key(args.seed + 1)

        def run():
            nonlocal state  # scan_train_steps donates the state: thread it through the calls
            state, metrics = scan_train_steps(state, pdata, key, args.train_steps)
            return metrics

        first, timing = time_call(run, args.repeats, args.max_timed_s)
        model_steps = p * args.train_steps
        flops = 3 * denoiser_flops(**args.arch) * args.train_batch * model_steps
        res.data["training"].append({
            "population": p, "batch": args.train_batch, "steps_per_call": args.train_steps,
            "first_call_s": first, "seconds": timing.seconds, "repeats": timing.kept,
            "model_steps_per_s": model_steps / timing.seconds,
            "tflops": flops / timing.seconds / 1e12,
            "pct_peak": 100 * flops / timing.seconds / 1e12 / res.peak_tflops(),
            "foreign_cores": timing.foreign})
        res.write()
        log(f"training P={p}: {model_steps / timing.seconds:.4g} model-steps/s "
            f"(first call {first:.2f} s)")


def _torch_device(res: Results):
    """(torch, device, None) when torch can run on the device JAX uses, else (None, None, why)."""
    if res.args.no_torch:
        return None, None, "the PyTorch reference was skipped (--no_torch)"
    try:
        import torch  # pylint: disable=import-outside-toplevel
    except Exception as err:  # pylint: disable=broad-except  (absent, or its CUDA libs broken)
        return None, None, (f"torch is not importable here ({type(err).__name__}: {err}); "
                            "no PyTorch reference")
    if jax.default_backend() == "gpu":
        if not torch.cuda.is_available():
            return None, None, (f"torch {torch.__version__} is installed but CUDA is not "
                                "available to it; no PyTorch reference on the GPU")
        return torch, torch.device("cuda"), None
    if jax.default_backend() == "cpu":
        return torch, torch.device("cpu"), None
    return None, None, f"no torch device for JAX backend {jax.default_backend()!r}"


class _TorchOn:
    """`torch` as benchmarks/reference_torch.py should see it to run on `device`: its factory
    calls (randn, full, zeros, arange, randint, ...) get `device=`, everything else is torch.

    reference_torch allocates with factory calls that take no device (it was written for the
    CPU). `with torch.device(...)` would place them too, but through a TorchFunctionMode that
    intercepts every op: measured 1.75x slower on this Python-overhead-bound loop, which would
    flatter ours. This wrapper costs nothing measurable.
    """

    FACTORIES = ("arange", "empty", "full", "ones", "rand", "randint", "randn", "zeros")

    def __init__(self, torch, device):
        self._torch = torch
        for name in self.FACTORIES:
            setattr(self, name, functools.partial(getattr(torch, name), device=device))

    def __getattr__(self, name):
        return getattr(self._torch, name)


@contextlib.contextmanager
def _reference_on(reference_torch, torch, device):
    """reference_torch's loops allocate on `device` inside the block."""
    saved = reference_torch.torch
    reference_torch.torch = _TorchOn(torch, device)
    try:
        yield
    finally:
        reference_torch.torch = saved


def measure_torch(res: Results) -> None:
    """The paper's eager loop (benchmarks/reference_torch.py) on the same device."""
    args = res.args
    torch, device, why = _torch_device(res)
    ref = res.data["torch_reference"]
    if torch is None:
        ref.update(available=False, reason=why)
        res.write()
        log(why)
        return
    import reference_torch  # pylint: disable=import-outside-toplevel  (needs torch)

    sync = torch.cuda.synchronize if device.type == "cuda" else None
    if args.dry_run:
        torch.set_num_threads(1)  # tiny ops on a shared CPU: threads only wait for each other
    ref.update(available=True, device=str(device),
               device_name=(torch.cuda.get_device_name(device) if device.type == "cuda"
                            else "cpu"), torch=torch.__version__,
               cuda=torch.version.cuda,
               allow_tf32=bool(torch.backends.cuda.matmul.allow_tf32),
               float32_matmul_precision=torch.get_float32_matmul_precision())
    arch = {k: v for k, v in args.arch.items() if k != "data_dim"}
    data_dim = args.arch["data_dim"]
    torch.manual_seed(args.seed)
    if res.within_budget("torch sampling"):
        k, n = args.torch_k, args.torch_n
        # Built on the CPU (random_norm_mlp draws with a CPU generator), then moved.
        models = [reference_torch.random_norm_mlp(args.seed + j, data_dim, [COND_DIM],
                                                  num_steps=args.ddpm_steps, **arch).to(device)
                  for j in range(k)]
        generator = torch.Generator(device=device).manual_seed(args.seed)
        conds = [torch.randn((n, COND_DIM), generator=generator, device=device)
                 for _ in range(k)]
        weights = reference_torch.softmax_inverse_weights(val_losses(k).tolist()).to(device)
        with _reference_on(reference_torch, torch, device):
            first, timing = time_call(lambda: reference_torch.coherent_sample(
                models, conds, weights, n, data_dim, generator=generator)[0].sum().item(),
                args.repeats, args.max_timed_s, sync=sync)
        ref["sampling"] = {"sampler": "ddpm", "steps": args.ddpm_steps, "K": k, "N": n,
                           "first_call_s": first, "seconds": timing.seconds,
                           "repeats": timing.kept, "samples_per_s": n / timing.seconds}
        res.write()
        log(f"torch sampling K={k} N={n} T={args.ddpm_steps}: {timing.seconds:.3g} s")
    if res.within_budget("torch training"):
        rng = np.random.default_rng(args.seed)
        model = reference_torch.NormMLP(data_dim, [COND_DIM], **arch).to(device)
        optimizer = torch.optim.Adam(model.parameters(), lr=LEARNING_RATES[0])
        x0 = torch.from_numpy(rng.standard_normal((args.train_rows, data_dim),
                                                  dtype=np.float32)).to(device)
        cond = torch.from_numpy(rng.standard_normal((args.train_rows, COND_DIM),
                                                    dtype=np.float32)).to(device)
        generator = torch.Generator(device=device).manual_seed(args.seed)
        with _reference_on(reference_torch, torch, device):
            first, timing = time_call(lambda: reference_torch.train_steps(
                model, optimizer, x0, cond, args.train_batch, args.train_steps, generator),
                args.repeats, args.max_timed_s, sync=sync)
        ref["training"] = {"models": 1, "batch": args.train_batch,
                           "steps_per_call": args.train_steps, "first_call_s": first,
                           "seconds": timing.seconds, "repeats": timing.kept,
                           "model_steps_per_s": args.train_steps / timing.seconds}
        res.write()
        log(f"torch training: {args.train_steps / timing.seconds:.4g} model-steps/s")


class PaperTarget:
    """What bench_paper_generation's run_grouped / run_batched read from its Target (3
    specialists, 1 multi-condition model, the patients' sources, a key), with JAX-initialised
    models taken from pools (its Target builds them in torch)."""

    def __init__(self, index: int, specialists: Specialists, multi: Specialists, patients: int,
                 seed: int):
        self.specialists = first_members(specialists, NUM_SOURCES * index, NUM_SOURCES)
        self.multi = first_members(multi, index, 1)
        rng = np.random.default_rng(seed + index)
        self.sources = rng.standard_normal((NUM_SOURCES, patients, COND_DIM)).astype(np.float32)
        self.key = jax.random.key(seed + index)


def _import_paper_module():
    """benchmarks/bench_paper_generation.py imports torch at module level for its reference
    loop, which this suite does not call: where torch cannot be imported, it is imported
    against empty stand-ins for torch and reference_torch."""
    try:
        return importlib.import_module("bench_paper_generation")
    except Exception as err:  # pylint: disable=broad-except
        if "torch" in sys.modules and sys.modules["torch"] is not None:
            raise  # torch works: the failure is the module's own
        log(f"bench_paper_generation without torch ({type(err).__name__}: {err})")
    sys.modules.pop("bench_paper_generation", None)
    absent = object()
    saved = {name: sys.modules.pop(name, absent) for name in ("torch", "reference_torch")}
    sys.modules.update({name: types.ModuleType(name) for name in saved})
    try:
        return importlib.import_module("bench_paper_generation")
    finally:
        for name, module in saved.items():
            if module is absent:
                sys.modules.pop(name, None)
            else:
                sys.modules[name] = module


def measure_paper(res: Results, modes, pool: Specialists) -> None:
    """The paper's whole test-set generation, folded form, one timed call per mode; the
    specialists of target i are members 3i .. 3i + 2 of `pool`."""
    args = res.args
    paper = _import_paper_module()
    targets = None
    generations = args.paper_targets * len(paper.SUBSETS) * 2 * args.paper_draws \
        * args.paper_patients
    sizes = [len(s) for s in paper.SUBSETS]
    for mode in modes:
        # member forwards per patient-draw-step: the specialists (all K on every row when
        # batched) and the multi-condition model once per subset
        forwards = (sum(sizes) if mode == "grouped" else NUM_SOURCES * len(sizes)) + len(sizes)
        flops = (denoiser_flops(**args.arch, time_folded=True) * forwards * args.paper_targets
                 * args.paper_draws * args.paper_patients * args.ddpm_steps)
        if not res.within_budget(f"paper generation {mode}", flops):
            continue
        if targets is None:
            multi = jax_members(args.arch, args.paper_targets, args.ddpm_steps, args.seed + 50,
                                cond_dims=(COND_DIM,) * NUM_SOURCES)
            targets = [PaperTarget(i, pool, multi, args.paper_patients, args.seed)
                       for i in range(args.paper_targets)]
        fn = paper.run_grouped if mode == "grouped" else paper.run_batched
        first, timing = time_call(lambda: fn(targets, args.paper_draws, True), 1, 0.0)
        res.data["paper_generation"].append({
            "mode": mode, "form": "folded", "targets": args.paper_targets,
            "subsets": 2 * len(paper.SUBSETS), "draws": args.paper_draws,
            "patients": args.paper_patients, "steps": args.ddpm_steps, "generations": generations,
            "first_call_s": first, "seconds": timing.seconds,
            "generations_per_s": generations / timing.seconds})
        res.write()
        log(f"paper generation {mode}: {timing.seconds:.3g} s (first call {first:.1f} s)")


# ----------------------------------------------------------------------------------------------
# Report


def _targets(data: dict) -> list[list]:
    """Issue 14's targets on one H100: measured value, goal, met."""
    rows = []
    ref = data.get("torch_reference", {})
    ours = {(c["sampler"], c["K"], c["N"]): c for c in data["sampling"]}
    if ref.get("sampling"):
        s = ref["sampling"]
        mine = ours.get(("ddpm", s["K"], s["N"]))
        if mine:
            x = s["seconds"] / mine["seconds"]
            rows.append([f"coherent sampling vs reference loop, N = {s['N']}, K = {s['K']}, "
                         f"T = {s['steps']}", f"{x:.1f}x", f">= {TARGET_SPEEDUP_SAMPLING:.0f}x",
                         "yes" if x >= TARGET_SPEEDUP_SAMPLING else "no"])
    big = [c for c in data["sampling"] if c["N"] >= 10000]
    if big:
        best = max(big, key=lambda c: c["pct_peak_executed"])
        rows.append([f"% of default-fp32 matmul peak at N >= 10,000 (best: {best['sampler']}, "
                     f"K = {best['K']}, N = {best['N']}; executed FLOPs / model FLOPs)",
                     f"{best['pct_peak_executed']:.0f}% / {best['pct_peak']:.0f}%",
                     f">= {TARGET_PEAK_SHARE:.0f}%",
                     "yes" if best["pct_peak_executed"] >= TARGET_PEAK_SHARE else
                     "model FLOPs only" if best["pct_peak"] >= TARGET_PEAK_SHARE else "no"])
    if data["paper_generation"]:
        best = min(data["paper_generation"], key=lambda r: r["seconds"])
        full = best["generations"] == 4 * 14 * 10 * 1350 and best["steps"] == 1000
        rows.append([f"the paper's whole test-set generation ({best['mode']}"
                     f"{'' if full else ', NOT the full workload'})", f"{best['seconds']:.3g} s",
                     f"< {TARGET_PAPER_S:.0f} s",
                     "yes" if best["seconds"] < TARGET_PAPER_S and full else "no"])
    if ref.get("training") and data["training"]:
        train = {r["population"]: r for r in data["training"]}
        p = 36 if 36 in train else max(train)
        x = train[p]["model_steps_per_s"] / ref["training"]["model_steps_per_s"]
        rows.append([f"training a {p}-member population vs the one-model loop (model-steps/s)",
                     f"{x:.1f}x", f">= {TARGET_SPEEDUP_TRAINING:.0f}x (P = 36)",
                     "yes" if x >= TARGET_SPEEDUP_TRAINING and p == 36 else "no"])
    return rows


def render_markdown(data: dict) -> str:
    dev = data["device"]
    out = [f"# GPU suite: {dev['kind']} ({dev['backend']})", "",
           f"`{data['command']}`, {data['date']}, seed {data['seed']}, wall "
           f"{data['wall_s']:.0f} s" + (" (DRY RUN: tiny sizes on the CPU, not a measurement "
                                         "of anything)" if data["config"]["dry_run"] else ""),
           "", "```", data["machine"]]
    out += [f"{k} {v}" for k, v in data["versions"].items() if v and k not in ("jax", "python")]
    if dev.get("nvidia_smi"):
        out.append(f"nvidia-smi: {dev['nvidia_smi']}")
    if data.get("coherent_jax_init_skipped_for"):
        out.append("coherent_jax/__init__ skipped: it needs "
                   f"{data['coherent_jax_init_skipped_for']}")
    out += ["```", ""]
    m = data["model"]
    out.append(f"Model: random norm_mlp {m['arch']}, condition width {m['cond_dim']}: "
               f"{m['mflop_per_row_member_step']:.2f} MFLOP per row, member and step "
               f"({m['mflop_per_row_member_step_folded']:.2f} in the folded form).")

    out += ["", "## Matmul peak", ""]
    peak = data["matmul_peak"]
    if "fp32_default" in peak:
        rows = [[name, r["dtype"], r["precision"], f"{r['size']}^3 x {r['chain']}", r["seconds"],
                 r["tflops"]] for name, r in peak.items() if isinstance(r, dict)]
        out.append(fmt_table(["case", "dtype", "precision", "matmuls", "s", "TFLOP/s"], rows))
        out += ["", f"fp32 with default precision runs as: {peak.get('default_fp32_is', '?')}. "
                "Every % peak below is against the fp32 DEFAULT row (what the library's fp32 "
                "matmuls run at)."]

    out += ["", "## Coherent sampling", "",
            "`coherent_sample`, folded form, per-sample weights as `impute` builds them, one "
            "candidate. TFLOP/s and % peak count the plain model's FLOPs (as the CPU tables); "
            "'executed' counts the folded form's 25% fewer."]
    if data["sampling"]:
        rows = [[c["sampler"], c["steps"], c["K"], c["N"], c["first_call_s"], c["seconds"],
                 c["samples_per_s"], c["tflops"], f"{c['pct_peak']:.1f}",
                 f"{c['pct_peak_executed']:.1f}", c["repeats"]]
                for c in sorted(data["sampling"], key=lambda c: (c["sampler"] != "ddpm",
                                                                 c["sampler"], c["K"], c["N"]))]
        out += ["", fmt_table(["sampler", "steps", "K", "N", "first call s (incl. compile)", "s",
                               "samples/s", "TFLOP/s", "% peak", "% peak executed", "repeats"],
                              rows)]

    out += ["", "## Training", "",
            "`train_steps`: P members (specialists x seeds x learning rates) in ONE jitted, "
            "vmapped Adam step, steps in one lax.scan with batch drawing; TFLOP/s counts 3x the "
            "forward FLOPs."]
    if data["training"]:
        rows = [[r["population"], r["batch"], r["steps_per_call"], r["first_call_s"],
                 r["seconds"], r["model_steps_per_s"], r["tflops"], f"{r['pct_peak']:.1f}"]
                for r in sorted(data["training"], key=lambda r: r["population"])]
        out += ["", fmt_table(["P", "batch", "steps per call", "first call s (incl. compile)",
                               "s", "model-steps/s", "TFLOP/s", "% peak"], rows)]

    out += ["", "## Paper test-set generation", ""]
    if data["paper_generation"]:
        r0 = data["paper_generation"][0]
        out.append(f"{r0['targets']} targets x {r0['subsets']} source subsets x {r0['draws']} "
                   f"draws x {r0['patients']} patients, DDPM-{r0['steps']}: {r0['generations']:,} "
                   "patient generations (benchmarks/bench_paper_generation.py layouts, folded "
                   "form, rejection off).")
        rows = [[r["mode"], r["first_call_s"], r["seconds"], r["generations_per_s"]]
                for r in data["paper_generation"]]
        out += ["", fmt_table(["calls", "first call s (incl. compile)", "s",
                               "patient-generations/s"], rows)]
    else:
        out.append("not measured (see Skipped or failed).")

    out += ["", "## PyTorch reference", ""]
    ref = data["torch_reference"]
    if not ref.get("available"):
        out.append(ref.get("reason", "not run (see Skipped or failed)."))
    else:
        out.append(f"benchmarks/reference_torch.py on {ref['device']} ({ref['device_name']}), "
                   f"torch {ref['torch']}, CUDA {ref['cuda']}, allow_tf32 = {ref['allow_tf32']}"
                   + (" (torch's default: its fp32 matmuls run in full fp32, not TF32)."
                      if not ref["allow_tf32"] else "."))
        rows = []
        if ref.get("sampling"):
            s = ref["sampling"]
            ours = next((c for c in data["sampling"] if (c["sampler"], c["K"], c["N"]) ==
                         ("ddpm", s["K"], s["N"])), None)
            rows.append([f"coherent sampling DDPM-{s['steps']}, K = {s['K']}, N = {s['N']}",
                         s["seconds"], f"{s['samples_per_s']:.4g} samples/s",
                         f"{s['seconds'] / ours['seconds']:.1f}x" if ours else "-"])
        if ref.get("training"):
            t = ref["training"]
            train = {r["population"]: r for r in data["training"]}
            p = 36 if 36 in train else max(train) if train else None
            rows.append([f"training, one model, batch {t['batch']}, {t['steps_per_call']} steps",
                         t["seconds"], f"{t['model_steps_per_s']:.4g} model-steps/s",
                         f"{train[p]['model_steps_per_s'] / t['model_steps_per_s']:.1f}x "
                         f"(P = {p})" if p else "-"])
        out += ["", fmt_table(["reference loop", "s", "throughput", "ours / reference"], rows)]

    targets = _targets(data)
    if targets:
        out += ["", "## Issue 14 targets (one H100)", "",
                fmt_table(["target", "measured", "goal", "met"], targets)]
    if data["skipped"] or data["errors"]:
        out += ["", "## Skipped or failed", ""] + [f"- {s}" for s in
                                                   data["skipped"] + data["errors"]]
    return "\n".join(out)


# ----------------------------------------------------------------------------------------------


def main(argv=None) -> int:
    args = parse_args(argv)
    res = Results(args)
    log(f"device: {res.data['device']['kind']} ({jax.default_backend()}); results in {args.out}")
    if _MISSING_FOR_INIT:
        warnings.warn(f"coherent_jax/__init__.py needs {_MISSING_FOR_INIT!r}, not installed "
                      "here; its submodules were imported directly")
    measure_peak(res)  # everything below needs the peak: no guard
    # One pool of specialists for every sampling case and the paper targets' specialists.
    pool_size = max(args.k + [args.n_sweep_k, args.torch_k, args.corner[0],
                              NUM_SOURCES * args.paper_targets])
    pool = jax_members(args.arch, pool_size, args.ddpm_steps, args.seed)
    sampling = Sampling(res, pool)
    few = args.few_sampler
    grid = [(args.n_sweep_k, n) for n in args.n] + [(k, args.k_sweep_n) for k in args.k]
    grid = list(dict.fromkeys(grid))  # (K, N) cases of both samplers, first occurrence kept
    first = [(args.torch_k, args.torch_n)] + [c for c in grid if c[1] >= 10000][:2]
    first = list(dict.fromkeys(first))
    case = lambda sampler, k, n: res.guard(f"sampling {sampler} K={k} N={n}", sampling.case,
                                           sampler, k, n)
    for k, n in first:  # the cases issue 14's targets name, before anything else
        case("ddpm", k, n)
        case(few, k, n)
    res.guard("torch reference", measure_torch, res)
    for p in args.train_sizes:
        res.guard(f"training P={p}", measure_training, res, [p])
    res.guard("paper generation", measure_paper, res, args.paper_modes[:1], pool)
    corner = tuple(args.corner)
    for k, n in dict.fromkeys(grid + [corner]):
        if (k, n) not in first:
            case(few, k, n)
            if (k, n) != corner:
                case("ddpm", k, n)
    res.guard("paper generation", measure_paper, res, args.paper_modes[1:], pool)
    if corner not in first:  # DDPM at the largest (K, N): the longest call, last of all
        case("ddpm", *corner)
    res.write()
    log(f"done in {res.elapsed():.0f} s: {os.path.join(args.out, 'results.md')}"
        + (f"; {len(res.data['errors'])} measurement(s) FAILED" if res.data["errors"] else ""))
    return 1 if res.data["errors"] else 0


if __name__ == "__main__":
    sys.exit(main())
