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

The parts are in benchmarks/_gpu_parts.py (JAX) and _gpu_torch.py (the PyTorch reference),
the clock, budget and results files in _gpu_results.py, results.md's text in _gpu_report.py.
"""

from __future__ import annotations

import argparse
import importlib
import os
import sys
import time
import types
import warnings

_T0 = time.perf_counter()
if "--dry_run" in sys.argv[1:]:  # before jax is imported: the dry run is CPU only, and
    os.environ["JAX_PLATFORMS"] = "cpu"  # compiles faster without LLVM optimisation
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

from _gpu_parts import (NUM_SOURCES, Sampling, jax_members, measure_paper,  # noqa: E402
                        measure_peak, measure_training)
from _gpu_results import Results  # noqa: E402
from _gpu_torch import measure_torch  # noqa: E402
from _machine import PAPER_ARCH  # noqa: E402

TRAIN_ROWS = 8305  # the paper's training split size, as benchmarks/bench_train.py
DRY_ARCH = dict(PAPER_ARCH, hidden_dim=32, num_layers=3, time_embed_dim=16, cond_embed_dim=8)


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


def main(argv=None) -> int:
    args = parse_args(argv)
    res = Results(args, _T0, _MISSING_FOR_INIT)
    res.log(f"device: {res.data['device']['kind']} ({jax.default_backend()}); "
            f"results in {args.out}")
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
    res.log(f"done in {res.elapsed():.0f} s: {os.path.join(args.out, 'results.md')}"
            + (f"; {len(res.data['errors'])} measurement(s) FAILED" if res.data["errors"] else ""))
    return 1 if res.data["errors"] else 0


if __name__ == "__main__":
    sys.exit(main())
