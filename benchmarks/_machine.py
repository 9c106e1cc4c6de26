"""Shared benchmark helpers: the machine, its measured fp32 peak, timing, model FLOPs.

Every benchmark prints `describe_machine()` first and times with `time_it` (compile/warm-up
call first, then the median of repeats, each ended by `.block_until_ready()` on JAX outputs,
repeats disturbed by other processes on this shared machine re-run).
"""

from __future__ import annotations

import dataclasses
import datetime
import os
import platform
import statistics
import sys
import time
from typing import Any, Callable

import jax
import jax.numpy as jnp
import numpy as np

# The benchmarks' denoiser: the paper's norm_mlp at the size the issue measured (3 specialists
# of 1.13M parameters): hidden 512, 5 layers (4 hidden blocks), time embedding 128,
# condition embedding 32, on 32-d latents conditioned on one 32-d latent.
PAPER_ARCH = dict(data_dim=32, hidden_dim=512, num_layers=5, time_embed_dim=128, cond_embed_dim=32)
COND_DIM = 32


def _cpu_model() -> str:
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown CPU"


def _memory_gib() -> float:
    try:
        return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**30
    except (ValueError, OSError):
        return float("nan")


def describe_machine() -> str:
    """A few lines naming the machine, the libraries and the settings that change timings."""
    lines = [
        f"date: {datetime.date.today().isoformat()}",
        f"cpu: {_cpu_model()}, {os.cpu_count()} logical cores, {_memory_gib():.0f} GiB RAM",
        f"python {platform.python_version()}, jax {jax.__version__} "
        f"({jax.default_backend()}: {', '.join(d.device_kind for d in jax.devices())})",
        f"XLA_FLAGS={os.environ.get('XLA_FLAGS', '')!r}",
    ]
    if "torch" in sys.modules:
        torch = sys.modules["torch"]
        lines.append(f"torch {torch.__version__}, {torch.get_num_threads()} threads")
    return "\n".join(lines)


def _cpu_jiffies() -> tuple[int, int]:
    """(busy jiffies of the whole machine, jiffies of this process and its threads)."""
    with open("/proc/stat") as f:
        fields = [int(v) for v in f.readline().split()[1:]]
    busy = sum(fields) - fields[3] - fields[4]  # minus idle and iowait
    with open("/proc/self/stat") as f:
        own = f.read().rsplit(")", 1)[1].split()
    return busy, int(own[11]) + int(own[12])  # utime + stime


class ForeignLoad:
    """Measures how many cores OTHER processes kept busy while the block ran.

    Timings on a shared machine are only valid when this is near 0; the benchmarks print it
    beside each measurement. Reads /proc (Linux); elsewhere it reports nan.
    """

    def __enter__(self) -> "ForeignLoad":
        self.cores = float("nan")
        try:
            self._start = _cpu_jiffies()
        except OSError:
            self._start = None
        self._t0 = time.perf_counter()
        return self

    def __exit__(self, *exc) -> None:
        if self._start is None:
            return
        busy, own = _cpu_jiffies()
        seconds = time.perf_counter() - self._t0
        hz = os.sysconf("SC_CLK_TCK")
        self.cores = max(0.0, ((busy - self._start[0]) - (own - self._start[1])) / hz / seconds)


def wait_until_quiet(max_foreign: float, timeout_s: float, probe_s: float = 0.25) -> bool:
    """Sleeps until other processes use <= `max_foreign` cores (probed over `probe_s`), at most
    `timeout_s` seconds; returns whether the machine went quiet."""
    deadline = time.perf_counter() + timeout_s
    while True:
        with ForeignLoad() as load:
            time.sleep(probe_s)
        if not load.cores > max_foreign or time.perf_counter() > deadline:
            return not load.cores > max_foreign


@dataclasses.dataclass(frozen=True)
class Timing:
    """Median wall seconds of the kept repeats and the contention seen.

    Attributes:
        seconds: median over the kept repeats.
        kept: repeats kept (run while other processes used <= `max_foreign` cores).
        discarded: repeats thrown away because other processes were busy.
        foreign: the largest foreign load (cores) among the kept repeats.
    """

    seconds: float
    kept: int
    discarded: int
    foreign: float


def time_it(fn: Callable[[], Any], repeats: int, warmup: int = 1, max_foreign: float = 0.3,
            max_discards: int = 10, quiet_timeout_s: float = 300.0) -> Timing:
    """Times `fn()` `repeats` times after `warmup` untimed calls (compilation, caches).

    JAX outputs are waited for with `block_until_ready`. This machine is shared: each repeat
    starts once other processes use <= `max_foreign` cores (waiting up to `quiet_timeout_s`),
    and a repeat during which they used more is discarded and re-run (at most `max_discards`
    times; then the contended repeats are kept, and `foreign` says so).
    """
    def run():
        out = fn()
        jax.tree.map(lambda a: a.block_until_ready() if hasattr(a, "block_until_ready") else a,
                     out)

    for _ in range(warmup):
        run()
    times, loads, discarded = [], [], 0
    while len(times) < repeats:
        wait_until_quiet(max_foreign, quiet_timeout_s)
        with ForeignLoad() as load:
            start = time.perf_counter()
            run()
            elapsed = time.perf_counter() - start
        if load.cores > max_foreign and discarded < max_discards:
            discarded += 1
            continue
        times.append(elapsed)
        loads.append(load.cores)
    return Timing(seconds=statistics.median(times), kept=len(times), discarded=discarded,
                  foreign=max(loads))


def peak_gflops(size: int = 4096, repeats: int = 5) -> dict[str, float]:
    """Measured fp32 matmul throughput (GFLOP/s) of a [size, size] @ [size, size] product.

    Returns {'jax': ...} and, when torch is imported, {'torch': ...}; the device's measured
    peak is the larger of the two (different BLAS libraries reach different fractions).
    """
    flops = 2.0 * size**3
    a = jax.random.normal(jax.random.key(0), (size, size), jnp.float32)
    matmul = jax.jit(lambda x: x @ x)
    result = {"jax": flops / time_it(lambda: matmul(a), repeats).seconds / 1e9}
    if "torch" in sys.modules:
        torch = sys.modules["torch"]
        t = torch.from_numpy(np.array(a))
        result["torch"] = flops / time_it(lambda: torch.mm(t, t), repeats).seconds / 1e9
    return result


def denoiser_flops(data_dim: int, hidden_dim: int, num_layers: int, time_embed_dim: int,
                   cond_embed_dim: int, cond_dims=(COND_DIM,), time_folded: bool = False) -> float:
    """Matmul FLOPs (2 x multiply-adds) of one norm_mlp forward for ONE row.

    Elementwise work (embedding, BatchNorm, ReLU, update) is left out: the GEMMs dominate.
    With `time_folded`, the t_emb terms (precomputed per timestep by the folded form) are left
    out too: the FLOPs the folded form executes.
    """
    e = time_embed_dim
    t_in = 0 if time_folded else e  # width of the t_emb input of each Dense
    macs = 0 if time_folded else e * e  # time Dense
    macs += sum(d * cond_embed_dim for d in cond_dims)  # condition Dense layers
    macs += (data_dim + t_in + cond_embed_dim * len(cond_dims)) * hidden_dim  # first hidden
    macs += (num_layers - 2) * (hidden_dim + t_in) * hidden_dim  # further hidden blocks
    macs += (hidden_dim + t_in) * data_dim  # output Dense
    return 2.0 * macs


@dataclasses.dataclass(frozen=True)
class Specialists:
    """K specialists with identical weights in both implementations.

    Attributes:
        torch_models: the reference NormMLPs (eval mode).
        model: our Denoiser (same architecture).
        params: our variables, stacked [K, ...].
        folded_apply, folded_params: the folded sampling form (stacked [K, ...]).
        schedule: the training schedule (T steps).
    """

    torch_models: list
    model: Any
    params: Any
    folded_apply: Any
    folded_params: Any
    schedule: Any


def make_specialists(num_members: int, diffusion_steps: int, seed: int = 0,
                     cond_dims=(COND_DIM,)) -> Specialists:
    """Random paper-size specialists (non-trivial BatchNorm statistics) built in torch and
    imported with `coherent_jax.torch_import`, so both sides hold the same weights."""
    import reference_torch  # pylint: disable=import-outside-toplevel  (needs torch)
    from coherent_jax.engine.ensemble import stack_members  # pylint: disable=import-outside-toplevel
    from coherent_jax.torch_import import import_state_dict  # pylint: disable=import-outside-toplevel
    from coherent_jax.engine.folded import fold_members  # pylint: disable=import-outside-toplevel

    arch = {k: v for k, v in PAPER_ARCH.items() if k != "data_dim"}
    torch_models = [reference_torch.random_norm_mlp(seed + k, PAPER_ARCH["data_dim"],
                                                    list(cond_dims),
                                                    num_steps=diffusion_steps, **arch)
                    for k in range(num_members)]
    imported = [import_state_dict(m.state_dict()) for m in torch_models]
    params = stack_members([i.variables for i in imported])
    folded_apply, folded_params = fold_members(imported[0].model, params, diffusion_steps)
    return Specialists(torch_models=torch_models, model=imported[0].model, params=params,
                       folded_apply=folded_apply, folded_params=folded_params,
                       schedule=imported[0].schedule)


def check_same_predictions(spec: Specialists, num_rows: int = 8, seed: int = 0) -> float:
    """Max |eps difference| between torch, ours and the folded form on random rows; raises
    if above 1e-4 (a benchmark of different functions would be meaningless)."""
    import torch  # pylint: disable=import-outside-toplevel
    from coherent_jax.engine.ensemble import unstack_members  # pylint: disable=import-outside-toplevel
    from coherent_jax.engine.denoiser import Condition, DenoiserApply  # pylint: disable=import-outside-toplevel

    rng = np.random.default_rng(seed)
    x = rng.standard_normal((num_rows, PAPER_ARCH["data_dim"])).astype(np.float32)
    t = rng.integers(0, spec.schedule.diffusion_steps, num_rows)
    c = rng.standard_normal((num_rows, COND_DIM)).astype(np.float32)
    cond = Condition.of(jnp.asarray(c))
    worst = 0.0
    members = zip(spec.torch_models, unstack_members(spec.params),
                  unstack_members(spec.folded_params))
    for torch_model, variables, folded in members:
        with torch.no_grad():
            expected = torch_model(torch.from_numpy(x), torch.from_numpy(t),
                                   [torch.from_numpy(c)]).numpy()
        for got in (DenoiserApply(spec.model)(variables, jnp.asarray(x), jnp.asarray(t), cond),
                    spec.folded_apply(folded, jnp.asarray(x), jnp.asarray(t), cond)):
            worst = max(worst, float(np.abs(np.asarray(got) - expected).max()))
    if worst > 1e-4:
        raise AssertionError(f"implementations disagree: max |eps diff| = {worst:.2e}")
    return worst


def fmt_table(header: list[str], rows: list[list[Any]]) -> str:
    """A GitHub-markdown table (what RESULTS.md holds)."""
    def cell(v):
        if not isinstance(v, float):
            return str(v)
        return f"{v:.0f}" if abs(v) >= 100 else f"{v:.1f}" if abs(v) >= 10 else f"{v:.3g}"

    out = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    out += ["| " + " | ".join(cell(v) for v in row) + " |" for row in rows]
    return "\n".join(out)
