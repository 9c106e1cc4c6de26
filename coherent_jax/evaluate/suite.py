"""The whole evaluation of a trained model set on held-out complete patients, and its report.

    report = evaluate_suite(feature_cohort, latent_cohort, space, models, EvalConfig(), seed,
                            folder)

Every complete patient of the evaluated split is copied once per source subset
(`patterns.pattern_copies`); each generative method imputes all copies in one call, so every
(target, available set) pair is scored from the same draws. Baselines get the same training
rows, held-out patients and available sets, in two kinds:

* latent baselines (`baselines.BASELINES`: ridge, knn, mlp, ...) are fitted on our latents, so
  they share our latent space: their feature-space rows are decoded with our decoders;
* raw-feature baselines (`FEATURE_BASELINES`: ridge_features, knn_features) are fitted on the
  preprocessed feature tables directly and scored there; their predictions are encoded with our
  encoders for the latent-space rows.

The 'mean' baseline is the training mean of each space: of the features in feature space (not
the decoded mean latent, which the decoder's bias pulls below zero R^2), of the latents in
latent space. Everything is scored in latent and in feature space; generative methods both as
the mean of their K draws and as single draws, baselines as their one point prediction.
Downstream forests work on the latents, as in the paper. Each part's tables land in the report
folder (`report.write_report`).

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
from typing import Any, Callable

import jax
import jax.numpy as jnp
import numpy as np
import pandas as pd

from coherent_jax import progress
from coherent_jax.evaluate import downstream, privacy, stats
from coherent_jax.evaluate.align import draws_array, paired
from coherent_jax.evaluate.baselines import BASELINES, predict_missing
from coherent_jax.evaluate.fidelity import energy_distance, prdc_per_sample
from coherent_jax.evaluate.patterns import PatternCopies, pattern_copies, tag
from coherent_jax.evaluate.reconstruction import (comparison_table, ideal_coverage,
                                                  patient_errors, r2_bootstrap,
                                                  reconstruction_metrics)
from coherent_jax.evaluate.report import write_report
from coherent_jax.impute import (METHODS, ImputeConfig, Imputation, full_source_disagreement,
                                 impute)
from coherent_jax.models.denoiser import Condition
from coherent_jax.sampling import sample

logger = logging.getLogger(__name__)


FEATURE_BASELINES = {"ridge_features": "ridge", "knn_features": "knn"}
"""Baselines fitted on the preprocessed feature tables: name -> `predict_missing` method."""
FEATURE_RIDGE_ALPHAS = tuple(np.logspace(-1, 6, 15))
"""RidgeCV's grid on raw features: thousands of standardised columns need larger penalties
than 32 latents (KIPAN picks 1e3 on every target)."""


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

    methods: tuple = ("coherent", "product", "multi")
    baselines: tuple = ("mean", "knn", "iterative", "ridge", "mlp", "mofa", "ridge_features",
                        "knn_features")
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


def _usable_methods(models, methods) -> list[str]:
    """The requested methods this model set can run (product needs condition dropout)."""
    usable = []
    for method in methods:
        tms = models.targets.values()
        if method == "multi" and any(tm.multi is None for tm in tms):
            continue
        if method != "multi" and any(tm.specialists is None for tm in tms):
            continue
        if method == "product" and not all(tm.unconditional for tm in tms):
            continue
        usable.append(method)
    return usable


def generate(copies: PatternCopies, models, space, config: EvalConfig, seed: int,
             log: Callable[[str], None], feature_copies: PatternCopies) -> dict[str, Imputation]:
    """One `impute` call per method over all pattern copies (latents and decoded features);
    `feature_copies` are the same copies in feature space (observed rows, and the conditions
    of models that condition on features)."""
    out = {}
    for method in _usable_methods(models, config.methods):
        start = time.perf_counter()
        out[method] = impute(copies.cohort, models, config.imputation, method=method, seed=seed,
                             latent_space=space, feature_cohort=feature_copies.cohort)
        log(f"{method}: {copies.cohort.num_samples} pattern copies x "
            f"{config.imputation.num_samples} draws "
            f"in {time.perf_counter() - start:.1f} s")
    return out


def _score(rows: list, real, draws, groups, point=None, errors: dict | None = None,
           **tags) -> None:
    """Appends the metrics table of one (method, target, source, space); with `errors`, also
    the per-patient errors under (method, target, space)."""
    table = reconstruction_metrics(real, draws, groups, point=point).reset_index()
    for name, value in tags.items():
        table.insert(0, name, value)
    rows.append(table)
    if errors is not None:
        ids, real_v, draws_v, _ = paired(real, draws)
        point_v = None if point is None else point.reindex(ids).to_numpy(np.float64)
        errors[(tags["method"], tags["target"], tags["space"])] = patient_errors(
            real_v, draws_v, point_v)


def _baseline_predictions(baseline, train, test, subset, target, space, seed):
    """(latent prediction [P, k], feature prediction [P, D], fitted_in) of one baseline.

    train / test: {'latent': tables, 'features': tables}. Latent baselines are decoded with
    `space`; raw-feature baselines are encoded with it; 'mean' is each space's training mean.
    """
    if baseline == "mean":
        return (predict_missing("mean", train["latent"], test["latent"], subset, target),
                predict_missing("mean", train["features"], test["features"], subset, target),
                "both")
    if baseline in FEATURE_BASELINES:
        method = FEATURE_BASELINES[baseline]
        options = {"alphas": FEATURE_RIDGE_ALPHAS} if method == "ridge" else {}
        features = predict_missing(method, train["features"], test["features"], subset, target,
                                   seed=seed, **options)  # [P, D]
        names = list(space.feature_names[target])
        latent = pd.DataFrame(space.encode_values(target, features[names].to_numpy()),
                              index=features.index,
                              columns=train["latent"][target].columns)  # [P, k]
        return latent, features, "features"
    latent = predict_missing(baseline, train["latent"], test["latent"], subset, target,
                             seed=seed)  # [P, k]
    return latent, space.decode(target, latent), "latent"


def reconstruction(copies, imputations, test_latent, test_features, train_latent, space,
                   config: EvalConfig, seed: int, groups, train_features=None,
                   log: Callable[[str], None] = lambda line: None
                   ) -> tuple[pd.DataFrame, dict]:
    """(long table: method, target, source, space, fitted_in, group, then the reconstruction
    metrics (see `reconstruction.reconstruction_metrics`); per-patient errors with every other
    modality given: (method, target, space) -> `reconstruction.patient_errors`, rows in
    `copies.sample_ids` order).

    fitted_in says where a row's predictor was fitted: 'latent' (generative methods and latent
    baselines, decoded for the feature rows), 'features' (raw-feature baselines, encoded for the
    latent rows), 'both' (the mean: each space's own training mean). Raw-feature baselines and
    the feature-space mean need `train_features` (the training split of the feature cohort).
    """
    needs_features = [b for b in config.baselines if b in FEATURE_BASELINES or b == "mean"]
    if needs_features and train_features is None:
        raise ValueError(f"baselines {needs_features} need train_features (the training split "
                         "of the preprocessed feature cohort).")
    rows = []
    ids = copies.sample_ids
    train = {"latent": {m: train_latent.tables[m].dropna() for m in train_latent.modalities}}
    if train_features is not None:
        train["features"] = {m: train_features.tables[m].dropna()
                             for m in train_features.modalities}
    seconds, errors = {}, {}
    for subset in copies.subsets:
        test = {"latent": {m: test_latent.tables[m].loc[ids] for m in subset},
                "features": {m: test_features.tables[m].loc[ids] for m in subset}}
        for target in (m for m in test_latent.modalities if m not in subset):
            real = {"latent": test_latent.tables[target].loc[ids],
                    "features": test_features.tables[target].loc[ids]}
            common = dict(target=target, source=tag(subset),
                          errors=errors if len(subset) == len(copies.cohort.modalities) - 1
                          else None)
            for method, result in imputations.items():
                for space_name, tables in (("latent", result.draws),
                                           ("features", result.features)):
                    # features: the posterior-mean estimate is the decoder-output mean
                    point = (copies.draws_of(result.feature_means, target, subset)
                             if space_name == "features" else None)
                    _score(rows, real[space_name], copies.draws_of(tables, target, subset),
                           groups, point=point, method=method, space=space_name,
                           fitted_in="latent", **common)
            for baseline in config.baselines:
                start = time.perf_counter()
                latent, features, fitted_in = _baseline_predictions(
                    baseline, train, test, subset, target, space, seed)
                seconds[baseline] = seconds.get(baseline, 0.0) + time.perf_counter() - start
                for space_name, pred in (("latent", latent), ("features", features)):
                    _score(rows, real[space_name], pred, groups, method=baseline,
                           space=space_name, fitted_in=fitted_in, **common)
    if seconds:
        log("baselines (fit and predict, all available sets): " + ", ".join(
            f"{b} {t:.1f} s" for b, t in seconds.items()))
    columns = ["method", "target", "source", "space", "fitted_in"]
    return pd.concat(rows, ignore_index=True)[columns + [c for c in rows[0].columns
                                                         if c not in columns]], errors


def baseline_label(method: str) -> str:
    """How a baseline's row is named in the report's method x target tables."""
    if method == "mean":
        return "training mean"
    if method in FEATURE_BASELINES:
        return f"{FEATURE_BASELINES[method]} (features)"
    return f"{method} (latent)"


def headline_table(scores: pd.DataFrame, space_name: str, generative, num_samples: int
                   ) -> pd.DataFrame:
    """Rows what is scored, columns targets: R^2 (pooled) in `space_name`.

    `scores` holds one available set per target (e.g. every other modality given). Each
    generative method gives two rows, '<method>: mean of K draws' (the R^2 of the mean of its K
    draws) and '<method>: single draw' (the mean over the K draws of each draw's R^2); each
    baseline one row, its point prediction, named by `baseline_label`. Row order: as scored.
    """
    chosen = scores[scores["space"] == space_name]
    rows = {}
    for method in pd.unique(chosen["method"]):
        part = chosen[chosen["method"] == method]
        if method in generative:
            rows[f"{method}: mean of {num_samples} draws"] = comparison_table(
                part, "r2_mean").iloc[0]
            rows[f"{method}: single draw"] = comparison_table(part, "r2_single").iloc[0]
        else:
            rows[baseline_label(method)] = comparison_table(part, "r2_mean").iloc[0]
    table = pd.DataFrame.from_dict(rows, orient="index")
    table.index.name = "method"
    return table


def headline_intervals(scores: pd.DataFrame, errors: dict, real: dict, generative,
                       num_samples: int, indices: np.ndarray, space_name: str = "features",
                       reference: str = "ridge_features") -> tuple[pd.DataFrame, pd.DataFrame]:
    """`headline_table` with patient-bootstrap intervals, plus paired differences.

    Args:
        scores: the reconstruction rows with every other modality given ('all' group).
        errors: `reconstruction`'s per-patient errors; real: target -> [N, D] true values in
            `space_name`, rows in the errors' order.
        indices: [B, N] bootstrap resamples of the patients, shared by every cell.
        reference: the baseline each generative method's mean of K draws is compared with.

    Returns:
        (cells: the headline's rows, then one '<method> - <reference>' row per generative
         method, as 'R^2 [low, high]' strings (differences with their BH q over the
         method x target family); tests: target, method, against, difference, low, high, p, q,
         significant).
    """
    headline = headline_table(scores, space_name, generative, num_samples)
    counts = stats.bootstrap_counts(indices, indices.shape[1])
    cells, tests = pd.DataFrame(index=headline.index, columns=headline.columns, dtype=object), []
    for target in headline.columns:
        boot = {}
        for method in pd.unique(scores["method"]):
            parts = errors[(method, target, space_name)]
            kinds = ("sse_mean", "sse_single") if method in generative else ("sse_mean",)
            for kind in kinds:
                row = _row_name(method, kind, generative, num_samples)
                boot[row] = r2_bootstrap(real[target], parts[kind], counts)
                cells.loc[row, target] = stats.cell(headline.loc[row, target],
                                                    *stats.percentile_interval(boot[row]))
        against = baseline_label(reference)
        if against not in boot:
            continue
        for method in generative:
            row = _row_name(method, "sse_mean", generative, num_samples)
            tests.append({"target": target, "method": method, "against": against,
                          **stats.paired_difference(headline.loc[row, target],
                                                    headline.loc[against, target], boot[row],
                                                    boot[against])})
    tests = stats.with_q(pd.DataFrame(tests)) if tests else pd.DataFrame()
    for _, t in tests.iterrows():
        cells.loc[f"{t['method']} - {t['against']}", t["target"]] = (
            f"{stats.cell(t['difference'], t['low'], t['high'], signed=True)} q={t['q']:.3f}")
    return cells, tests


def _row_name(method: str, kind: str, generative, num_samples: int) -> str:
    """The headline row of a method's point ('sse_mean') or single-draw ('sse_single') score."""
    if method not in generative:
        return baseline_label(method)
    return f"{method}: mean of {num_samples} draws" if kind == "sse_mean" else \
        f"{method}: single draw"


def calibration_table(scores: pd.DataFrame, errors: dict, generative, num_samples: int,
                      indices: np.ndarray, level: float = 0.9) -> pd.DataFrame:
    """Coverage of the central `level` interval of the K draws per generative method and
    target, in latent and feature space (every other modality given), with patient-bootstrap
    intervals, beside the coverage a perfectly calibrated sampler with K draws reaches."""
    ideal = ideal_coverage(num_samples, level) if num_samples > 1 else float("nan")
    rows = []
    for method in generative:
        for target in pd.unique(scores["target"]):
            row = {"method": method, "target": target}
            for space_name in ("latent", "features"):
                covered = errors[(method, target, space_name)]["covered"]
                point = float(np.mean(covered))
                low, high = stats.percentile_interval(covered[indices].mean(axis=1))
                row[f"coverage ({space_name})"] = stats.cell(point, low, high)
            rows.append({**row, f"ideal with K = {num_samples}": f"{ideal:.3f}"})
    return pd.DataFrame(rows).set_index(["method", "target"])


def _prdc_cells(real: np.ndarray, generated: np.ndarray, indices: np.ndarray) -> dict:
    """PRDC of generated [N, D] (row i: patient i, or a stand-in) vs real [N, D], each with an
    interval over the same resamples of the N rows (the k-NN balls held fixed)."""
    parts = prdc_per_sample(real, generated)
    return {name: stats.cell(float(values.mean()),
                             *stats.percentile_interval(values[indices].mean(axis=1)))
            for name, values in parts.items()}


def fidelity_and_privacy(copies, imputations, test_latent, train_latent, holdout_latent, models,
                         config: EvalConfig, seed: int, indices: np.ndarray
                         ) -> tuple[pd.DataFrame, pd.DataFrame, dict]:
    """Fidelity and copies, every other modality given, in latent space.

    Returns:
        (fidelity: method, target, PRDC of draw 0 vs the real test latents with patient
         intervals, energy distance; a 'random training records' row per target (real
         training records drawn at random, ignoring the patient: the floor a per-patient
         method must beat);
         copies: method, target, `privacy.copy_audit` of all K draws against the FULL
         training set and the real `holdout_latent`-to-train distances;
         unconditional: target -> `privacy.unconditional_check` of the multi-condition
         model's fully masked draws).
    """
    fidelity, copy_rows = [], []
    ids = copies.sample_ids
    rng = np.random.default_rng(seed)
    for target in test_latent.modalities:
        others = tuple(m for m in test_latent.modalities if m != target)
        real = test_latent.tables[target].loc[ids].to_numpy()
        train = train_latent.tables[target].dropna().to_numpy()
        holdout = holdout_latent.tables[target].dropna().to_numpy()
        stand_in = train[rng.choice(len(train), size=len(ids), replace=len(train) < len(ids))]
        fidelity.append({"method": "random training records", "target": target,
                         **_prdc_cells(real, stand_in, indices),
                         "energy_distance": energy_distance(real, stand_in, seed=seed)})
        for method, result in imputations.items():
            _, draws = draws_array(copies.draws_of(result.draws, target, others), ids)
            fidelity.append({"method": method, "target": target,
                             **_prdc_cells(real, draws[0], indices),
                             "energy_distance": energy_distance(real, draws[0], seed=seed)})
            copy_rows.append({"method": method, "target": target, **privacy.copy_audit(
                draws, train, holdout, num=config.num_bootstrap, seed=seed)})
    return (pd.DataFrame(fidelity), pd.DataFrame(copy_rows),
            unconditional_draws(train_latent, models, config, seed))


def unconditional_draws(train_latent, models, config: EvalConfig, seed: int) -> dict:
    """The multi-condition models' fully masked draws checked against training records."""
    unconditional = {}
    for index, (target, tm) in enumerate(models.targets.items()):
        if tm.multi is None:
            continue
        n = config.num_unconditional
        values = [jnp.zeros((n, train_latent.widths()[s])) for s in tm.sources]  # masked
        cond = Condition.of(*values, mask=jnp.zeros((n, len(values))))
        out = sample(*tm.sampling_multi(models.schedule.num_steps), cond, models.schedule,
                     jax.random.fold_in(jax.random.key(seed), 1000 + index),
                     shape=(n, tm.multi_model.data_dim), sampler=config.imputation.sampler,
                     num_steps=config.imputation.num_steps)
        unconditional[target] = privacy.unconditional_check(
            np.asarray(out), train_latent.tables[target].dropna().to_numpy())
    return unconditional


def membership_inference(latent_cohort, feature_cohort, models, space, config: EvalConfig,
                         seed: int, log: Callable[[str], None]) -> pd.DataFrame:
    """Conditional membership inference (`privacy.membership_audit`) per method and target.

    Each target is imputed from every other modality (K = config.membership_samples draws)
    for the complete training patients (members) and the complete `holdout_split` patients
    (non-members: never trained on, never used for selection); the attack score is the
    per-patient latent MSE of the mean of the draws. The raw-feature ridge of the report,
    fitted on the training patients and scored in latent space (its prediction encoded), is
    the reference: an ordinary in-sample fit.

    Returns:
        method, target, then `privacy.membership_audit`'s columns, q (BH over the table:
        AUC > 0.5 tests).
    """
    modalities = latent_cohort.modalities
    subsets = [tuple(m for m in modalities if m != t) for t in modalities]
    groups = {"member": "train", "non_member": config.holdout_split}
    copies = {g: pattern_copies(latent_cohort.split(s), subsets) for g, s in groups.items()}
    features = {g: pattern_copies(feature_cohort.split(s), subsets) for g, s in groups.items()}
    draws = dataclasses.replace(config, imputation=dataclasses.replace(
        config.imputation, num_samples=config.membership_samples))
    imputed = {g: generate(copies[g], models, space, draws, seed, log, features[g])
               for g in groups}
    train_features = {m: t.dropna() for m, t in feature_cohort.split("train").tables.items()}
    rows = []
    for target, others in zip(modalities, subsets):
        errors = {}
        for g, part in copies.items():
            real = latent_cohort.tables[target].loc[part.sample_ids].to_numpy(np.float64)
            for method, result in imputed[g].items():
                _, values = draws_array(part.draws_of(result.draws, target, others),
                                        part.sample_ids)
                errors.setdefault(method, {})[g] = np.mean((values.mean(0) - real) ** 2, axis=1)
            pred = predict_missing("ridge", train_features, {m: feature_cohort.tables[m].loc[
                part.sample_ids] for m in others}, others, target, seed=seed,
                alphas=FEATURE_RIDGE_ALPHAS)
            latent = space.encode_values(target, pred[list(space.feature_names[target])]
                                         .to_numpy())
            errors.setdefault(baseline_label("ridge_features"), {})[g] = np.mean(
                (latent - real) ** 2, axis=1)
        for method, found in errors.items():
            rows.append({"method": method, "target": target, **privacy.membership_audit(
                found["member"], found["non_member"], num=config.num_bootstrap, seed=seed)})
    return stats.with_q(pd.DataFrame(rows))


def disagreement_curves(test_latent, models, config: EvalConfig, seed: int,
                        test_features=None) -> pd.DataFrame:
    """Mean per-step disagreement of coherent sampling with every source given: [steps, targets]."""
    found = full_source_disagreement(test_latent, models, sampler=config.imputation.sampler,
                                     num_steps=config.imputation.num_steps, seed=seed,
                                     feature_cohort=test_features)
    table = pd.DataFrame({target: values.mean(axis=0) for target, values in found.items()})
    table.index.name = "step"
    return table


def _generated_fills(copies, imputations) -> dict:
    """method -> function(removed) giving the draws of the removed modalities from the copies
    whose subset is what remains (None when nothing remains: the privacy guard)."""
    modalities = copies.cohort.modalities

    def fill(result):
        def make(removed):
            kept = tuple(m for m in modalities if m not in removed)
            if not kept:
                return None
            return {m: copies.draws_of(result.draws, m, kept) for m in removed}
        return make

    return {method: fill(result) for method, result in imputations.items()}


def downstream_analyses(copies, imputations, test_latent, train_latent, config: EvalConfig,
                        seed: int, log: Callable[[str], None]) -> dict[str, Any]:
    """TRTS, performance rescue (classification and survival) with patient-bootstrap intervals
    and paired tests against the forest retrained on the remaining modalities, and
    prioritisation; one forest of n_estimators x num_seeds trees per model (rescue forests on
    every core: the same trees as on one)."""
    out: dict[str, Any] = {}
    ids = copies.sample_ids
    labels = pd.concat([train_latent.labels, test_latent.labels])
    train = {m: train_latent.tables[m] for m in train_latent.modalities}
    test = {m: test_latent.tables[m].loc[ids] for m in test_latent.modalities}
    trees = config.n_estimators * config.num_seeds
    label = config.label
    has_label = bool(label) and label in labels and labels.loc[ids, label].notna().sum() >= 2
    fills = _generated_fills(copies, imputations)
    if has_label:
        y = labels[label]
        trts = []
        for target in test_latent.modalities:
            others = tuple(m for m in test_latent.modalities if m != target)
            generated = {method: copies.draws_of(result.draws, target, others)
                         for method, result in imputations.items()}
            scored = downstream.train_real_test_synthetic(  # one forest scores every method
                train[target].dropna(), y, test[target], generated, y, seed=seed,
                n_estimators=trees)
            trts.append(scored.reset_index().assign(target=target))
        out["trts"] = pd.concat(trts, ignore_index=True)
        out["rescue"] = downstream.rescue(train, test, y, y, task="classification",
                                          generated=fills, seed=seed, n_estimators=trees,
                                          n_jobs=-1)
        log(f"rescue ({label}) done")
        areas, curves = [], {}
        for m in list(config.prioritise or test_latent.modalities[:1]):
            others = tuple(k for k in test_latent.modalities if k != m)
            model = _forest_on_all(train, y, trees, seed)  # one forest serves every method
            for method, result in imputations.items():
                curves[f"{m}_{method}"], area = _prioritise(
                    model, test, y, m, copies.draws_of(result.draws, m, others), seed)
                areas.append({"modality": m, "method": method, **area})
        out["prioritisation_curves"] = curves
        out["prioritisation"] = pd.DataFrame(areas)
    if config.survival and labels.loc[ids, "os_time"].notna().sum() >= 10:
        covariates = (pd.get_dummies(labels[label].astype("string"), dtype=float)
                      if has_label else None)
        out["rescue_survival"] = downstream.rescue(
            train, test, labels[["os_time", "os_event"]], labels[["os_time", "os_event"]],
            task="survival", covariates=covariates, generated=fills, seed=seed,
            n_estimators=trees, n_jobs=-1)  # 8 survival forests: the slowest part
        log("rescue (survival) done")
    for name in ("rescue", "rescue_survival"):
        if name in out:
            indices = stats.bootstrap_indices(len(out[name].y), config.num_bootstrap, seed)
            out[f"{name}_intervals"], out[f"{name}_tests"] = out[name].uncertainty(indices)
    return out


def _forest_on_all(train, y, trees: int, seed: int):
    """The classification forest on every modality's training latents (holes as NaN)."""
    train_ids = pd.Index(sorted(set().union(*(t.dropna().index for t in train.values()))))
    train_ids = train_ids[y.reindex(train_ids).notna().to_numpy()]
    return downstream.fit_forest(downstream.feature_table(train, train_ids), y.loc[train_ids],
                                 "classification", seed, trees)


def _prioritise(model, test, y, m, draws, seed: int):
    """Counterfactual prioritisation of measuring m with a fitted forest."""
    ids = test[m].index
    with_m = downstream.feature_table(test, ids)
    without_m = with_m.copy()
    block = [f"{m}:{c}" for c in test[m].columns]
    without_m[block] = np.nan
    return downstream.prioritisation_curve(model, with_m, without_m,
                                           draws.add_prefix(f"{m}:"), y, seed=seed)


def _baseline_notes(baselines) -> list[str]:
    """Which reconstruction rows share our latent space and which are fitted on raw features."""
    latent = [baseline_label(b) for b in baselines if b != "mean" and b not in FEATURE_BASELINES]
    raw = [baseline_label(b) for b in baselines if b in FEATURE_BASELINES]
    notes = ["Every baseline sees the same training rows, held-out patients and available sets "
             "as the generative methods.",
             "Rows that share our latent space (fitted on our latents; their feature-space scores "
             "are decoded through our decoders, so the autoencoders' own reconstruction bounds "
             f"them): {', '.join(['the generative methods', *latent])}."]
    if raw:
        notes.append(f"Rows fitted on the raw preprocessed features of the training rows, scored "
                     f"in feature space directly (their predictions are encoded with our "
                     f"encoders for the latent-space tables): {', '.join(raw)}. RidgeCV's alpha "
                     f"is chosen by leave-one-out on the training rows; KNN averages the 5 "
                     f"nearest training patients.")
    if "mean" in baselines:
        notes.append("'training mean': the training rows' mean in each space (of the features "
                     "in feature space, of the latents in latent space), not a decoded latent.")
    if "mofa" in baselines:
        notes.append("mofa (latent) is transductive: MOFA+ factors are fitted on the training "
                     "and the held-out patients' available latents together (their targets "
                     "hidden).")
    return notes


def _rescue_cells(intervals: pd.DataFrame) -> pd.DataFrame:
    """Rescue intervals as removed x fill cells 'score [low, high]'."""
    cells = intervals.assign(
        column=[f if d == "point" else f"{f} ({d})" for f, d in
                zip(intervals["fill"], intervals["draws"])],
        cell=[stats.cell(p, lo, hi) for p, lo, hi in
              zip(intervals["point"], intervals["low"], intervals["high"])])
    return cells.pivot(index="removed", columns="column", values="cell").reindex(
        index=pd.unique(cells["removed"]), columns=pd.unique(cells["column"])).fillna("")


def _test_cells(tests: pd.DataFrame, by: str, column: str) -> pd.DataFrame:
    """Paired tests as `by` x `column` cells 'difference [low, high]', '*' where BH q <= 0.05."""
    cells = tests.assign(cell=[
        f"{stats.cell(d, lo, hi, signed=True)}{'*' if sig else ''}" for d, lo, hi, sig in
        zip(tests["difference"], tests["low"], tests["high"], tests["significant"])])
    return cells.pivot(index=by, columns=column, values="cell").reindex(
        index=pd.unique(cells[by]), columns=pd.unique(cells[column])).fillna("")


def _privacy_cells(membership: pd.DataFrame, copies: pd.DataFrame) -> pd.DataFrame:
    """One row per (method, target): conditional membership AUC and near-copy share."""
    table = membership.set_index(["method", "target"])
    out = pd.DataFrame({
        "membership AUC": [stats.cell(a, lo, hi) for a, lo, hi in
                           zip(table["auc"], table["low"], table["high"])],
        "q (AUC > 0.5)": table["q"].map(lambda q: f"{q:.3g}"),
        "error median (train / holdout)": [
            f"{a:.3f} / {b:.3f}" for a, b in
            zip(table["member_error_median"], table["non_member_error_median"])]},
        index=table.index)
    near = copies.set_index(["method", "target"])
    out["near-copy share"] = pd.Series(
        [stats.cell(s, lo, hi) for s, lo, hi in
         zip(near["near_copy_share"], near["low"], near["high"])], index=near.index)
    out["NN distance median (draws / holdout)"] = pd.Series(
        [f"{a:.2f} / {b:.2f}" for a, b in
         zip(near["draw_train_nn_median"], near["holdout_train_nn_median"])], index=near.index)
    flagged = table["flagged"] | near["flagged"].reindex(table.index).fillna(False).astype(bool)
    out["flagged"] = flagged.map({True: "FLAGGED", False: "pass"})
    return out.fillna("")


def _summaries(scores, fidelity, privacy_cells, calibration, unconditional,
               down, timings, config: EvalConfig) -> dict[str, pd.DataFrame]:
    """The small tables shown inline in index.md."""
    features = scores[(scores["space"] == "features") & (scores["group"] == "all")]
    out = {"Reconstruction R^2 by available set (feature space; generative methods: mean of "
           "K draws, baselines: point prediction; *_features: fitted on raw features)":
           features.pivot_table(index=["target", "source"], columns="method",
                                values="r2_mean", sort=False)}
    out["Calibration: coverage of the central 90% interval of the K draws (95% patient "
        "interval), beside a perfectly calibrated sampler's"] = calibration
    out[f"Privacy: conditional membership inference (train vs {config.holdout_split!r} "
        f"patients, every other modality given, K = {config.membership_samples}) and "
        "near-copies of the full training set (flagged: AUC > "
        f"{privacy.MAX_MEMBERSHIP_AUC} or near-copy share > {privacy.MAX_NEAR_COPY_SHARE})"
        ] = privacy_cells
    out["Fidelity: PRDC of draw 0 vs the real test latents (95% patient intervals, k-NN balls "
        "fixed); 'random training records' is the floor"] = fidelity.set_index(
        ["target", "method"]).sort_index(level=0, sort_remaining=False)
    if unconditional:
        out["Fully masked multi-condition draws vs training records (nn_ratio ~1 or above is "
            "healthy)"] = pd.DataFrame(unconditional).T.rename_axis("target")
    if "trts" in down:
        out["Train on real, test on synthetic (balanced accuracy; generated: mean over the K "
            "draws' scores)"] = down["trts"].pivot_table(index=["target", "data"],
                                                         values="balanced_accuracy")
    for name, metric, title in (("rescue", "balanced_accuracy", "classification"),
                                ("rescue_survival", "c_index", "survival")):
        if f"{name}_intervals" in down:
            out[f"Performance rescue, {title} ({metric} [95% patient interval]; '' = nothing "
                "removed; retrained = a forest trained on the remaining modalities"
                f"{' and the cancer type' if name == 'rescue_survival' else ''})"] = (
                _rescue_cells(down[f"{name}_intervals"]))
        if len(down.get(f"{name}_tests", [])):
            out[f"Rescue vs the retrained forest, {title}: paired bootstrap difference "
                "(draw-averaged fills; * BH q <= 0.05 over the table)"] = _test_cells(
                down[f"{name}_tests"], "removed", "fill")
    if "prioritisation" in down:
        table = down["prioritisation"].set_index(["modality", "method"])
        out["Counterfactual test prioritisation (area under the curve; ties broken at random; "
            "gain interval over tie-breaks and random orders)"] = pd.DataFrame({
                "auc_prioritised": table["auc_prioritised"],
                "auc_random_mean": table["auc_random_mean"],
                "auc_gain": [stats.cell(g, lo, hi, signed=True) for g, lo, hi in zip(
                    table["auc_gain"], table["auc_gain_low"], table["auc_gain_high"])],
                "tied_share": table["tied_share"]})
    out["Seconds per part"] = pd.DataFrame({"seconds": timings}).rename_axis("part")
    return out


PARTS = ("generate", "reconstruction", "intervals_calibration", "fidelity_copies",
         "membership_inference", "disagreement", "downstream", "tables")  # timed, in order


def evaluate_suite(feature_cohort, latent_cohort, space, models, config: EvalConfig, seed: int,
                   folder: str, run_config: dict | None = None,
                   log: Callable[[str], None] | None = None) -> dict[str, Any]:
    """Runs every evaluation and writes the report folder, with a progress bar over its parts
    (`progress.bar`).

    Args:
        feature_cohort: the preprocessed feature-space cohort (all splits).
        latent_cohort: the same cohort encoded by `space`.
        space: the LatentSpace (decodes generated and baseline latents).
        models: the trained ModelSet.
        config: what to run.
        seed: one seed for draws, baselines and forests' offsets.
        folder: the report folder (index.md, tables/, figures/, results/).
        run_config: the whole run's configuration, recorded in the report.
        log: receives the progress lines (None: logged at INFO).

    Returns:
        {'index': path of index.md, 'headline': methods x targets table, 'timings': {...},
         and every table by name}.
    """
    with progress.bar("evaluation", total=len(PARTS)) as parts:
        return _evaluate_suite(feature_cohort, latent_cohort, space, models, config, seed,
                               folder, run_config, log or logger.info, parts)


def _evaluate_suite(feature_cohort, latent_cohort, space, models, config: EvalConfig, seed: int,
                    folder: str, run_config: dict | None, log: Callable[[str], None],
                    parts: progress.Bar) -> dict[str, Any]:
    """`evaluate_suite`'s work; `parts` moves on as each of the `PARTS` ends."""
    timings = {}
    clock = time.perf_counter()

    def lap(name):
        nonlocal clock
        now = time.perf_counter()
        timings[name] = round(now - clock, 2)
        clock = now
        logger.debug("evaluation part %s: %.1f s", name, timings[name])
        parts.update(description=f"evaluation ({name} done)")
        parts.advance()

    test_latent = latent_cohort.split(config.split)
    copies = pattern_copies(test_latent)
    train_latent = latent_cohort.split("train")
    label = config.label if config.label in test_latent.labels else None
    groups = test_latent.labels[label].loc[copies.sample_ids] if label else None
    log(f"evaluating {len(copies.sample_ids)} complete {config.split} patients x "
        f"{len(copies.subsets)} available sets")
    test_features = feature_cohort.split(config.split)
    imputations = generate(copies, models, space, config, seed, log,
                           pattern_copies(test_features, copies.subsets))
    if not imputations:
        raise ValueError(f"none of the methods {list(config.methods)} can run with this model "
                         "set ('multi' needs the multi-condition models, the others "
                         "specialists, 'product' specialists trained with uncond_prob > 0).")
    lap("generate")
    scores, errors = reconstruction(copies, imputations, test_latent, test_features,
                                    train_latent, space, config, seed, groups,
                                    train_features=feature_cohort.split("train"), log=log)
    lap("reconstruction")
    ids = copies.sample_ids
    indices = stats.bootstrap_indices(len(ids), config.num_bootstrap, seed)
    modalities = test_latent.modalities
    all_sources = [(t, tag(tuple(m for m in modalities if m != t))) for t in modalities]
    best = pd.concat([scores[(scores["target"] == t) & (scores["source"] == s)]
                      for t, s in all_sources])
    best = best[best["group"] == "all"]
    k = config.imputation.num_samples
    headline = headline_table(best, "features", imputations, k)
    headline_cells, headline_tests = headline_intervals(
        best, errors, {t: test_features.tables[t].loc[ids].to_numpy(np.float64)
                       for t in modalities}, imputations, k, indices)
    calibration = calibration_table(best, errors, imputations, k, indices)
    lap("intervals_calibration")
    fidelity, copy_audit, unconditional = fidelity_and_privacy(
        copies, imputations, test_latent, train_latent,
        latent_cohort.split(config.holdout_split), models, config, seed, indices)
    lap("fidelity_copies")
    membership = membership_inference(latent_cohort, feature_cohort, models, space, config,
                                      seed, log)
    lap("membership_inference")
    disagreement = disagreement_curves(test_latent, models, config, seed, test_features)
    lap("disagreement")
    down = downstream_analyses(copies, imputations, test_latent, train_latent, config, seed,
                               log)
    lap("downstream")
    diagnostics = pd.concat([r.diagnostics.assign(method=m) for m, r in imputations.items()])
    tables = {"reconstruction_all": scores,
              "reconstruction_latent": headline_table(best, "latent", imputations,
                                                      config.imputation.num_samples),
              "reconstruction_tests": headline_tests, "calibration": calibration,
              "fidelity": fidelity, "privacy_membership": membership,
              "privacy_copies": copy_audit, "imputation_diagnostics": diagnostics}
    tables.update({k: v for k, v in down.items() if isinstance(v, pd.DataFrame)})
    for name in ("rescue", "rescue_survival"):
        if name in down:
            tables[name] = down[name].scores
    method = "coherent" if "coherent" in imputations else next(iter(imputations))
    pca = {f"{t}_{method}": (test_latent.tables[t].loc[ids].to_numpy(),
                             copies.draws_of(imputations[method].draws, t, s.split("+"))
                             .xs(0, level="draw").to_numpy()) for t, s in all_sources}
    lap("tables")
    notes = _notes(copies, imputations, config, down)
    rescue = down["rescue"].scores if "rescue" in down else None
    index = write_report(
        folder, config=run_config or dataclasses.asdict(config), seed=seed,
        tables=tables, results={"privacy_unconditional": unconditional, "timings": timings},
        disagreement=disagreement if len(disagreement.columns) else None, pca=pca,
        reconstruction=headline, reconstruction_cells=headline_cells,
        reconstruction_metric=f"R^2 (feature space, all other modalities given; generative "
        f"methods as the mean of K = {k} draws and as a single draw, baselines as their point"
        "  prediction; 95% patient-bootstrap intervals; '<method> - ridge "
        "(features)': paired bootstrap difference, q: BH over those rows)",
        rescue=None if rescue is None else rescue[rescue["draws"] != "single"],
        prioritisation=down.get("prioritisation_curves"),
        summaries=_summaries(scores, fidelity,
                             _privacy_cells(membership, copy_audit), calibration, unconditional,
                             down, timings, config), notes=notes)
    return {"index": index, "headline": headline, "headline_intervals": headline_cells,
            "headline_tests": headline_tests, "calibration": calibration, "timings": timings,
            "fidelity": fidelity, "membership": membership, "copies": copy_audit,
            "unconditional": unconditional, "scores": scores, **down}


def _notes(copies, imputations, config: EvalConfig, down) -> list[str]:
    """The report's notes: what was run, what varies, which split plays which role."""
    draws = config.imputation
    notes = [f"{len(copies.sample_ids)} complete {config.split} patients, each imputed once per "
             f"available set ({len(copies.subsets)} sets), K = {draws.num_samples} draws, "
             f"{draws.sampler} {draws.num_steps or 'all'} steps, cascade={draws.cascade}.",
             "What varies: the patients. Every interval is the central 95% of "
             f"{config.num_bootstrap} bootstrap resamples of the evaluated patients (the same "
             "resamples for every method, so differences are paired; p: two-sided paired "
             "bootstrap; q: Benjamini-Hochberg over each table's family). What is fixed: the "
             "split, the training seed, the trained models, the draws and the forests' seeds "
             f"(each forest is {config.num_seeds} x {config.n_estimators} trees).",
             "Split roles: training fits every model; validation selects checkpoints and "
             "calibrates thresholds only; the privacy holdout (non-members of the conditional "
             f"membership inference, real holdout-to-train distances) is {config.holdout_split!r}"
             ", never trained on nor used for selection.",
             "Reconstruction tables: each generative method is scored twice, on the mean of its "
             f"K = {draws.num_samples} draws and on single draws (the mean over the K draws "
             "of each draw's score); each baseline on its one point prediction.",
             *_baseline_notes(config.baselines),
             "Rescue: fills given as K draws are scored on the forest's outputs averaged over "
             "the draws ('mean of K') and draw by draw ('single'); 'retrained' is a forest "
             "trained on the remaining modalities only (survival: and the cancer type, so with "
             "everything removed it is the cancer-label-only forest). Single-draw C-indices "
             "carry no interval (K x resamples scikit-survival calls).",
             "Fidelity intervals resample the patients with the k-NN balls of the full sample "
             "held fixed; the prioritisation gain's interval varies tie-breaks and random "
             "orders, not patients.",
             "Downstream forests use the latents, as in the paper."]
    skipped = [m for m in config.methods if m not in imputations]
    if skipped:
        notes.append(f"Methods skipped (the model set lacks what they need): {skipped}.")
    if "trts" not in down:
        notes.append(f"Classification analyses skipped: label {config.label!r} is unknown for "
                     "the evaluated patients.")
    if config.survival and "rescue_survival" not in down:
        notes.append("Survival rescue skipped: fewer than 10 evaluated patients with os_time.")
    return notes
