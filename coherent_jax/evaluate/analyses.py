"""The evaluation's analyses beyond reconstruction: fidelity and copies, the conditional
membership inference, per-step disagreement, and the downstream forests (TRTS, rescue,
prioritisation). Each takes the `EvalConfig` whole.
"""

from __future__ import annotations

import dataclasses
from typing import Any, Callable

import numpy as np
import pandas as pd

from coherent_jax.calibrate import full_source_disagreement
from coherent_jax.evaluate import downstream, privacy, stats
from coherent_jax.evaluate.align import draws_array
from coherent_jax.evaluate.baselines import predict_missing
from coherent_jax.evaluate.fidelity import energy_distance, prdc_per_sample
from coherent_jax.evaluate.generation import generate
from coherent_jax.evaluate.patterns import HeldOut, pattern_copies
from coherent_jax.evaluate.results import Downstream
from coherent_jax.evaluate.scoring import FEATURE_RIDGE_ALPHAS, baseline_label
from coherent_jax.impute import unconditional_draws


def _prdc_cells(real: np.ndarray, generated: np.ndarray, indices: np.ndarray) -> dict:
    """PRDC of generated [N, D] (row i: patient i, or a stand-in) vs real [N, D], each with an
    interval over the same resamples of the N rows (the k-NN balls held fixed)."""
    parts = prdc_per_sample(real, generated)
    return {name: stats.cell(float(values.mean()),
                             *stats.percentile_interval(values[indices].mean(axis=1)))
            for name, values in parts.items()}


def fidelity_and_copies(held_out: HeldOut, imputations: dict, train_latent, holdout_latent,
                        config, seed: int, indices: np.ndarray
                        ) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Fidelity and copies, every other modality given, in latent space.

    Args:
        held_out: the evaluated patients; imputations: method -> Imputation of their copies.
        train_latent: the training split of the latent cohort (the FULL training set).
        holdout_latent: the privacy holdout's split of the latent cohort.
        indices: [B, N] bootstrap resamples of the evaluated patients.

    Returns:
        (fidelity: method, target, PRDC of draw 0 vs the real test latents with patient
         intervals, energy distance; a 'random training records' row per target (real
         training records drawn at random, ignoring the patient: the floor a per-patient
         method must beat);
         copies: method, target, `privacy.copy_audit` of all K draws against the FULL
         training set and the real `holdout_latent`-to-train distances).
    """
    fidelity, copy_rows = [], []
    copies, test_latent = held_out.copies, held_out.latent
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
    return pd.DataFrame(fidelity), pd.DataFrame(copy_rows)


def masked_draws_audit(train_latent, models, config, seed: int) -> dict:
    """The multi-condition models' fully masked draws (`impute.unconditional_draws`) checked
    against the training records (`privacy.unconditional_check`)."""
    draws = unconditional_draws(models, train_latent.widths(), config.num_unconditional,
                                config.imputation, seed)
    return {target: privacy.unconditional_check(
        values, train_latent.tables[target].dropna().to_numpy())
        for target, values in draws.items()}


def membership_inference(latent_cohort, feature_cohort, models, space, config,
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
    imputed = {g: generate(copies[g], models, None, draws, seed, log, features[g])  # latents
               for g in groups}  # are what the attack scores: no decoding
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


def disagreement_curves(test_latent, models, config, seed: int,
                        test_features=None) -> pd.DataFrame:
    """Mean per-step disagreement of coherent sampling with every source given: [steps, targets]."""
    found = full_source_disagreement(test_latent, models, sampler=config.imputation.sampler,
                                     sample_steps=config.imputation.sample_steps, seed=seed,
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


def downstream_analyses(copies, imputations, test_latent, train_latent, config,
                        seed: int, log: Callable[[str], None]) -> Downstream:
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
        out["rescue"] = downstream.rescue(train, test, y, y, generated=fills, seed=seed,
                                          config=downstream.RescueConfig(n_estimators=trees,
                                                                         n_jobs=-1))
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
        out["rescue_survival"] = downstream.rescue(  # 8 survival forests: the slowest part
            train, test, labels[["os_time", "os_event"]], labels[["os_time", "os_event"]],
            covariates=covariates, generated=fills, seed=seed,
            config=downstream.RescueConfig(task="survival", n_estimators=trees, n_jobs=-1))
        log("rescue (survival) done")
    for name in ("rescue", "rescue_survival"):
        if name in out:
            indices = stats.bootstrap_indices(len(out[name].y), config.num_bootstrap, seed)
            out[f"{name}_intervals"], out[f"{name}_tests"] = out[name].uncertainty(indices)
    return Downstream(**out)


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
