"""One target's draws for the rows that lack it: the step inside `impute`'s loop over targets.

`fill_target` gathers each source's condition values for the rows (`Conditions`), pads the
rows to a bucket size (few shapes compile), and calls the sampler of the method: the
multi-condition model with a condition mask ('multi'), or the specialists fused with
per-row availability weights ('coherent', 'product', 'single') with candidate rejection;
'auto' sends each row to 'coherent' or 'multi' by what validation preferred for its
availability pattern.
Anchored models with nothing learned are drawn without a chain, exactly from the Gaussian
their anchors define (`anchor_draws`): no solver error, no disagreement to reject on.

Rows: K draws x N patients, draw-major (row = draw * N + patient).
"""

from __future__ import annotations

import dataclasses
import time
from typing import Any, Sequence

import jax
import jax.numpy as jnp
import numpy as np

from coherent_jax import anchor_draws
from coherent_jax.calibrate import PAPER_THRESHOLD, pattern_name, threshold_key
from coherent_jax.conditions import Conditions, Work
from coherent_jax.engine.ensemble import stack_members
from coherent_jax.engine.fusion import availability_weights, inverse_mse_weights
from coherent_jax.engine.denoiser import Condition
from coherent_jax.engine.sampling import (CoherentConfig, Members, SamplerConfig, coherent_sample,
                                          sample, timesteps)


@dataclasses.dataclass
class Filled:
    """What `fill_target` drew for R rows.

    Attributes:
        samples: [R, D] the chosen draws.
        accepted: [R] whether each row's chosen candidate passed the disagreement check.
        bad_fraction: [R] share of its reverse steps above the threshold.
        diagnostics: one record (rows, padded rows, acceptance, threshold, seconds, signature).
    """

    samples: np.ndarray
    accepted: np.ndarray
    bad_fraction: np.ndarray
    diagnostics: dict


@dataclasses.dataclass(frozen=True)
class SamplerCalls:
    """How `impute` makes its sampler calls, beyond `ImputeConfig`'s settings.

    Attributes:
        order: the targets filled, in this order, for every patient (None: each availability
            pattern's order of `ModelSet.cascade_orders`, else the model set's targets' order;
            'gaussian' fills every missing modality at once, in no order).
        threshold: disagreement threshold; None uses the threshold calibrated for the sampler
            and step count when the model set has one, else the paper's 1.0.
        bucket: smallest padded batch; row counts are padded to a few sizes per doubling
            (`bucket_size`), so few shapes compile.
        mesh: optional ('data',) mesh (`parallel.make_mesh`): each sampler call splits its rows
            (draws x patients x candidates) over the devices; same seed, same draws as on one
            device (up to float reduction order).
    """

    order: Sequence[str] | None = None
    threshold: float | None = None
    bucket: int = 256
    mesh: Any = None

    def __post_init__(self):
        if self.bucket < 1:
            raise ValueError(f"bucket must be >= 1 rows, got {self.bucket}.")


BUCKET_STEPS = (4, 5, 6, 7)
"""Padded sizes within an octave: bucket * 2^k * step / 4, so at most 4 shapes compile per
doubling of the rows and padding wastes under 25% of them (powers of two alone wasted up to
half: 97 patients x 50 draws ran as 8,192 rows)."""


def bucket_size(rows: int, bucket: int) -> int:
    """Padded row count: the smallest bucket * 2^k * step / 4 >= rows (`BUCKET_STEPS`), at
    least `bucket`, so few distinct shapes compile."""
    size = bucket
    while size * BUCKET_STEPS[-1] // 4 < rows:
        size *= 2
    return next(size * step // 4 for step in BUCKET_STEPS if size * step // 4 >= rows)


def pad_rows(a: np.ndarray, size: int) -> np.ndarray:
    """a [R, ...] -> [size, ...] by repeating its first row (the padding is dropped after)."""
    if size <= a.shape[0]:
        return a
    return np.concatenate([a, np.repeat(a[:1], size - a.shape[0], axis=0)])


def fill_target(models, target: str, rows: np.ndarray, conditions: Conditions, work: Work,
                config, key: jax.Array, calls: SamplerCalls) -> Filled:
    """Draws `target` for work rows `rows` from what is known of its sources.

    Args:
        models: the ModelSet; target: the generated modality.
        rows: [R] work rows that lack the target.
        conditions: the sources' condition values; work: the values so far and the rows known.
        config: the `ImputeConfig` (method, sampler, candidates, ...).
        key: this target's PRNG key.
        calls: the threshold, bucket and mesh of the sampler call (`SamplerCalls`).
    """
    tm, method = models.targets[target], config.method
    if method == "auto":
        return _fill_by_pattern(models, target, rows, conditions, work, config, key, calls)
    avail = np.stack([work.known[s][rows] for s in tm.sources], axis=1)  # [R, S]
    if method != "multi" and not avail.any(axis=1).all():
        raise ValueError(f"{int((~avail.any(axis=1)).sum())} row(s) have no source of "
                         f"{target!r} available; with cascade=False every patient needs one of "
                         f"{list(tm.sources)} observed.")
    start = time.perf_counter()
    raw = [conditions.values(tm, s, rows, work) for s in tm.sources]  # S x [R, D_c]
    direct = _without_chain(tm, method, raw, avail, key)
    if direct is not None:
        return Filled(direct, np.ones(rows.size, bool), np.zeros(rows.size), {
            "target": target, "rows": int(rows.size), "padded_rows": int(rows.size),
            "acceptance": 1.0, "mean_bad_fraction": 0.0, "threshold": None,
            "seconds": time.perf_counter() - start,
            "signature": f"{method}/anchors, no chain/rows={rows.size}"})
    size = bucket_size(rows.size, calls.bucket)
    values = [jnp.asarray(pad_rows(v, size)) for v in raw]
    avail_p = pad_rows(avail, size)
    chain = SamplerConfig(config.sampler, config.sample_steps,
                          corrector_steps=config.corrector_steps)
    steps = len(timesteps(models.schedule.diffusion_steps, config.sampler, config.sample_steps))
    if method == "multi":
        samples = _draw_multi(models, tm, values, avail_p, key, chain, calls.mesh)
        accepted, bad, used = np.ones(rows.size, bool), np.zeros(rows.size), None
    else:
        used = calls.threshold if calls.threshold is not None else tm.thresholds.get(
            threshold_key(config.sampler, steps), PAPER_THRESHOLD)
        samples, accepted, bad = _draw_fused(models, tm, values, avail_p,
                                             _member_weights(tm, method, avail_p), key,
                                             _fused_config(tm, config, chain, used), calls.mesh)
        accepted, bad = np.asarray(accepted)[: rows.size], np.asarray(bad)[: rows.size]
    samples = np.asarray(samples)[: rows.size]
    if not np.all(np.isfinite(samples)):
        raise FloatingPointError(f"generation of {target!r} produced NaN/inf; check the models "
                                 "and the input latents.")
    return Filled(samples, accepted, bad, {
        "target": target, "rows": int(rows.size), "padded_rows": size,
        "acceptance": float(accepted.mean()), "mean_bad_fraction": float(bad.mean()),
        "threshold": None if used is None else float(used),
        "seconds": time.perf_counter() - start,
        "signature": f"{method}/{config.sampler}:{steps}/rows={size}"})


def auto_methods(tm, avail: np.ndarray) -> np.ndarray:
    """[R] the method 'auto' draws each row with: 'multi' where validation preferred the
    multi-condition model for the row's availability pattern (avail [R, S];
    `TargetModels.family_by_pattern`) or where there are no specialists, else 'coherent'."""
    if tm.specialists is None:
        return np.full(avail.shape[0], "multi")
    return np.asarray(["multi" if tm.family_by_pattern.get(pattern_name(tm.sources, a)) == "multi"
                       else "coherent" for a in avail])


def _fill_by_pattern(models, target: str, rows: np.ndarray, conditions: Conditions, work: Work,
                     config, key: jax.Array, calls: SamplerCalls) -> Filled:
    """`fill_target` of each row by its method (`auto_methods`), one diagnostics record for
    both: the first method's rows drawn on `key` (all rows by one method: that method's
    draws), the second's on a key of their own."""
    tm = models.targets[target]
    methods = auto_methods(tm, np.stack([work.known[s][rows] for s in tm.sources], axis=1))
    parts = []
    for method in ("coherent", "multi"):
        own = methods == method
        if own.any():
            part_key = jax.random.fold_in(key, 1) if parts else key
            parts.append((own, fill_target(models, target, rows[own], conditions, work,
                                           dataclasses.replace(config, method=method), part_key,
                                           calls)))
    samples = np.empty((rows.size, parts[0][1].samples.shape[1]), parts[0][1].samples.dtype)
    accepted, bad = np.ones(rows.size, bool), np.zeros(rows.size)
    for own, part in parts:
        samples[own], accepted[own], bad[own] = part.samples, part.accepted, part.bad_fraction
    records = [part.diagnostics for _, part in parts]
    thresholds = [r["threshold"] for r in records if r["threshold"] is not None]
    return Filled(samples, accepted, bad, {
        "target": target, "rows": int(rows.size),
        "padded_rows": sum(r["padded_rows"] for r in records),
        "acceptance": float(accepted.mean()), "mean_bad_fraction": float(bad.mean()),
        "threshold": thresholds[0] if thresholds else None,
        "seconds": sum(r["seconds"] for r in records),
        "signature": "auto: " + " + ".join(r["signature"] for r in records)})


def _draw_multi(models, tm, values: list, avail: np.ndarray, key: jax.Array,
                chain: SamplerConfig, mesh) -> jax.Array:
    """[size, D] draws of the multi-condition model for the padded rows, source j masked
    by `avail` [size, S]."""
    apply_fn, params = tm.sampling_multi(models.schedule.diffusion_steps)
    return sample(apply_fn, params, Condition.of(*values, mask=avail), models.schedule, key,
                  shape=(avail.shape[0], tm.multi_model.data_dim), config=chain, mesh=mesh)


def _fused_config(tm, config, chain: SamplerConfig, threshold: float) -> CoherentConfig:
    """The fusion and rejection of `config.method` ('coherent': the calibrated sharpness;
    'single': one weighted member, fused as a mean) for the specialists of `tm`."""
    return CoherentConfig(chain, fusion="product" if config.method == "product" else "mean",
                          sharpness=tm.sharpness if config.method == "coherent" else 0.0,
                          num_candidates=config.num_candidates, threshold=threshold,
                          max_bad_fraction=config.max_bad_fraction)


def _draw_fused(models, tm, values: list, avail: np.ndarray, weights: np.ndarray,
                key: jax.Array, config: CoherentConfig, mesh) -> tuple:
    """The specialists' fused draws for the padded rows, source j masked by `avail` [size, S]
    and weighted by `weights` [size, S]: (samples [size, D], accepted, bad fraction [size])."""
    apply_fn, params = tm.sampling_specialists(models.schedule.diffusion_steps)
    conds = stack_members([Condition.of(v, mask=avail[:, [j]]) for j, v in enumerate(values)])
    res = coherent_sample(apply_fn, Members(params, conds, weights, conds.dropped()),
                          models.schedule, key,
                          shape=(avail.shape[0], tm.specialist_model.data_dim), config=config,
                          mesh=mesh)
    return res.samples, res.accepted, res.bad_fraction


def _without_chain(tm, method: str, values: list, avail: np.ndarray,
                   key: jax.Array) -> np.ndarray | None:
    """[R, D] draws straight from the anchors' Gaussian when the models of `method` have no
    learned correction (`anchor_draws`), else None (the chain runs)."""
    if method == "multi":
        if not anchor_draws.untrained(tm.multi):
            return None
        return anchor_draws.masked_draws(tm.multi["params"], values, avail, key)
    if not anchor_draws.untrained(tm.specialists):
        return None
    return anchor_draws.fused_draws(
        tm.specialists["params"], values, avail, _member_weights(tm, method, avail), key,
        product=method == "product",
        sharpness=tm.sharpness if method == "coherent" else 0.0)


def _member_weights(tm, method: str, avail: np.ndarray) -> np.ndarray:
    """[R, S] fusion weights: the best available specialist alone ('single'), else every
    available one by its validation MSE."""
    if method == "single":
        best = np.argmax(np.where(avail, inverse_mse_weights(tm.val_mse), -1), axis=1)
        return np.eye(len(tm.sources), dtype=np.float32)[best]
    return availability_weights(tm.val_mse, avail)
