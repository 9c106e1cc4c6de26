"""The sampling-time form of a trained Denoiser: the same function, fewer FLOPs per step.

Exact algebra, for inference only (integer t in [0, T)):
- Everything that depends on t alone (sinusoid -> Dense -> ReLU = t_emb, and t_emb's share of
  every Dense that reads it, t_emb @ W_t + b) is precomputed for all T timesteps into one
  table per layer, so a reverse step gathers table[t] instead of multiplying [N, E] @ [E, H]:
  for the paper's sizes (E = 128 of a 640-wide block input) 25% fewer FLOPs and weight bytes.
- Eval-mode BatchNorm, (h - mean) / sqrt(var + eps) * scale + bias, is affine: it is folded
  into the Dense kernel's columns and the table, so a hidden block is GEMM + add + ReLU.
  LayerNorm is not affine in h; with norm='layer' only the time tables are folded.

    apply_fn, params = fold_members(model, stacked_variables, schedule.diffusion_steps)
    coherent_sample(apply_fn, Members(params, member_conds, weights), schedule, key, shape=...)

`dtype=jnp.bfloat16` gives bf16 matmul inputs with float32 accumulation (opt-in: faster on a
CPU with AVX512-BF16, at a small relative error of eps; benchmarks/RESULTS.md, "Coherent
sampling throughput").
"""

from __future__ import annotations

import dataclasses
import functools

import jax
import jax.numpy as jnp

from coherent_jax.engine.denoiser import Condition, Denoiser, anchor_eps, sinusoidal_embedding
from coherent_jax.engine.schedules import make_schedule

_BN_EPS = 1e-5  # the Denoiser's BatchNorm and LayerNorm epsilon
_LN_EPS = 1e-5


@dataclasses.dataclass(frozen=True)
class FoldedApply:
    """Hashable `apply_fn(params, x [N, D], t [N] int, cond) -> eps [N, D]` of a folded
    Denoiser (same signature as DenoiserApply, so the samplers take either)."""

    num_blocks: int
    norm: str
    dtype: jnp.dtype = jnp.float32
    anchored: bool = False

    def _dot(self, a: jax.Array, w: jax.Array) -> jax.Array:
        return jnp.dot(a.astype(self.dtype), w.astype(self.dtype),
                       preferred_element_type=jnp.float32)

    def __call__(self, params: dict, x: jax.Array, t: jax.Array, cond: Condition) -> jax.Array:
        embeds = [jax.nn.relu(self._dot(v, c["kernel"]) + c["bias"]) * cond.mask[:, j:j + 1]
                  for j, (v, c) in enumerate(zip(cond.values, params["cond"]))]  # C x [N, Ce]
        h = self._dot(jnp.concatenate([x, *embeds], axis=-1), params["first"])  # [N, H]
        for i in range(self.num_blocks):
            if i > 0:
                h = self._dot(h, params["kernels"][i - 1])  # [N, H]
            h = h + params["tables"][i][t]  # time share (+ bias, + folded BatchNorm shift)
            if self.norm == "layer":
                mean = h.mean(axis=-1, keepdims=True)
                var = jnp.square(h - mean).mean(axis=-1, keepdims=True)
                h = (h - mean) * jax.lax.rsqrt(var + _LN_EPS) * params["ln_scale"][i] \
                    + params["ln_bias"][i]
            h = jax.nn.relu(h)
        eps = (self._dot(h, params["out"]["kernel"]) + params["out"]["table"][t]).astype(
            jnp.float32)
        if self.anchored:
            eps = eps + anchor_eps(params["anchor"], params["anchor"]["alpha_bars"][t], x, cond)
        return eps


def _fold_params(model: Denoiser, variables: dict, diffusion_steps: int) -> dict:
    """One member's variables -> folded parameters (tables cover t = 0..diffusion_steps-1)."""
    p = variables["params"]
    d, e = model.data_dim, model.time_embed_dim
    t_emb = jax.nn.relu(sinusoidal_embedding(jnp.arange(diffusion_steps), e)
                        @ p["time_dense"]["kernel"] + p["time_dense"]["bias"])  # [T, E]
    folded = {"cond": [p[f"cond_dense_{j}"] for j in range(
        sum(name.startswith("cond_dense_") for name in p))], "kernels": [], "tables": [],
        "ln_scale": [], "ln_bias": []}
    for i in range(model.num_layers - 1):
        kernel, bias = p[f"hidden_{i}"]["kernel"], p[f"hidden_{i}"]["bias"]
        if model.norm == "batch":
            stats = variables["batch_stats"][f"norm_{i}"]
            scale = p[f"norm_{i}"]["scale"] / jnp.sqrt(stats["var"] + _BN_EPS)  # [H]
            shift = p[f"norm_{i}"]["bias"] - stats["mean"] * scale
        else:
            scale, shift = jnp.ones_like(bias), jnp.zeros_like(bias)
            folded["ln_scale"].append(p[f"norm_{i}"]["scale"])
            folded["ln_bias"].append(p[f"norm_{i}"]["bias"])
        if i == 0:  # input rows: [x (D), t_emb (E), condition embeddings]
            w_t = kernel[d:d + e]
            folded["first"] = jnp.concatenate([kernel[:d], kernel[d + e:]]) * scale
        else:  # input rows: [h (H), t_emb (E)]
            w_t = kernel[-e:]
            folded["kernels"].append(kernel[:-e] * scale)
        folded["tables"].append((t_emb @ w_t + bias) * scale + shift)  # [T, H]
    out_kernel = p["out"]["kernel"]
    folded["out"] = {"kernel": out_kernel[:-e],
                     "table": t_emb @ out_kernel[-e:] + p["out"]["bias"]}  # [T, D]
    if model.anchored:
        folded["anchor"] = {**{name[len("anchor_"):]: value for name, value in p.items()
                               if name.startswith("anchor_")},
                            "alpha_bars": make_schedule(
                                model.schedule, model.diffusion_steps).alpha_bars[:diffusion_steps]}
    return folded


def fold_denoiser(model: Denoiser, variables: dict, diffusion_steps: int,
                  dtype=None) -> tuple[FoldedApply, dict]:
    """Folds one Denoiser's variables ({'params', 'batch_stats'?}) for sampling.

    Args:
        model: the Denoiser the variables belong to.
        variables: one member's variables (no leading member axis).
        diffusion_steps: T of the schedule; the tables cover t = 0..T-1.
        dtype: matmul input dtype (default: the model's); products accumulate in float32
            and the folding itself is float32 (bfloat16: see the module docstring and
            benchmarks/RESULTS.md).

    Returns:
        (apply_fn, params) to pass to `sample` / `coherent_sample` in place of
        (DenoiserApply(model), variables).
    """
    return _apply_of(model, dtype), _fold_jit(model, variables, diffusion_steps)


def fold_members(model: Denoiser, members: dict, diffusion_steps: int,
                 dtype=None) -> tuple[FoldedApply, dict]:
    """`fold_denoiser` for stacked members (a leading member axis K on every leaf)."""
    return _apply_of(model, dtype), _fold_members_jit(model, members, diffusion_steps)


def _apply_of(model: Denoiser, dtype) -> FoldedApply:
    return FoldedApply(num_blocks=model.num_layers - 1, norm=model.norm,
                       dtype=jnp.dtype(model.dtype if dtype is None else dtype),
                       anchored=model.anchored)


@functools.partial(jax.jit, static_argnums=(0, 2))
def _fold_jit(model, variables, diffusion_steps):
    return _fold_params(model, variables, diffusion_steps)


@functools.partial(jax.jit, static_argnums=(0, 2))
def _fold_members_jit(model, members, diffusion_steps):
    return jax.vmap(lambda v: _fold_params(model, v, diffusion_steps))(members)
