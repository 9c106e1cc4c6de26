"""Coherent sampling throughput: ours vs the paper's eager PyTorch loop, identical weights.

K random paper-size specialists (norm_mlp, hidden 512, 5 layers, E 128: 1.13M parameters each)
are built in torch and imported into ours, and every implementation is checked to predict
the same eps before it is timed. Three implementations:
  ours    coherent_jax.engine.sampling.coherent_sample with the library Denoiser (DenoiserApply)
  folded  the same sampler with the folded sampling form (coherent_jax/models/folded.py),
          what `impute` uses
  torch   benchmarks/reference_torch.coherent_sample (Python loop over steps and members)
Each row: median seconds of `--repeats` runs after one warm-up (compilation) run; samples/s of
the chain actually run; model GFLOP/s = norm_mlp matmul FLOPs / time (the same count for all
three; the folded form executes 25% fewer) with the share of the measured matmul peak.

    python benchmarks/bench_sampler.py --quick   # ~10 min on 2 cores: shorter chains at large N
    python benchmarks/bench_sampler.py           # T = 1000 everywhere (hours: torch at N=10000)
    python benchmarks/bench_sampler.py --n 10 2048 --k 3 --steps 100   # one slice
    XLA_FLAGS=--xla_cpu_multi_thread_eigen=false python benchmarks/bench_sampler.py \
        --n 10 2048 --k 3 --quick --no-ddim --no-torch --dtype bfloat16   # an optimisation trial
"""

from __future__ import annotations

import argparse
import dataclasses

import jax
import jax.numpy as jnp
import numpy as np
import torch

import reference_torch
from _machine import (COND_DIM, PAPER_ARCH, check_same_predictions, denoiser_flops,
                      describe_machine, fmt_table, make_specialists, peak_gflops, time_it)
from coherent_jax.engine.denoiser import Condition, DenoiserApply
from coherent_jax.engine.sampling import CoherentConfig, Members, SamplerConfig, coherent_sample

DDIM_STEPS = 50
VAL_LOSSES = (0.30, 0.40, 0.50, 0.35)  # specialists' validation losses -> paper weights


def quick_steps(num_samples: int) -> int:
    """Chain length of --quick: T = 1000 up to N = 100, 100 up to N = 2048, else 20."""
    return 1000 if num_samples <= 100 else 100 if num_samples <= 2048 else 20


def run_case(num_members: int, num_samples: int, steps: int, sampler: str, args, peak: float):
    """Times one (K, N, sampler) case; returns a table row."""
    data_dim = PAPER_ARCH["data_dim"]
    spec = make_specialists(num_members, 1000 if sampler == "ddim" else steps, seed=0)
    check_same_predictions(spec)
    rng = np.random.default_rng(1)
    conds = [rng.standard_normal((num_samples, COND_DIM)).astype(np.float32)
             for _ in range(num_members)]
    member_conds = Condition.of(jnp.asarray(np.stack(conds)),
                                mask=jnp.ones((num_members, num_samples, 1), jnp.float32))
    weights = reference_torch.softmax_inverse_weights(VAL_LOSSES[:num_members])
    key = jax.random.key(0)
    ddim = dict(sampler="ddim", sample_steps=DDIM_STEPS) if sampler == "ddim" else {}
    config = CoherentConfig(SamplerConfig(unroll=args.unroll, **ddim))

    def ours(apply_fn, params):
        return lambda: coherent_sample(apply_fn, Members(params, member_conds, weights.numpy()),
                                       spec.schedule, key, shape=(num_samples, data_dim),
                                       config=config).samples

    dtype = jnp.dtype(args.dtype)  # matmul dtype of both of ours (see --dtype)
    timings = {"ours": time_it(ours(DenoiserApply(spec.model.clone(dtype=dtype)), spec.params),
                               args.repeats),
               "folded": time_it(ours(dataclasses.replace(spec.folded_apply, dtype=dtype),
                                      spec.folded_params), args.repeats)}
    if sampler == "ddpm" and not args.no_torch:
        generator = torch.Generator().manual_seed(0)
        torch_conds = [torch.from_numpy(c) for c in conds]
        timings["torch"] = time_it(lambda: reference_torch.coherent_sample(
            spec.torch_models, torch_conds, weights, num_samples, data_dim,
            generator=generator), args.repeats)
    run_steps = DDIM_STEPS if sampler == "ddim" else steps
    flops = denoiser_flops(**PAPER_ARCH) * num_members * num_samples * run_steps
    row = [num_members, num_samples, sampler, run_steps]
    for name in ("ours", "folded", "torch"):
        if name in timings:
            sec = timings[name].seconds
            row += [sec, num_samples / sec, f"{flops / sec / 1e9:.0f} ({flops / sec / 1e7 / peak:.0f}%)"]
        else:
            row += ["-", "-", "-"]
    if "torch" in timings:
        row += [timings["torch"].seconds / timings[n].seconds for n in ("ours", "folded")]
    else:
        row += ["-", "-"]
    row.append(max(t.foreign for t in timings.values()))
    return row


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--n", type=int, nargs="+", default=[1, 10, 100, 1350, 2048, 10000],
                        help="numbers of samples N")
    parser.add_argument("--k", type=int, nargs="+", default=[2, 3], help="numbers of specialists K")
    parser.add_argument("--steps", type=int, default=1000,
                        help="DDPM chain length (schedule of that many steps)")
    parser.add_argument("--quick", action="store_true",
                        help="shorter chains at large N (see quick_steps); overrides --steps")
    parser.add_argument("--no-ddim", action="store_true", help=f"skip the DDIM {DDIM_STEPS} rows")
    parser.add_argument("--no-torch", action="store_true", help="skip the torch reference")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--unroll", type=int, default=1, help="lax.scan unroll of our samplers")
    parser.add_argument("--dtype", choices=["float32", "bfloat16"], default="float32",
                        help="matmul dtype of ours (flax Dense dtype; folded: inputs of that dtype "
                        "with fp32 accumulation); torch stays fp32")
    args = parser.parse_args()

    print(describe_machine())
    peaks = peak_gflops()
    peak = max(peaks.values())
    print("measured fp32 matmul peak (4096^3): "
          + ", ".join(f"{k} {v:.0f} GFLOP/s" for k, v in peaks.items()))
    print(f"model: norm_mlp {PAPER_ARCH}, condition width {COND_DIM}, "
          f"{denoiser_flops(**PAPER_ARCH) / 1e6:.2f} MFLOP per row per member per step; ours "
          f"in {args.dtype}, scan unroll {args.unroll}\n")
    rows = []
    for k in args.k:
        for n in args.n:
            steps = quick_steps(n) if args.quick else args.steps
            rows.append(run_case(k, n, steps, "ddpm", args, peak))
            print(f"  done K={k} N={n} ddpm", flush=True)
            if not args.no_ddim:
                rows.append(run_case(k, n, steps, "ddim", args, peak))
    header = ["K", "N", "sampler", "steps", "ours s", "ours samples/s", "ours GF/s (%peak)",
              "folded s", "folded samples/s", "folded GF/s (%peak)", "torch s",
              "torch samples/s", "torch GF/s (%peak)", "ours speedup", "folded speedup",
              "max foreign cores"]
    print("\n" + fmt_table(header, rows))


if __name__ == "__main__":
    main()
