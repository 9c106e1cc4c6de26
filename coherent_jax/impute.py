"""Imputation for any missingness pattern: "give me the missing modalities of these patients".

Patients are handled all at once. Per target modality and place in the cascade, ONE batched
sampler call (or, for anchored models with nothing learned, one exact draw: `anchor_draws`)
serves every missingness pattern (`fill.fill_target`): each row carries its own member
weights (coherent, product, single) or condition mask (multi), zero for sources the patient
lacks. Row counts are padded to a few bucket sizes, so a cohort with all 14 patterns of 4
modalities compiles one sampler per (method, bucket) rather than one per pattern. Missing
modalities are filled in a cascade (each conditioned on what is known so far, including
earlier imputations of the same draw, in the order the model set chose for the patient's
availability pattern: `cascade.fill_plan`) or independently from the observed ones only.
This module is the library's one door to the samplers for generation (`unconditional_draws`
included).

Rows: K draws x N patients, draw-major (row = draw * N + patient).
"""

from __future__ import annotations

import dataclasses
import logging
import time
import warnings
from typing import Any, Sequence

import jax
import jax.numpy as jnp
import numpy as np
import pandas as pd

from coherent_jax import cascade
from coherent_jax.engine import progress
from coherent_jax import workdir as layout
from coherent_jax.errors import UnknownModalityError, UserError
from coherent_jax.conditions import Conditions, Work
from coherent_jax.fill import Filled, SamplerCalls, fill_target
from coherent_jax.model_set import ModelSet
from coherent_jax.engine.denoiser import Condition
from coherent_jax.engine.sampling import SAMPLERS, SamplerConfig, sample
from coherent_jax.settings import from_mapping

logger = logging.getLogger(__name__)

METHODS = ("auto", "coherent", "product", "multi", "single", "gaussian")


@dataclasses.dataclass(frozen=True)
class ImputeConfig:
    """How `impute` draws: the one source of these defaults (the pipeline, a work directory's
    `Imputer` and the evaluation take it whole).

    Attributes:
        method: 'auto' (default: per target and availability pattern, the family validation
            preferred, `TargetModels.family_by_pattern`: 'coherent' or 'multi'),
            'coherent' (specialists fused; calibrated sharpness when the model set has
            one), 'product' (product of experts), 'multi' (multi-condition model with masks)
            'single' (the best available specialist) or 'gaussian' (the closed form: every
            missing modality drawn jointly from the linear-Gaussian conditional given the
            patient's features, `closed_form.py`; no chain).
        num_samples: K draws per patient.
        sampler, sample_steps: one of `sampling.SAMPLERS` and its step count (None: all T steps,
            for 'ddpm'). Default: SDE-DPM-Solver++(3M) with 20 steps, the fastest sampler
            within noise of DDPM-1000 on KIPAN (benchmarks/RESULTS.md, "Few-step sampling").
        cascade: condition later targets on earlier imputations (True) or only on observed.
        num_candidates, max_bad_fraction: rejection among R candidates (coherent, product,
            drawn by a chain). Default 1, rejection off: it multiplies the sampling cost by R
            and on KIPAN's validation patients the first candidate passed for 99.8-100% of
            draws (experiments/configs/demo.py); models without a learned correction are
            drawn without a chain and have no disagreement to reject on.
        corrector_steps: Langevin corrector steps per reverse step.
        allow_unconditional: 'multi' only: let patients without any modality be generated
            unconditionally (explicit opt-in; the coherent methods always refuse).
    """

    method: str = "auto"
    num_samples: int = 10
    sampler: str = "dpmpp_3m_sde"
    sample_steps: int | None = 20
    cascade: bool = True
    num_candidates: int = 1
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
        if self.sample_steps is not None and self.sample_steps < 1:
            raise ValueError(f"sample_steps must be None (all T steps) or >= 1, got "
                             f"{self.sample_steps}.")
        if not 0.0 <= self.max_bad_fraction <= 1.0:
            raise ValueError(f"max_bad_fraction must be in [0, 1], got {self.max_bad_fraction}.")

    @classmethod
    def from_settings(cls, values) -> "ImputeConfig":
        """Deprecated: `settings.from_mapping(ImputeConfig, section,
        besides=workdir.STAGES.impute.own_settings)`, after `workdir.upgrade_config` for a
        saved run. Reads a run's impute section (old names upgraded, the pipeline stage's own
        keys skipped); other unknown keys are refused."""
        warnings.warn("ImputeConfig.from_settings is deprecated: use settings.from_mapping("
                      "ImputeConfig, section, besides=workdir.STAGES.impute.own_settings) "
                      "(a saved run's section through workdir.upgrade_config first).",
                      DeprecationWarning, stacklevel=2)
        section = layout.upgrade_config({"impute": dict(values)})["impute"]
        return from_mapping(cls, section, besides=layout.STAGES.impute.own_settings)


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
            exactly rather than by K draws); for 'gaussian', the decoded conditional mean
            itself (no Monte-Carlo error).
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


def impute(cohort, models: ModelSet, config: ImputeConfig | None = None, *, seed: int = 0,
           latent_space: Any = None, feature_cohort: Any = None,
           calls: SamplerCalls | None = None, **overrides) -> Imputation:
    """Fills every missing modality of every patient of a latent cohort, K times.

    Args:
        cohort: a latent Cohort (every modality at its model's width; holes as missing rows).
        models: the trained ModelSet.
        config: how to draw (`ImputeConfig`; default its defaults); `overrides` replace fields
            of it, e.g. `impute(cohort, models, num_samples=50)`.
        seed: one seed for everything; same seed, same draws.
        latent_space: optional LatentSpace with `decode(modality, DataFrame)`; decodes draws.
        feature_cohort: optional feature-space Cohort supplying decoded observed rows; both
            are required by models that condition on features (`condition_maps`).
        calls: the targets' order, the disagreement threshold, the smallest padded batch and
            the device mesh of the sampler calls (`SamplerCalls`; default its defaults). Its
            fields given as keywords (`order=`, `threshold=`, `bucket=`, `mesh=`) still work,
            with a DeprecationWarning.

    Raises:
        ValueError: unknown method/target/setting, width mismatch, or patients with no
            modality.
    """
    config, calls = _with_overrides(config, calls, overrides)
    order = tuple(calls.order or models.targets)
    _check(cohort, models, config.method, order)
    draws = _Draws.start(cohort, config)
    if models.covariate is not None:  # refuse patients without a known level before drawing
        if feature_cohort is None:
            raise ValueError(f"these models condition on the covariate "
                             f"{models.covariate.column!r}: pass feature_cohort (the patients' "
                             "preprocessed features, with their labels).")
        models.covariate.codes(feature_cohort.labels.reindex(draws.ids))
    if config.method == "gaussian":
        _closed_form_draws(draws, cohort, models, feature_cohort, seed)
        return draws.result(cohort, seed, latent_space, feature_cohort)
    _cascade(draws, cohort, models, config, seed, latent_space, feature_cohort, calls)
    return draws.result(cohort, seed, latent_space, feature_cohort)


def cascade_draws(cohort, models: ModelSet, config: ImputeConfig, *, seed: int,
                  latent_space: Any = None, feature_cohort: Any = None,
                  calls: SamplerCalls = SamplerCalls()) -> dict:
    """modality -> [K, N, D] latent draws of what `impute` fills (observed rows repeated),
    without decoding them: the draws `cascade_choice` scores. Arguments as `impute`'s; the
    methods with a chain or exact anchors, not 'gaussian' (ValueError)."""
    if config.method == "gaussian":
        raise ValueError("cascade_draws draws the models' cascade; method 'gaussian' draws "
                         "the closed form jointly: call impute() for it.")
    _check(cohort, models, config.method, tuple(calls.order or models.targets))
    draws = _Draws.start(cohort, config)
    _cascade(draws, cohort, models, config, seed, latent_space, feature_cohort, calls)
    n = len(draws.ids)
    return {m: v.reshape(draws.k, n, -1) for m, v in draws.work.items()}


def _cascade(draws: "_Draws", cohort, models: ModelSet, config: ImputeConfig, seed: int,
             latent_space, feature_cohort, calls: SamplerCalls) -> None:
    """Fills `draws` call by call (`cascade.fill_plan`: the user's order, else each
    pattern's order of `models.cascade_orders`, else the targets'). A target's first call
    draws from its modality's key, any later call (another pattern's place) from that key
    folded with the call's index."""
    conditions = Conditions(models, draws.present, draws.ids, latent_space, feature_cohort)
    work = Work(draws.work, draws.known(config.cascade))
    key = jax.random.key(seed)
    plan = cascade.fill_plan(draws.present, cascade.modalities_of(models), tuple(models.targets),
                             models.cascade_orders, tuple(calls.order or ()))
    drawn = set()
    with progress.bar(f"imputing ({config.method})", total=len(plan)) as bar:
        for index, (target, patients) in enumerate(plan):
            bar.update(description=f"imputing {target} ({config.method})")
            rows = np.flatnonzero(~draws.have[target] & np.tile(patients, draws.k))
            target_key = jax.random.fold_in(key, cohort.modalities.index(target))
            if target in drawn:
                target_key = jax.random.fold_in(target_key, index)
            drawn.add(target)
            if rows.size:
                draws.record(target, rows, fill_target(
                    models, target, rows, conditions, work, config, target_key, calls))
                logger.debug("imputed %s: %s", target, draws.diagnostics[-1])
            bar.advance()


def _with_overrides(config: ImputeConfig | None, calls: SamplerCalls | None,
                    overrides: dict) -> tuple[ImputeConfig, SamplerCalls]:
    """`config` (default: ImputeConfig()) with the fields named in `overrides` replaced, and
    `calls` (default: SamplerCalls()) with those given the old way, as keywords, replaced."""
    names = [f.name for f in dataclasses.fields(ImputeConfig)]
    old = {k: overrides.pop(k) for k in [f.name for f in dataclasses.fields(SamplerCalls)]
           if k in overrides}
    unknown = sorted(set(overrides) - set(names))
    if unknown:
        raise ValueError(f"impute() got unknown setting(s) {unknown}; ImputeConfig has {names}.")
    if old:
        warnings.warn(f"impute({', '.join(f'{k}=...' for k in old)}) is deprecated; pass "
                      f"calls=SamplerCalls({', '.join(f'{k}=...' for k in old)}).",
                      DeprecationWarning, stacklevel=3)
    return (dataclasses.replace(config or ImputeConfig(), **overrides),
            dataclasses.replace(calls or SamplerCalls(), **old))


def supports(models: ModelSet, method: str) -> bool:
    """Whether the model set has what `method` needs for every target (multi: the
    multi-condition models; product: specialists trained with condition dropout; gaussian:
    the closed form; the others: specialists)."""
    targets = models.targets.values()
    if method == "gaussian":
        return models.closed_form is not None and bool(models.closed_form.patterns)
    if method == "multi":
        return all(tm.multi is not None for tm in targets)
    if method == "auto":
        return all(tm.specialists is not None or tm.multi is not None for tm in targets)
    if method == "product" and not all(tm.unconditional for tm in targets):
        return False
    return all(tm.specialists is not None for tm in targets)


def _check(cohort, models: ModelSet, method: str, order: Sequence[str]) -> None:
    """Refuses targets without models, cohorts lacking a target or its sources, methods the
    model set cannot run, and latents of another width."""
    if method == "gaussian" and not supports(models, method):
        raise UserError("method 'gaussian' needs the closed form, which this model set lacks "
                        "(trained by an earlier version, or too few complete training "
                        "patients); retrain it in a new work directory.")
    for target in order:
        if target not in models.targets:
            raise UnknownModalityError(f"no trained models for target {target!r}; trained "
                                       f"targets: {sorted(models.targets)}.")
        tm = models.targets[target]
        if method == "gaussian":
            continue
        if target not in cohort.modalities:
            raise UnknownModalityError(f"target {target!r} is not a modality of the cohort "
                                       f"{list(cohort.modalities)}; pass a cohort with all "
                                       "modalities, holes as missing rows.")
        missing = [s for s in tm.sources if s not in cohort.modalities]
        if missing:
            raise ValueError(f"the models of {target!r} condition on {missing}, absent from the "
                             "cohort; add those modalities (all rows missing is fine).")
        needs = {"multi": tm.multi, "coherent": tm.specialists, "product": tm.specialists,
                 "single": tm.specialists,
                 "auto": tm.multi if tm.specialists is None else tm.specialists}[method]
        if needs is None:
            kind = {"multi": "a multi-condition model",
                    "auto": "specialists or a multi-condition model"}.get(method, "specialists")
            raise ValueError(f"method {method!r} needs {kind} for {target!r}, which this model "
                             "set lacks.")
        if method == "product" and not tm.unconditional:
            raise ValueError(f"product fusion needs specialists trained with condition dropout "
                             f"(uncond_prob > 0); those of {target!r} were not.")
        width = cohort.widths()[target]
        arch = tm.multi_model if method == "multi" or tm.specialists is None else (
            tm.specialist_model)
        if arch.data_dim != width:
            raise ValueError(f"the {target!r} models generate {arch.data_dim} dims but the "
                             f"cohort's {target!r} has {width}; encode the cohort with the "
                             "latent space the models were trained on.")


def _closed_form_draws(draws: "_Draws", cohort, models: ModelSet, feature_cohort,
                       seed: int) -> None:
    """Fills `draws` with the closed form: per missingness pattern, every missing modality
    drawn jointly given the observed modalities' features (`ClosedForm.sample`)."""
    start = time.perf_counter()
    form = models.closed_form
    if feature_cohort is None:
        raise ValueError("method 'gaussian' conditions on features: pass feature_cohort.")
    if set(cohort.modalities) != set(form.modalities):
        raise UnknownModalityError(f"the closed form covers {list(form.modalities)}; the cohort "
                                   f"has {list(cohort.modalities)}.")
    rng = np.random.default_rng([seed, 2])
    n, k = len(draws.ids), draws.k
    present = np.stack([draws.present[m] for m in form.modalities], axis=1)  # [N, M]
    filled = {m: ([], []) for m in form.modalities}  # target -> (row indices, samples)
    means = {m: np.full((n, draws.work[m].shape[1]), np.nan) for m in form.modalities}
    for observed in np.unique(present, axis=0):
        if observed.all():
            continue
        patients = np.flatnonzero((present == observed).all(axis=1))  # [n_p]
        gaussian = form.pattern([m for m, have in zip(form.modalities, observed) if have])
        labels = _labels(feature_cohort, draws.ids[patients], form.covariate)
        features = [form.inputs(feature_cohort.tables[m].reindex(draws.ids[patients]), labels)
                    for m in gaussian.sources]
        mean = gaussian.mean(features)  # [n_p, sum L_t]
        rows = (np.arange(k)[:, None] * n + patients[None, :]).ravel()  # draw-major [K*n_p]
        for target, value in gaussian.split(mean).items():
            means[target][patients] = value
        for target, values in gaussian.split(gaussian.draw(mean, k, rng)).items():
            filled[target][0].append(rows)
            filled[target][1].append(values.reshape(len(rows), -1))
    for target, (rows, samples) in filled.items():
        if not rows:
            continue
        rows, samples = np.concatenate(rows), np.concatenate(samples)
        draws.record(target, rows, Filled(samples, np.ones(len(rows)), np.zeros(len(rows)), {
            "target": target, "rows": int(len(rows)), "padded_rows": int(len(rows)),
            "acceptance": 1.0, "mean_bad_fraction": 0.0, "threshold": None,
            "seconds": time.perf_counter() - start, "signature": "gaussian/closed form"}))
    draws.exact_means.update(means)


def _labels(feature_cohort, ids, covariate):
    """The labels [N, ...] of patients `ids` when a covariate needs them (else None)."""
    return None if covariate is None else feature_cohort.labels.reindex(ids)


@dataclasses.dataclass
class _Draws:
    """The draw-major work arrays of one `impute` call, filled target by target.

    work: modality -> [K*N, D] values (observed rows tiled K times, then the draws);
    have: modality -> [K*N] rows known so far; observed: modality -> [K*N] rows observed;
    accepted, bad: modality -> [K*N] per-row rejection diagnostics (NaN where not drawn).
    """

    ids: pd.Index
    k: int
    present: dict  # modality -> [N] observed
    work: dict
    have: dict
    observed: dict
    accepted: dict
    bad: dict
    diagnostics: list
    exact_means: dict = dataclasses.field(default_factory=dict)  # modality -> [N, D] known means

    @classmethod
    def start(cls, cohort, config: ImputeConfig) -> "_Draws":
        """Tiles the observed values K times; refuses patients with nothing to condition on."""
        ids, k = cohort.sample_ids, int(config.num_samples)
        matrices = {m: cohort.matrix(m) for m in cohort.modalities}  # values [N, D], present [N]
        present = {m: p for m, (_, p) in matrices.items()}
        nothing = ~np.any(np.stack(list(present.values())), axis=0)
        if nothing.any() and (config.method != "multi" or not config.allow_unconditional):
            hint = ("the coherent methods never generate without a condition (privacy guard)"
                    if config.method != "multi" else "pass allow_unconditional=True to opt in")
            raise UserError(f"{int(nothing.sum())} patient(s) have no available modality, "
                             f"e.g. {list(ids[nothing][:5])}; {hint}, or drop them.")
        have = {m: np.tile(p, k) for m, p in present.items()}  # [K*N]
        empty = {m: np.full(k * len(ids), np.nan) for m in cohort.modalities}
        return cls(ids=ids, k=k, present=present,
                   work={m: np.tile(v, (k, 1)) for m, (v, _) in matrices.items()},
                   have=have, observed={m: h.copy() for m, h in have.items()},
                   accepted=empty, bad={m: v.copy() for m, v in empty.items()}, diagnostics=[])

    def known(self, cascade: bool) -> dict:
        """Rows a target may condition on: everything known so far, or only the observed."""
        return self.have if cascade else self.observed

    def record(self, target: str, rows: np.ndarray, filled: Filled) -> None:
        self.work[target][rows] = filled.samples
        self.have[target][rows] = True
        self.accepted[target][rows], self.bad[target][rows] = filled.accepted, filled.bad_fraction
        self.diagnostics.append(filled.diagnostics)

    def result(self, cohort, seed: int, latent_space, feature_cohort) -> Imputation:
        """The Imputation: draws of every complete modality, decoded when a space is given."""
        n, k = len(self.ids), self.k
        index = pd.MultiIndex.from_arrays([np.tile(np.asarray(self.ids), k),
                                           np.repeat(np.arange(k), n)],
                                          names=["sample_id", "draw"])
        draws = {m: pd.DataFrame(self.work[m], index=index, columns=cohort.feature_names[m])
                 for m in cohort.modalities if self.have[m].all()}
        imputed = pd.DataFrame({m: ~self.present[m] & (m in draws) for m in cohort.modalities},
                               index=self.ids)
        features = means = None
        if latent_space is not None:
            features, means = _decode(draws, self.present, self.ids, seed, latent_space,
                                      feature_cohort, self.exact_means)
        return Imputation(draws=draws, imputed=imputed,
                          diagnostics=pd.DataFrame(self.diagnostics), features=features,
                          num_samples=k, feature_means=means,
                          acceptance=_per_patient(self.accepted, k, self.ids),
                          bad_fraction=_per_patient(self.bad, k, self.ids))


def _decode(draws: dict, present: dict, ids, seed: int, latent_space,
            feature_cohort, exact_means: dict | None = None) -> tuple[dict, dict]:
    """(modality -> decoded draws [K*N, D] with the latent space's residual noise, modality ->
    [N, D] mean of the decoder's outputs, or the decoded latent mean where `exact_means`
    knows it: the closed form's); observed rows from `feature_cohort` when given."""
    features, means = {}, {}
    rng = np.random.default_rng([seed, 1])  # the residual noise of the decoded draws
    for m, table in draws.items():
        expected = latent_space.decode(m, table)  # decoder output, [K*N, D]
        means[m] = expected.groupby(level="sample_id", sort=False).mean()
        known = exact_means.get(m) if exact_means else None
        if known is not None and np.isfinite(known).all(axis=1).any():
            rows = np.isfinite(known).all(axis=1)  # [N] patients with a known mean
            means[m].loc[ids[rows]] = latent_space.decode(m, known[rows]).to_numpy()
        decoded = expected + latent_space.residual_noise(m, len(expected), rng)
        if feature_cohort is not None and m in feature_cohort.modalities:
            obs_ids = ids[present[m]]
            real = feature_cohort.tables[m].reindex(obs_ids)
            mask = decoded.index.get_level_values("sample_id").isin(obs_ids)
            decoded.loc[mask] = real.reindex(
                decoded.index[mask].get_level_values("sample_id")).to_numpy()
            means[m].loc[obs_ids] = real.to_numpy()
        features[m] = decoded
    return features, means


def _per_patient(rows: dict, k: int, ids) -> pd.DataFrame:
    """Per modality [K*N] row values (NaN where not generated) -> [N, M] means over the draws."""
    out = {}
    for m, values in rows.items():
        values = values.reshape(k, len(ids))
        count = np.isfinite(values).sum(axis=0)
        out[m] = np.where(count > 0, np.nansum(values, axis=0) / np.maximum(count, 1), np.nan)
    return pd.DataFrame(out, index=ids)


def unconditional_draws(models: ModelSet, latent_widths: dict, num: int, config: ImputeConfig,
                        seed: int) -> dict:
    """{target: [num, D]} fully masked draws of each multi-condition model (no source given):
    what the model generates from nothing, for the memorisation check of the evaluation.
    latent_widths: modality -> latent width (the masked conditions' shapes)."""
    out = {}
    for index, (target, tm) in enumerate(models.targets.items()):
        if tm.multi is None:
            continue
        widths = [latent_widths[s] if tm.condition_maps is None
                  else np.asarray(tm.condition_maps[s]["bias"]).shape[0] for s in tm.sources]
        values = [jnp.zeros((num, d)) for d in widths]  # masked
        cond = Condition.of(*values, mask=jnp.zeros((num, len(values))))
        out[target] = np.asarray(sample(
            *tm.sampling_multi(models.schedule.diffusion_steps), cond, models.schedule,
            jax.random.fold_in(jax.random.key(seed), 1000 + index),
            shape=(num, tm.multi_model.data_dim),
            config=SamplerConfig(config.sampler, config.sample_steps)))
    return out
