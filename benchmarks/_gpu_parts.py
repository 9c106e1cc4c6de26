"""The JAX parts of benchmarks/gpu_suite.py: the matmul peak, coherent sampling, population
training and the paper's whole test-set generation, each recorded in a `Results`."""

from __future__ import annotations

import dataclasses
import importlib
import math
import sys
import types

import jax
import jax.numpy as jnp
import numpy as np

from _gpu_results import Results, time_call
from _machine import COND_DIM, Specialists, denoiser_flops
from coherent_jax.engine.fusion import availability_weights
from coherent_jax.engine.denoiser import Condition, Denoiser, init_denoiser
from coherent_jax.engine.folded import fold_members
from coherent_jax.engine.population import Population, init_population, population_data
from coherent_jax.engine.sampling import CoherentConfig, Members, SamplerConfig, coherent_sample
from coherent_jax.engine.schedules import linear_schedule
from coherent_jax.engine.train import TrainConfig, make_member_data, scan_train_steps

LEARNING_RATES = (1e-3, 1e-4)  # the paper's random-search learning rates
NUM_SOURCES = 3  # specialists per target in the population and the paper workload


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
        res.log(f"peak {name}: {flops / timing.seconds / 1e12:.1f} TFLOP/s")
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
        res.log(f"{label}: {timing.seconds:.4g} s, {n / timing.seconds:.4g} samples/s "
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
        res.log(f"training P={p}: {model_steps / timing.seconds:.4g} model-steps/s "
                f"(first call {first:.2f} s)")


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


def _import_paper_module(log):
    """benchmarks/bench_paper_generation.py imports torch at module level for its reference
    loop, which this suite does not call: where torch cannot be imported, it is imported
    against empty stand-ins for torch and reference_torch (and `log` says so)."""
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
    paper = _import_paper_module(res.log)
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
        res.log(f"paper generation {mode}: {timing.seconds:.3g} s (first call {first:.1f} s)")

