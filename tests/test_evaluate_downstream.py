"""Downstream: TRTS with ID joins, performance rescue (classification and survival), the
C-index, and counterfactual test prioritisation on a cohort where one modality holds the label."""

import numpy as np
import pandas as pd
import pytest

from coherent_jax.evaluate import (feature_table, fit_forest, harrell_c_index,
                                   prioritisation_curve, removed_subsets, rescue,
                                   train_real_test_synthetic)

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

    out = rescue(holed, test, labels["cls"], labels["cls"], generated={"oracle": oracle},
                 seed=0, n_estimators=TREES)
    reference = out[out["removed"] == ""]["balanced_accuracy"].item()
    by = out.set_index(["removed", "fill"])["balanced_accuracy"]
    assert by[("a", "oracle")] == reference and by[("a+b+c", "oracle")] == reference
    assert by[("a", "none")] < reference - 0.1
    assert ("a", "knn") in by.index and ("b+c", "mean") in by.index
    assert ("a+b+c", "knn") not in by.index  # nothing left to find neighbours with
    assert len(calls) == 7 and len(out) == 1 + 7 * 4 - 1


def test_rescue_survival_c_index():
    pytest.importorskip("sksurv")
    train, test, labels = _cohort()
    out = rescue(train, test, labels[["os_time", "os_event"]], labels[["os_time", "os_event"]],
                 task="survival", fills=("none",), seed=0, n_estimators=TREES)
    by = out.set_index(["removed", "fill"])["c_index"]
    assert by[("", "none")] > 0.65 and by[("a", "none")] < by[("", "none")] - 0.05


def test_rescue_rejects_incomplete_test_patients():
    train, test, labels = _cohort()
    bad = dict(test, c=test["c"].copy())
    bad["c"].iloc[3] = np.nan
    with pytest.raises(ValueError, match="lack 'c'"):
        rescue(train, bad, labels["cls"], labels["cls"], n_estimators=TREES)


def test_harrell_c_index_matches_scikit_survival_and_known_values():
    sksurv_metrics = pytest.importorskip("sksurv.metrics")
    rng = np.random.default_rng(3)
    time, event, risk = rng.random(80), rng.random(80) < 0.7, rng.normal(size=80)
    expected = sksurv_metrics.concordance_index_censored(event, time, risk)[0]
    assert harrell_c_index(time, event, risk) == pytest.approx(expected)
    assert harrell_c_index(time, event, -time) == 1.0
    assert harrell_c_index(time, event, np.zeros(80)) == 0.5


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
                                          num_random=10, seed=0)
    assert len(curve) == 21 and curve["rho"].iloc[-1] == 1.0
    assert curve["prioritised"].iloc[0] == pytest.approx(curve["random_mean"].iloc[0])
    assert curve["prioritised"].iloc[-1] == pytest.approx(curve["random_mean"].iloc[-1])
    assert summary["auc_gain"] > 0.05
    assert (curve["prioritised"] >= curve["random_mean"] - 1e-9).all()
