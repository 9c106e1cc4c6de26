"""Training patients scored as new ones: a target's untrained models refitted without each fold.

A choice made on validation patients alone sees only differences far larger than those it
has to make: on the door3 cohort (benchmarks/RESULTS.md) the multi-condition model given
both sources leads the fused specialists by 0.034 [0.019, 0.052] in energy score on the 225
test patients, while the 75 validation patients measured +0.003 (standard error 0.017) and
the specialists stayed. Models with nothing learned are their anchors, closed forms fitted in
seconds, so every training patient can be scored as a new one: the anchors refitted on the
other folds (a mixture with the same partition and shapes, `mixture_anchor.MixtureFit`), the
patient's conditions (out-of-fold already, `anchor.fit_condition_map`) drawn from them. The
family choice (`calibrate.choose_family_by_pattern`) pools these scores with the validation
patients'.

    folds = held_out_folds(tm, refits, target, conditions, seed=0)  # [] if a model learned
"""

from __future__ import annotations

import dataclasses
from typing import Any, Callable, Mapping, Sequence

import numpy as np

from coherent_jax import anchor_draws
from coherent_jax.anchor import set_anchors

FOLDS = 5
"""Folds of the training patients (each refit leaves out a fifth)."""


@dataclasses.dataclass(frozen=True)
class HeldOut:
    """One fold of training patients scored as new patients.

    Attributes:
        models: the target's `model_set.TargetModels` with every anchor refitted without them.
        conditions: per source, their condition values [n, D_s]; present: [n, S] bool.
        real: [n, D] their target latents.
    """

    models: Any
    conditions: list
    present: np.ndarray
    real: np.ndarray


def with_anchors(variables: dict, anchors: Sequence[dict], stacked: bool) -> dict:
    """Anchored variables with their anchors replaced (`anchor.set_anchors`): one dict per
    member (`stacked`: the params carry a leading member axis) or a single model's one."""
    old = variables["params"]
    params = set_anchors(old, anchors, np.arange(len(anchors)) if stacked else 0)
    for name in (f"anchor_{k}" for k in anchors[0]):
        if params[name].shape != np.shape(old[name]):
            raise ValueError(f"refitted {name} has shape {params[name].shape}, the model's "
                             f"{np.shape(old[name])}: a refit must keep the anchors' structure.")
    return {**variables, "params": params}


def held_out_folds(tm, refits: Mapping[str, Callable[[np.ndarray], list]],
                   target: tuple[np.ndarray, np.ndarray],
                   conditions: Sequence[tuple[np.ndarray, np.ndarray]], seed: int,
                   folds: int = FOLDS) -> list[HeldOut]:
    """The training patients that have the target, in `folds` folds, each with the target's
    models refitted on the others ([] unless both families are untrained anchored models,
    `anchor_draws.untrained`: a learned correction cannot be refitted in seconds).

    Args:
        tm: a `model_set.TargetModels` with specialists and a multi-condition model.
        refits: 'specialists' and 'multi' -> refit(keep [N] bool) -> the family's member
            anchors fitted on the rows where keep holds (`model_set._Candidate.refit`).
        target: (values [N, D], present [N]) of the training rows; conditions: per source
            (values [N, D_s], present [N]) of the same rows (out-of-fold where they are
            predictions).
        seed: the folds' shuffle.
    """
    if not (anchor_draws.untrained(tm.specialists) and anchor_draws.untrained(tm.multi)):
        return []
    if any(refits.get(family) is None for family in ("specialists", "multi")):
        return []
    values, has = target
    rows = np.flatnonzero(has)
    fold = np.full(len(has), -1)
    fold[rows] = np.random.default_rng(seed).permutation(rows.size) % folds
    out = []
    for f in range(folds):
        keep, held = fold != f, fold == f
        models = dataclasses.replace(
            tm, specialists=with_anchors(tm.specialists, refits["specialists"](keep), True),
            multi=with_anchors(tm.multi, refits["multi"](keep), False))
        out.append(HeldOut(models, [v[held] for v, _ in conditions],
                           np.stack([p[held] for _, p in conditions], axis=1), values[held]))
    return out
