"""The family choice scores training patients as new ones where the models are untrained anchors."""

import dataclasses

import jax
import numpy as np
import pytest

from coherent_jax import cross_fit
from coherent_jax.anchor import fit_anchors
from coherent_jax.calibrate import FusionCalibration, choose_family_by_pattern
from coherent_jax.data.linear_gaussian import LinearGaussianModel
from coherent_jax.engine.schedules import make_schedule
from coherent_jax.model_set import TargetModels

# Sources sharing factors the target lacks (8 factors, a 4-d target): fusing the specialists as
# if the sources were independent given the target miscounts what they share, so the
# multi-condition model draws patients with both sources better.
SHARED = LinearGaussianModel.random({"a": 8, "b": 8, "t": 4}, num_factors=8, seed=3)
SOURCES = ("a", "b")
CALIBRATION = FusionCalibration(num_samples=10)


def _variables(anchors: list[dict], stacked: bool) -> dict:
    """Anchored variables with nothing learned (a zero output layer) around `anchors`."""
    lead = (len(anchors),) if stacked else ()
    out = {"kernel": np.zeros(lead + (8, 4), np.float32), "bias": np.zeros(lead + (4,), np.float32)}
    params = {f"anchor_{k}": np.stack([a[k] for a in anchors]) if stacked else anchors[0][k]
              for k in anchors[0]}
    return {"params": {"out": out, **params}}


def _refits(draws: dict) -> dict:
    """family -> refit(keep) -> its members' Gaussian anchors on the rows kept."""
    t, present = draws["t"], np.ones(len(draws["t"]), bool)
    conds = [(draws[s], present) for s in SOURCES]
    return {"specialists": lambda keep: [fit_anchors(t, present & keep, [c]) for c in conds],
            "multi": lambda keep: [fit_anchors(t, present & keep, conds)]}


@pytest.fixture(scope="module")
def untrained():
    """(TargetModels of untrained Gaussian anchors fitted on 400 training patients, their
    draws, the refits, 25 validation patients)."""
    train, val = SHARED.sample(400, seed=0), SHARED.sample(25, seed=1)
    refits = _refits(train)
    everyone = np.ones(400, bool)
    tm = TargetModels("t", SOURCES, specialists=_variables(refits["specialists"](everyone), True),
                      val_mse=np.ones(2), multi=_variables(refits["multi"](everyone), False),
                      unconditional=True)
    return tm, train, refits, val


def _choose(tm, patients: dict, held_out=()) -> dict:
    return choose_family_by_pattern(tm, make_schedule("cosine", 100),
                                    [patients[s] for s in SOURCES],
                                    np.ones((len(patients["t"]), 2), bool), patients["t"],
                                    jax.random.PRNGKey(0), CALIBRATION, held_out)


def test_training_patients_scored_as_new_give_the_choice_the_power_validation_lacks(untrained):
    tm, train, refits, val = untrained
    folds = cross_fit.held_out_folds(tm, refits, (train["t"], np.ones(400, bool)),
                                     [(train[s], np.ones(400, bool)) for s in SOURCES], seed=0)
    record = _choose(tm, val, folds)
    for pattern in ("a", "b", "a+b"):
        scores = record["patterns"][pattern]
        assert scores["rows"] == 25 and scores["held_out_rows"] == 400
        pooled, alone = scores["multi_minus_specialists"], scores["validation"]
        assert pooled["patients"] == 425 and alone["patients"] == 25
        assert pooled["standard_error"] < alone["standard_error"] / 2
    assert record["chosen"]["a+b"] == "multi"
    assert record["patterns"]["a+b"]["multi_minus_specialists"]["leads"]
    assert not record["patterns"]["a+b"]["validation"]["leads"]  # 25 patients cannot tell
    truth = _choose(tm, SHARED.sample(1500, seed=2))["patterns"]["a+b"]  # fresh patients agree
    assert truth["multi_minus_specialists"]["leads"]
    assert _choose(tm, val)["chosen"]["a+b"] == "specialists"  # validation alone: no power


def test_folds_refit_without_their_patients_and_skip_learned_models(untrained):
    tm, train, refits, _ = untrained
    n = 40
    has = np.arange(n) % 4 != 0  # a quarter of the rows lack the target
    values = train["t"][:n]
    conditions = [(train["a"][:n], np.ones(n, bool)), (train["b"][:n], np.arange(n) % 3 != 0)]
    seen = []

    def spy(family):
        def refit(keep):  # the n rows are the first n of the 400 the anchors were fitted on
            seen.append(keep.copy())
            return refits[family](np.concatenate([keep, np.ones(400 - n, bool)]))
        return refit

    spies = {family: spy(family) for family in refits}
    folds = cross_fit.held_out_folds(tm, spies, (values, has), conditions, seed=0)
    assert len(folds) == cross_fit.FOLDS
    assert sum(len(f.real) for f in folds) == has.sum()  # each patient with the target once
    for f, fold in enumerate(folds):
        keep = seen[2 * f]
        assert (~keep).sum() == len(fold.real) and keep[~has].all()
        np.testing.assert_array_equal(fold.real, values[~keep])
        np.testing.assert_array_equal(fold.present[:, 1], conditions[1][1][~keep])
        assert fold.models.multi["params"]["anchor_kernel"].shape == (
            tm.multi["params"]["anchor_kernel"].shape)
        assert not np.array_equal(fold.models.multi["params"]["anchor_bias"],
                                  tm.multi["params"]["anchor_bias"])
    learned = dataclasses.replace(tm, multi={**tm.multi, "params": {
        **tm.multi["params"], "out": {**tm.multi["params"]["out"],
                                      "bias": np.ones_like(tm.multi["params"]["out"]["bias"])}}})
    assert cross_fit.held_out_folds(learned, spies, (values, has), conditions, seed=0) == []
    with pytest.raises(ValueError, match="structure"):
        cross_fit.with_anchors(tm.multi, [{"kernel": np.zeros((1, 1, 1))}], stacked=False)
