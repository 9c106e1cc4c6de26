"""The mixture's component count chosen by the energy score of its untrained draws."""

import jax
import numpy as np

from coherent_jax.anchor import fit_anchors
from coherent_jax.mixture_anchor import fit_mixture, widened
from coherent_jax.mixture_count import (Patients, choose_count, held_out_energy, label,
                                        patient_energy)


def _rows(n, subtypes, seed, patients):
    """(target [n, 3], a source that reveals the subtype [n, 4], present [n]) of the cohort
    `seed` (`subtypes` centres of the target; 1: one Gaussian), patients drawn with the
    seed `patients`."""
    model = np.random.default_rng(seed)
    centres, mixing = 4.0 * model.standard_normal((subtypes, 3)), model.standard_normal((3, 4))
    rng = np.random.default_rng(patients)
    subtype = rng.integers(0, subtypes, n)
    target = centres[subtype] + rng.standard_normal((n, 3))
    source = (np.concatenate([target[:, :2], centres[subtype, 2:]], axis=1) @ mixing
              + 0.5 * rng.standard_normal((n, 4)))
    return target.astype(np.float32), source.astype(np.float32), np.ones(n, bool)


def _candidates(target, source, present, counts):
    width = source.shape[1]
    """{label: (anchors, refit)} of one specialist: the Gaussian ('1') and mixtures of exactly
    each count of `counts`, with the factor shapes too where the fit has them ('3+factor')."""
    conds = [(source, present)]

    def gaussian(keep=None):
        return [fit_anchors(target, present if keep is None else present & keep, conds)]

    out = {"1": (gaussian(), gaussian)}
    for m in counts:
        fitted = fit_mixture(target, present, conds, max_components=m, components=m)

        for factor in (False, True)[:1 + bool(fitted.factor_shapes)]:
            def anchors(keep=None, fitted=fitted, factor=factor):
                return [widened(fitted.anchors(keep, factor), [width], [width])]

            out[label(m, factor)] = (anchors(), anchors)
    return out


def _patients(n, subtypes, seed, patients=0):
    target, source, present = _rows(n, subtypes, seed, patients)
    return Patients([[(source, present)]], target, present), (target, source, present)


def test_the_subtypes_count_leads_the_gaussian_and_one_gaussian_keeps_it():
    train, fit_rows = _patients(600, 3, 0)
    val, _ = _patients(150, 3, 0, patients=1)  # the same cohort's new patients
    record = choose_count(_candidates(*fit_rows, (2, 3, 4)), train, val, jax.random.key(0))
    assert {"1", "2", "3", "4"} <= set(record["energy"])  # some with factor shapes too
    assert record["chosen"] == record["best"]
    assert record["best"].split("+")[0] in ("3", "4")  # two components merge two subtypes
    assert record["energy"]["2"] > record["energy"][record["best"]]
    assert record["best_minus_gaussian"]["leads"]
    assert record["patients"] == 750 and record["held_out_patients"] == 600

    train, fit_rows = _patients(600, 1, 1)  # one Gaussian: a forced mixture must not lead
    val, _ = _patients(150, 1, 1, patients=1)
    record = choose_count(_candidates(*fit_rows, (2,)), train, val, jax.random.key(0))
    assert record["chosen"] == "1" and not record["best_minus_gaussian"]["leads"]


def test_scores_are_paired_and_folds_refit_without_their_patients():
    train, fit_rows = _patients(300, 3, 2)
    candidates = _candidates(*fit_rows, (3,))
    anchors, refit = candidates["3"]
    rows = np.arange(300)
    key = jax.random.key(5)
    np.testing.assert_array_equal(patient_energy(anchors, train, rows, key).patients(),
                                  patient_energy(anchors, train, rows, key).patients())
    calls = []

    def recording(keep):
        calls.append(np.asarray(keep).copy())
        return refit(keep)

    held = held_out_energy(recording, train, key).patients()
    assert np.isfinite(held).all() and len(calls) == 5
    left_out = np.stack([~keep for keep in calls])  # [folds, N]
    np.testing.assert_array_equal(left_out.sum(axis=0), np.ones(300))  # each patient once
    # a patient without the target is not scored
    missing = Patients(train.member_conds, train.truth, np.arange(300) % 4 != 0)
    assert np.isnan(held_out_energy(refit, missing, key).patients()[::4]).all()


def test_factor_shapes_are_a_candidate_of_their_own_and_win_where_factors_couple_the_blocks():
    from coherent_jax.data.mixture import MixtureModel
    model = MixtureModel.random({"target": 12, "source": 8}, {"target": 3.0, "source": 2.0},
                                num_subtypes=3, num_factors=3, noise_std=0.6,
                                noise_spread=2.5, seed=0)

    def patients(n, seed):
        values, _ = model.sample(n, seed)
        rows = (values["target"].astype(np.float32), values["source"].astype(np.float32),
                np.ones(n, bool))
        return Patients([[(rows[1], rows[2])]], rows[0], rows[2]), rows

    train, fit_rows = patients(600, 1)
    val, _ = patients(150, 2)
    candidates = _candidates(*fit_rows, (3,))
    assert set(candidates) == {"1", "3", "3+factor"}
    record = choose_count(candidates, train, val, jax.random.key(0))
    assert record["chosen"] == record["best"] == "3+factor", record["energy"]


def test_each_member_takes_its_own_count():
    """A family of two specialists: one given a source that reveals 3 subtypes of the target
    in part, one given a noisy linear image of the whole target (the target given it is one
    Gaussian in every subtype). Each member's draws choose for it: the first a mixture, the
    second its Gaussian, and the family's label says so (`model_set` pads the Gaussian member
    to the mixture's count: `mixture_anchor.with_components`)."""
    train, (target, source, present) = _patients(600, 3, 0)
    val, (target_v, source_v, _) = _patients(150, 3, 0, patients=1)
    rng = np.random.default_rng(3)
    image = rng.standard_normal((3, 4))
    image_rows = (target @ image + 0.3 * rng.standard_normal((600, 4))).astype(np.float32)
    image_v = (target_v @ image + 0.3 * rng.standard_normal((150, 4))).astype(np.float32)
    conds = [[(source, present)], [(image_rows, present)]]
    one = _candidates(target, source, present, (3,))
    gaussian = fit_anchors(target, present, conds[1])

    def refit_image(keep):
        return fit_anchors(target, present & keep, conds[1])

    candidates = {"1": ([one["1"][0][0], gaussian],
                        lambda keep: [one["1"][1](keep)[0], refit_image(keep)])}
    fitted = fit_mixture(target, present, conds[1], max_components=3, components=3)
    candidates["3"] = ([one["3"][0][0], widened(fitted.anchors(), [4], [4])],
                       lambda keep: [one["3"][1](keep)[0],
                                     widened(fitted.anchors(keep), [4], [4])])
    two = Patients(conds, target, present)
    two_val = Patients([[(source_v, np.ones(150, bool))], [(image_v, np.ones(150, bool))]],
                       target_v, np.ones(150, bool))
    record = choose_count(candidates, two, two_val, jax.random.key(0))
    assert [m["chosen"] for m in record["members"]] == ["3", "1"], record["members"]
    assert record["chosen"] == "3/1"
    assert record["members"][0]["best_minus_gaussian"]["leads"]

