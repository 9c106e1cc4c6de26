"""Downstream usefulness: train-on-real/test-on-synthetic, performance rescue of patients with
removed modalities, and counterfactual test prioritisation.

Every label is joined to the data by sample ID (`align.join_labels`), never by row position.
Models: random forests of 100 trees (sklearn RandomForestClassifier; scikit-survival
RandomSurvivalForest for survival), both of which accept NaN inputs, so 'none' fills are
scored as the forest sees holes (at a split on a feature that had no NaN in training, a NaN
goes to the child that received more training samples). Survival is scored by Harrell's C-index of the predicted risk.
"""

from __future__ import annotations

import itertools
from typing import Callable, Mapping, Sequence

import numpy as np
import pandas as pd
from sklearn.ensemble import RandomForestClassifier
from sklearn.metrics import balanced_accuracy_score, f1_score

from coherent_jax.evaluate.align import draws_array, join_labels
from coherent_jax.evaluate.baselines import predict_missing

TASKS = ("classification", "survival")
SURVIVAL_COLUMNS = ("os_time", "os_event")
FILLS = ("none", "mean", "knn")


# ----------------------------------------------------------------------------------------------
# models and scores
def fit_forest(x: pd.DataFrame, y, task: str = "classification", seed: int = 0,
               n_estimators: int = 100, n_jobs: int | None = None):
    """A random forest of `n_estimators` trees fitted on x [N, F] (NaN allowed).

    Args:
        y: classification: [N] labels; survival: [N, 2] DataFrame (time, event).
    """
    if task == "classification":
        return RandomForestClassifier(n_estimators=n_estimators, random_state=seed,
                                      n_jobs=n_jobs).fit(x.to_numpy(np.float64), np.asarray(y))
    if task != "survival":
        raise ValueError(f"unknown task {task!r}; choose one of {TASKS}.")
    try:
        from sksurv.ensemble import RandomSurvivalForest  # noqa: PLC0415 - optional dependency
    except ImportError as err:
        raise ImportError("survival scoring needs scikit-survival: pip install "
                          "scikit-survival") from err
    return RandomSurvivalForest(n_estimators=n_estimators, random_state=seed, n_jobs=n_jobs
                                ).fit(x.to_numpy(np.float64), _structured(y))


def _structured(y: pd.DataFrame) -> np.ndarray:
    time, event = (y.iloc[:, 0].to_numpy(np.float64), y.iloc[:, 1].to_numpy().astype(bool))
    return np.array(list(zip(event, time)), dtype=[("event", bool), ("time", np.float64)])


def harrell_c_index(time, event, risk) -> float:
    """Harrell's C: share of comparable pairs (the earlier time is an event) ordered correctly
    by risk (higher risk, earlier event); risk ties count one half."""
    time, event, risk = (np.asarray(time, np.float64), np.asarray(event, bool),
                         np.asarray(risk, np.float64))
    earlier = (time[:, None] < time[None, :]) & event[:, None]  # i fails before j is seen
    if not earlier.any():
        raise ValueError("no comparable pair: the C-index needs an event before another time.")
    concordant = (risk[:, None] > risk[None, :]) & earlier
    tied = (risk[:, None] == risk[None, :]) & earlier
    return float((concordant.sum() + 0.5 * tied.sum()) / earlier.sum())


def _predict(model, x: np.ndarray, task: str) -> np.ndarray:
    """Class probabilities [N, C] or risk [N]."""
    return model.predict_proba(x) if task == "classification" else model.predict(x)


def _scores(model, outputs: np.ndarray, y, task: str) -> dict:
    if task == "classification":
        pred = model.classes_[np.argmax(outputs, axis=1)]
        return {"balanced_accuracy": float(balanced_accuracy_score(y, pred)),
                "macro_f1": float(f1_score(y, pred, average="macro")),
                "weighted_f1": float(f1_score(y, pred, average="weighted"))}
    return {"c_index": harrell_c_index(y.iloc[:, 0], y.iloc[:, 1], outputs)}


def _labelled(ids: pd.Index, labels, task: str, what: str):
    """Labels joined to ids by ID; returns (ids with a label, labels) (missing labels dropped)."""
    joined = join_labels(ids, labels, what)
    keep = (joined.notna().all(axis=1) if isinstance(joined, pd.DataFrame)
            else joined.notna()).to_numpy()
    if task == "survival" and (not isinstance(joined, pd.DataFrame) or joined.shape[1] != 2):
        raise ValueError(f"survival {what} must be a DataFrame with two columns (time, event), "
                         f"e.g. labels[{list(SURVIVAL_COLUMNS)}].")
    return ids[keep], joined[keep]


# ----------------------------------------------------------------------------------------------
# train on real, test on synthetic
def train_real_test_synthetic(train_x: pd.DataFrame, train_y: pd.Series,
                              test_real: pd.DataFrame, generated, test_y: pd.Series, *,
                              seed: int = 0, n_estimators: int = 100,
                              n_jobs: int | None = None) -> pd.DataFrame:
    """A random forest trained on real data predicts a label from real vs generated test data.

    Args:
        train_x: [N_tr, F] real training features indexed by sample ID.
        train_y: labels indexed by sample ID (samples with a missing label are skipped).
        test_real: [N_te, F] real test features indexed by sample ID.
        generated: the generated version of `test_real`: a DataFrame indexed by sample_id, or
            by (sample_id, draw) as `Imputation.draws[m]` (each draw is scored; mean and std
            reported); same columns as `train_x`. A mapping name -> such DataFrame scores
            several generators with the one forest (a row per name).
        test_y: labels indexed by sample ID.
        seed: random_state of the forest.

    Returns:
        DataFrame indexed by data ('real', then 'generated' or each name of a mapping),
        columns balanced_accuracy, macro_f1, weighted_f1, their *_std over draws (0 for real),
        n, draws.

    Raises:
        ValueError: labels or generated rows missing for some sample IDs; column mismatch.
    """
    generators = dict(generated) if isinstance(generated, Mapping) else {"generated": generated}
    for name, table in (("test_real", test_real), *generators.items()):
        if list(table.columns) != list(train_x.columns):
            raise ValueError(f"{name} columns differ from train_x columns; give both the same "
                             "features in the same order.")
    train_ids, y_tr = _labelled(train_x.index, train_y, "classification", "train labels")
    test_ids, y_te = _labelled(test_real.index, test_y, "classification", "test labels")
    model = fit_forest(train_x.loc[train_ids], y_tr, "classification", seed, n_estimators, n_jobs)
    real = _scores(model, _predict(model, test_real.loc[test_ids].to_numpy(np.float64),
                                   "classification"), y_te, "classification")
    rows = {"real": {**real, **{f"{c}_std": 0.0 for c in real}, "n": len(test_ids), "draws": 1}}
    for name, table in generators.items():
        _, draws = draws_array(table, test_ids)  # [K, N, F]
        per_draw = pd.DataFrame([_scores(model, _predict(model, d, "classification"), y_te,
                                         "classification") for d in draws])
        rows[name] = {**per_draw.mean().to_dict(),
                      **{f"{c}_std": float(per_draw[c].std(ddof=0)) for c in per_draw},
                      "n": len(test_ids), "draws": len(draws)}
    table = pd.DataFrame.from_dict(rows, orient="index")
    table.index.name = "data"
    return table


# ----------------------------------------------------------------------------------------------
# performance rescue
def feature_table(tables: Mapping[str, pd.DataFrame], ids, covariates: pd.DataFrame | None = None
                  ) -> pd.DataFrame:
    """[N, F] model input: every modality's columns (named 'modality:column') side by side,
    then the covariates (e.g. one-hot cancer type), all joined on `ids`; NaN where absent."""
    ids = pd.Index(ids)
    blocks = [tables[m].reindex(ids).add_prefix(f"{m}:") for m in tables]
    if covariates is not None:
        blocks.append(join_labels(ids, covariates, "covariates").add_prefix("covariate:"))
    return pd.concat(blocks, axis=1).astype(np.float64)


def removed_subsets(modalities: Sequence[str]) -> list[tuple[str, ...]]:
    """Every non-empty subset of `modalities` (2^M - 1), smallest first, in the given order."""
    return [s for r in range(1, len(modalities) + 1)
            for s in itertools.combinations(modalities, r)]


def rescue(train: Mapping[str, pd.DataFrame], test: Mapping[str, pd.DataFrame], train_y,
           test_y, *, task: str = "classification", covariates: pd.DataFrame | None = None,
           fills: Sequence[str] = FILLS,
           generated: Mapping[str, Callable[[tuple], Mapping[str, pd.DataFrame]]] | None = None,
           seed: int = 0, n_estimators: int = 100, n_jobs: int | None = None) -> pd.DataFrame:
    """Performance rescue: how much of a model's accuracy returns when removed modalities are
    filled in, for every non-empty removed subset.

    A forest is trained once on the real (holed) training features plus covariates. Each test
    patient (all modalities present) is scored with nothing removed (reference), then with each
    subset removed and filled by: 'none' (NaN holes), 'mean' (training means), 'knn'
    (KNNImputer(5) from the remaining modalities; not possible when all are removed), and each
    generated method. Fills given as draws, indexed (sample_id, draw), are integrated over: the
    forest's probabilities (risks) are averaged over the draws (multiple imputation); a
    single-draw fill next to K-draw fills is reused with every draw.

    Args:
        train, test: modality -> DataFrame indexed by sample ID (train may have holes; every
            test sample must have every modality).
        train_y, test_y: classification: label Series; survival: DataFrame (time, event), e.g.
            labels[['os_time', 'os_event']]; indexed by sample ID; missing labels are skipped.
        task: 'classification' or 'survival'.
        covariates: optional DataFrame indexed by sample ID kept in every condition (e.g.
            one-hot cancer type: all modalities removed = "cancer label only").
        fills: the non-generative fills to run, a subset of FILLS.
        generated: method name -> function(removed tuple, in `test` order) returning modality
            -> fill DataFrame for every removed modality (indexed by sample_id or by
            (sample_id, draw)); return None to skip a subset (e.g. nothing left to condition on).
        seed: random_state of the forest.

    Returns:
        Long DataFrame: seed, removed ('rna+cna', '' for the reference), n_removed, fill,
        n, and balanced_accuracy / macro_f1 / weighted_f1 or c_index.
    """
    unknown = set(fills) - set(FILLS)
    if unknown:
        raise ValueError(f"unknown fills {sorted(unknown)}; choose from {FILLS} (generated "
                         "methods go in `generated`).")
    modalities = list(test)
    if set(modalities) != set(train):
        raise ValueError(f"train modalities {sorted(train)} differ from test {sorted(test)}.")
    ids = test[modalities[0]].index
    for m in modalities:
        absent = test[m].reindex(ids).isna().all(axis=1)
        if absent.any():
            raise ValueError(f"{int(absent.sum())} test sample(s) lack {m!r}, e.g. "
                             f"{list(ids[absent.to_numpy()][:3])}; rescue needs complete test "
                             "patients.")
    train_ids = pd.Index(sorted(set().union(*(train[m].index for m in modalities))))
    train_ids, y_tr = _labelled(train_ids, train_y, task, "train labels")
    ids, y_te = _labelled(ids, test_y, task, "test labels")
    model = fit_forest(feature_table(train, train_ids, covariates), y_tr, task, seed,
                       n_estimators, n_jobs)
    means = {m: train[m].mean() for m in modalities}

    def score(removed: tuple, fill: str, tables: Mapping[str, pd.DataFrame]) -> dict:
        arrays = {m: draws_array(t, ids)[1] for m, t in tables.items()}  # m -> [K, N, D_m]
        counts = {len(a) for a in arrays.values()} | {1}
        if len(counts) > 2:
            raise ValueError(f"fill {fill!r} gives different draw counts {sorted(counts - {1})} "
                             f"across modalities for removed {removed}; give each modality "
                             "the same K draws (or a single fill).")
        outputs = []
        for k in range(max(counts)):  # single fills are reused with every draw
            filled = {m: pd.DataFrame(arrays[m][min(k, len(arrays[m]) - 1)], index=ids,
                                      columns=test[m].columns)
                      if m in arrays else test[m] for m in modalities}
            x = feature_table(filled, ids, covariates).to_numpy(np.float64)
            outputs.append(_predict(model, x, task))
        return {"seed": seed, "removed": "+".join(removed), "n_removed": len(removed),
                "fill": fill, "n": len(ids), **_scores(model, np.mean(outputs, axis=0), y_te, task)}

    rows = [score((), "none", {})]
    for removed in removed_subsets(modalities):
        kept = [m for m in modalities if m not in removed]
        if "none" in fills:
            rows.append(score(removed, "none", {m: pd.DataFrame(
                np.nan, index=ids, columns=test[m].columns) for m in removed}))
        if "mean" in fills:
            rows.append(score(removed, "mean", {m: pd.DataFrame(
                np.tile(means[m].to_numpy(), (len(ids), 1)), index=ids,
                columns=test[m].columns) for m in removed}))
        if "knn" in fills and kept:
            rows.append(score(removed, "knn", {m: predict_missing(
                "knn", train, {k: test[k].reindex(ids) for k in kept}, kept, m, seed=seed)
                for m in removed}))
        for method, make in (generated or {}).items():
            tables = make(removed)
            if tables is None:
                continue
            lacking = [m for m in removed if m not in tables]
            if lacking:
                raise ValueError(f"generated fill {method!r} for removed {removed} lacks "
                                 f"{lacking}.")
            rows.append(score(removed, method, {m: tables[m] for m in removed}))
    return pd.DataFrame(rows)


# ----------------------------------------------------------------------------------------------
# counterfactual test prioritisation
def prioritisation_curve(model, with_m: pd.DataFrame, without_m: pd.DataFrame,
                         generated: pd.DataFrame, y, *, task: str = "classification",
                         rhos: np.ndarray | None = None, num_random: int = 30,
                         seed: int = 0) -> tuple[pd.DataFrame, dict]:
    """Counterfactual test prioritisation for one modality m (METHOD.md section 5).

    For each patient, K generated versions of m are put in place of the withheld block and
    scored: classification, the share of the K predicted labels that differ from the
    prediction without m; survival, the mean squared change of the risk. The patients with the
    LOWEST scores (where measuring m would change least) have m withheld first: at fraction
    rho, the lowest-scoring rho of patients are predicted without m and the rest with m.
    The curve of weighted F1 (classification) or C-index (survival) over rho is compared with
    withholding from random patients (`num_random` orders); areas by the trapezoid rule.

    Args:
        model: a fitted forest (`fit_forest`), predicting from [N, F].
        with_m: [N, F] test features with the real m, indexed by sample ID.
        without_m: [N, F] the same with m withheld (NaN or a fill), same IDs.
        generated: K draws of the m columns (a subset of the F columns), indexed by
            (sample_id, draw), e.g. `feature_table`-named draws of m.
        y: labels (classification) or a (time, event) DataFrame, indexed by sample ID.
        rhos: withheld fractions (default 0, 0.05, ..., 1).
        num_random: random withholding orders.
        seed: seed of the random orders.

    Returns:
        (curve: DataFrame rho, prioritised, random_mean, random_std;
         summary: {'auc_prioritised', 'auc_random_mean', 'auc_random_std', 'auc_gain',
         'num_random', 'seed'}).
    """
    if task not in TASKS:
        raise ValueError(f"unknown task {task!r}; choose one of {TASKS}.")
    if not with_m.index.equals(without_m.index) or list(with_m.columns) != list(without_m.columns):
        raise ValueError("with_m and without_m must share sample IDs (same order) and columns.")
    block = [c for c in generated.columns if c in with_m.columns]
    if len(block) != generated.shape[1]:
        raise ValueError("generated columns must be columns of with_m (the withheld block).")
    ids, y = _labelled(with_m.index, y, task, "labels")
    with_x = with_m.loc[ids].to_numpy(np.float64)
    without = without_m.loc[ids]
    _, draws = draws_array(generated, ids)  # [K, N, |block|]
    cols = [without.columns.get_loc(c) for c in block]
    base = model.predict(without.to_numpy(np.float64))  # [N]
    versions = []
    for d in draws:
        x = without.to_numpy(np.float64).copy()
        x[:, cols] = d
        versions.append(model.predict(x))
    versions = np.stack(versions)  # [K, N]
    score = (np.mean(versions != base[None], axis=0) if task == "classification"
             else np.mean((versions - base[None]) ** 2, axis=0))
    with_pred = model.predict(with_x)
    rhos = np.round(np.arange(0, 1.0001, 0.05), 2) if rhos is None else np.asarray(rhos)

    def metric(pred):
        if task == "classification":
            return float(f1_score(y, pred, average="weighted"))
        return harrell_c_index(y.iloc[:, 0], y.iloc[:, 1], pred)

    def curve(order):
        out = []
        for rho in rhos:
            pred = with_pred.copy()
            chosen = order[: int(round(rho * len(order)))]
            pred[chosen] = base[chosen]
            out.append(metric(pred))
        return np.asarray(out)

    rng = np.random.default_rng(seed)
    prioritised = curve(np.argsort(score, kind="stable"))
    random = np.stack([curve(rng.permutation(len(ids))) for _ in range(num_random)])
    areas = np.trapezoid(random, rhos, axis=1)
    table = pd.DataFrame({"rho": rhos, "prioritised": prioritised,
                          "random_mean": random.mean(axis=0), "random_std": random.std(axis=0)})
    auc = float(np.trapezoid(prioritised, rhos))
    return table, {"auc_prioritised": auc, "auc_random_mean": float(areas.mean()),
                   "auc_random_std": float(areas.std()), "auc_gain": auc - float(areas.mean()),
                   "num_random": num_random, "seed": seed}
