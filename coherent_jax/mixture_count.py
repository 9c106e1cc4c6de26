"""A mixture anchor's component count, chosen by the energy score of its draws.

The held-out likelihood that shapes a mixture (`mixture_anchor.fit_mixture`) picks, per
member, the count whose partition best predicts held-out rows; the members of a family are
stacked, so they all took the largest. On the door2 cohort with up to 6 components that gave
the model of the modality blind to the subtypes 6 components for 3 subtypes, whose draws lost
the paired test against the Gaussian anchor on the 75 validation patients, so the Gaussian
was kept where 3 components had led (benchmarks/RESULTS.md, "The count chosen by the draws").

Here every count from 2 up to the largest is a candidate (every member with exactly that many
components), and the Gaussian anchor is count 1. Each is scored as imputation draws untrained
anchors, exactly (`anchor_draws.masked_draws`: a component from the gates, then its
Gaussian): the validation patients from the anchors as fitted, and every training patient
from the anchors refitted without its fold (`mixture_anchor.MixtureFit.anchors`: the same
partition and shapes; its conditions are out-of-fold predictions already, as in `cross_fit`).
A patient's score is the fair energy score of COUNT_DRAWS draws given each nonempty set of
the member's conditions the patient has, averaged over those sets (and over the members, for
the family's mean); every candidate is drawn from the same noise. A count whose members'
held-out likelihood prefers a factor shrinkage target for some subset
(`mixture_anchor.factor_target`) is a candidate twice,
shrunk toward the pooled covariance and with the factor shapes (`label`): the likelihood picks
the shapes, the draws whether they help (door3: the factor shapes lost, door4 won). Each member
of a family chooses for itself: its candidate of the lowest mean on the patients it draws,
a mixture only where that leads the member's Gaussian anchor by `scoring_rules.paired_lead`.
A family's members are stacked, so `model_set` pads each to the largest count chosen
(`mixture_anchor.with_components`, the same distributions). Chosen as one, a family's
members shared the count that was best on average: door4's 'hide' given the target would
take 5 components with the factor shapes, its sibling given 'reveal' 2, and the family took
2 (benchmarks/RESULTS.md, "Common factors, each member's own count").

    record = choose_count({"1": (anchors, refit), "3": (anchors3, refit3),
                           "3+factor": (factor3, refit_factor3)}, train, val, key)
    record["chosen"]  # "1": the Gaussian anchor; "3/1": member 0 takes 3, member 1 its Gaussian
"""

from __future__ import annotations

import itertools
import logging
import time
from typing import Callable, NamedTuple, Sequence

import jax
import numpy as np

from coherent_jax import anchor_draws, scoring_rules
from coherent_jax.cross_fit import FOLDS

logger = logging.getLogger(__name__)

COUNT_DRAWS = 16
"""Exact draws per patient and condition set (the validation's chain draws 8)."""

GAUSSIAN = "1"
"""The Gaussian anchor's label."""


def label(count: int, factor: bool = False) -> str:
    """A candidate's label: its component count, '+factor' for the factor shapes."""
    return f"{count}+factor" if factor else str(count)


class Patients(NamedTuple):
    """Patients to score: per member its conditions [(values [N, D_c], present [N])], the
    target's values [N, D] (as new patients' are encoded) and whether each has it [N]."""

    member_conds: list
    truth: np.ndarray
    has: np.ndarray


def _fair_energy(draws: np.ndarray, truth: np.ndarray) -> np.ndarray:
    """[n] fair energy score of draws [K, n, D] (K >= 2) for truth [n, D], the pairs one at a
    time (`engine.train.fair_energy_score` holds all K x K x n x D differences at once: 1.3 GB
    for 10,000 training patients' 128-d latents at K = 16)."""
    k = draws.shape[0]
    error = np.linalg.norm(draws - truth[None], axis=-1).mean(axis=0)
    pairs = sum(np.linalg.norm(draws[i] - draws[j], axis=-1)
                for i, j in itertools.combinations(range(k), 2))
    return error - pairs / (k * (k - 1))


class Scores(NamedTuple):
    """Per member k and patient i: the summed fair energy scores of the condition sets
    member k drew patient i for (total [K, n]) and their number (count [K, n])."""

    total: np.ndarray
    count: np.ndarray

    def patients(self) -> np.ndarray:
        """[n] each patient's score averaged over every member's condition sets (NaN where no
        member has any of its conditions)."""
        count = self.count.sum(axis=0)
        return np.where(count > 0, self.total.sum(axis=0) / np.maximum(count, 1), np.nan)

    def member(self, k: int) -> np.ndarray:
        """[n] member k's score of each patient (NaN where it has none of its conditions)."""
        return np.where(self.count[k] > 0, self.total[k] / np.maximum(self.count[k], 1), np.nan)


def patient_energy(anchors: Sequence[dict], patients: Patients, rows: np.ndarray,
                   key: jax.Array, draws: int = COUNT_DRAWS) -> Scores:
    """The `Scores` of the patients of rows [n] (module docstring): `draws` exact draws per
    condition set from the members' anchors (one dict per member,
    `mixture_anchor.fit_mixture_anchors` or `anchor.fit_anchors`)."""
    total, count = np.zeros((len(anchors), rows.size)), np.zeros((len(anchors), rows.size))
    truth = np.asarray(patients.truth, np.float64)[rows]
    for k, (anchor, conds) in enumerate(zip(anchors, patients.member_conds)):
        params = {f"anchor_{name}": value for name, value in anchor.items()}
        present = np.stack([p[rows] for _, p in conds], axis=1)  # [n, C]
        values = [np.asarray(v)[rows] for v, _ in conds]
        for index, subset in enumerate(itertools.product((False, True), repeat=len(conds))):
            has = np.flatnonzero(present[:, list(subset)].all(axis=1)) if any(subset) else []
            if not len(has):
                continue
            mask = np.tile(np.asarray(subset)[None], (draws * len(has), 1))  # draw-major
            drawn = anchor_draws.masked_draws(
                params, [np.tile(v[has], (draws, 1)) for v in values], mask,
                jax.random.fold_in(jax.random.fold_in(key, k), index))
            total[k, has] += _fair_energy(drawn.reshape(draws, len(has), -1).astype(np.float64),
                                          truth[has])
            count[k, has] += 1
    return Scores(total, count)


def held_out_energy(refit: Callable[[np.ndarray], list], patients: Patients, key: jax.Array,
                    seed: int = 0, folds: int = FOLDS) -> Scores:
    """The `patient_energy` `Scores` of every patient [N] that has the target, from the
    anchors refitted without its fold (refit(keep [N] bool) -> one anchor dict per member);
    nothing counted elsewhere. The folds are `cross_fit.held_out_folds`' for the same seed."""
    rows = np.flatnonzero(patients.has)
    fold = np.full(len(patients.has), -1)
    fold[rows] = np.random.default_rng(seed).permutation(rows.size) % folds
    members = len(patients.member_conds)
    out = Scores(np.zeros((members, len(fold))), np.zeros((members, len(fold))))
    for f in range(folds):
        held = np.flatnonzero(fold == f)
        scores = patient_energy(refit(fold != f), patients, held, jax.random.fold_in(key, f))
        out.total[:, held], out.count[:, held] = scores.total, scores.count
    return out


def composite(labels: Sequence[str]) -> str:
    """The label of a family whose members took `labels`: the common one, else each member's
    joined by '/' (e.g. '2/5+factor')."""
    return labels[0] if len(set(labels)) == 1 else "/".join(labels)


def _combined(scores: dict, labels: Sequence[str]) -> Scores:
    """The `Scores` of the family whose member k draws from candidate labels[k]."""
    return Scores(np.stack([scores[m].total[k] for k, m in enumerate(labels)]),
                  np.stack([scores[m].count[k] for k, m in enumerate(labels)]))


def _member_choice(scores: dict, k: int, used: np.ndarray, z: float) -> dict:
    """Member k's record of `choose_count` from every candidate's `Scores` (scores: {label:
    Scores}) on the patients where used [n] holds and the member draws them."""
    own = used & (scores[GAUSSIAN].count[k] > 0)
    energy = {m: float(np.mean(s.member(k)[own])) for m, s in scores.items()}
    best = min((m for m in energy if m != GAUSSIAN), key=energy.get)
    difference = scores[best].member(k)[own] - scores[GAUSSIAN].member(k)[own]
    test = scoring_rules.paired_lead(difference, z)
    return {"energy": energy, "best": best, "best_minus_gaussian": test,
            "chosen": best if test["leads"] else GAUSSIAN}


def choose_count(candidates: dict, train: Patients, val: Patients, key: jax.Array,
                 z: float = scoring_rules.LEAD_Z) -> dict:
    """Per member the mixture whose untrained draws score best (module docstring).

    Args:
        candidates: {label: (anchors, refit)} (`label`; GAUSSIAN the Gaussian anchor): anchors
            one dict per member as fitted to every training row, refit(keep [N] bool) the
            same kind fitted to the rows where keep holds.
        train: the training patients (conditions out-of-fold); val: the validation patients.
        key: the draws' key, the same for every candidate (paired scores).
        z: the paired test's standard errors (`scoring_rules.paired_lead`).

    Returns:
        {'energy': {label: mean score over the members}, 'patients', 'held_out_patients',
        'members': per member {'energy': {label: its mean score}, 'best' (the label of its
        lowest mean among the mixtures), 'best_minus_gaussian' (the paired test on its
        patients), 'chosen' (its best where it leads, else GAUSSIAN)}, 'best' and 'chosen'
        (the members' `composite`), 'best_minus_gaussian' (the paired test of the members'
        bests together), 'seconds'}.
    """
    start = time.perf_counter()
    scores = {}
    for m, (anchors, refit) in candidates.items():
        held = held_out_energy(refit, train, jax.random.fold_in(key, 1))
        drawn = patient_energy(anchors, val, np.flatnonzero(val.has), jax.random.fold_in(key, 0))
        scores[m] = Scores(np.concatenate([drawn.total, held.total], axis=1),
                           np.concatenate([drawn.count, held.count], axis=1))
    used = np.all([np.isfinite(s.patients()) for s in scores.values()], axis=0)
    mean = {m: float(np.mean(s.patients()[used])) for m, s in scores.items()}
    members = [_member_choice(scores, k, used, z) for k in range(len(train.member_conds))]
    bests = [member["best"] for member in members]
    test = scoring_rules.paired_lead(
        _combined(scores, bests).patients()[used] - scores[GAUSSIAN].patients()[used], z)
    chosen = composite([member["chosen"] for member in members])
    logger.info("mixture count: %s (energy score per candidate %s on %d patients; per member "
                "%s; the members' bests, %s, minus the Gaussian %+.4f, standard error %.4f)",
                chosen, {m: round(v, 4) for m, v in mean.items()}, int(used.sum()),
                [{m: round(v, 4) for m, v in member["energy"].items()} for member in members],
                composite(bests), test["mean_difference"], test["standard_error"])
    return {"energy": mean, "patients": int(used.sum()),
            "held_out_patients": int(used[int(np.sum(val.has)):].sum()), "members": members,
            "best": composite(bests), "best_minus_gaussian": test, "chosen": chosen,
            "seconds": time.perf_counter() - start}
