"""Reconstruction scores of the evaluation: every method and baseline on every (target,
available set), the headline table with patient intervals, and calibration.

Baselines come in two kinds: latent baselines (`baselines.BASELINES`: ridge, knn, mlp, ...)
are fitted on our latents, so they share our latent space and their feature-space rows are
decoded with our decoders; raw-feature baselines (`FEATURE_BASELINES`) are fitted on the
preprocessed feature tables directly and scored there, their predictions encoded with our
encoders for the latent-space rows. 'mean' is each space's training mean.
"""

from __future__ import annotations

import dataclasses
import time
from typing import Any, Callable

import numpy as np
import pandas as pd
from sklearn.covariance import ledoit_wolf_shrinkage

from coherent_jax.data import Cohort
from coherent_jax.evaluate import stats
from coherent_jax.evaluate.align import paired
from coherent_jax.evaluate.baselines import predict_missing
from coherent_jax.evaluate.patterns import HeldOut, PatternCopies, tag
from coherent_jax.evaluate.reconstruction import (comparison_table, ideal_coverage, patient_errors,
                                                  r2_bootstrap, reconstruction_metrics)
from coherent_jax.latent import latent_names


FEATURE_BASELINES = {"ridge_features": "ridge", "knn_features": "knn",
                     "gaussian_features": "ridge"}
"""Baselines fitted on the preprocessed feature tables: name -> `predict_missing` method.
'gaussian_features' also draws: the ridge's prediction plus Gaussian residuals with the
Ledoit-Wolf covariance of its out-of-fold training residuals, in feature space (the closed
form a user would write in scikit-learn; `feature_gaussian_draws`)."""
DRAWING_BASELINES = {"gaussian_features": "gaussian (features)"}
"""Baselines that draw (scored as distributions too), with their row labels."""
RESIDUAL_FOLDS = 5
FEATURE_RIDGE_ALPHAS = tuple(np.logspace(-1, 6, 15))
"""RidgeCV's grid on raw features: thousands of standardised columns need larger penalties
than 32 latents (KIPAN picks 1e3 on every target)."""


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


def feature_gaussian_draws(point: pd.DataFrame, train: dict, subset, target: str, space,
                           num_samples: int, seed: int):
    """K draws of the feature-space closed form around the raw-feature ridge's predictions
    `point` [P, D]: the ridge's out-of-fold residuals on the training rows (RESIDUAL_FOLDS)
    give a Ledoit-Wolf covariance (1 - d) S + d mu I, drawn exactly as
    sqrt(1 - d) R' g / sqrt(n) + sqrt(d mu) e without forming it.

    Returns:
        (latent draws, feature draws, 'features', point): draws as DataFrames indexed by
        (sample_id, draw), the latents encoded by `space`; `point` unchanged (the feature-space
        point estimate).
    """
    ids = pd.Index(sorted(set.intersection(*(set(train[m].index) for m in (*subset, target)))))
    folds = np.array_split(np.random.default_rng(seed).permutation(len(ids)), RESIDUAL_FOLDS)
    residual = []
    for held in folds:
        fit = ids.difference(ids[held])
        pred = predict_missing("ridge", {m: train[m].loc[fit] for m in (*subset, target)},
                               {m: train[m].loc[ids[held]] for m in subset}, subset, target,
                               seed=seed, alphas=FEATURE_RIDGE_ALPHAS)
        residual.append(train[target].loc[ids[held]].to_numpy(np.float64) - pred.to_numpy())
    residual = np.concatenate(residual)  # [n, D]
    residual -= residual.mean(axis=0)
    n, d = residual.shape
    shrink = float(ledoit_wolf_shrinkage(residual, assume_centered=True))
    mu = float(np.mean(residual ** 2))  # trace(S) / D
    rng = np.random.default_rng([seed, 3])
    values = point.to_numpy(np.float64)  # [P, D]
    draws = (values[None] + np.sqrt(1 - shrink) * (rng.standard_normal(
        (num_samples, len(values), n)) @ residual) / np.sqrt(n)
        + np.sqrt(shrink * mu) * rng.standard_normal((num_samples,) + values.shape))
    index = pd.MultiIndex.from_arrays([np.tile(point.index, num_samples),
                                       np.repeat(np.arange(num_samples), len(point))],
                                      names=["sample_id", "draw"])
    features = pd.DataFrame(draws.reshape(-1, d), index=index, columns=point.columns)
    names = list(space.feature_names[target])
    latent = pd.DataFrame(space.encode_values(target, features[names].to_numpy(np.float32)),
                          index=index, columns=latent_names(target, space.width(target)))
    return latent, features, "features", point


def _baseline_predictions(baseline, train, test, subset, target, space, seed,
                          num_samples: int = 1):
    """(latent prediction [P, k], feature prediction [P, D], fitted_in) of one baseline;
    a drawing baseline (`DRAWING_BASELINES`) gives K draws and its point prediction
    (`feature_gaussian_draws`).

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
        if baseline in DRAWING_BASELINES:
            return feature_gaussian_draws(features, train["features"], subset, target, space,
                                          num_samples, seed)
        latent = pd.DataFrame(space.encode_values(target, features[names].to_numpy()),
                              index=features.index,
                              columns=train["latent"][target].columns)  # [P, k]
        return latent, features, "features"
    latent = predict_missing(baseline, train["latent"], test["latent"], subset, target,
                             seed=seed)  # [P, k]
    return latent, space.decode(target, latent), "latent"


@dataclasses.dataclass(frozen=True)
class BaselineTraining:
    """What the baselines of `reconstruction` are fitted on, and how they change space.

    Attributes:
        latent: the training split of the latent cohort (latent baselines, the latent mean).
        features: the training split of the feature cohort (raw-feature baselines and the
            feature-space mean; None: neither can run).
        space: the LatentSpace that decodes latent baselines' predictions and encodes
            raw-feature baselines' predictions.
        covariate: the models' covariate (`covariates.Covariate`), or None. With it the
            raw-feature baselines take the sources' features expanded with it, as the models
            do: the closed form per group is then the baseline.
    """

    latent: Cohort
    features: Cohort | None
    space: Any
    covariate: Any = None


def reconstruction(held_out: HeldOut, imputations: dict, training: BaselineTraining, config,
                   seed: int, groups: pd.Series | None = None,
                   log: Callable[[str], None] = lambda line: None
                   ) -> tuple[pd.DataFrame, dict]:
    """Every generative method (`imputations` of `held_out.copies`) and every baseline of
    `config.baselines` (an `EvalConfig`) on every (target, available set), per `groups` of
    the patients (None: all).

    Returns:
        (long table: method, target, source, space, fitted_in, group, then the reconstruction
         metrics (see `reconstruction.reconstruction_metrics`); per-patient errors with every
         other modality given: (method, target, space) -> `reconstruction.patient_errors`,
         rows in `held_out.copies.sample_ids` order).

    fitted_in says where a row's predictor was fitted: 'latent' (generative methods and latent
    baselines, decoded for the feature rows), 'features' (raw-feature baselines, encoded for the
    latent rows), 'both' (the mean: each space's own training mean). Raw-feature baselines and
    the feature-space mean need `training.features`.
    """
    needs_features = [b for b in config.baselines if b in FEATURE_BASELINES or b == "mean"]
    if needs_features and training.features is None:
        raise ValueError(f"baselines {needs_features} need the training split of the "
                         "preprocessed feature cohort (BaselineTraining.features).")
    copies, rows, errors, seconds = held_out.copies, [], {}, {}
    train, sources = _training_tables(training)
    for subset in copies.subsets:
        test = _test_tables(held_out, subset, training.covariate)
        for target in (m for m in held_out.latent.modalities if m not in subset):
            cell = _Cell(target, subset, {
                "latent": held_out.latent.tables[target].loc[copies.sample_ids],
                "features": held_out.features.tables[target].loc[copies.sample_ids]}, groups,
                errors if len(subset) == len(copies.cohort.modalities) - 1 else None, rows)
            for method, result in imputations.items():
                cell.score_imputation(copies, method, result)
            for baseline in config.baselines:
                start = time.perf_counter()
                latent, features, fitted_in, *point = _baseline_predictions(
                    baseline, _fitted_on(train, sources, subset, target), test, subset,
                    target, training.space, seed, config.imputation.num_samples)
                seconds[baseline] = seconds.get(baseline, 0.0) + time.perf_counter() - start
                cell.score(latent, "latent", baseline, fitted_in)
                cell.score(features, "features", baseline, fitted_in,
                           point=point[0] if point else None)
    if seconds:
        log("baselines (fit and predict, all available sets): " + ", ".join(
            f"{b} {t:.1f} s" for b, t in seconds.items()))
    columns = ["method", "target", "source", "space", "fitted_in"]
    return pd.concat(rows, ignore_index=True)[columns + [c for c in rows[0].columns
                                                         if c not in columns]], errors


@dataclasses.dataclass(frozen=True)
class _Cell:
    """One (target, available set) of `reconstruction`: the true values it is scored against,
    and where its rows and (with every other modality given) per-patient errors go.

    Attributes:
        real: space name -> [P, D] true values of the target.
        errors: (method, target, space) -> per-patient errors, or None: not kept.
    """

    target: str
    subset: tuple
    real: dict
    groups: pd.Series | None
    errors: dict | None
    rows: list

    def score(self, draws, space_name: str, method: str, fitted_in: str, point=None) -> None:
        """Appends the rows of one method's draws (or point prediction) in `space_name`."""
        _score(self.rows, self.real[space_name], draws, self.groups, point=point,
               method=method, space=space_name, fitted_in=fitted_in, target=self.target,
               source=tag(self.subset), errors=self.errors)

    def score_imputation(self, copies: PatternCopies, method: str, result) -> None:
        """Appends a generative method's rows in latent and in feature space; in feature space
        the posterior-mean estimate is the decoder-output mean."""
        for space_name, tables in (("latent", result.draws), ("features", result.features)):
            point = (copies.draws_of(result.feature_means, self.target, self.subset)
                     if space_name == "features" else None)
            self.score(copies.draws_of(tables, self.target, self.subset), space_name, method,
                       "latent", point=point)


def _training_tables(training: BaselineTraining) -> tuple[dict, dict]:
    """({'latent': tables, 'features': tables (only with training.features)} of the training
    rows; sources: each modality's feature rows as a source, expanded with the covariate)."""
    train = {"latent": {m: training.latent.tables[m].dropna()
                        for m in training.latent.modalities}}
    if training.features is not None:
        train["features"] = {m: training.features.tables[m].dropna()
                             for m in training.features.modalities}
    sources = train.get("features", {})
    if training.covariate is not None and training.features is not None:
        sources = {m: _expanded(m, t, training.features.labels, training.covariate)
                   for m, t in sources.items()}
    return train, sources


def _fitted_on(train: dict, sources: dict, subset: tuple, target: str) -> dict:
    """The training tables a baseline predicting `target` from `subset` is fitted on."""
    if "features" not in train:
        return train
    return {"latent": train["latent"], "features": {
        **{m: sources[m] for m in subset}, target: train["features"][target]}}


def _test_tables(held_out: HeldOut, subset: tuple, covariate) -> dict:
    """{'latent': tables, 'features': tables} of `subset` for the held-out patients, the
    features expanded with the covariate (None: as they are)."""
    ids = held_out.copies.sample_ids
    test = {"latent": {m: held_out.latent.tables[m].loc[ids] for m in subset},
            "features": {m: held_out.features.tables[m].loc[ids] for m in subset}}
    if covariate is not None:
        test["features"] = {m: _expanded(m, t, held_out.features.labels, covariate)
                            for m, t in test["features"].items()}
    return test


def _expanded(modality: str, table: pd.DataFrame, labels: pd.DataFrame, covariate
              ) -> pd.DataFrame:
    """A source's feature table [n, D] with the covariate's interaction and level columns
    (`covariates.Covariate.expand`) of the same patients."""
    wide = covariate.expand(table.to_numpy(np.float64),
                            covariate.codes(labels.reindex(table.index)))
    extra = [f"{modality}:{covariate.column}:{i}" for i in range(wide.shape[1] - table.shape[1])]
    return pd.DataFrame(wide, index=table.index, columns=list(table.columns) + extra)


def baseline_label(method: str) -> str:
    """How a baseline's row is named in the report's method x target tables."""
    if method == "mean":
        return "training mean"
    if method in DRAWING_BASELINES:
        return DRAWING_BASELINES[method]
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


def distribution_table(scores: pd.DataFrame, errors: dict, generative, indices: np.ndarray,
                       reference: str = "gaussian") -> pd.DataFrame:
    """Draws scored as distributions, every other modality given: per generative method and
    target, the mean fair energy score of the patients' target vectors and the coverage of
    random projections of them (`reconstruction.patient_errors`), in latent and feature
    space, with 95% patient-bootstrap intervals; and the paired difference of each method's
    feature-space energy score to the closed form's (`reference`) and to each drawing
    baseline's (the closed form fitted on raw features; negative: better).

    Returns:
        rows (method, target); columns 'energy (latent)', 'energy (features)',
        'projection coverage (latent)', 'projection coverage (features)' and, for each
        reference that ran, 'energy (features) - <reference>', as 'value [low, high]' strings.
    """
    rows = []
    drawing = [b for b in DRAWING_BASELINES if b in set(scores["method"])]
    for method in [*generative, *drawing]:
        for target in pd.unique(scores["target"]):
            row = {"method": DRAWING_BASELINES.get(method, method), "target": target}
            for kind, label in (("energy", "energy"), ("projection_covered",
                                                       "projection coverage")):
                for space_name in ("latent", "features"):
                    values = errors[(method, target, space_name)][kind]
                    row[f"{label} ({space_name})"] = stats.cell(
                        float(np.mean(values)),
                        *stats.percentile_interval(values[indices].mean(axis=1)))
            for ref in [r for r in (reference, *drawing) if r in generative or r in drawing]:
                if ref != method:
                    ours = errors[(method, target, "features")]["energy"]
                    theirs = errors[(ref, target, "features")]["energy"]
                    difference = ours - theirs  # [N], paired by patient
                    row[f"energy (features) - {DRAWING_BASELINES.get(ref, ref)}"] = stats.cell(
                        float(np.mean(difference)),
                        *stats.percentile_interval(difference[indices].mean(axis=1)),
                        signed=True)
            rows.append(row)
    return pd.DataFrame(rows).set_index(["method", "target"])
