"""Downstream usefulness: train-on-real/test-on-synthetic, performance rescue of patients with
removed modalities, and counterfactual test prioritisation.

Every label is joined to the data by sample ID (`align.join_labels`), never by row position.
Models: random forests of 100 trees (sklearn RandomForestClassifier; scikit-survival
RandomSurvivalForest for survival, leaves of at least `SURVIVAL_MIN_LEAF` patients), both of
which accept NaN inputs, so 'none' fills are scored as the forest sees holes (at a split on a
feature that had no NaN in training, a NaN goes to the child that received more training
samples). Survival is scored by Harrell's C-index of the predicted risk (as scikit-survival's
`concordance_index_censored`: a tie in time between an event and a censoring counts as
comparable), from one pair table per cell for the point and every bootstrap resample
(`c_index_resampled`).

Uncertainty is over patients (`RescueResult.uncertainty`: one set of bootstrap resamples of
the test patients for every cell, so differences are paired); the forests' seeds are fixed.
"""

from __future__ import annotations

import dataclasses
import itertools
from typing import Callable, Mapping, Sequence

import numpy as np
import pandas as pd
from sklearn.ensemble import RandomForestClassifier

from coherent_jax.evaluate import stats
from coherent_jax.evaluate.align import draws_array, join_labels
from coherent_jax.evaluate.baselines import predict_missing

TASKS = ("classification", "survival")
SURVIVAL_COLUMNS = ("os_time", "os_event")
FILLS = ("none", "mean", "knn", "retrained")
SURVIVAL_MIN_LEAF = 15
"""Smallest terminal node of the survival trees: randomForestSRC's default for survival (a
leaf's cumulative hazard needs several events; scikit-survival's 3 is sklearn's), and 3x
faster to grow."""


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
    # low_memory: only the risk score is predicted (the same, 10x faster on 4,850 rows)
    return RandomSurvivalForest(n_estimators=n_estimators, random_state=seed, n_jobs=n_jobs,
                                min_samples_leaf=SURVIVAL_MIN_LEAF, low_memory=True
                                ).fit(x.to_numpy(np.float64), _structured(y))


def _structured(y: pd.DataFrame) -> np.ndarray:
    time, event = (y.iloc[:, 0].to_numpy(np.float64), y.iloc[:, 1].to_numpy().astype(bool))
    return np.array(list(zip(event, time)), dtype=[("event", bool), ("time", np.float64)])


def c_index(time, event, risk) -> float:
    """Harrell's C of `risk` (higher risk, earlier event), as scikit-survival's
    concordance_index_censored (risk ties within 1e-8 count 1/2; an event and a censoring at
    the same time are comparable)."""
    time = np.asarray(time, np.float64)
    return float(c_index_resampled(time, event, risk, np.ones((1, time.size)))[0])


def c_index_resampled(time, event, risk, counts: np.ndarray) -> np.ndarray:
    """[B] Harrell's C (`c_index`) on each bootstrap resample given as counts [B, N]: pair
    (i, j) weighs counts_i * counts_j, which is exactly the C of the resampled patients (two
    copies of one patient are never comparable). NaN where a resample has no comparable
    pair. One [N, N] pair table for every resample instead of B scikit-survival calls."""
    time = np.asarray(time, np.float64)
    event = np.asarray(event, bool)
    risk = np.asarray(risk, np.float64)
    later = time[:, None] < time[None, :]
    censored_tie = (time[:, None] == time[None, :]) & ~event[None, :]
    comparable = (event[:, None] & (later | censored_tie)).astype(np.float64)  # [N, N]
    gap = risk[:, None] - risk[None, :]
    concordance = np.where(np.abs(gap) <= 1e-8, 0.5, (gap > 0).astype(np.float64))
    counts = np.asarray(counts, np.float64)
    pairs = ((counts @ comparable) * counts).sum(axis=1)  # sum_ij c_bi M_ij c_bj, as matmuls
    agree = ((counts @ (comparable * concordance)) * counts).sum(axis=1)
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(pairs > 0, agree / pairs, np.nan)


def _predict(model, x: np.ndarray, task: str) -> np.ndarray:
    """Class probabilities [N, C] or risk [N]."""
    return model.predict_proba(x) if task == "classification" else model.predict(x)


def _scores(model, outputs: np.ndarray, y, task: str) -> dict:
    if task == "classification":
        return _classification_scores(y, model.classes_[np.argmax(outputs, axis=1)])
    return {"c_index": c_index(y.iloc[:, 0], y.iloc[:, 1], outputs)}


def _classification_scores(y, pred) -> dict:
    """{'balanced_accuracy', 'macro_f1', 'weighted_f1'} of predicted labels pred [N] for labels
    y [N], as sklearn's balanced_accuracy_score and f1_score(average='macro' / 'weighted')
    compute them, without their per-call input checks (and warnings): the classes are those
    seen in y or pred, sorted; F1 = 2 TP / (true + predicted) per class; balanced accuracy is
    the mean recall over the classes in y."""
    true, predicted, right = _class_counts(np.asarray(y), np.asarray(pred))
    f1 = 2.0 * right / (true + predicted)  # [C]
    seen = true > 0
    return {"balanced_accuracy": float(np.mean(right[seen] / true[seen])),
            "macro_f1": float(np.mean(f1)),
            "weighted_f1": float(np.average(f1, weights=true))}


def _class_counts(y: np.ndarray, pred: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """([C] true, [C] predicted, [C] correct) counts of the C classes seen in labels y [N] or
    predictions pred [N], in sorted order."""
    labels, codes = np.unique(np.concatenate([y, pred]), return_inverse=True)
    truth, guess = codes[:len(y)], codes[len(y):]
    return tuple(np.bincount(c, minlength=len(labels))
                 for c in (truth, guess, truth[truth == guess]))


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


@dataclasses.dataclass(frozen=True)
class RescueResult:
    """Per-patient outputs of `rescue` and their scores.

    Attributes:
        task: 'classification' or 'survival'.
        y: the N scored test patients' labels (Series) or (time, event) DataFrame, by ID.
        outputs: (removed tag, fill) -> [K, N] per-draw outputs, the predicted class or the
            risk (K = 1 for a single fill).
        averaged: (removed tag, fill) -> [N] the output of the forest's probabilities (risks)
            averaged over the K draws (multiple imputation); outputs[...][0] for K = 1.
        scores: long table: seed, removed ('' for the reference), n_removed, fill, draws
            ('mean of K': the averaged outputs; 'single': each draw's score, averaged over the
            draws; 'point' for single fills), n, and balanced_accuracy / macro_f1 /
            weighted_f1 or c_index.
    """

    task: str
    y: pd.Series | pd.DataFrame
    outputs: dict
    averaged: dict
    scores: pd.DataFrame

    @property
    def metric(self) -> str:
        """The headline metric: balanced_accuracy or c_index."""
        return "balanced_accuracy" if self.task == "classification" else "c_index"

    def _boot(self, values: np.ndarray, indices: np.ndarray, counts: np.ndarray) -> np.ndarray:
        """[B] the metric of outputs [K, N] (mean over K) on each resample."""
        if self.task == "classification":
            return _balanced_accuracy_boot(values, np.asarray(self.y), counts)
        time, event = self.y.iloc[:, 0].to_numpy(), self.y.iloc[:, 1].to_numpy()
        return np.mean([c_index_resampled(time, event, v, counts) for v in values], axis=0)

    def uncertainty(self, indices: np.ndarray, against: str = "retrained",
                    level: float = stats.LEVEL) -> tuple[pd.DataFrame, pd.DataFrame]:
        """Patient-bootstrap intervals of every score and paired tests against a reference.

        Args:
            indices: [B, N] bootstrap resamples of the N scored patients
                (`stats.bootstrap_indices`), shared by every cell.
            against: the reference fill of the tests (per removed set), e.g. 'retrained'.

        Returns:
            (intervals: removed, fill, draws, point, low, high, one row per `scores` row
             (single draws: the mean over the draws of each draw's score);
             tests: removed, fill, against, difference, low, high, p (two-sided paired
             bootstrap), n_discordant (classification: patients right under one fill only),
             q (BH over the table), significant (q <= 0.05), on the draw-averaged outputs).
        """
        counts = stats.bootstrap_counts(indices, len(self.y))
        boots, rows = {}, []
        for _, row in self.scores.iterrows():
            key = (row["removed"], row["fill"])
            single = row["draws"] == "single"
            values = self.outputs[key] if single else self.averaged[key][None]
            boot = self._boot(values, indices, counts)
            if not single:
                boots[key] = boot
            rows.append({"removed": key[0], "fill": key[1], "draws": row["draws"],
                         "point": row[self.metric],
                         **dict(zip(("low", "high"), stats.percentile_interval(boot, level)))})
        tests = []
        point = self.scores[self.scores["draws"] != "single"].set_index(["removed", "fill"])[
            self.metric]
        for (removed, fill), boot in boots.items():
            if fill == against or (removed, against) not in boots:
                continue
            found = stats.paired_difference(point[(removed, fill)], point[(removed, against)],
                                            boot, boots[(removed, against)], level)
            tests.append({"removed": removed, "fill": fill, "against": against, **found,
                          "n_discordant": self._discordant(removed, fill, against)})
        tests = pd.DataFrame(tests)
        return pd.DataFrame(rows), stats.with_q(tests) if len(tests) else tests

    def _discordant(self, removed: str, fill: str, against: str) -> float:
        if self.task != "classification":
            return float("nan")
        y = np.asarray(self.y)
        right = [self.averaged[(removed, f)] == y for f in (fill, against)]
        return float(np.sum(right[0] != right[1]))


def _balanced_accuracy_boot(pred: np.ndarray, y: np.ndarray, counts: np.ndarray) -> np.ndarray:
    """[B] balanced accuracy of predictions [K, N] (mean over K) on resamples given as counts
    [B, N]: per class, (counts @ right and of the class) / (counts @ of the class), averaged
    over the classes present in the resample (as sklearn's balanced_accuracy_score)."""
    recalls = []
    for c in np.unique(y):
        of_class = (y == c).astype(np.float64)  # [N]
        right = ((pred == c) & (y == c)[None]).astype(np.float64)  # [K, N]
        support = counts @ of_class  # [B]
        with np.errstate(invalid="ignore", divide="ignore"):
            recalls.append((counts @ right.T) / support[:, None])  # [B, K]
    return np.nanmean(np.stack(recalls), axis=0).mean(axis=1)


@dataclasses.dataclass(frozen=True)
class RescueConfig:
    """How `rescue` scores: the task, the non-generative fills and the forests.

    Attributes:
        task: 'classification' or 'survival'.
        fills: the non-generative fills to run, a subset of FILLS.
        n_estimators: trees per forest.
        n_jobs: the forests' n_jobs (None: one core; -1: every core, the same trees).
    """

    task: str = "classification"
    fills: Sequence[str] = FILLS
    n_estimators: int = 100
    n_jobs: int | None = None

    def __post_init__(self):
        unknown = set(self.fills) - set(FILLS)
        if unknown:
            raise ValueError(f"unknown fills {sorted(unknown)}; choose from {FILLS} (generated "
                             "methods go in `generated`).")
        if self.task not in TASKS:
            raise ValueError(f"unknown task {self.task!r}; choose one of {TASKS}.")


def rescue(train: Mapping[str, pd.DataFrame], test: Mapping[str, pd.DataFrame], train_y,
           test_y, *, covariates: pd.DataFrame | None = None,
           generated: Mapping[str, Callable[[tuple], Mapping[str, pd.DataFrame]]] | None = None,
           seed: int = 0, config: RescueConfig = RescueConfig()) -> RescueResult:
    """Performance rescue: how much of a model's accuracy returns when removed modalities are
    filled in, for every non-empty removed subset, against a forest retrained without them.

    A forest is trained once on the real (holed) training features plus covariates. Each test
    patient (all modalities present) is scored with nothing removed (reference), then with each
    subset removed and filled by: 'none' (NaN holes), 'mean' (training means; not when all are
    removed: one constant input), 'knn' (KNNImputer(5) from the remaining modalities; not when
    all are removed), and each generated method; 'retrained' is the honest reference, a forest
    trained on the remaining modalities (and covariates) only: with everything removed, the
    covariates alone (e.g. "cancer label only"; skipped without covariates). Fills given as K
    draws, indexed (sample_id, draw), are scored both ways: the forest's probabilities (risks)
    averaged over the draws (multiple imputation, draws 'mean of K') and each draw on its own
    (draws 'single', the mean of the K scores); a single-draw fill next to K-draw fills is
    reused with every draw.

    Args:
        train, test: modality -> DataFrame indexed by sample ID (train may have holes; every
            test sample must have every modality).
        train_y, test_y: classification: label Series; survival: DataFrame (time, event), e.g.
            labels[['os_time', 'os_event']]; indexed by sample ID; missing labels are skipped.
        covariates: optional DataFrame indexed by sample ID kept in every condition (e.g.
            one-hot cancer type).
        generated: method name -> function(removed tuple, in `test` order) returning modality
            -> fill DataFrame for every removed modality (indexed by sample_id or by
            (sample_id, draw)); return None to skip a subset (e.g. nothing left to condition on).
        seed: random_state of the forests (and of the 'knn' fill).
        config: the task, the non-generative fills and the forests' size.

    Returns:
        RescueResult (per-patient outputs and the scores table).
    """
    ids, modalities = _complete_test_ids(train, test), list(test)
    train_ids = pd.Index(sorted(set().union(*(train[m].index for m in modalities))))
    train_rows = _labelled(train_ids, train_y, config.task, "train labels")
    test_rows = _labelled(ids, test_y, config.task, "test labels")
    run = _Rescue(train, test, train_rows, test_rows, covariates, seed, config)
    run.score((), "none", {})
    for removed in removed_subsets(modalities):
        run.score_fixed_fills(removed)
        for method, make in (generated or {}).items():
            run.score_generated(removed, method, make)
    return RescueResult(config.task, run.y, run.outputs, run.averaged, pd.DataFrame(run.rows))


def _complete_test_ids(train: Mapping[str, pd.DataFrame],
                       test: Mapping[str, pd.DataFrame]) -> pd.Index:
    """The test sample IDs, once train and test are known to share modalities and every test
    patient to have every modality."""
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
    return ids


class _Rescue:
    """One `rescue`: the forest on every modality, the complete test patients, and the outputs
    and score rows of every (removed, fill) scored so far."""

    def __init__(self, train: Mapping[str, pd.DataFrame], test: Mapping[str, pd.DataFrame],
                 train_rows: tuple, test_rows: tuple, covariates: pd.DataFrame | None,
                 seed: int, config: RescueConfig):
        """train_rows / test_rows: (labelled sample IDs, their labels), from `_labelled`."""
        self.train, self.test, self.covariates = train, test, covariates
        self.seed, self.config = seed, config
        (self.train_ids, self.train_y), (self.ids, self.y) = train_rows, test_rows
        self.modalities = list(test)
        self.model = self.forest(self.modalities)
        self.means = {m: train[m].mean() for m in self.modalities}
        self.outputs, self.averaged, self.rows = {}, {}, []

    def forest(self, kept: Sequence[str]):
        """A forest on the training rows of the `kept` modalities and the covariates."""
        x = feature_table({m: self.train[m] for m in kept}, self.train_ids, self.covariates)
        return fit_forest(x, self.train_y, self.config.task, self.seed,
                          self.config.n_estimators, self.config.n_jobs)

    def record(self, removed: tuple, fill: str, per_draw: np.ndarray, fitted) -> None:
        """Keeps the outputs of one fill and appends its score rows; per_draw: [K, N, C]
        probabilities or [K, N] risks of the forest `fitted`."""
        task, key = self.config.task, ("+".join(removed), fill)
        mean = per_draw.mean(axis=0)
        self.averaged[key] = (fitted.classes_[np.argmax(mean, axis=1)]
                              if task == "classification" else mean)
        self.outputs[key] = (fitted.classes_[np.argmax(per_draw, axis=2)]
                             if task == "classification" else per_draw)
        common = {"seed": self.seed, "removed": key[0], "n_removed": len(removed),
                  "fill": fill, "n": len(self.ids)}
        many = len(per_draw) > 1
        self.rows.append({**common, "draws": f"mean of {len(per_draw)}" if many else "point",
                          **_scores(fitted, mean, self.y, task)})
        if many:
            single = pd.DataFrame([_scores(fitted, d, self.y, task) for d in per_draw]).mean()
            self.rows.append({**common, "draws": "single", **single.to_dict()})

    def score(self, removed: tuple, fill: str, tables: Mapping[str, pd.DataFrame]) -> None:
        """Scores the forest on every modality with `removed` replaced by `tables` (one
        DataFrame per removed modality, a single fill or K draws)."""
        ids = self.ids
        arrays = {m: draws_array(t, ids)[1] for m, t in tables.items()}  # m -> [K, N, D_m]
        counts = {len(a) for a in arrays.values()} | {1}
        if len(counts) > 2:
            raise ValueError(f"fill {fill!r} gives different draw counts {sorted(counts - {1})} "
                             f"across modalities for removed {removed}; give each modality "
                             "the same K draws (or a single fill).")
        blocks = []
        for k in range(max(counts)):  # single fills are reused with every draw
            filled = {m: pd.DataFrame(arrays[m][min(k, len(arrays[m]) - 1)], index=ids,
                                      columns=self.test[m].columns)
                      if m in arrays else self.test[m] for m in self.modalities}
            blocks.append(feature_table(filled, ids, self.covariates).to_numpy(np.float64))
        out = _predict(self.model, np.concatenate(blocks), self.config.task)  # one call
        self.record(removed, fill, out.reshape(len(blocks), len(ids), *out.shape[1:]),
                    self.model)

    def score_fixed_fills(self, removed: tuple) -> None:
        """Scores the configured non-generative fills of `removed` and the forest retrained
        without it."""
        fills, ids, test = self.config.fills, self.ids, self.test
        kept = [m for m in self.modalities if m not in removed]
        if "none" in fills:
            self.score(removed, "none", {m: pd.DataFrame(np.nan, index=ids,
                                                         columns=test[m].columns)
                                         for m in removed})
        if "mean" in fills and kept:
            self.score(removed, "mean", {m: pd.DataFrame(
                np.tile(self.means[m].to_numpy(), (len(ids), 1)), index=ids,
                columns=test[m].columns) for m in removed})
        if "knn" in fills and kept:
            self.score(removed, "knn", {m: predict_missing(
                "knn", self.train, {k: test[k].reindex(ids) for k in kept}, kept, m,
                seed=self.seed) for m in removed})
        if "retrained" in fills and (kept or self.covariates is not None):
            fitted = self.forest(kept)
            x = feature_table({m: test[m] for m in kept}, ids, self.covariates)
            self.record(removed, "retrained",
                        _predict(fitted, x.to_numpy(np.float64), self.config.task)[None], fitted)

    def score_generated(self, removed: tuple, method: str,
                        make: Callable[[tuple], Mapping[str, pd.DataFrame] | None]) -> None:
        """Scores a generated fill of `removed` (`make(removed)`; None: skipped)."""
        tables = make(removed)
        if tables is None:
            return
        lacking = [m for m in removed if m not in tables]
        if lacking:
            raise ValueError(f"generated fill {method!r} for removed {removed} lacks "
                             f"{lacking}.")
        self.score(removed, method, {m: tables[m] for m in removed})


# ----------------------------------------------------------------------------------------------
# counterfactual test prioritisation
@dataclasses.dataclass(frozen=True)
class PrioritisationConfig:
    """How `prioritisation_curve` compares withholding orders.

    Attributes:
        rhos: withheld fractions (None: 0, 0.05, ..., 1).
        num_random: random withholding orders, and random tie-breaks of the prioritised one.
    """

    rhos: Sequence[float] | None = None
    num_random: int = 30


def prioritisation_curve(model, with_m: pd.DataFrame, without_m: pd.DataFrame,
                         generated: pd.DataFrame, y, *, task: str = "classification",
                         seed: int = 0, config: PrioritisationConfig = PrioritisationConfig()
                         ) -> tuple[pd.DataFrame, dict]:
    """Counterfactual test prioritisation for one modality m (METHOD.md section 5).

    For each patient, K generated versions of m are put in place of the withheld block and
    scored: classification, the share of the K predicted labels that differ from the
    prediction without m; survival, the mean squared change of the risk. The patients with the
    LOWEST scores (where measuring m would change least) have m withheld first: at fraction
    rho, the lowest-scoring rho of patients are predicted without m and the rest with m.
    Patients with equal scores (often most of them: the K draws rarely change a prediction)
    are ordered at random, `config.num_random` times with `seed`; the curve is the mean over
    these tie-breaks. The curve of weighted F1 (classification) or C-index (survival) over rho
    is compared with withholding from random patients (`config.num_random` orders); areas by
    the trapezoid rule. The gain's interval is the central 95% of (tie-break area -
    random-order area) over the `config.num_random` pairs: it varies the orders, not the
    patients.

    Args:
        model: a fitted forest (`fit_forest`), predicting from [N, F].
        with_m: [N, F] test features with the real m, indexed by sample ID.
        without_m: [N, F] the same with m withheld (NaN or a fill), same IDs.
        generated: K draws of the m columns (a subset of the F columns), indexed by
            (sample_id, draw), e.g. `feature_table`-named draws of m.
        y: labels (classification) or a (time, event) DataFrame, indexed by sample ID.
        seed: seed of the random orders and tie-breaks.
        config: the withheld fractions and the number of random orders.

    Returns:
        (curve: DataFrame rho, prioritised, random_mean, random_std;
         summary: {'auc_prioritised' (mean over tie-breaks), 'auc_random_mean',
         'auc_random_std', 'auc_gain', 'auc_gain_low', 'auc_gain_high', 'tied_share' (share of
         patients at the median score), 'num_random', 'seed'}).
    """
    block = _withheld_block(with_m, without_m, generated, task)
    ids, y = _labelled(with_m.index, y, task, "labels")
    without = without_m.loc[ids]
    _, draws = draws_array(generated, ids)  # [K, N, |block|]
    base, score = _counterfactual_scores(model, without, block, draws, task)
    with_pred = model.predict(with_m.loc[ids].to_numpy(np.float64))
    rhos = (np.round(np.arange(0, 1.0001, 0.05), 2) if config.rhos is None
            else np.asarray(config.rhos))

    def curve(order):
        return _withholding_curve(order, with_pred, base, rhos, lambda pred: _curve_metric(
            pred, y, task))

    rng = np.random.default_rng(seed)
    n, num_random = len(ids), config.num_random
    prioritised = np.stack([curve(np.lexsort((rng.random(n), score)))  # ties: at random
                            for _ in range(num_random)])
    random = np.stack([curve(rng.permutation(n)) for _ in range(num_random)])
    table, areas = _compared_curves(prioritised, random, rhos)
    return table, {**areas, "tied_share": float(np.mean(score == np.median(score))),
                   "num_random": num_random, "seed": seed}


def _compared_curves(prioritised: np.ndarray, random: np.ndarray, rhos: np.ndarray
                     ) -> tuple[pd.DataFrame, dict]:
    """(the mean curves [len(rhos)] of the prioritised [R, len(rhos)] and random
    [R, len(rhos)] orders; their areas and the gain's interval over the R pairs)."""
    areas = np.trapezoid(random, rhos, axis=1)
    prioritised_areas = np.trapezoid(prioritised, rhos, axis=1)
    table = pd.DataFrame({"rho": rhos, "prioritised": prioritised.mean(axis=0),
                          "random_mean": random.mean(axis=0), "random_std": random.std(axis=0)})
    auc = float(prioritised_areas.mean())
    low, high = stats.percentile_interval(prioritised_areas - areas)
    return table, {"auc_prioritised": auc, "auc_random_mean": float(areas.mean()),
                   "auc_random_std": float(areas.std()), "auc_gain": auc - float(areas.mean()),
                   "auc_gain_low": low, "auc_gain_high": high}


def _withheld_block(with_m: pd.DataFrame, without_m: pd.DataFrame, generated: pd.DataFrame,
                    task: str) -> list[str]:
    """The columns of m (those of `generated`), once the inputs of `prioritisation_curve` are
    known to agree."""
    if task not in TASKS:
        raise ValueError(f"unknown task {task!r}; choose one of {TASKS}.")
    if not with_m.index.equals(without_m.index) or list(with_m.columns) != list(without_m.columns):
        raise ValueError("with_m and without_m must share sample IDs (same order) and columns.")
    block = [c for c in generated.columns if c in with_m.columns]
    if len(block) != generated.shape[1]:
        raise ValueError("generated columns must be columns of with_m (the withheld block).")
    return block


def _counterfactual_scores(model, without: pd.DataFrame, block: list[str], draws: np.ndarray,
                           task: str) -> tuple[np.ndarray, np.ndarray]:
    """(base [N]: the prediction without m; score [N]: how much the K draws [K, N, |block|] of
    m put in the withheld block change it: the share of changed labels (classification) or
    the mean squared change of the risk (survival))."""
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
    return base, score


def _curve_metric(pred: np.ndarray, y, task: str) -> float:
    """Weighted F1 (classification) or C-index (survival) of predictions pred [N]."""
    if task == "classification":
        return _classification_scores(y, pred)["weighted_f1"]
    return c_index(y.iloc[:, 0], y.iloc[:, 1], pred)


def _withholding_curve(order: np.ndarray, with_pred: np.ndarray, base: np.ndarray,
                       rhos: np.ndarray, metric: Callable[[np.ndarray], float]) -> np.ndarray:
    """[len(rhos)] the metric when the first rho of `order` are predicted without m (`base`)
    and the rest with it (`with_pred`)."""
    out = []
    for rho in rhos:
        pred = with_pred.copy()
        chosen = order[: int(round(rho * len(order)))]
        pred[chosen] = base[chosen]
        out.append(metric(pred))
    return np.asarray(out)
