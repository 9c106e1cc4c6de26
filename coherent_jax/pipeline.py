"""The main job as stages on a work directory: data -> latent space -> denoisers -> imputation.

Each stage is one library call that the absl scripts in experiments/ make. Every folder a
stage writes is built beside as '<folder>.partial' and renamed into place when complete
(`safe_io.output_folder`), so a kill at any moment leaves a work directory that the next run
completes without manual cleanup. A work directory
belongs to one configuration and one data fingerprint: config.json records them (with the seed
and library versions) and a later run with a different configuration is refused. Stages whose
outputs exist are loaded instead of recomputed, and denoiser training resumes from its latest
checkpoint, so an interrupted pipeline is simply run again.

The work directory's layout, the order of its stages and the upgrade of runs saved by earlier
versions: `coherent_jax.workdir`.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import os
import warnings
from typing import Any, Mapping

import numpy as np

from coherent_jax import metrics_io, safe_io
from coherent_jax import workdir as layout
from coherent_jax.workdir import imputation_folder  # noqa: F401 - its old home
from coherent_jax.calibrate import rejection_thresholds
from coherent_jax.cascade_choice import choose_orders
from coherent_jax.data import Preprocessor
# the data configuration's home is data/config.py; these names stay importable from here
from coherent_jax.data.config import (OWN_FILES, SOURCES, DataConfig,  # noqa: F401
                                      load_cohort, load_raw_cohort)
from coherent_jax.errors import UserError
from coherent_jax.evaluate.results import EvalResults
from coherent_jax.evaluate.suite import EvalConfig, TrainedRun, evaluate_suite
from coherent_jax.formats_out import write_imputation
from coherent_jax.impute import ImputeConfig, Imputation, SamplerCalls, impute
from coherent_jax.latent import (LatentConfig, LatentSpace, cross_fitted_latents, quality_table,
                                 save_quality_table)
from coherent_jax.model_set import (ModelSet, ModelSetConfig, TrainingRuntime, cohort_fingerprint,
                                   train_model_set)
from coherent_jax.settings import from_mapping  # noqa: F401 - its old home

logger = logging.getLogger(__name__)

def stage_preprocessing(workdir: str, prep: Preprocessor) -> None:
    """Saves the fitted preprocessing once (workdir/preprocessing/), so the work directory
    imputes new patients without the training data (`coherent_jax.Imputer`). One saved by an
    earlier version with the KNN fill's donors (training rows) is rewritten without them,
    its statistics unchanged (the models were trained on them)."""
    folder = layout.part(workdir, layout.STAGES.data.part)
    if layout.done(workdir, layout.STAGES.data):
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            saved = Preprocessor.load(folder)
        if saved.holds_training_rows:
            with safe_io.output_folder(folder, kind="preprocessing", overwrite=True) as tmp:
                saved.save(tmp)
            logger.warning("rewrote %s without the training rows an earlier version kept there "
                           "(the KNN fill's donors)", folder)
        return
    with safe_io.output_folder(folder, kind="preprocessing") as tmp:
        prep.save(tmp)


def _trained_part(config: Mapping[str, Any] | None) -> dict:
    """The sections that trained a run (`workdir.TRAINING`), in today's names
    (`workdir.upgrade_config`)."""
    return {k: v for k, v in layout.upgrade_config(config).items()
            if k not in layout.RERUNNABLE}


def claim_workdir(workdir: str, config: dict, seed: int, fingerprint: str) -> None:
    """Records the run in workdir/config.json, or checks that an existing one matches.

    Args:
        workdir: the work directory.
        config: the full configuration (JSON-able).
        seed: the run's seed.
        fingerprint: `cohort_fingerprint` of the preprocessed data.

    Sections in `workdir.RERUNNABLE` (imputation and evaluation settings) do not make a
    different run: they change no trained artefact, so
    `--config.evaluate.imputation.num_samples=...` on a trained work directory is allowed (the
    report records the settings it ran with). A run saved under old setting names is read in
    today's (`workdir.upgrade_config`).

    Raises:
        ValueError: the work directory holds a run of a different configuration, seed or data.
    """
    if os.path.exists(layout.part(workdir, layout.CONFIG)):
        existing = layout.read_run(workdir)
        if existing.get("data_fingerprint") != fingerprint:
            raise UserError(f"work directory {workdir!r} was made from different data "
                             f"(fingerprint {existing.get('data_fingerprint')} vs {fingerprint}):"
                             " the input files changed. Use a new --workdir.")
        theirs = {"config": _trained_part(existing.get("config")), "seed": existing.get("seed")}
        ours = json.loads(json.dumps({"config": _trained_part(config), "seed": seed},
                                     default=str))
        if theirs != ours:
            diff = sorted(k for k in set(theirs["config"]) | set(ours["config"])
                          if (theirs["config"] or {}).get(k) != ours["config"].get(k))
            raise UserError(f"work directory {workdir!r} holds a run with a different "
                             f"configuration (differs in: {diff or ['seed']}); use a new "
                             "--workdir or delete it to start over.")
        return
    metrics_io.write_run_info(workdir, config, seed, extra={"data_fingerprint": fingerprint})


def stage_latents(workdir: str, cohort, config: LatentConfig, log_fn=None) -> LatentSpace:
    """Fits (or reloads) the latent space and writes its quality table on val and test."""
    folder = layout.part(workdir, layout.STAGES.latent.part)
    if layout.done(workdir, layout.STAGES.latent):
        return LatentSpace.restore(folder)
    space = LatentSpace.fit(cohort, config, log_fn=log_fn)
    table = quality_table(space, cohort)
    with safe_io.output_folder(folder, kind="latent space") as tmp:
        space.save(tmp)
        save_quality_table(table, tmp)
    logger.info("%s", table.to_string())
    for row in table.itertuples():
        if row.r2_overall < 0.05:
            fix = f"--config.latent.kinds=\"{{'{row.modality}': 'pca'}}\""
            warnings.warn(f"the {row.encoder} of {row.modality!r} reconstructs its {row.split} "
                          f"rows no better than their mean (R^2 {row.r2_overall:.3f}): its "
                          f"latents carry little of the data. Try {fix} or more "
                          "--config.latent.max_epochs.", stacklevel=2)
    return space


def stage_denoisers(workdir: str, latent_cohort, config: ModelSetConfig, seed: int,
                    targets=None, batch_sharding: Any = None, features=None,
                    space: LatentSpace | None = None) -> ModelSet:
    """Trains (resuming from checkpoints) or reloads the ModelSet of a latent cohort; with the
    feature cohort and its latent `space`, the spreads are fitted on the training rows'
    latents as new patients would have them (`latent.cross_fitted_latents`)."""
    folder = layout.part(workdir, layout.STAGES.denoisers.part)
    if layout.done(workdir, layout.STAGES.denoisers):
        return ModelSet.load(folder)
    residual_latents = (cross_fitted_latents(space, features)
                        if space is not None and features is not None else None)
    writer = metrics_io.MetricsWriter(layout.part(workdir, layout.METRICS))
    progress = {}

    def log(record):
        writer.write(record)
        tag = f"{record['target']}/{record['family']}" + (
            f" (mixture anchors, {record['anchor_components']})"
            if "anchor_components" in record else "")
        progress.setdefault(tag, metrics_io.Progress(config.train_steps, label=tag)).update(
            record["step"])

    runtime = TrainingRuntime(workdir=workdir, log_fn=log, batch_sharding=batch_sharding)
    models, reports = train_model_set(latent_cohort, config, seed, targets=targets,
                                      runtime=runtime, features=features,
                                      residual_latents=residual_latents)
    if config.choose_cascade_orders and space is not None and features is not None:
        reports["cascade_orders"] = choose_orders(
            models, latent_cohort, features, space, residual_latents=residual_latents,
            num_samples=config.calibration_draws, seed=seed)
        models.cascade_orders = {k: tuple(v)
                                 for k, v in reports["cascade_orders"]["chosen"].items()}
    with safe_io.output_folder(folder, kind="model set") as tmp:
        models.save(tmp, {"fingerprint": cohort_fingerprint(latent_cohort)})
        metrics_io.write_json(os.path.join(tmp, "reports.json"), reports)
    return models


@dataclasses.dataclass(frozen=True)
class ImputeStage:
    """The imputation stage's settings: the config's impute section and the devices.

    Attributes:
        config: how to draw (`ImputeConfig`).
        split: the split whose patients are filled.
        calibrate_quantile: > 0 first recalibrates the rejection thresholds on the
            validation split at this quantile of the disagreement.
        calls: the sampler calls' smallest batch and device mesh (`impute.SamplerCalls`).
    """

    config: ImputeConfig = ImputeConfig()
    split: str = "test"
    calibrate_quantile: float = 0.0
    calls: SamplerCalls = SamplerCalls()


def stage_impute(out: str, latent_cohort, feature_cohort, space: LatentSpace,
                 models: ModelSet, stage: ImputeStage, seed: int, *,
                 protected=()) -> Imputation:
    """Imputes the missing modalities of one split and writes the tables to `out` (outside
    the work directory: `imputation_folder`), replacing an earlier imputation of ours there.

    Args:
        out: the output folder.
        stage: what to impute and how (`ImputeStage`).
        protected: folders the output must not overlap (the work directory, the data).
    """
    config, split = stage.config, stage.split
    if stage.calibrate_quantile > 0:
        found = rejection_thresholds(latent_cohort.split("val"), models, sampler=config.sampler,
                                     sample_steps=config.sample_steps,
                                     quantile=stage.calibrate_quantile, seed=seed,
                                     feature_cohort=feature_cohort.split("val"))
        models.store_thresholds(found)
        logger.info("calibrated rejection thresholds: %s", found.by_target)
    result = impute(latent_cohort.split(split), models, config, seed=seed, latent_space=space,
                    feature_cohort=feature_cohort.split(split), calls=stage.calls)
    write_imputation(result, out,
                     {"config": {**dataclasses.asdict(config), "split": split,
                                 "calibrate_quantile": stage.calibrate_quantile}, "seed": seed},
                     overwrite=True, protected=protected)
    return result


def stage_evaluate(workdir: str, run: TrainedRun, config: EvalConfig, seed: int,
                   run_config: dict, log_fn=None) -> EvalResults:
    """Evaluates the trained `run` on the held-out split and writes workdir/report/;
    `log_fn` receives the progress lines (None: logged at INFO).

    Returns:
        `evaluate_suite`'s results; `index` is the report's index.md.
    """
    return evaluate_suite(run, config, seed, layout.part(workdir, layout.REPORT),
                          run_config=run_config, log=log_fn)


def describe_patterns(cohort) -> str:
    """Missingness patterns with counts, one per line."""
    table = cohort.patterns()
    return table.to_string(index=False) if len(table) else "(no patients)"


def as_jsonable(value):
    """ConfigDict / dataclass / numpy values as plain JSON types."""
    if hasattr(value, "to_dict"):
        value = value.to_dict()
    return json.loads(json.dumps(value, default=lambda v: v.item() if isinstance(
        v, np.generic) else str(v)))
