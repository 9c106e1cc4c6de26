"""The paper's whole test-set generation as one benchmark: ours vs the eager PyTorch loop.

The workload of the paper's reconstruction study (METHOD.md section 5): for each of the 4
target modalities, 14 source subsets (3 single specialists, 4 coherent subsets of size 2-3,
7 multi-condition subsets of size 1-3), 10 generations of the 1,350-patient test set, 1000
DDPM steps: 756,000 patient generations. Random paper-size models (norm_mlp, hidden 512,
5 layers, E 128; specialists with one 32-d condition, the multi-condition model with three)
with identical weights on both sides; rejection is off on both sides (with random weights it
would reject nearly everything and only time the retry loop).

  torch     the paper's loop: per target, per subset, per draw, one eager sampling call
            (the specialists' subsets with reference_torch.sample / coherent_sample, the
            multi subsets with reference_torch.sample and presence masks).
  batched   ours, 2 calls per target: ONE coherent_sample over all 7 specialist subsets x
            draws x patients with per-sample weights (a zero weight = source not given; every
            member still runs on every row: 21 forwards per patient-draw instead of 12), and
            ONE sample() of the multi-condition model over its 7 subsets (masks per row).
  grouped   ours, 8 calls per target: the specialist subsets grouped by size (3 x sample,
            3 x coherent_sample K=2, 1 x K=3, all draws in one batch: 12 forwards) + the
            multi call as above.
Both of ours with the plain Denoiser and with its folded sampling form (models/folded.py).

Sampler: by default SDE-DPM-Solver++(3M) with 20 steps on the 1000-step schedule, the
fastest sampler within noise of DDPM-1000 on KIPAN (experiments/sampler_quality.py,
benchmarks/RESULTS.md, issue 14.6); `--sampler ddpm --steps 1000` is the paper's chain (a
DDPM run of S steps builds an S-step schedule). The torch loop knows only DDPM: it runs with
--sampler ddpm only.

CPU scale-down, stated in the output: `--quick` runs 1 draw of 1,350 patients (DDPM: with a
20-step chain) per target (all 4 targets, all 14 subsets); the full-workload seconds printed
beside are a linear extrapolation (x steps, x draws), not a measurement.

    python benchmarks/bench_paper_generation.py --quick
    python benchmarks/bench_paper_generation.py --impl grouped_folded --first_only  # measured
    python benchmarks/bench_paper_generation.py --sampler ddpm --steps 1000  # the paper's DDPM
"""

from __future__ import annotations

import argparse
import itertools
import time

import jax
import jax.numpy as jnp
import numpy as np
import torch

import reference_torch
from _machine import (COND_DIM, PAPER_ARCH, ForeignLoad, check_same_predictions,
                      describe_machine, fmt_table, make_specialists, time_it)
from coherent_jax.engine.ensemble import select_members, unstack_members
from coherent_jax.engine.fusion import availability_weights, inverse_mse_weights
from coherent_jax.engine.denoiser import Condition, DenoiserApply
from coherent_jax.engine.sampling import (SAMPLERS, CoherentConfig, Members, SamplerConfig,
                                          coherent_sample, sample)

# SDE-DPM-Solver++(3M), 20 steps: the fastest sampler within noise of DDPM-1000 on KIPAN
# (benchmarks/RESULTS.md, "Few-step sampling at equal quality").
SAMPLER, SAMPLER_STEPS = "dpmpp_3m_sde", 20
IMPLEMENTATIONS = ("batched_library", "batched_folded", "grouped_library", "grouped_folded")
# run_batched / run_grouped take `chain`, the samplers' `SamplerConfig`; the default: DDPM over
# the whole schedule (what gpu_suite.py times).
NUM_SOURCES = 3  # sources per target: the other three modalities
VAL_LOSSES = (0.30, 0.40, 0.50)
SUBSETS = [s for r in (1, 2, 3) for s in itertools.combinations(range(NUM_SOURCES), r)]  # 7


class Target:
    """One target modality: 3 specialists, 1 multi-condition model, the patients' sources."""

    def __init__(self, index: int, schedule_steps: int, patients: int):
        self.specialists = make_specialists(NUM_SOURCES, schedule_steps, seed=100 * index)
        self.multi = make_specialists(1, schedule_steps, seed=100 * index + 50,
                                      cond_dims=(COND_DIM,) * NUM_SOURCES)
        check_same_predictions(self.specialists)
        rng = np.random.default_rng(index)
        self.sources = rng.standard_normal((NUM_SOURCES, patients, COND_DIM)).astype(np.float32)
        self.key = jax.random.key(index)


def run_torch(targets, draws: int, patients: int):
    data_dim = PAPER_ARCH["data_dim"]
    generator = torch.Generator().manual_seed(0)
    weights = reference_torch.softmax_inverse_weights(VAL_LOSSES)
    for target in targets:
        models = target.specialists.torch_models
        sources = [torch.from_numpy(s) for s in target.sources]
        multi = target.multi.torch_models[0]
        for subset in SUBSETS:
            masks = [torch.full((patients,), float(j in subset)) for j in range(NUM_SOURCES)]
            multi_conds = [s * m[:, None] for s, m in zip(sources, masks)]  # absent -> zeros
            for _ in range(draws):
                if len(subset) == 1:
                    reference_torch.sample(models[subset[0]], [sources[subset[0]]], patients,
                                           data_dim, generator=generator)
                else:
                    w = weights[list(subset)] / weights[list(subset)].sum()
                    reference_torch.coherent_sample([models[j] for j in subset],
                                                    [sources[j] for j in subset], w, patients,
                                                    data_dim, generator=generator)
                reference_torch.sample(multi, multi_conds, patients, data_dim, masks=masks,
                                       generator=generator)


def _multi_call(target, draws, folded, chain: SamplerConfig = SamplerConfig()):
    """ONE sample() of the multi-condition model over its 7 subsets x draws x patients."""
    spec = target.multi
    present = np.repeat(np.array([[j in s for j in range(NUM_SOURCES)] for s in SUBSETS],
                                 np.float32), draws * target.sources.shape[1], axis=0)  # [R, 3]
    values = np.tile(target.sources, (1, len(SUBSETS) * draws, 1)) * present.T[:, :, None]
    cond = Condition.of(*map(jnp.asarray, values), mask=jnp.asarray(present))
    apply_fn, params = ((spec.folded_apply, spec.folded_params) if folded
                        else (DenoiserApply(spec.model), spec.params))
    return sample(apply_fn, unstack_members(params)[0], cond, spec.schedule,
                  jax.random.fold_in(target.key, 1),
                  shape=(present.shape[0], PAPER_ARCH["data_dim"]), config=chain)


def _member_inputs(target, folded):
    spec = target.specialists
    if folded:
        return spec.folded_apply, spec.folded_params, spec.schedule
    return DenoiserApply(spec.model), spec.params, spec.schedule


def run_batched(targets, draws: int, folded: bool, chain: SamplerConfig = SamplerConfig()):
    out = []
    for target in targets:
        apply_fn, params, schedule = _member_inputs(target, folded)
        patients = target.sources.shape[1]
        available = np.repeat(np.array([[j in s for j in range(NUM_SOURCES)] for s in SUBSETS]),
                              draws * patients, axis=0)  # [rows, K]
        values = np.tile(target.sources, (1, len(SUBSETS) * draws, 1))  # [K, rows, C]
        member_conds = Condition.of(jnp.asarray(values),
                                    mask=jnp.ones(values.shape[:2] + (1,), jnp.float32))
        weights = availability_weights(VAL_LOSSES, available)
        out.append(coherent_sample(apply_fn, Members(params, member_conds, weights), schedule,
                                   target.key, shape=(available.shape[0], PAPER_ARCH["data_dim"]),
                                   config=CoherentConfig(chain)))
        out.append(_multi_call(target, draws, folded, chain))
    return out


def run_grouped(targets, draws: int, folded: bool, chain: SamplerConfig = SamplerConfig()):
    out = []
    for target in targets:
        apply_fn, params, schedule = _member_inputs(target, folded)
        rows = draws * target.sources.shape[1]
        values = np.tile(target.sources, (1, draws, 1))  # [K, rows, C]
        for i, subset in enumerate(SUBSETS):
            key = jax.random.fold_in(target.key, 10 + i)
            members = select_members(params, list(subset))
            conds = Condition.of(jnp.asarray(values[list(subset)]),
                                 mask=jnp.ones((len(subset), rows, 1), jnp.float32))
            shape = (rows, PAPER_ARCH["data_dim"])
            if len(subset) == 1:
                out.append(sample(apply_fn, unstack_members(members)[0],
                                  jax.tree.map(lambda a: a[0], conds), schedule, key, shape=shape,
                                  config=chain))
            else:
                weights = inverse_mse_weights(np.asarray(VAL_LOSSES)[list(subset)])
                out.append(coherent_sample(apply_fn, Members(members, conds, weights), schedule,
                                           key, shape=shape, config=CoherentConfig(chain)))
        out.append(_multi_call(target, draws, folded, chain))
    return out


def _parse_args() -> argparse.Namespace:
    """The flags, with --steps defaulted per sampler and --quick applied."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--targets", type=int, default=4, help="target modalities (paper: 4)")
    parser.add_argument("--patients", type=int, default=1350, help="test patients (paper: 1350)")
    parser.add_argument("--draws", type=int, default=10, help="generations per subset (paper: 10)")
    parser.add_argument("--sampler", default=SAMPLER, choices=SAMPLERS,
                        help=f"reverse sampler (default {SAMPLER}; the paper: ddpm)")
    parser.add_argument("--steps", type=int, default=None,
                        help=f"reverse steps (default {SAMPLER_STEPS} for the few-step samplers, "
                             "1000 for ddpm, whose schedule then has this many steps)")
    parser.add_argument("--quick", action="store_true",
                        help="1 draw (DDPM: and 20 steps): CPU scale-down, extrapolated")
    parser.add_argument("--impl", nargs="+", default=IMPLEMENTATIONS, choices=IMPLEMENTATIONS,
                        help="implementations to time")
    parser.add_argument("--first_only", action="store_true",
                        help="time only the first call (compilation included), without waiting "
                             "for a quiet machine: one run of the whole workload per "
                             "implementation; the load during it is printed")
    parser.add_argument("--no-torch", action="store_true", help="skip the torch reference")
    args = parser.parse_args()
    few_step = args.sampler != "ddpm"
    if args.steps is None:
        args.steps = SAMPLER_STEPS if few_step else 1000
    if args.quick:
        args.draws = 1
        args.steps = args.steps if few_step else 20
    return args


def _time_ours(impl: str, targets, args, chain: dict, scale: float) -> list:
    """One implementation's table row: first call, seconds, patient-generations/s, the full
    workload's hours and the largest foreign load."""
    mode, form = impl.split("_")
    runner = {"batched": run_batched, "grouped": run_grouped}[mode]
    fn = lambda: runner(targets, args.draws, form == "folded", chain)
    with ForeignLoad() as load:
        start = time.perf_counter()
        jax.block_until_ready(fn())
        first = time.perf_counter() - start
    if args.first_only:
        seconds, foreign = first, load.cores
    else:
        timing = time_it(fn, repeats=1, warmup=0)
        seconds, foreign = timing.seconds, timing.foreign
    print(f"  done {impl}: {seconds:.1f} s, foreign load {foreign:.2f} cores", flush=True)
    return [f"{mode} {form}", first, seconds, _generations(args) / seconds,
            seconds * scale / 3600, foreign]


def _time_torch(rows: list, targets, args, scale: float) -> list:
    """`rows` with the paper's loop appended and every row's speedup against it."""
    timing = time_it(lambda: run_torch(targets, args.draws, args.patients), repeats=1, warmup=0)
    rows = rows + [["torch (paper loop)", "-", timing.seconds,
                    _generations(args) / timing.seconds, timing.seconds * scale / 3600,
                    timing.foreign]]
    for row in rows[:-1]:
        row.append(timing.seconds / row[2])
    rows[-1].append(1.0)
    return rows


def _generations(args) -> int:
    """Patient generations in the workload run: targets x 14 subsets x draws x patients."""
    return args.targets * 14 * args.draws * args.patients


def main():
    args = _parse_args()
    few_step = args.sampler != "ddpm"
    full_steps = args.steps if few_step else 1000  # the full workload's chain
    chain = SamplerConfig(args.sampler, args.steps) if few_step else SamplerConfig()
    with_torch = not args.no_torch and not few_step  # the reference loop is DDPM only

    print(describe_machine())
    scale = ((full_steps / args.steps) * (10 / args.draws) * (1350 / args.patients)
             * (4 / args.targets))
    print(f"workload: {args.targets} targets x 14 subsets x {args.draws} draws x {args.patients} "
          f"patients x {args.sampler} {args.steps} steps; full workload ({args.sampler} "
          f"{full_steps} steps) = this x {scale:.0f}\n", flush=True)
    targets = [Target(i, 1000 if few_step else args.steps, args.patients)
               for i in range(args.targets)]
    rows = [_time_ours(impl, targets, args, chain, scale) for impl in args.impl]
    if with_torch:
        rows = _time_torch(rows, targets, args, scale)
    header = ["implementation", "first call s (incl. compile)",
              "s (first call)" if args.first_only else "s", "patient-generations/s",
              "full workload h" + ("" if scale == 1 else " (extrapolated)"), "max foreign cores"]
    header += ["speedup vs torch"] if with_torch else []
    print("\n" + fmt_table(header, rows))


if __name__ == "__main__":
    main()
