"""Downstream: TRTS with ID joins, performance rescue (classification and survival), the
C-index, and counterfactual test prioritisation on a cohort where one modality holds the label."""

import warnings

import numpy as np
import pandas as pd
import pytest

from coherent_jax.evaluate import (PrioritisationConfig, RescueConfig, bootstrap_indices, c_index,
                                   feature_table, fit_forest, prioritisation_curve, removed_subsets,
                                   rescue, train_real_test_synthetic)
from coherent_jax.evaluate.downstream import _classification_scores, c_index_resampled

TREES = 30


def _cohort(n=360, seed=0):
    """Modality 'a' carries the label (3 classes) and the hazard; 'b' half of it; 'c' noise."""
    rng = np.random.default_rng(seed)
    ids = pd.Index([f"p{i:03d}" for i in range(n)], name="sample_id")
    label = rng.integers(0, 3, n)
    centres = np.eye(3)[label] * 3.0  # [N, 3]
    tables = {"a": pd.DataFrame(centres + rng.normal(size=(n, 3)), index=ids),
              "b": pd.DataFrame(0.5 * centres[:, :2] + rng.normal(size=(n, 2)), index=ids),
              "c": pd.DataFrame(rng.normal(size=(n, 2)), index=ids)}
    hazard = np.exp(tables["a"].to_numpy()[:, 0])
    time = rng.exponential(1 / hazard)
    labels = pd.DataFrame({"cls": label, "os_time": time,
                           "os_event": (rng.random(n) < 0.8).astype(int)}, index=ids)
    train = {m: t.iloc[:260] for m, t in tables.items()}
    test = {m: t.iloc[260:] for m, t in tables.items()}
    return train, test, labels


def test_trts_generated_copy_equals_real_and_noise_is_chance():
    train, test, labels = _cohort()
    out = train_real_test_synthetic(train["a"], labels["cls"], test["a"], test["a"].copy(),
                                    labels["cls"], seed=0, n_estimators=TREES)
    assert out.loc["real", "balanced_accuracy"] > 0.8
    assert out.loc["generated", "balanced_accuracy"] == out.loc["real", "balanced_accuracy"]
    noise = pd.DataFrame(np.random.default_rng(1).normal(size=test["a"].shape),
                         index=test["a"].index)
    chance = train_real_test_synthetic(train["a"], labels["cls"], test["a"], noise,
                                       labels["cls"], seed=0, n_estimators=TREES)
    assert chance.loc["generated", "balanced_accuracy"] < 0.5


def test_trts_joins_labels_and_draws_by_id_not_position():
    train, test, labels = _cohort()
    k, ids = 2, test["a"].index
    rng = np.random.default_rng(2)
    draws = pd.DataFrame(np.concatenate([test["a"].to_numpy() + 0.5 * rng.normal(
        size=test["a"].shape) for _ in range(k)]), index=pd.MultiIndex.from_arrays(
        [np.tile(ids, k), np.repeat(np.arange(k), len(ids))], names=["sample_id", "draw"]))
    ordered = train_real_test_synthetic(train["a"], labels["cls"], test["a"], draws,
                                        labels["cls"], seed=0, n_estimators=TREES)
    shuffled = train_real_test_synthetic(
        train["a"], labels["cls"].sample(frac=1.0, random_state=0), test["a"],
        draws.sample(frac=1.0, random_state=1), labels["cls"].sample(frac=1.0, random_state=2),
        seed=0, n_estimators=TREES)
    pd.testing.assert_frame_equal(ordered, shuffled)
    assert ordered.loc["generated", "draws"] == 2
    positional = labels["cls"].copy()
    positional.index = [f"x{i}" for i in range(len(positional))]
    with pytest.raises(ValueError, match="no row in train labels"):
        train_real_test_synthetic(train["a"], positional, test["a"], test["a"], labels["cls"],
                                  n_estimators=TREES)


def test_classification_scores_are_sklearns():
    """Classes missing from the predictions, from the labels, or shared by neither."""
    from sklearn.metrics import balanced_accuracy_score, f1_score  # noqa: PLC0415

    rng = np.random.default_rng(0)
    for trial in range(200):
        classes, n = int(rng.integers(2, 6)), int(rng.integers(1, 60))
        y = rng.integers(0, classes, n)
        pred = np.where(rng.random(n) < 0.5, y, rng.integers(0, classes, n))
        if trial % 4 == 1:
            pred[pred == pred.max()] = pred.min()
        elif trial % 4 == 2:
            y[y == y.max()] = y.min()
        elif trial % 4 == 3:
            pred = pred + classes
        if trial % 2:
            y, pred = np.char.add("type", y.astype(str)), np.char.add("type", pred.astype(str))
        with warnings.catch_warnings():  # sklearn: "y_pred contains classes not in y_true"
            warnings.simplefilter("ignore")
            expected = {"balanced_accuracy": balanced_accuracy_score(y, pred),
                        "macro_f1": f1_score(y, pred, average="macro"),
                        "weighted_f1": f1_score(y, pred, average="weighted")}
        assert _classification_scores(pd.Series(y), pred) == expected


def test_removed_subsets_cover_every_non_empty_subset():
    subsets = removed_subsets(["a", "b", "c", "d"])
    assert len(subsets) == 15 and len(set(subsets)) == 15 and subsets[-1] == ("a", "b", "c", "d")


def test_rescue_oracle_fill_restores_reference_and_holes_hurt():
    train, test, labels = _cohort()
    holed = dict(train, b=train["b"].copy())
    holed["b"].iloc[:50] = np.nan  # training holes are fine: the forest accepts NaN
    calls = []

    def oracle(removed):
        calls.append(removed)
        return {m: test[m] for m in removed}

    result = rescue(holed, test, labels["cls"], labels["cls"], generated={"oracle": oracle},
                    seed=0, config=RescueConfig(n_estimators=TREES))
    out = result.scores
    reference = out[out["removed"] == ""]["balanced_accuracy"].item()
    by = out.set_index(["removed", "fill"])["balanced_accuracy"]
    assert by[("a", "oracle")] == reference and by[("a+b+c", "oracle")] == reference
    assert by[("a", "none")] < reference - 0.1
    # the forest retrained without 'a' cannot use it; without the noise 'c' it loses nothing
    assert by[("a", "retrained")] < reference - 0.1
    assert by[("c", "retrained")] == pytest.approx(reference, abs=0.05)
    assert ("a", "knn") in by.index and ("b+c", "mean") in by.index
    assert ("a+b+c", "knn") not in by.index  # nothing left to find neighbours with
    assert ("a+b+c", "mean") not in by.index  # one constant input: says nothing
    assert ("a+b+c", "retrained") not in by.index  # no covariates: nothing to retrain on
    assert len(calls) == 7 and len(out) == 1 + 6 * 5 + 2
    assert set(out["draws"]) == {"point"}


def _draws(table, k, scale, seed):
    rng = np.random.default_rng(seed)
    ids = table.index
    return pd.DataFrame(np.concatenate([table.to_numpy() + scale * rng.normal(size=table.shape)
                                        for _ in range(k)]), columns=table.columns,
                        index=pd.MultiIndex.from_arrays(
                            [np.tile(ids, k), np.repeat(np.arange(k), len(ids))],
                            names=["sample_id", "draw"]))


def test_rescue_single_and_averaged_draws_intervals_and_paired_tests():
    train, test, labels = _cohort()
    noisy = {m: _draws(test[m], 4, 1.5, seed=i) for i, m in enumerate(test)}
    result = rescue(train, test, labels["cls"], labels["cls"],
                    generated={"noisy": lambda removed: {m: noisy[m] for m in removed}},
                    seed=0, config=RescueConfig(fills=("none", "retrained"), n_estimators=TREES))
    by = result.scores.set_index(["removed", "fill", "draws"])["balanced_accuracy"]
    # averaging the forest over 4 noisy draws beats a single noisy draw
    assert by[("a", "noisy", "mean of 4")] > by[("a", "noisy", "single")]
    assert result.outputs[("a", "noisy")].shape == (4, 100)
    indices = bootstrap_indices(100, 300, seed=1)
    intervals, tests = result.uncertainty(indices, against="retrained")
    assert len(intervals) == len(result.scores)
    assert (intervals["low"] <= intervals["point"] + 1e-9).all()
    assert (intervals["point"] <= intervals["high"] + 1e-9).all()
    informative = intervals[intervals["removed"] != "a+b+c"]  # all removed: one class always
    assert (informative["high"] - informative["low"]).between(0.01, 0.4).all()
    cells = tests.set_index(["removed", "fill"])
    assert set(cells.index) == {(r, f) for r in ("a", "b", "c", "a+b", "a+c", "b+c")
                                for f in ("none", "noisy")}  # a+b+c: nothing to retrain on
    # noisy draws of 'a' (which carries the label) beat the forest retrained without it
    assert cells.loc[("a", "noisy"), "difference"] > 0.2 and cells.loc[("a", "noisy"), "q"] < 0.05
    assert cells.loc[("a", "noisy"), "n_discordant"] > 20
    # 'c' is noise: removing it changes nothing that the test calls significant
    assert cells.loc[("c", "none"), "q"] > 0.05
    np.testing.assert_allclose(cells["q"], __import__("scipy").stats.false_discovery_control(
        cells["p"]))


def test_rescue_survival_c_index_with_the_label_only_forest():
    pytest.importorskip("sksurv")
    train, test, labels = _cohort()
    covariates = pd.get_dummies(labels["cls"].astype("string"), dtype=float)
    result = rescue(train, test, labels[["os_time", "os_event"]],
                    labels[["os_time", "os_event"]], covariates=covariates, seed=0,
                    config=RescueConfig(task="survival", fills=("none", "mean", "retrained"),
                                        n_estimators=TREES))
    by = result.scores.set_index(["removed", "fill"])["c_index"]
    assert by[("", "none")] > 0.65 and by[("a", "none")] < by[("", "none")] - 0.05
    # everything removed: the forest on the covariates alone is no constant risk
    assert by[("a+b+c", "retrained")] > 0.55
    assert np.unique(result.averaged[("a+b+c", "retrained")]).size > 1
    intervals, _ = result.uncertainty(bootstrap_indices(100, 100, seed=2))
    row = intervals.set_index(["removed", "fill"]).loc[("a+b+c", "retrained")]
    assert row["low"] < row["point"] < row["high"]


def test_rescue_rejects_incomplete_test_patients():
    train, test, labels = _cohort()
    bad = dict(test, c=test["c"].copy())
    bad["c"].iloc[3] = np.nan
    with pytest.raises(ValueError, match="lack 'c'"):
        rescue(train, bad, labels["cls"], labels["cls"], config=RescueConfig(n_estimators=TREES))


def test_c_index_is_scikit_survivals_and_counts_event_censoring_ties():
    sksurv_metrics = pytest.importorskip("sksurv.metrics")
    rng = np.random.default_rng(3)
    time, event, risk = rng.random(80), rng.random(80) < 0.7, rng.normal(size=80)
    expected = sksurv_metrics.concordance_index_censored(event, time, risk)[0]
    assert c_index(time, event, risk) == pytest.approx(expected)
    assert c_index(time, event, -time) == 1.0
    assert c_index(time, event, np.zeros(80)) == 0.5
    # patient 0 dies at t=1, patient 1 is censored at t=1: comparable (1 outlived 0's
    # event). The hand-written C (only strictly earlier times) gave 1.0 here.
    tied = c_index([1.0, 1.0, 2.0], [True, False, True], [1.0, 2.0, 0.0])
    assert tied == 0.5
    # with time ties, risk ties and resampled duplicates: the resampled patients' C
    time, risk = np.round(time * 10), np.round(risk)
    indices = bootstrap_indices(80, 20, seed=0)
    counts = np.stack([np.bincount(i, minlength=80) for i in indices])
    expected = [sksurv_metrics.concordance_index_censored(event[i], time[i], risk[i])[0]
                for i in indices]
    np.testing.assert_allclose(c_index_resampled(time, event, risk, counts), expected)


def test_prioritisation_oracle_beats_random():
    train, test, labels = _cohort()
    model = fit_forest(feature_table(train, train["a"].index), labels["cls"].loc[train["a"].index],
                       seed=0, n_estimators=TREES)
    with_m = feature_table(test, test["a"].index)
    without_m = with_m.copy()
    a_cols = [c for c in with_m.columns if c.startswith("a:")]
    without_m[a_cols] = np.nan
    k, ids = 3, with_m.index
    rng = np.random.default_rng(4)
    # generated versions: the truth plus small noise, so scores flag where 'a' changes the call
    generated = pd.DataFrame(np.concatenate([with_m[a_cols].to_numpy() + 0.1 * rng.normal(
        size=(len(ids), len(a_cols))) for _ in range(k)]), columns=a_cols,
        index=pd.MultiIndex.from_arrays([np.tile(ids, k), np.repeat(np.arange(k), len(ids))],
                                        names=["sample_id", "draw"]))
    curve, summary = prioritisation_curve(model, with_m, without_m, generated, labels["cls"],
                                          seed=0, config=PrioritisationConfig(num_random=10))
    assert len(curve) == 21 and curve["rho"].iloc[-1] == 1.0
    assert curve["prioritised"].iloc[0] == pytest.approx(curve["random_mean"].iloc[0])
    assert curve["prioritised"].iloc[-1] == pytest.approx(curve["random_mean"].iloc[-1])
    assert summary["auc_gain"] > 0.05
    assert (curve["prioritised"] >= curve["random_mean"] - 1e-9).all()
    assert summary["auc_gain_low"] <= summary["auc_gain"] <= summary["auc_gain_high"]


def test_prioritisation_ties_are_broken_at_random_not_by_sample_id():
    train, test, labels = _cohort()
    model = fit_forest(feature_table(train, train["a"].index), labels["cls"].loc[train["a"].index],
                       seed=0, n_estimators=TREES)
    with_m = feature_table(test, test["a"].index)
    a_cols = [c for c in with_m.columns if c.startswith("a:")]
    without_m = with_m.copy()
    without_m[a_cols] = np.nan
    # draws that change no prediction: every patient ties at score 0
    generated = without_m[a_cols].copy()
    generated.index = pd.MultiIndex.from_arrays([generated.index, [0] * len(generated)],
                                                names=["sample_id", "draw"])
    # the sample IDs sorted such that the patients the forest gets right without 'a' come
    # first: ordering ties by ID would withhold from them first and look like a gain
    right = model.predict(without_m.to_numpy()) == labels["cls"].loc[with_m.index].to_numpy()
    order = np.argsort(~right, kind="stable")
    renamed = pd.Index([f"id{i:03d}" for i in np.argsort(order)], name="sample_id")
    relabel = dict(zip(with_m.index, renamed))
    frames = [f.rename(index=relabel) for f in (with_m, without_m)]
    generated = generated.rename(index=relabel, level="sample_id")
    y = labels["cls"].rename(index=relabel)
    _, summary = prioritisation_curve(model, *frames, generated, y, seed=0,
                                      config=PrioritisationConfig(num_random=20))
    assert summary["tied_share"] == 1.0
    assert summary["auc_gain_low"] < 0 < summary["auc_gain_high"]
    assert abs(summary["auc_gain"]) < 0.02
