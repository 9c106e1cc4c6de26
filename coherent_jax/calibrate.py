"""Calibration on validation patients: the specialists' fusion and the rejection thresholds.

The paper's weighted mean of the specialists' eps keeps the spread of a single source while its
mean improves with every source, so draws of patients with several sources are too wide (on
KIPAN the central 90% of 50 coherent draws covered 0.93-0.95 of the held-out latents where a
calibrated sampler covers 0.87). `fusion.fuse_sharpened` interpolates between that weighted
mean (gamma = 0) and a product of experts (gamma = 1); `calibrate_fusion` picks gamma per target
by the fair CRPS of K draws on validation patients that have two or more sources, a proper
scoring rule: it rewards the right spread and the right mean together, so a gamma that only
narrows the draws does not win.

`calibrate_thresholds` sets each target's disagreement threshold of candidate rejection to a
quantile of the per-step disagreements of patients with every source, for one sampler and step
count (`threshold_key`); without one, sampling uses the paper's 1.0.
"""

from __future__ import annotations

from typing import Sequence

import jax
import jax.numpy as jnp
import numpy as np

from coherent_jax import anchor_draws, scoring_rules
from coherent_jax.anchor import apply_condition_map
from coherent_jax.covariates import inputs
from coherent_jax.engine.ensemble import stack_members
from coherent_jax.engine.fusion import availability_weights, inverse_mse_weights
from coherent_jax.engine.denoiser import Condition
from coherent_jax.engine.sampling import (CoherentConfig, Members, SamplerConfig, coherent_sample,
                                          timesteps)
from coherent_jax.engine.schedules import Schedule

SHARPNESS_GRID = (0.0, 0.125, 0.25, 0.375, 0.5, 0.625, 0.75, 1.0)
# steps of 1/8 up to 0.75: on KIPAN the validation CRPS is flat within 0.002 between
# neighbours of 1/4, and the finer grid moved mirna from 0 to 0.125 (latent coverage 0.917 ->
# 0.910 at nominal 0.866, R^2 +0.002; README ablation)
MIN_ROWS = 10  # fewer validation patients with >= 2 sources: keep the paper's weighted mean
PAPER_THRESHOLD = 1.0  # the disagreement threshold when none was calibrated


def threshold_key(sampler: str, sample_steps: int) -> str:
    """How a calibrated threshold is filed in `TargetModels.thresholds`: 'sampler:steps'."""
    return f"{sampler}:{sample_steps}"


def calibrate_fusion(tm, schedule: Schedule, conditions: Sequence[np.ndarray],
                     present: np.ndarray, real: np.ndarray, key: jax.Array, *,
                     sampler: str = "ddim", sample_steps: int | None = 50, num_samples: int = 20,
                     grid: Sequence[float] = SHARPNESS_GRID) -> dict:
    """Sets `tm.fusion_sharpness` to the gamma of `grid` with the lowest validation CRPS.

    Args:
        tm: a trained `model_set.TargetModels` with specialists trained for unconditional use
            (condition dropout or anchored).
        schedule: the training noise schedule.
        conditions: per source of tm, the condition values the specialists take [N, D_s]
            (latents, or the condition maps' predictions from the sources' features).
        present: [N, S] bool, source s observed for patient n.
        real: [N, D] the patients' target latents (all observed).
        key: PRNG key; every gamma is scored on the same noise (common random numbers).
        sampler, sample_steps: the sampler of the calibration draws (specialists with no
            learned correction are drawn without a chain, as imputation draws them).
        num_samples: K draws per patient.
        grid: candidate gammas in [0, 1].

    Returns:
        A record: rows used, grid, CRPS per gamma, the chosen gamma (0 with
        a reason when too few patients have two or more sources).
    """
    present = np.asarray(present, bool)
    rows = np.flatnonzero(present.sum(axis=1) >= 2)
    record = {"rows": int(rows.size), "grid": [float(g) for g in grid], "num_samples": num_samples,
              "sampler": f"{sampler}:{sample_steps}"}
    if len(tm.sources) < 2 or tm.specialists is None or not tm.unconditional:
        tm.fusion_sharpness = 0.0
        return {**record, "chosen": 0.0, "reason": "needs >= 2 specialists trained for "
                "unconditional use (condition dropout or anchors)"}
    if rows.size < MIN_ROWS:
        tm.fusion_sharpness = 0.0
        return {**record, "chosen": 0.0,
                "reason": f"fewer than {MIN_ROWS} validation patients with >= 2 sources"}
    k, n = int(num_samples), rows.size
    avail = np.tile(present[rows], (k, 1))  # [K*n, S], draw-major
    conds = stack_members([Condition.of(jnp.asarray(np.tile(c[rows], (k, 1))),
                                        mask=avail[:, [j]]) for j, c in enumerate(conditions)])
    weights = availability_weights(tm.val_mse, avail)
    apply_fn, params = tm.sampling_specialists(schedule.diffusion_steps)
    # imputation draws these without a chain (mixture anchors: with one)
    direct = anchor_draws.untrained(tm.specialists) and not anchor_draws.is_mixture(tm.specialists)
    crps = []
    for gamma in grid:
        if direct:
            out = anchor_draws.fused_draws(tm.specialists["params"],
                                           [np.tile(c[rows], (k, 1)) for c in conditions],
                                           avail, weights, key, sharpness=float(gamma))
            if out is None:  # no Gaussian for this gamma (fused precision not positive)
                crps.append(float("inf"))
                continue
        else:
            out = coherent_sample(apply_fn, Members(params, conds, weights, conds.dropped()),
                                  schedule, key, shape=(k * n, tm.specialist_model.data_dim),
                                  config=CoherentConfig(SamplerConfig(sampler, sample_steps),
                                                        sharpness=float(gamma))).samples
        draws = np.asarray(out).reshape(k, n, -1)  # [K, n, D]
        crps.append(float(np.mean(scoring_rules.crps(real[rows], draws, fair=True))))
    best = int(np.argmin(crps))
    tm.fusion_sharpness = float(grid[best])
    return {**record, "crps": crps, "chosen": tm.fusion_sharpness}


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
    found = {}
    for index, (target, tm) in enumerate(models.targets.items()):
        if tm.specialists is None or len(tm.sources) < 2:
            continue
        mats = [cohort.matrix(s) for s in tm.sources]
        rows = np.flatnonzero(np.all([p for _, p in mats], axis=0))
        if rows.size == 0:
            raise ValueError(f"no patient has every source of {target!r} "
                             f"({list(tm.sources)}); use a complete split.")
        if tm.condition_maps is None:
            values = [v[rows] for v, _ in mats]
        elif feature_cohort is None:
            raise ValueError("these models condition on the sources' features: pass "
                             "feature_cohort.")
        else:
            labels = feature_cohort.labels.reindex(cohort.sample_ids[rows])
            features = [inputs(models.covariate,
                               feature_cohort.tables[s].reindex(cohort.sample_ids).to_numpy()[rows],
                               labels)
                        for s in tm.sources]
            values = [apply_condition_map(tm.condition_maps[s], f)
                      for s, f in zip(tm.sources, features)]
        conds = stack_members([Condition.of(jnp.asarray(v)) for v in values])
        apply_fn, params = tm.sampling_specialists(models.schedule.diffusion_steps)
        res = coherent_sample(apply_fn, Members(params, conds, inverse_mse_weights(tm.val_mse),
                                                conds.dropped()),
                              models.schedule, jax.random.fold_in(jax.random.key(seed), index),
                              shape=(rows.size, tm.specialist_model.data_dim),
                              config=CoherentConfig(SamplerConfig(sampler, sample_steps),
                                                    sharpness=tm.fusion_sharpness))
        found[target] = np.asarray(res.disagreement)
    return found


def calibrate_thresholds(cohort, models, *, sampler: str = "ddpm",
                         sample_steps: int | None = None, quantile: float = 0.99,
                         seed: int = 0, feature_cohort=None) -> dict:
    """Recalibrates each target's rejection threshold for a sampler and step count.

    Runs coherent sampling on the cohort's patients that have every source of a target (e.g.
    the complete validation split), and sets the threshold to the `quantile` of all their
    per-step disagreements. Stores it in the model set; returns {target: threshold}.
    """
    if not 0 < quantile < 1:
        raise ValueError(f"quantile must be in (0, 1), got {quantile}.")
    steps = len(timesteps(models.schedule.diffusion_steps, sampler, sample_steps))
    found = {}
    for target, values in full_source_disagreement(cohort, models, sampler=sampler,
                                                   sample_steps=sample_steps, seed=seed,
                                                   feature_cohort=feature_cohort).items():
        found[target] = float(np.quantile(values, quantile))
        models.targets[target].thresholds[threshold_key(sampler, steps)] = found[target]
    return found
