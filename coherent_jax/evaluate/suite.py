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
"""

from __future__ import annotations

import dataclasses
import time
from typing import Any, Callable

import jax
import jax.numpy as jnp
import numpy as np
import pandas as pd

from coherent_jax.evaluate import downstream, privacy, stats
from coherent_jax.evaluate.baselines import BASELINES, predict_missing
from coherent_jax.evaluate.fidelity import energy_distance, prdc
from coherent_jax.evaluate.patterns import PatternCopies, pattern_copies, tag
from coherent_jax.evaluate.reconstruction import comparison_table, reconstruction_metrics
from coherent_jax.evaluate.report import write_report
from coherent_jax.impute import METHODS, Imputation, full_source_disagreement, impute
from coherent_jax.models.denoiser import Condition
from coherent_jax.sampling import sample


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
        num_samples: K draws per patient and available set.
        sampler, num_steps, num_candidates, max_bad_fraction, corrector_steps, cascade: the
            imputation settings (see `impute.impute`; num_steps 0 = all T steps).
        split: the split whose complete patients are held out and reconstructed.
        holdout_split: unseen records for the privacy audit (never trained on).
        label: classification label column for TRTS, rescue and prioritisation ('' skips).
        survival: also run the survival rescue (needs os_time / os_event labels).
        num_seeds: forest seeds for the downstream analyses (paired tests need >= 2).
        n_estimators: trees per forest.
        prioritise: modalities for counterfactual prioritisation (default: the first one).
        num_unconditional: fully masked multi-condition draws for the memorisation check.
    """

    methods: tuple = ("coherent", "product", "multi")
    baselines: tuple = ("mean", "knn", "iterative", "ridge", "mlp", "mofa", "ridge_features",
                        "knn_features")
    num_samples: int = 10
    sampler: str = "ddim"
    num_steps: int = 100
    num_candidates: int = 2
    max_bad_fraction: float = 0.1
    corrector_steps: int = 0
    cascade: bool = True
    split: str = "test"
    holdout_split: str = "val"
    label: str = "cancer_type"
    survival: bool = True
    num_seeds: int = 3
    n_estimators: int = 100
    prioritise: tuple = ()
    num_unconditional: int = 500

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
        for name in ("num_samples", "num_seeds", "n_estimators", "num_unconditional"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be >= 1, got {getattr(self, name)}.")


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
        out[method] = impute(copies.cohort, models, method=method,
                             num_samples=config.num_samples, seed=seed, sampler=config.sampler,
                             num_steps=config.num_steps or None, cascade=config.cascade,
                             num_candidates=config.num_candidates,
                             max_bad_fraction=config.max_bad_fraction,
                             corrector_steps=config.corrector_steps, latent_space=space,
                             feature_cohort=feature_copies.cohort)
        log(f"{method}: {copies.cohort.num_samples} pattern copies x {config.num_samples} draws "
            f"in {time.perf_counter() - start:.1f} s")
    return out


def _score(rows: list, real, draws, groups, point=None, **tags) -> None:
    table = reconstruction_metrics(real, draws, groups, point=point).reset_index()
    for name, value in tags.items():
        table.insert(0, name, value)
    rows.append(table)


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
                   log: Callable[[str], None] = lambda line: None) -> pd.DataFrame:
    """Long table: method, target, source, space, fitted_in, group, then the reconstruction
    metrics (see `reconstruction.reconstruction_metrics`).

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
    seconds = {}
    for subset in copies.subsets:
        test = {"latent": {m: test_latent.tables[m].loc[ids] for m in subset},
                "features": {m: test_features.tables[m].loc[ids] for m in subset}}
        for target in (m for m in test_latent.modalities if m not in subset):
            real = {"latent": test_latent.tables[target].loc[ids],
                    "features": test_features.tables[target].loc[ids]}
            common = dict(target=target, source=tag(subset))
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
                                                         if c not in columns]]


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


def fidelity_and_privacy(copies, imputations, test_latent, train_latent, holdout_latent, models,
                         config: EvalConfig, seed: int) -> tuple[pd.DataFrame, dict]:
    """PRDC and energy distance of draw 0 (all other modalities given) vs the real test
    latents; DCR share and membership-inference AUC against train vs `holdout_split` records;
    the multi-condition model's fully masked draws checked against training records."""
    rows = []
    ids = copies.sample_ids
    for target in test_latent.modalities:
        others = tuple(m for m in test_latent.modalities if m != target)
        real = test_latent.tables[target].loc[ids].to_numpy()
        train = train_latent.tables[target].dropna().to_numpy()
        holdout = holdout_latent.tables[target].dropna().to_numpy()
        for method, result in imputations.items():
            draws = copies.draws_of(result.draws, target, others)
            generated = draws.xs(0, level="draw").to_numpy()  # [P, k]
            rows.append({"method": method, "target": target, **prdc(real, generated),
                         "energy_distance": energy_distance(real, generated, seed=seed),
                         **{f"dcr_{k}": v for k, v in privacy.dcr_share(
                             draws.to_numpy(), train, holdout, seed=seed).items()},
                         "mia_auc": privacy.membership_inference_auc(draws.to_numpy(), train,
                                                                     holdout)})
    unconditional = {}
    for index, (target, tm) in enumerate(models.targets.items()):
        if tm.multi is None:
            continue
        n = config.num_unconditional
        values = [jnp.zeros((n, train_latent.widths()[s])) for s in tm.sources]  # masked
        cond = Condition.of(*values, mask=jnp.zeros((n, len(values))))
        out = sample(*tm.sampling_multi(models.schedule.num_steps), cond, models.schedule,
                     jax.random.fold_in(jax.random.key(seed), 1000 + index),
                     shape=(n, tm.multi_model.data_dim), sampler=config.sampler,
                     num_steps=config.num_steps or None)
        unconditional[target] = privacy.unconditional_check(
            np.asarray(out), train_latent.tables[target].dropna().to_numpy())
    return pd.DataFrame(rows), unconditional


def disagreement_curves(test_latent, models, config: EvalConfig, seed: int,
                        test_features=None) -> pd.DataFrame:
    """Mean per-step disagreement of coherent sampling with every source given: [steps, targets]."""
    found = full_source_disagreement(test_latent, models, sampler=config.sampler,
                                     num_steps=config.num_steps or None, seed=seed,
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
                        log: Callable[[str], None]) -> dict[str, Any]:
    """TRTS, performance rescue (classification and survival), paired tests, prioritisation."""
    out: dict[str, Any] = {}
    ids = copies.sample_ids
    labels = pd.concat([train_latent.labels, test_latent.labels])
    train = {m: train_latent.tables[m] for m in train_latent.modalities}
    test = {m: test_latent.tables[m].loc[ids] for m in test_latent.modalities}
    seeds = range(config.num_seeds)
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
            per_method = {method: [] for method in generated}
            for seed in seeds:  # one forest per (target, seed) scores every method
                scored = downstream.train_real_test_synthetic(
                    train[target].dropna(), y, test[target], generated, y, seed=seed,
                    n_estimators=config.n_estimators)
                for method in generated:
                    table = scored.loc[["real", method]].rename(
                        index={method: "generated"}).reset_index()
                    table.insert(0, "seed", seed)
                    table.insert(0, "method", method)
                    table.insert(0, "target", target)
                    per_method[method].append(table)
            trts += [table for tables in per_method.values() for table in tables]
        out["trts"] = pd.concat(trts, ignore_index=True)
        out["rescue"] = pd.concat([downstream.rescue(
            train, test, y, y, task="classification", generated=fills, seed=seed,
            n_estimators=config.n_estimators) for seed in seeds], ignore_index=True)
        log(f"rescue ({label}) done")
        curves, areas = {}, []
        chosen = list(config.prioritise or test_latent.modalities[:1])
        for m in chosen:
            others = tuple(k for k in test_latent.modalities if k != m)
            for seed in seeds:  # one forest per seed serves every method
                model = _forest_on_all(train, y, config, seed)
                for method, result in imputations.items():
                    curve, area = _prioritise(model, test, y, m, copies.draws_of(
                        result.draws, m, others), seed)
                    areas.append({"modality": m, "method": method, **area})
                    if seed == 0:
                        curves[f"{m}_{method}"] = curve
        out["prioritisation_curves"] = curves  # seed 0 comes first: in method order
        out["prioritisation"] = pd.DataFrame(sorted(  # rows by modality, method, seed
            areas, key=lambda a: (chosen.index(a["modality"]),
                                  list(imputations).index(a["method"]))))
    if config.survival and labels.loc[ids, "os_time"].notna().sum() >= 10:
        covariates = (pd.get_dummies(labels[label].astype("string"), dtype=float)
                      if has_label else None)
        out["rescue_survival"] = pd.concat([downstream.rescue(
            train, test, labels[["os_time", "os_event"]], labels[["os_time", "os_event"]],
            task="survival", covariates=covariates, generated=fills, seed=seed,
            n_estimators=config.n_estimators) for seed in seeds], ignore_index=True)
        log("rescue (survival) done")
    for name, metric in (("rescue", "balanced_accuracy"), ("rescue_survival", "c_index")):
        if name in out and config.num_seeds >= 2:
            scored = out[name][out[name]["removed"] != ""]
            out[f"{name}_tests"] = stats.paired_tests(scored, metric, against="mean")
    return out


def _forest_on_all(train, y, config: EvalConfig, seed: int):
    """The classification forest on every modality's training latents (holes as NaN)."""
    train_ids = pd.Index(sorted(set().union(*(t.dropna().index for t in train.values()))))
    train_ids = train_ids[y.reindex(train_ids).notna().to_numpy()]
    return downstream.fit_forest(downstream.feature_table(train, train_ids), y.loc[train_ids],
                                 "classification", seed, config.n_estimators)


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


def _marked(tests: pd.DataFrame) -> pd.DataFrame:
    """Paired tests as removed x method cells: mean difference, '*' where BH-significant."""
    cells = tests.assign(cell=[f"{d:+.3f}{'*' if sig else ''}" for d, sig in
                               zip(tests["mean_difference"], tests["significant"])])
    return cells.pivot(index="removed", columns="method", values="cell")


def _summaries(scores, fidelity, unconditional, down, timings) -> dict[str, pd.DataFrame]:
    """The small tables shown inline in index.md."""
    features = scores[(scores["space"] == "features") & (scores["group"] == "all")]
    out = {"Reconstruction R^2 by available set (feature space; generative methods: mean of "
           "K draws, baselines: point prediction; *_features: fitted on raw features)":
           features.pivot_table(index=["target", "source"], columns="method",
                                values="r2_mean", sort=False)}
    columns = ["method", "target", "precision", "recall", "density", "coverage",
               "energy_distance", "dcr_share", "mia_auc"]
    out["Fidelity and privacy (draw 0 vs real test latents; DCR share 0.5 and MIA AUC 0.5 "
        "are ideal)"] = fidelity[columns].set_index(["method", "target"])
    if unconditional:
        out["Fully masked multi-condition draws vs training records (nn_ratio ~1 or above is "
            "healthy)"] = pd.DataFrame(unconditional).T.rename_axis("target")
    if "trts" in down:
        out["Train on real, test on synthetic (balanced accuracy, mean over seeds)"] = (
            down["trts"].pivot_table(index=["target", "method"], columns="data",
                                     values="balanced_accuracy"))
    for name, metric, title in (("rescue", "balanced_accuracy", "classification"),
                                ("rescue_survival", "c_index", "survival")):
        if name in down:
            out[f"Performance rescue, {title} ({metric}, mean over seeds; '' = nothing "
                "removed)"] = down[name].pivot_table(index="removed", columns="fill",
                                                     values=metric, sort=False)
        if f"{name}_tests" in down:
            out[f"Rescue vs mean fill, {title}: mean paired difference (* BH q <= 0.05)"] = (
                _marked(down[f"{name}_tests"]))
    if "prioritisation" in down:
        out["Counterfactual test prioritisation (area under the curve, mean over seeds)"] = (
            down["prioritisation"].groupby(["modality", "method"])[
                ["auc_prioritised", "auc_random_mean", "auc_gain"]].mean())
    out["Seconds per part"] = pd.DataFrame({"seconds": timings}).rename_axis("part")
    return out


def evaluate_suite(feature_cohort, latent_cohort, space, models, config: EvalConfig, seed: int,
                   folder: str, run_config: dict | None = None,
                   log: Callable[[str], None] = print) -> dict[str, Any]:
    """Runs every evaluation and writes the report folder.

    Args:
        feature_cohort: the preprocessed feature-space cohort (all splits).
        latent_cohort: the same cohort encoded by `space`.
        space: the LatentSpace (decodes generated and baseline latents).
        models: the trained ModelSet.
        config: what to run.
        seed: one seed for draws, baselines and forests' offsets.
        folder: the report folder (index.md, tables/, figures/, results/).
        run_config: the whole run's configuration, recorded in the report.
        log: progress lines.

    Returns:
        {'index': path of index.md, 'headline': methods x targets table, 'timings': {...},
         and every table by name}.
    """
    timings = {}
    clock = time.perf_counter()

    def lap(name):
        nonlocal clock
        now = time.perf_counter()
        timings[name] = round(now - clock, 2)
        clock = now

    test_latent = latent_cohort.split(config.split)
    copies = pattern_copies(test_latent)
    train_latent = latent_cohort.split("train")
    holdout_latent = latent_cohort.split(config.holdout_split)
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
    scores = reconstruction(copies, imputations, test_latent, feature_cohort.split(config.split),
                            train_latent, space, config, seed, groups,
                            train_features=feature_cohort.split("train"), log=log)
    lap("reconstruction")
    fidelity, unconditional = fidelity_and_privacy(copies, imputations, test_latent,
                                                   train_latent, holdout_latent, models,
                                                   config, seed)
    lap("fidelity_privacy")
    disagreement = disagreement_curves(test_latent, models, config, seed, test_features)
    lap("disagreement")
    down = downstream_analyses(copies, imputations, test_latent, train_latent, config, log)
    lap("downstream")
    modalities = test_latent.modalities
    all_sources = [(t, tag(tuple(m for m in modalities if m != t))) for t in modalities]
    best = pd.concat([scores[(scores["target"] == t) & (scores["source"] == s)]
                      for t, s in all_sources])
    best = best[best["group"] == "all"]
    headline = headline_table(best, "features", imputations, config.num_samples)
    diagnostics = pd.concat([r.diagnostics.assign(method=m) for m, r in imputations.items()])
    tables = {"reconstruction_all": scores,
              "reconstruction_latent": headline_table(best, "latent", imputations,
                                                      config.num_samples),
              "fidelity_privacy": fidelity, "imputation_diagnostics": diagnostics}
    tables.update({k: v for k, v in down.items()
                   if isinstance(v, pd.DataFrame) and k != "rescue"})
    pca = {}
    if imputations:
        method = "coherent" if "coherent" in imputations else next(iter(imputations))
        for t, s in all_sources:
            draws = copies.draws_of(imputations[method].draws, t, s.split("+"))
            pca[f"{t}_{method}"] = (test_latent.tables[t].loc[copies.sample_ids].to_numpy(),
                                    draws.xs(0, level="draw").to_numpy())
    lap("tables")
    notes = [f"{len(copies.sample_ids)} complete {config.split} patients, each imputed once per "
             f"available set ({len(copies.subsets)} sets), K = {config.num_samples} draws, "
             f"{config.sampler} {config.num_steps or 'all'} steps, cascade={config.cascade}.",
             "Reconstruction tables: each generative method is scored twice, on the mean of its "
             f"K = {config.num_samples} draws and on single draws (the mean over the K draws of "
             "each draw's score); each baseline on its one point prediction.",
             *_baseline_notes(config.baselines),
             f"Privacy: generated samples vs training records and unseen "
             f"{config.holdout_split!r} records.",
             "Downstream forests use the latents, as in the paper."]
    skipped = [m for m in config.methods if m not in imputations]
    if skipped:
        notes.append(f"Methods skipped (the model set lacks what they need): {skipped}.")
    if "trts" not in down:
        notes.append(f"Classification analyses skipped: label {config.label!r} is unknown for "
                     "the evaluated patients.")
    if config.survival and "rescue_survival" not in down:
        notes.append("Survival rescue skipped: fewer than 10 evaluated patients with os_time.")
    index = write_report(
        folder, config=run_config or dataclasses.asdict(config), seed=seed,
        tables=tables, results={"privacy_unconditional": unconditional, "timings": timings},
        disagreement=disagreement if len(disagreement.columns) else None, pca=pca,
        reconstruction=headline,
        reconstruction_metric=f"R^2 (feature space, all other modalities given; generative "
        f"methods as the mean of K = {config.num_samples} draws and as a single draw, baselines "
        "as their point prediction)",
        rescue=down.get("rescue"), prioritisation=down.get("prioritisation_curves"),
        summaries=_summaries(scores, fidelity, unconditional, down, timings), notes=notes)
    return {"index": index, "headline": headline, "timings": timings, "fidelity": fidelity,
            "unconditional": unconditional, "scores": scores, **down}
