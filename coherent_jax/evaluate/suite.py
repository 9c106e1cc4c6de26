"""The whole evaluation of a trained model set on held-out complete patients, and its report.

    results = evaluate_suite(TrainedRun(feature_cohort, latent_cohort, space, models),
                             EvalConfig(), seed, folder)

generate (`generation`: one `impute` call per method) -> score (`scoring`: reconstruction,
headline with patient intervals, calibration) -> analyse (`analyses`: fidelity, copies,
membership inference, disagreement, downstream forests) -> write (`report.write_report`), with
every table in one typed `results.EvalResults`.

Every complete patient of the evaluated split is copied once per source subset
(`patterns.pattern_copies`); each generative method imputes all copies in one call, so every
(target, available set) pair is scored from the same draws. Baselines get the same training
rows, held-out patients and available sets: latent baselines fitted on our latents, raw-feature
baselines fitted on the preprocessed features (`scoring`).

The 'mean' baseline is the training mean of each space: of the features in feature space (not
the decoded mean latent, which the decoder's bias pulls below zero R^2), of the latents in
latent space. Everything is scored in latent and in feature space; generative methods both as
the mean of their K draws and as single draws, baselines as their one point prediction.
Downstream forests work on the latents, as in the paper.

Uncertainty is over patients: one set of bootstrap resamples of the evaluated patients gives
every interval and paired test (`stats`); BH over each table's family. The privacy audit
(`privacy`) imputes training patients (members) and `holdout_split` patients (non-members)
for the conditional membership inference, and measures the draws' distances to the full
training set.
"""

from __future__ import annotations

import dataclasses
import logging
import time
import warnings
from typing import Callable

import numpy as np
import pandas as pd

from coherent_jax.engine import progress
from coherent_jax.data import Cohort
from coherent_jax.evaluate import analyses, stats
from coherent_jax.evaluate.baselines import BASELINES
from coherent_jax.evaluate.generation import generate
from coherent_jax.evaluate.joint import joint_table
from coherent_jax.evaluate.patterns import HeldOut, pattern_copies, tag
from coherent_jax.evaluate.report import write_report
from coherent_jax.evaluate.results import EvalResults
from coherent_jax.evaluate.scoring import (FEATURE_BASELINES, BaselineTraining, calibration_table,
                                           distribution_table, headline_intervals, headline_table,
                                           reconstruction)
from coherent_jax.impute import METHODS, ImputeConfig
from coherent_jax.latent import LatentSpace
from coherent_jax.model_set import ModelSet

logger = logging.getLogger(__name__)


@dataclasses.dataclass(frozen=True)
class EvalConfig:
    """What `evaluate_suite` runs.

    Attributes:
        methods: generative methods scored (see `impute.METHODS`).
        baselines: non-generative baselines: fitted on our latents (`baselines.BASELINES`)
            or on the raw preprocessed features (`FEATURE_BASELINES`: 'ridge_features',
            'knn_features').
        imputation: how every method draws (`impute.ImputeConfig`; its method is ignored:
            each of `methods` runs); imputation.num_samples is K per patient and set.
        split: the split whose complete patients are held out and reconstructed.
        holdout_split: the privacy holdout: patients never trained on NOR used for selection
            or calibration (the test split; the validation split selects checkpoints and
            calibrates rejection thresholds, so it is not unseen). The conditional
            membership inference's non-members and the real holdout-to-train distances.
        label: classification label column for TRTS, rescue and prioritisation ('' skips).
        survival: also run the survival rescue (needs os_time / os_event labels).
        num_seeds: each downstream forest is num_seeds forests of n_estimators trees averaged
            (one forest of num_seeds x n_estimators trees, random_state = seed), so forest
            randomness does not drive the comparisons; their uncertainty is over patients.
        n_estimators: trees per forest.
        prioritise: modalities for counterfactual prioritisation (default: the first one).
        num_unconditional: fully masked multi-condition draws for the memorisation check.
        num_bootstrap: bootstrap resamples of the patients behind every interval and test.
        membership_samples: K draws per patient of the conditional membership inference.
    """

    methods: tuple = ("coherent", "product", "multi", "gaussian")
    baselines: tuple = ("mean", "knn", "iterative", "ridge", "mlp", "mofa", "ridge_features",
                        "knn_features", "gaussian_features")
    imputation: ImputeConfig = ImputeConfig(num_candidates=2)
    split: str = "test"
    holdout_split: str = "test"
    label: str = "cancer_type"
    survival: bool = True
    num_seeds: int = 3
    n_estimators: int = 100
    prioritise: tuple = ()
    num_unconditional: int = 500
    num_bootstrap: int = stats.NUM_BOOTSTRAP
    membership_samples: int = 10

    def __post_init__(self):
        unknown = sorted(set(self.methods) - set(METHODS)) + sorted(
            set(self.baselines) - set(BASELINES) - set(FEATURE_BASELINES))
        if unknown:
            raise ValueError(f"unknown method(s) {unknown}; generative: {METHODS}, baselines: "
                             f"{BASELINES + tuple(FEATURE_BASELINES)}.")
        if not self.methods:
            raise ValueError(f"give at least one generative method of {METHODS} (to score "
                             "baselines alone, call evaluate.predict_missing and "
                             "reconstruction_metrics).")
        for name in ("num_seeds", "n_estimators", "num_unconditional",
                     "num_bootstrap", "membership_samples"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be >= 1, got {getattr(self, name)}.")
        if self.holdout_split == "train":
            raise ValueError("holdout_split 'train' holds the training patients: the privacy "
                             "holdout must be patients never trained on (the test split).")


PARTS = ("generate", "reconstruction", "intervals_calibration", "fidelity_copies",
         "membership_inference", "disagreement", "downstream", "tables")  # timed, in order


@dataclasses.dataclass(frozen=True)
class TrainedRun:
    """What `evaluate_suite` evaluates: a trained run.

    Attributes:
        feature_cohort: the preprocessed feature-space cohort (all splits).
        latent_cohort: the same cohort encoded by `space`.
        space: the LatentSpace (decodes generated and baseline latents).
        models: the trained ModelSet.
    """

    feature_cohort: Cohort
    latent_cohort: Cohort
    space: LatentSpace
    models: ModelSet


def evaluate_suite(run: TrainedRun, *args, run_config: dict | None = None,
                   log: Callable[[str], None] | None = None, **kwargs) -> EvalResults:
    """Runs every evaluation and writes the report folder, with a progress bar over its parts
    (`progress.bar`): generate -> score -> analyse -> write.

    Args:
        run: the trained run: both cohorts, the latent space and the model set.
        config: what to run.
        seed: one seed for draws, baselines and forests' offsets.
        folder: the report folder (index.md, tables/, figures/, results/).
        run_config: the whole run's configuration, recorded in the report (default: config).
        log: receives the progress lines (None: logged at INFO).

    Returns:
        The `EvalResults`, with `index` the path of the report's index.md.

    Called as `evaluate_suite(run, config, seed, folder)`. The form before `TrainedRun`,
    `evaluate_suite(feature_cohort, latent_cohort, space, models, config, seed, folder)`, still
    works with a DeprecationWarning.
    """
    run, config, seed, folder = _call_form(run, args, kwargs)
    log = log or logger.info
    with progress.bar("evaluation", total=len(PARTS)) as bar:
        timer = _Timer(bar)
        held_out = HeldOut.of(run.latent_cohort.split(config.split),
                              run.feature_cohort.split(config.split))
        copies = held_out.copies
        log(f"evaluating {len(copies.sample_ids)} complete {config.split} patients x "
            f"{len(copies.subsets)} available sets")
        imputations = generate(copies, run.models, run.space, config, seed, log,
                               pattern_copies(held_out.features, copies.subsets))
        if not imputations:
            raise ValueError(f"none of the methods {list(config.methods)} can run with this "
                             "model set ('multi' needs the multi-condition models, the others "
                             "specialists, 'product' specialists trained with uncond_prob > 0).")
        timer.lap("generate")
        results = _score_and_analyse(run, held_out, imputations, config, seed, log, timer)
    results.index = write_report(folder, results, run_config or dataclasses.asdict(config),
                                 seed)
    return results


def _call_form(run, args: tuple, kwargs: dict) -> tuple:
    """(run, config, seed, folder) of `evaluate_suite`'s arguments, either form."""
    names = ("config", "seed", "folder")
    if not isinstance(run, TrainedRun):  # the deprecated form: the four objects first
        if len(args) < 3:
            raise TypeError("evaluate_suite(run: TrainedRun, config, seed, folder)")
        warnings.warn("evaluate_suite(feature_cohort, latent_cohort, space, models, ...) is "
                      "deprecated; pass evaluate_suite(TrainedRun(feature_cohort, "
                      "latent_cohort, space, models), config, seed, folder).",
                      DeprecationWarning, stacklevel=3)
        run, args = TrainedRun(run, *args[:3]), args[3:]
    values = dict(zip(names, args), **kwargs)
    missing = [n for n in names if n not in values]
    unknown = sorted(set(values) - set(names))
    if missing or unknown or len(args) > len(names):
        raise TypeError(f"evaluate_suite(run, config, seed, folder): missing {missing}, "
                        f"unknown {unknown}.")
    return run, values["config"], values["seed"], values["folder"]


class _Timer:
    """Seconds per evaluation part; moves the progress bar as each part ends."""

    def __init__(self, bar: progress.Bar):
        self.bar, self.timings, self.clock = bar, {}, time.perf_counter()

    def lap(self, name: str) -> None:
        now = time.perf_counter()
        self.timings[name] = round(now - self.clock, 2)
        self.clock = now
        logger.debug("evaluation part %s: %.1f s", name, self.timings[name])
        self.bar.update(description=f"evaluation ({name} done)")
        self.bar.advance()


def _score_and_analyse(run: TrainedRun, held_out: HeldOut, imputations: dict,
                       config: EvalConfig, seed: int, log: Callable[[str], None],
                       timer: _Timer) -> EvalResults:
    """Scores the draws and the baselines, then runs the analyses; one set of patient
    bootstrap resamples serves every interval."""
    copies, test_latent, test_features = held_out.copies, held_out.latent, held_out.features
    train_latent = run.latent_cohort.split("train")
    ids, modalities, k = copies.sample_ids, test_latent.modalities, config.imputation.num_samples
    label = config.label if config.label in test_latent.labels else None
    groups = test_latent.labels[label].loc[ids] if label else None
    training = BaselineTraining(train_latent, run.feature_cohort.split("train"), run.space,
                                run.models.covariate)
    scores, errors = reconstruction(held_out, imputations, training, config, seed, groups,
                                    log=log)
    timer.lap("reconstruction")
    indices = stats.bootstrap_indices(len(ids), config.num_bootstrap, seed)
    all_sources = [(t, tag(tuple(m for m in modalities if m != t))) for t in modalities]
    best = pd.concat([scores[(scores["target"] == t) & (scores["source"] == s)]
                      for t, s in all_sources])
    best = best[best["group"] == "all"]
    headline_cells, headline_tests = headline_intervals(
        best, errors, {t: test_features.tables[t].loc[ids].to_numpy(np.float64)
                       for t in modalities}, imputations, k, indices)
    calibration = calibration_table(best, errors, imputations, k, indices)
    distributions = distribution_table(best, errors, imputations, indices)
    joint = joint_table(copies, imputations, test_latent, test_features, indices)
    timer.lap("intervals_calibration")
    fidelity, copy_audit = analyses.fidelity_and_copies(
        held_out, imputations, train_latent, run.latent_cohort.split(config.holdout_split),
        config, seed, indices)
    unconditional = analyses.masked_draws_audit(train_latent, run.models, config, seed)
    timer.lap("fidelity_copies")
    membership = analyses.membership_inference(run.latent_cohort, run.feature_cohort,
                                               run.models, run.space, config, seed, log)
    timer.lap("membership_inference")
    disagreement = analyses.disagreement_curves(test_latent, run.models, config, seed,
                                                test_features)
    timer.lap("disagreement")
    down = analyses.downstream_analyses(copies, imputations, test_latent, train_latent, config,
                                        seed, log)
    timer.lap("downstream")
    method = "coherent" if "coherent" in imputations else next(iter(imputations))
    pca = {f"{t}_{method}": (test_latent.tables[t].loc[ids].to_numpy(),
                             copies.draws_of(imputations[method].draws, t, s.split("+"))
                             .xs(0, level="draw").to_numpy()) for t, s in all_sources}
    timer.lap("tables")
    return EvalResults(
        config=config, methods=list(imputations), patients=len(ids),
        available_sets=len(copies.subsets), scores=scores,
        headline=headline_table(best, "features", imputations, k), headline_cells=headline_cells,
        headline_tests=headline_tests,
        reconstruction_latent=headline_table(best, "latent", imputations, k),
        calibration=calibration, distributions=distributions, joint=joint, fidelity=fidelity,
        copies=copy_audit, membership=membership,
        unconditional=unconditional, disagreement=disagreement, downstream=down, pca=pca,
        diagnostics=pd.concat([r.diagnostics.assign(method=m) for m, r in imputations.items()]),
        timings=timer.timings)
