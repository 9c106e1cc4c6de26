"""Calibration on validation patients: the specialists' fusion and the rejection thresholds.

The paper's weighted mean of the specialists' eps keeps the spread of a single source while its
mean improves with every source, so draws of patients with several sources are too wide (on
KIPAN the central 90% of 50 coherent draws covered 0.93-0.95 of the held-out latents where a
calibrated sampler covers 0.87). `fusion.fuse_sharpened` interpolates between that weighted
mean (sharpness 0) and a product of experts (sharpness 1); `choose_fusion_sharpness` picks
the sharpness per target by the fair CRPS of K draws on validation patients that have two or
more sources, a proper scoring rule: it rewards the right spread and the right mean together,
so a sharpness that only narrows the draws does not win.

`rejection_thresholds` finds each target's disagreement threshold of candidate rejection, a
quantile of the per-step disagreements of patients with every source, for one sampler and step
count (`threshold_key`); without one, sampling uses the paper's 1.0.

Calibration returns values and changes no model: whoever owns the models stores them
(`model_set.train_target` the sharpness, `ModelSet.store_thresholds` the thresholds).
"""

from __future__ import annotations

import dataclasses
import itertools
import warnings
from typing import Sequence

import jax
import jax.numpy as jnp
import numpy as np

from coherent_jax import anchor_draws, scoring_rules
from coherent_jax.conditions import Conditions, Work
from coherent_jax.engine.ensemble import stack_members
from coherent_jax.engine.fusion import availability_weights, inverse_mse_weights
from coherent_jax.engine.denoiser import Condition
from coherent_jax.engine.sampling import (CoherentConfig, Members, SamplerConfig, coherent_sample,
                                          sample, timesteps)
from coherent_jax.engine.schedules import Schedule
from coherent_jax.engine.train import fair_energy_score

SHARPNESS_GRID = (0.0, 0.125, 0.25, 0.375, 0.5, 0.625, 0.75, 1.0)
# steps of 1/8 up to 0.75: on KIPAN the validation CRPS is flat within 0.002 between
# neighbours of 1/4, and the finer grid moved mirna from 0 to 0.125 (latent coverage 0.917 ->
# 0.910 at nominal 0.866, R^2 +0.002; README ablation)
MIN_ROWS = 10  # fewer validation patients with >= 2 sources: keep the paper's weighted mean
PAPER_THRESHOLD = 1.0  # the disagreement threshold when none was calibrated


def threshold_key(sampler: str, sample_steps: int) -> str:
    """How a calibrated threshold is filed in `TargetModels.thresholds`: 'sampler:steps'."""
    return f"{sampler}:{sample_steps}"


@dataclasses.dataclass(frozen=True)
class FusionCalibration:
    """How `choose_fusion_sharpness` scores the candidate sharpnesses.

    Attributes:
        grid: candidate sharpnesses in [0, 1].
        num_samples: K draws per patient.
        sampler, sample_steps: the sampler of the calibration draws (specialists with no
            learned correction are drawn without a chain, as imputation draws them).
    """

    grid: tuple[float, ...] = SHARPNESS_GRID
    num_samples: int = 20
    sampler: str = "ddim"
    sample_steps: int | None = 50


def _not_calibrated(tm, rows: np.ndarray) -> str | None:
    """Why the paper's weighted mean (sharpness 0) is kept without scoring any; None when
    the sharpnesses can be scored."""
    if len(tm.sources) < 2 or tm.specialists is None or not tm.unconditional:
        return "needs >= 2 specialists trained for unconditional use (condition dropout or anchors)"
    if rows.size < MIN_ROWS:
        return f"fewer than {MIN_ROWS} validation patients with >= 2 sources"
    return None


def _crps_by_sharpness(tm, schedule: Schedule, conditions: Sequence[np.ndarray],
                       present: np.ndarray, real: np.ndarray, key: jax.Array,
                       config: FusionCalibration) -> list[float]:
    """[G] the fair CRPS of config.num_samples draws per patient for each sharpness of config.grid
    (inf where one has no Gaussian), for the n patients of `conditions` [n, D_s],
    `present` [n, S] and `real` [n, D]."""
    k, n = int(config.num_samples), present.shape[0]
    avail = np.tile(present, (k, 1))  # [K*n, S], draw-major
    tiled = [np.tile(c, (k, 1)) for c in conditions]  # [K*n, D_s]
    conds = stack_members([Condition.of(jnp.asarray(c), mask=avail[:, [j]])
                           for j, c in enumerate(tiled)])
    weights = availability_weights(tm.val_mse, avail)
    apply_fn, params = tm.sampling_specialists(schedule.diffusion_steps)
    # imputation draws these without a chain (mixture anchors: with one)
    direct = anchor_draws.untrained(tm.specialists) and not anchor_draws.is_mixture(tm.specialists)
    crps = []
    for sharpness in config.grid:
        if direct:
            out = anchor_draws.fused_draws(tm.specialists["params"], tiled, avail, weights, key,
                                           sharpness=float(sharpness))
            if out is None:  # no Gaussian at this sharpness (fused precision not positive)
                crps.append(float("inf"))
                continue
        else:
            out = coherent_sample(apply_fn, Members(params, conds, weights, conds.dropped()),
                                  schedule, key, shape=(k * n, tm.specialist_model.data_dim),
                                  config=CoherentConfig(SamplerConfig(config.sampler,
                                                                      config.sample_steps),
                                                        sharpness=float(sharpness))).samples
        draws = np.asarray(out).reshape(k, n, -1)  # [K, n, D]
        crps.append(float(np.mean(scoring_rules.crps(real, draws, fair=True))))
    return crps


def choose_fusion_sharpness(tm, schedule: Schedule, conditions: Sequence[np.ndarray],
                            present: np.ndarray, real: np.ndarray, key: jax.Array,
                            config: FusionCalibration = FusionCalibration()) -> dict:
    """The sharpness of `config.grid` with the lowest validation CRPS, and how it was found.

    Leaves `tm` as it is: its owner stores record['chosen'] as `tm.sharpness`.

    Args:
        tm: a trained `model_set.TargetModels` with specialists trained for unconditional use
            (condition dropout or anchored).
        schedule: the training noise schedule.
        conditions: per source of tm, the condition values the specialists take [N, D_s]
            (latents, or the condition maps' predictions from the sources' features).
        present: [N, S] bool, source s observed for patient n.
        real: [N, D] the patients' target latents (all observed).
        key: PRNG key; every sharpness is scored on the same noise (common random numbers).
        config: the grid, the draws per patient and their sampler (`FusionCalibration`).

    Returns:
        A record: rows used, grid, CRPS per sharpness, the chosen sharpness (0 with a reason when
        too few patients have two or more sources).
    """
    present = np.asarray(present, bool)
    rows = np.flatnonzero(present.sum(axis=1) >= 2)
    record = {"rows": int(rows.size), "grid": [float(g) for g in config.grid],
              "num_samples": config.num_samples,
              "sampler": f"{config.sampler}:{config.sample_steps}"}
    reason = _not_calibrated(tm, rows)
    if reason is not None:
        return {**record, "chosen": 0.0, "reason": reason}
    crps = _crps_by_sharpness(tm, schedule, [c[rows] for c in conditions], present[rows],
                              real[rows], key, config)
    return {**record, "crps": crps, "chosen": float(config.grid[int(np.argmin(crps))])}


def pattern_name(sources: Sequence[str], available: Sequence[bool]) -> str:
    """How an availability pattern is filed in `TargetModels.family_by_pattern`: the available
    sources joined by '+', in the models' source order."""
    return "+".join(s for s, a in zip(sources, available) if a)


def _family_draws(tm, family: str, schedule: Schedule, tiled: list, avail: np.ndarray,
                  key: jax.Array, config: FusionCalibration) -> np.ndarray:
    """[K*n, D] validation draws of one family, as imputation makes them: the specialists
    fused at the target's sharpness, or the multi-condition model with the absent sources
    masked; models with no learned correction drawn without a chain (fused mixture
    specialists with one, `anchor_draws.fused_draws`)."""
    chain = SamplerConfig(config.sampler, config.sample_steps)
    if family == "multi":
        if anchor_draws.untrained(tm.multi):
            return anchor_draws.masked_draws(tm.multi["params"], tiled, avail, key)
        apply_fn, params = tm.sampling_multi(schedule.diffusion_steps)
        return np.asarray(sample(apply_fn, params,
                                 Condition.of(*[jnp.asarray(c) for c in tiled], mask=avail),
                                 schedule, key, shape=(avail.shape[0], tm.multi_model.data_dim),
                                 config=chain))
    weights = availability_weights(tm.val_mse, avail)
    if anchor_draws.untrained(tm.specialists):
        out = anchor_draws.fused_draws(tm.specialists["params"], tiled, avail, weights, key,
                                       sharpness=tm.sharpness)
        if out is not None:
            return np.asarray(out)
    conds = stack_members([Condition.of(jnp.asarray(c), mask=avail[:, [j]])
                           for j, c in enumerate(tiled)])
    apply_fn, params = tm.sampling_specialists(schedule.diffusion_steps)
    return np.asarray(coherent_sample(
        apply_fn, Members(params, conds, weights, conds.dropped()), schedule, key,
        shape=(avail.shape[0], tm.specialist_model.data_dim),
        config=CoherentConfig(chain, sharpness=tm.sharpness)).samples)


def _family_scores(tm, schedule: Schedule, conditions: Sequence[np.ndarray],
                   present: np.ndarray, real: np.ndarray, subset: tuple, key: jax.Array,
                   config: FusionCalibration) -> dict | None:
    """{family: [n] fair energy scores} of config.num_samples draws per patient from each
    family, on the same noise, for the n patients that have every source of `subset` (the
    others masked); None when none has."""
    rows = np.flatnonzero(present[:, list(subset)].all(axis=1))
    if not rows.size:
        return None
    k = int(config.num_samples)
    avail = np.tile(np.asarray(subset)[None], (k * rows.size, 1))  # [K*n, S] draw-major
    tiled = [np.tile(c[rows], (k, 1)) for c in conditions]
    truth = jnp.asarray(real[rows], jnp.float32)
    return {family: np.asarray(fair_energy_score(jnp.asarray(
        _family_draws(tm, family, schedule, tiled, avail, key, config),
        jnp.float32).reshape(k, rows.size, -1), truth), np.float64)
        for family in ("specialists", "multi")}


def choose_family_by_pattern(tm, schedule: Schedule, conditions: Sequence[np.ndarray],
                             present: np.ndarray, real: np.ndarray, key: jax.Array,
                             config: FusionCalibration = FusionCalibration(),
                             held_out: Sequence = ()) -> dict:
    """Per availability pattern of the sources, which family draws it better: the fused
    specialists or the multi-condition model. Leaves `tm` as it is: its owner stores
    record['chosen'] as `tm.family_by_pattern`.

    Every nonempty subset of the sources is scored on the validation patients that have all
    of it (the others masked), and on the training patients of `held_out` (`cross_fit`: each
    fold drawn from models refitted without it), at least MIN_ROWS of them in all: the fair
    energy score of config.num_samples draws per patient from each family, on the same
    noise. The specialists (the coherent method) stay unless the multi-condition model leads
    by the paired test of `scoring_rules.paired_lead` on all the patients scored. Fusing
    specialists assumes the sources independent given the target, which shared factors
    break (benchmarks/RESULTS.md, "Given both sources").

    Args:
        tm: a trained `model_set.TargetModels` with both families (else nothing is chosen).
        conditions: per source, the validation patients' condition values [N, D_s];
            present: [N, S] bool; real: [N, D] their target latents; key: PRNG key.
        held_out: `cross_fit.HeldOut` folds of training patients (none: validation alone).

    Returns:
        {'patterns': {pattern: {'rows' (validation), 'held_out_rows', 'specialists',
        'multi' (mean energy scores over all), 'multi_minus_specialists' (the paired test on
        all), 'validation' (its test on the validation patients alone)}}, 'chosen':
        {pattern: family}} (`pattern_name`), or {'reason': why none was scored, 'chosen': {}}.
    """
    if tm.specialists is None or tm.multi is None:
        return {"reason": "needs both the specialists and the multi-condition model",
                "chosen": {}}
    present = np.asarray(present, bool)
    groups = [(tm, conditions, present, real)] + [
        (h.models, h.conditions, np.asarray(h.present, bool), h.real) for h in held_out]
    patterns, chosen = {}, {}
    for index, subset in enumerate(itertools.product((False, True), repeat=len(tm.sources))):
        if not any(subset):
            continue
        pattern_key = jax.random.fold_in(key, index)
        scored = [_family_scores(models, schedule, c, p, r, subset,
                                 jax.random.fold_in(pattern_key, g) if g else pattern_key, config)
                  for g, (models, c, p, r) in enumerate(groups)]  # validation, then folds
        if sum(s["multi"].size for s in scored if s is not None) < MIN_ROWS:
            continue
        difference = [s["multi"] - s["specialists"] if s is not None else np.zeros(0)
                      for s in scored]  # [n] per group
        everyone = {family: np.concatenate([s[family] for s in scored if s is not None])
                    for family in ("specialists", "multi")}
        name = pattern_name(tm.sources, subset)
        test = scoring_rules.paired_lead(np.concatenate(difference))
        patterns[name] = {"rows": int(difference[0].size),
                          "held_out_rows": int(sum(d.size for d in difference[1:])),
                          **{family: float(np.mean(v)) for family, v in everyone.items()},
                          "multi_minus_specialists": test,
                          "validation": scoring_rules.paired_lead(difference[0])}
        chosen[name] = "multi" if test["leads"] else "specialists"
    return {"num_samples": int(config.num_samples),
            "sampler": f"{config.sampler}:{config.sample_steps}",
            "patterns": patterns, "chosen": chosen}


def calibrate_fusion(tm, schedule: Schedule, conditions: Sequence[np.ndarray],
                     present: np.ndarray, real: np.ndarray, key: jax.Array, **options) -> dict:
    """Deprecated: `choose_fusion_sharpness` returns the record and leaves `tm` alone.

    Sets `tm.sharpness` to the sharpness `choose_fusion_sharpness` chooses and returns its
    record; `options` (sampler, sample_steps, num_samples, grid) are `FusionCalibration`'s.
    """
    warnings.warn("calibrate_fusion is deprecated: call choose_fusion_sharpness(tm, ..., "
                  "FusionCalibration(...)) and store record['chosen'] as tm.sharpness.",
                  DeprecationWarning, stacklevel=2)
    record = choose_fusion_sharpness(tm, schedule, conditions, present, real, key,
                                     FusionCalibration(**options))
    tm.sharpness = record["chosen"]
    return record


def full_source_disagreement(cohort, models, *, sampler: str = "ddpm",
                             sample_steps: int | None = None, seed: int = 0,
                             feature_cohort=None) -> dict:
    """Per-step disagreement of coherent sampling for the patients that have every source.

    Returns:
        {target: [R, steps] disagreement} for each target with >= 2 specialists, R the
        cohort's patients with every source of that target.

    Raises:
        ValueError: no patient has every source of some target.
    """
    mats = {m: cohort.matrix(m) for m in cohort.modalities}  # m -> ([N, D], [N] present)
    present = {m: p for m, (_, p) in mats.items()}
    conditions = Conditions(models, present, cohort.sample_ids, None, feature_cohort)
    work = Work({m: v for m, (v, _) in mats.items()}, present)
    found = {}
    for index, (target, tm) in enumerate(models.targets.items()):
        if tm.specialists is None or len(tm.sources) < 2:
            continue
        rows = np.flatnonzero(np.all([present[s] for s in tm.sources], axis=0))
        if rows.size == 0:
            raise ValueError(f"no patient has every source of {target!r} "
                             f"({list(tm.sources)}); use a complete split.")
        values = [conditions.values(tm, s, rows, work) for s in tm.sources]  # S x [R, D_c]
        conds = stack_members([Condition.of(jnp.asarray(v)) for v in values])
        apply_fn, params = tm.sampling_specialists(models.schedule.diffusion_steps)
        res = coherent_sample(apply_fn, Members(params, conds, inverse_mse_weights(tm.val_mse),
                                                conds.dropped()),
                              models.schedule, jax.random.fold_in(jax.random.key(seed), index),
                              shape=(rows.size, tm.specialist_model.data_dim),
                              config=CoherentConfig(SamplerConfig(sampler, sample_steps),
                                                    sharpness=tm.sharpness))
        found[target] = np.asarray(res.disagreement)
    return found


@dataclasses.dataclass(frozen=True)
class RejectionThresholds:
    """Calibrated disagreement thresholds of candidate rejection for one sampler and step count.

    Attributes:
        key: where they are filed in `TargetModels.thresholds` (`threshold_key`).
        by_target: {target: threshold}.
    """

    key: str
    by_target: dict[str, float]


def rejection_thresholds(cohort, models, *, sampler: str = "ddpm",
                         sample_steps: int | None = None, quantile: float = 0.99,
                         seed: int = 0, feature_cohort=None) -> RejectionThresholds:
    """Each target's rejection threshold for a sampler and step count.

    Runs coherent sampling on the cohort's patients that have every source of a target (e.g.
    the complete validation split) and takes the `quantile` of all their per-step
    disagreements. Leaves `models` as they are: their owner stores the result
    (`ModelSet.store_thresholds`).
    """
    if not 0 < quantile < 1:
        raise ValueError(f"quantile must be in (0, 1), got {quantile}.")
    steps = len(timesteps(models.schedule.diffusion_steps, sampler, sample_steps))
    found = full_source_disagreement(cohort, models, sampler=sampler, sample_steps=sample_steps,
                                     seed=seed, feature_cohort=feature_cohort)
    return RejectionThresholds(threshold_key(sampler, steps),
                               {t: float(np.quantile(v, quantile)) for t, v in found.items()})


def calibrate_thresholds(cohort, models, **options) -> dict:
    """Deprecated: `rejection_thresholds` returns the thresholds and leaves `models` alone.

    Stores `rejection_thresholds(cohort, models, **options)` in the model set
    (`ModelSet.store_thresholds`) and returns {target: threshold}.
    """
    warnings.warn("calibrate_thresholds is deprecated: call rejection_thresholds(cohort, models, "
                  "...) and store the result with models.store_thresholds(found).",
                  DeprecationWarning, stacklevel=2)
    found = rejection_thresholds(cohort, models, **options)
    models.store_thresholds(found)
    return dict(found.by_target)
