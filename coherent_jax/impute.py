"""Imputation for any missingness pattern: "give me the missing modalities of these patients".

Patients are handled all at once. Per target modality, ONE batched sampler call serves every
missingness pattern: each row carries its own member weights (coherent, product, single) or
condition mask (multi), zero for sources the patient lacks. Row counts are padded to a few
bucket sizes, so a cohort with all 14 patterns of 4 modalities compiles one sampler per
(method, bucket) rather than one per pattern. Missing modalities are filled in a cascade (each
conditioned on what is known so far, including earlier imputations of the same draw) or
independently from the observed ones only.

Rows: K draws x N patients, draw-major (row = draw * N + patient).
"""

from __future__ import annotations

import dataclasses
import logging
import os
import time
from typing import Any, Sequence

import jax
import jax.numpy as jnp
import numpy as np
import pandas as pd

from coherent_jax import formats_out, metrics_io, progress, safe_io
from coherent_jax.anchor import apply_condition_map
from coherent_jax.ensemble import stack_members
from coherent_jax.fusion import availability_weights, inverse_mse_weights
from coherent_jax.model_set import ModelSet, threshold_key
from coherent_jax.models.denoiser import Condition
from coherent_jax.sampling import SAMPLERS, coherent_sample, sample, timesteps

logger = logging.getLogger(__name__)

METHODS = ("coherent", "product", "multi", "single")
PAPER_THRESHOLD = 1.0


@dataclasses.dataclass
class Imputation:
    """What `impute` returns.

    Attributes:
        draws: modality -> DataFrame of the K draws, index (sample_id, draw), latent columns;
            observed rows hold the input values unchanged in every draw.
        imputed: [N, M] bool DataFrame, True where a modality was generated.
        diagnostics: one row per target: rows generated, acceptance rate, mean share of bad
            steps, threshold used, seconds, and the sampler signature compiled for it.
        features: modality -> decoded draws (original feature names), when a latent space
            was given: the decoder's output plus the latent space's residual noise, so each
            row is one realistic draw; observed rows come from `feature_cohort` when given.
        feature_means: modality -> [N, D] posterior-mean estimate in feature space: the mean
            over the K draws of the decoder's output WITHOUT the residual noise (same
            expectation as the mean of `features`, less variance: the noise is averaged
            exactly rather than by K draws).
        num_samples: K.
        acceptance: [N, M] share of a patient's K draws of each generated modality whose
            chosen candidate passed the disagreement check (NaN where observed; 1 for 'multi').
        bad_fraction: [N, M] mean over the K draws of the share of reverse steps whose
            disagreement exceeded the threshold (the per-patient incoherence; NaN where
            observed, 0 for 'multi').
    """

    draws: dict
    imputed: pd.DataFrame
    diagnostics: pd.DataFrame
    features: dict | None
    num_samples: int
    feature_means: dict | None = None
    acceptance: pd.DataFrame | None = None
    bad_fraction: pd.DataFrame | None = None

    def summary(self, modality: str, space: str = "latent", interval: float = 0.9) -> dict:
        """Per patient and feature over the K draws: {'mean', 'std', 'lower', 'upper'}
        DataFrames indexed by sample_id; lower/upper bound the central `interval`. In feature
        space 'mean' is `feature_means` (the posterior-mean estimate)."""
        tables = self.draws if space == "latent" else self.features
        if tables is None or modality not in tables:
            raise KeyError(f"no {space} draws for {modality!r}; have {sorted(tables or {})}.")
        out = summarize(tables[modality], interval)
        if space != "latent" and self.feature_means is not None:
            out["mean"] = self.feature_means[modality]
        return out


def summarize(draws: pd.DataFrame, interval: float = 0.9) -> dict:
    """Mean, standard deviation and central-interval bounds over the 'draw' index level."""
    if not 0 < interval < 1:
        raise ValueError(f"interval must be in (0, 1), got {interval}.")
    grouped = draws.groupby(level="sample_id", sort=False)
    tail = (1 - interval) / 2
    return {"mean": grouped.mean(), "std": grouped.std(ddof=0),
            "lower": grouped.quantile(tail), "upper": grouped.quantile(1 - tail)}


def _bucket(rows: int, bucket: int) -> int:
    """Padded row count: bucket * 2^k >= rows, so few distinct shapes compile."""
    size = bucket
    while size < rows:
        size *= 2
    return size


def _pad(a: np.ndarray, size: int) -> np.ndarray:
    return np.concatenate([a, np.repeat(a[:1], size - a.shape[0], axis=0)]) if size > a.shape[0] else a


def _check(cohort, models: ModelSet, method: str, order: Sequence[str]) -> None:
    if method not in METHODS:
        raise ValueError(f"unknown method {method!r}; choose one of {METHODS}.")
    for target in order:
        if target not in models.targets:
            raise ValueError(f"no trained models for target {target!r}; trained targets: "
                             f"{sorted(models.targets)}.")
        tm = models.targets[target]
        if target not in cohort.modalities:
            raise ValueError(f"target {target!r} is not a modality of the cohort "
                             f"{list(cohort.modalities)}; pass a cohort with all modalities, "
                             "holes as missing rows.")
        missing = [s for s in tm.sources if s not in cohort.modalities]
        if missing:
            raise ValueError(f"the models of {target!r} condition on {missing}, absent from the "
                             "cohort; add those modalities (all rows missing is fine).")
        needs = {"multi": tm.multi, "coherent": tm.specialists, "product": tm.specialists,
                 "single": tm.specialists}[method]
        if needs is None:
            raise ValueError(f"method {method!r} needs {'a multi-condition model' if method == 'multi' else 'specialists'} "
                             f"for {target!r}, which this model set lacks.")
        if method == "product" and not tm.unconditional:
            raise ValueError(f"product fusion needs specialists trained with condition dropout "
                             f"(uncond_prob > 0); those of {target!r} were not.")
        width = cohort.widths()[target]
        arch = tm.multi_model if method == "multi" else tm.model
        if arch.data_dim != width:
            raise ValueError(f"the {target!r} models generate {arch.data_dim} dims but the "
                             f"cohort's {target!r} has {width}; encode the cohort with the "
                             "latent space the models were trained on.")


class _Conditions:
    """The condition values of a target's models for rows of the draw-major work arrays.

    Plain models condition on the sources' latents. Models with `condition_maps` condition on
    ridge predictions from each source's features: observed sources from `feature_cohort`
    (projected once per patient), sources imputed earlier in the cascade from their decoded
    draws (the latent space's expected features).
    """

    def __init__(self, models, observed, n, latent_space, feature_cohort, ids):
        self.observed, self.n, self.space = observed, n, latent_space
        self.features, self._projected = None, {}
        if any(tm.condition_maps is not None for tm in models.targets.values()):
            if feature_cohort is None:
                raise ValueError("these models condition on the sources' features: pass "
                                 "feature_cohort (the patients' preprocessed features) and "
                                 "latent_space to impute.")
            self.features = {m: feature_cohort.tables[m].reindex(ids).to_numpy(np.float32)
                             for m in feature_cohort.modalities}

    def values(self, tm, source: str, rows: np.ndarray, work: dict,
               known: np.ndarray) -> np.ndarray:
        """[R, D_c] condition values of `source` for work rows `rows` (zeros where unknown)."""
        if tm.condition_maps is None:
            return work[source][rows]
        cmap = tm.condition_maps[source]
        width = np.asarray(cmap["bias"]).shape[0]
        out = np.zeros((rows.size, width), np.float32)
        patient = rows % self.n
        given = self.observed[source][1][patient]
        if given.any():
            key = (tm.target, source)
            if key not in self._projected:  # [N, k], once per patient
                rows_given = self.observed[source][1]
                projected = np.zeros((self.n, width), np.float32)
                projected[rows_given] = apply_condition_map(
                    cmap, self.features[source][rows_given])
                self._projected[key] = projected
            out[given] = self._projected[key][patient[given]]
        generated = known[rows] & ~given
        if generated.any():
            if self.space is None:
                raise ValueError(f"{source!r} was imputed earlier in the cascade and these "
                                 "models condition on its features: pass latent_space to "
                                 "impute (or cascade=False).")
            decoded = self.space.decode(source, work[source][rows[generated]]).to_numpy()
            out[generated] = apply_condition_map(cmap, decoded)
        return out


@dataclasses.dataclass(frozen=True)
class ImputeConfig:
    """How `impute` draws: the one source of these defaults (the pipeline, a work directory's
    `Imputer` and the evaluation take it whole).

    Attributes:
        method: 'coherent' (specialists fused; calibrated sharpness when the model set has
            one), 'product' (product of experts), 'multi' (multi-condition model with masks)
            or 'single' (the best available specialist).
        num_samples: K draws per patient.
        sampler, num_steps: one of `sampling.SAMPLERS` and its step count (None: all T steps,
            for 'ddpm'). Default: SDE-DPM-Solver++(3M) with 20 steps, the fastest sampler
            within noise of DDPM-1000 on KIPAN (benchmarks/RESULTS.md, "Few-step sampling").
        cascade: condition later targets on earlier imputations (True) or only on observed.
        num_candidates, max_bad_fraction: rejection among R candidates (coherent, product).
        corrector_steps: Langevin corrector steps per reverse step.
        allow_unconditional: 'multi' only: let patients without any modality be generated
            unconditionally (explicit opt-in; the coherent methods always refuse).
    """

    method: str = "coherent"
    num_samples: int = 10
    sampler: str = "dpmpp_3m_sde"
    num_steps: int | None = 20
    cascade: bool = True
    num_candidates: int = 4
    max_bad_fraction: float = 0.1
    corrector_steps: int = 0
    allow_unconditional: bool = False

    def __post_init__(self):
        if self.method not in METHODS:
            raise ValueError(f"unknown method {self.method!r}; choose one of {METHODS}.")
        if self.sampler not in SAMPLERS:
            raise ValueError(f"unknown sampler {self.sampler!r}; choose one of {SAMPLERS}.")
        for name in ("num_samples", "num_candidates"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be >= 1, got {getattr(self, name)}.")
        if self.num_steps is not None and self.num_steps < 1:
            raise ValueError(f"num_steps must be None (all T steps) or >= 1, got "
                             f"{self.num_steps}.")
        if not 0.0 <= self.max_bad_fraction <= 1.0:
            raise ValueError(f"max_bad_fraction must be in [0, 1], got {self.max_bad_fraction}.")

    @classmethod
    def from_settings(cls, values) -> "ImputeConfig":
        """From a flat mapping of settings (a config section or a saved run's config.json):
        keys that are not fields (the pipeline's split, calibrate_quantile) are ignored and
        num_steps 0 (what a command-line flag can say) means None, all T steps."""
        fields = {f.name for f in dataclasses.fields(cls)}
        values = {k: (tuple(v) if isinstance(v, list) else v) for k, v in dict(values).items()
                  if k in fields}
        if values.get("num_steps") == 0:
            values["num_steps"] = None
        return cls(**values)


def impute(cohort, models: ModelSet, config: ImputeConfig | None = None, *, seed: int = 0,
           order: Sequence[str] | None = None, threshold: float | None = None,
           bucket: int = 256, latent_space: Any = None, feature_cohort: Any = None,
           mesh: Any = None, **overrides) -> Imputation:
    """Fills every missing modality of every patient of a latent cohort, K times.

    Args:
        cohort: a latent Cohort (every modality at its model's width; holes as missing rows).
        models: the trained ModelSet.
        config: how to draw (`ImputeConfig`; default its defaults); `overrides` replace fields
            of it, e.g. `impute(cohort, models, num_samples=50)`.
        seed: one seed for everything; same seed, same draws.
        order: the order targets are filled in (default: the model set's order).
        threshold: disagreement threshold; None uses the threshold calibrated for this
            sampler and step count when the model set has one, else the paper's 1.0.
        bucket: smallest padded batch; row counts are padded to bucket * 2^k.
        latent_space: optional LatentSpace with `decode(modality, DataFrame)`; decodes draws.
        feature_cohort: optional feature-space Cohort supplying decoded observed rows; both
            are required by models that condition on features (`condition_maps`).
        mesh: optional ('data',) mesh (`parallel.make_mesh`): each sampler call splits its rows
            (draws x patients x candidates) over the devices; same seed, same draws as on one
            device (up to float reduction order).

    Raises:
        ValueError: unknown method/target/setting, width mismatch, or patients with no
            modality.
    """
    unknown = sorted(set(overrides) - {f.name for f in dataclasses.fields(ImputeConfig)})
    if unknown:
        raise ValueError(f"impute() got unknown setting(s) {unknown}; ImputeConfig has "
                         f"{[f.name for f in dataclasses.fields(ImputeConfig)]}.")
    config = dataclasses.replace(config or ImputeConfig(), **overrides)
    method, sampler, num_steps = config.method, config.sampler, config.num_steps
    order = tuple(order or models.targets)
    _check(cohort, models, method, order)
    ids = cohort.sample_ids
    n, k = len(ids), int(config.num_samples)
    observed = {m: cohort.matrix(m) for m in cohort.modalities}  # values [N, D], present [N]
    nothing = ~np.any(np.stack([p for _, p in observed.values()]), axis=0)
    if nothing.any() and (method != "multi" or not config.allow_unconditional):
        hint = ("the coherent methods never generate without a condition (privacy guard)"
                if method != "multi" else "pass allow_unconditional=True to opt in")
        raise ValueError(f"{int(nothing.sum())} patient(s) have no available modality, e.g. "
                         f"{list(ids[nothing][:5])}; {hint}, or drop them.")
    conditions = _Conditions(models, observed, n, latent_space, feature_cohort, ids)
    work = {m: np.tile(v, (k, 1)) for m, (v, _) in observed.items()}  # [K*N, D]
    have = {m: np.tile(p, k) for m, (_, p) in observed.items()}  # [K*N]
    known_obs = {m: have[m].copy() for m in have}
    schedule = models.schedule
    steps = len(timesteps(schedule.num_steps, sampler, num_steps))
    key = jax.random.key(seed)
    diagnostics = []
    row_accepted = {m: np.full(k * n, np.nan) for m in cohort.modalities}  # [K*N]
    row_bad = {m: np.full(k * n, np.nan) for m in cohort.modalities}
    with progress.bar(f"imputing ({method})", total=len(order)) as targets:
        for target in order:
            targets.update(description=f"imputing {target} ({method})")
            rows = np.flatnonzero(~have[target])
            if rows.size == 0:
                targets.advance()
                continue
            tm = models.targets[target]
            known = have if config.cascade else known_obs
            avail = np.stack([known[s][rows] for s in tm.sources], axis=1)  # [R, S]
            size = _bucket(rows.size, bucket)
            values = [jnp.asarray(_pad(conditions.values(tm, s, rows, work, known[s]), size))
                      for s in tm.sources]
            avail_p = _pad(avail, size)
            target_key = jax.random.fold_in(key, cohort.modalities.index(target))
            used_threshold = (threshold if threshold is not None else
                              tm.thresholds.get(threshold_key(sampler, steps), PAPER_THRESHOLD))
            start = time.perf_counter()
            common = dict(shape=(size, tm.multi_model.data_dim if method == "multi"
                                 else tm.model.data_dim), sampler=sampler, num_steps=num_steps,
                          corrector_steps=config.corrector_steps, mesh=mesh)
            if method == "multi":
                out = sample(*tm.sampling_multi(schedule.num_steps),
                             Condition.of(*values, mask=avail_p), schedule, target_key, **common)
                accepted, bad = np.ones(rows.size, bool), np.zeros(rows.size)
            else:
                if not avail.any(axis=1).all():
                    raise ValueError(f"{int((~avail.any(axis=1)).sum())} row(s) have no source "
                                     f"of {target!r} available; with cascade=False every "
                                     f"patient needs one of {list(tm.sources)} observed.")
                if method == "single":
                    best = np.argmax(np.where(avail_p, inverse_mse_weights(tm.val_mse), -1), axis=1)
                    weights = np.eye(len(tm.sources), dtype=np.float32)[best]
                else:
                    weights = availability_weights(tm.val_mse, avail_p)
                conds = stack_members([Condition.of(v, mask=avail_p[:, [j]])
                                       for j, v in enumerate(values)])
                res = coherent_sample(*tm.sampling_specialists(schedule.num_steps), conds, weights,
                                      schedule, target_key,
                                      fusion="product" if method == "product" else "mean",
                                      uncond_conds=conds.dropped(),
                                      num_candidates=config.num_candidates,
                                      sharpness=(tm.fusion_sharpness if method == "coherent"
                                                 else 0.0),
                                      threshold=used_threshold,
                                      max_bad_fraction=config.max_bad_fraction,
                                      **common)
                out = res.samples
                accepted = np.asarray(res.accepted)[: rows.size]
                bad = np.asarray(res.bad_fraction)[: rows.size]
            generated = np.asarray(out)[: rows.size]
            if not np.all(np.isfinite(generated)):
                raise FloatingPointError(f"generation of {target!r} produced NaN/inf; check the "
                                         "models and the input latents.")
            work[target][rows] = generated
            have[target][rows] = True
            row_accepted[target][rows], row_bad[target][rows] = accepted, bad
            diagnostics.append({"target": target, "rows": int(rows.size), "padded_rows": size,
                                "acceptance": float(accepted.mean()),
                                "mean_bad_fraction": float(bad.mean()),
                                "threshold": float(used_threshold) if method != "multi" else None,
                                "seconds": time.perf_counter() - start,
                                "signature": f"{method}/{sampler}:{steps}/rows={size}"})
            logger.debug("imputed %s: %s", target, diagnostics[-1])
            targets.advance()
    index = pd.MultiIndex.from_arrays([np.tile(np.asarray(ids), k), np.repeat(np.arange(k), n)],
                                      names=["sample_id", "draw"])
    names = cohort.feature_names
    draws = {m: pd.DataFrame(work[m], index=index, columns=names[m]) for m in cohort.modalities
             if have[m].all()}
    imputed = pd.DataFrame({m: ~observed[m][1] & (m in draws) for m in cohort.modalities},
                           index=ids)
    features = means = None
    if latent_space is not None:
        features, means = {}, {}
        rng = np.random.default_rng([seed, 1])  # the residual noise of the decoded draws
        for m, table in draws.items():
            expected = latent_space.decode(m, table)  # decoder output, [K*N, D]
            means[m] = expected.groupby(level="sample_id", sort=False).mean()
            decoded = expected + rng.standard_normal(expected.shape).astype(np.float32) * (
                latent_space.residual_std[m])
            if feature_cohort is not None and m in feature_cohort.modalities:
                obs_ids = ids[observed[m][1]]
                real = feature_cohort.tables[m].reindex(obs_ids)
                mask = decoded.index.get_level_values("sample_id").isin(obs_ids)
                decoded.loc[mask] = real.reindex(
                    decoded.index[mask].get_level_values("sample_id")).to_numpy()
                means[m].loc[obs_ids] = real.to_numpy()
            features[m] = decoded
    return Imputation(draws=draws, imputed=imputed, diagnostics=pd.DataFrame(diagnostics),
                      features=features, num_samples=k, feature_means=means,
                      acceptance=_per_patient(row_accepted, k, ids),
                      bad_fraction=_per_patient(row_bad, k, ids))


def _per_patient(rows: dict, k: int, ids) -> pd.DataFrame:
    """Per modality [K*N] row values (NaN where not generated) -> [N, M] means over the draws."""
    out = {}
    for m, values in rows.items():
        values = values.reshape(k, len(ids))
        count = np.isfinite(values).sum(axis=0)
        out[m] = np.where(count > 0, np.nansum(values, axis=0) / np.maximum(count, 1), np.nan)
    return pd.DataFrame(out, index=ids)


def full_source_disagreement(cohort, models: ModelSet, *, sampler: str = "ddpm",
                             num_steps: int | None = None, seed: int = 0,
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
            features = [feature_cohort.tables[s].reindex(cohort.sample_ids).to_numpy()[rows]
                        for s in tm.sources]
            values = [apply_condition_map(tm.condition_maps[s], f)
                      for s, f in zip(tm.sources, features)]
        conds = stack_members([Condition.of(jnp.asarray(v)) for v in values])
        res = coherent_sample(*tm.sampling_specialists(models.schedule.num_steps), conds,
                              inverse_mse_weights(tm.val_mse), models.schedule,
                              jax.random.fold_in(jax.random.key(seed), index),
                              shape=(rows.size, tm.model.data_dim), sampler=sampler,
                              num_steps=num_steps, uncond_conds=conds.dropped(),
                              sharpness=tm.fusion_sharpness)
        found[target] = np.asarray(res.disagreement)
    return found


def calibrate_thresholds(cohort, models: ModelSet, *, sampler: str = "ddpm",
                         num_steps: int | None = None, quantile: float = 0.99,
                         seed: int = 0, feature_cohort=None) -> dict:
    """Recalibrates each target's rejection threshold for a sampler and step count.

    Runs coherent sampling on the cohort's patients that have every source of a target (e.g.
    the complete validation split), and sets the threshold to the `quantile` of all their
    per-step disagreements. Stores it in the model set; returns {target: threshold}.
    """
    if not 0 < quantile < 1:
        raise ValueError(f"quantile must be in (0, 1), got {quantile}.")
    steps = len(timesteps(models.schedule.num_steps, sampler, num_steps))
    found = {}
    for target, values in full_source_disagreement(cohort, models, sampler=sampler,
                                                   num_steps=num_steps, seed=seed,
                                                   feature_cohort=feature_cohort).items():
        found[target] = float(np.quantile(values, quantile))
        models.targets[target].thresholds[threshold_key(sampler, steps)] = found[target]
    return found


def write_imputation(result: Imputation, folder: str, metadata: dict | None = None,
                     interval: float = 0.9, *, overwrite: bool = False,
                     protected: Sequence[str | None] = (),
                     formats: str | Sequence[str] = ("csv",)) -> str:
    """Writes an Imputation as tables, all indexed by sample_id; returns the folder.

    Per modality m: m_latent_draws.csv (sample_id, draw, latents), m_latent_{mean,std,lower,
    upper}.csv, and when decoded m_features_draws.csv.gz and m_features_{mean,...}.csv;
    imputed.csv (which entries were generated), diagnostics.csv and summary.json (metadata,
    counts, acceptance, versions). `formats` ('csv', 'h5mu', 'parquet'; see formats_out.py):
    'parquet' writes each per-modality table as .parquet too, 'h5mu' adds imputation.h5mu
    (mean in X, std/lower/upper layers, draws in obsm, the mask in obs); without 'csv' the
    per-modality CSV tables are left out.

    The folder is written beside and renamed into place (`safe_io.output_folder`): it is never
    half-written, an earlier output of ours is replaced only with `overwrite`, and a folder
    holding anything else, or overlapping a `protected` folder, is refused.
    """
    formats = formats_out.check_formats(formats)
    spaces = [("latent", result.draws)] + ([("features", result.features)]
                                          if result.features is not None else [])
    with safe_io.output_folder(folder, overwrite=overwrite, protected=protected,
                               kind="imputation") as tmp:
        for space, tables in spaces:
            for m, draws in tables.items():
                stats = result.summary(m, "latent" if space == "latent" else "features",
                                       interval)
                if "csv" in formats and space == "features":  # gzip level 1: 3x faster than 9
                    draws.to_csv(os.path.join(tmp, f"{m}_{space}_draws.csv.gz"),
                                 compression={"method": "gzip", "compresslevel": 1})
                elif "csv" in formats:
                    draws.to_csv(os.path.join(tmp, f"{m}_{space}_draws.csv"))
                for stat, table in [("draws", draws)] + list(stats.items()):
                    if "csv" in formats and stat != "draws":
                        table.to_csv(os.path.join(tmp, f"{m}_{space}_{stat}.csv"))
                    if "parquet" in formats:
                        formats_out.write_parquet(table, os.path.join(
                            tmp, f"{m}_{space}_{stat}.parquet"))
        result.imputed.to_csv(os.path.join(tmp, "imputed.csv"))
        result.diagnostics.to_csv(os.path.join(tmp, "diagnostics.csv"), index=False)
        summary = {"metadata": metadata or {}, "num_patients": int(len(result.imputed)),
                   "num_samples": result.num_samples, "interval": interval,
                   "generated_entries": {m: int(v) for m, v in result.imputed.sum().items()},
                   "diagnostics": result.diagnostics.to_dict(orient="records"),
                   "formats": list(formats), "versions": metrics_io.versions()}
        metrics_io.write_json(os.path.join(tmp, "summary.json"), summary)
        if "h5mu" in formats:
            formats_out.write_h5mu(result, tmp, interval, summary)
    return folder
