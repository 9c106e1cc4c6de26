"""The cascade's order: which missing modality of a patient is drawn first.

A patient missing several modalities gets them one after the other (`impute`): the first
drawn from the observed modalities alone, each later one also given the draws before it. The
exact conditional is the same in every order (the chain rule); models are not: a later draw
conditions on more, including earlier draws and their errors. A model set may carry an order
per availability pattern (`ModelSet.cascade_orders`, chosen on held-out patients by
`cascade_choice.choose_orders`); patterns without one use the targets' order.

    plan = fill_plan(present, modalities_of(models), tuple(models.targets),
                     models.cascade_orders)   # [(target, patients [N] bool)], in call order
"""

from __future__ import annotations

import itertools
import math
from typing import Mapping, Sequence

import numpy as np

MAX_ORDERS = 6
"""Every order of the missing modalities is a candidate up to this many (three missing);
with more, the targets' order and each missing modality moved to the front."""


def modalities_of(models) -> tuple[str, ...]:
    """The modalities a model set knows, in the order patterns are named: its targets, then
    the sources that are no target."""
    names = list(models.targets)
    for tm in models.targets.values():
        names += [s for s in tm.sources if s not in names]
    return tuple(names)


def pattern_name(modalities: Sequence[str], observed: Sequence[bool]) -> str:
    """How a pattern is filed in `ModelSet.cascade_orders`: its observed modalities joined by
    '+', in `modalities`' order."""
    return "+".join(m for m, have in zip(modalities, observed) if have)


def candidate_orders(missing: Sequence[str], targets: Sequence[str]) -> list[tuple[str, ...]]:
    """The orders of the `missing` targets a choice compares, the targets' order first."""
    default = tuple(t for t in targets if t in missing)
    if math.factorial(len(default)) <= MAX_ORDERS:
        others = [p for p in itertools.permutations(default) if p != default]
    else:
        others = [(m,) + tuple(t for t in default if t != m) for m in default[1:]]
    return [default] + others


def fill_plan(present: Mapping[str, np.ndarray], modalities: Sequence[str],
              targets: Sequence[str], orders: Mapping[str, Sequence[str]] | None = None,
              order: Sequence[str] = ()) -> list[tuple[str, np.ndarray]]:
    """The cascade's sampler calls, in order: [(target, patients [N] bool)], each target
    drawn for the patients whose order puts it at that place.

    Args:
        present: modality -> [N] bool, observed rows.
        modalities: the names patterns are filed under (`modalities_of`).
        targets: the targets, in their default order.
        orders: pattern name -> that pattern's order of the targets it lacks (`cascade_orders`).
        order: the targets to fill, in this order, for every patient (the user's,
            `fill.SamplerCalls.order`; others are not filled); replaces `targets` and `orders`.

    With one order for everyone (no `orders`, or `order`), the plan is one call per target.
    """
    n = len(next(iter(present.values())))
    if order:
        return [(t, np.ones(n, bool)) for t in order]
    observed = np.stack([np.asarray(present[m], bool) if m in present else np.zeros(n, bool)
                         for m in modalities], axis=1)  # [N, M]
    place = {t: np.full(n, i) for i, t in enumerate(targets)}  # target -> [N] its place
    for row in np.unique(observed, axis=0) if orders else ():
        chosen = orders.get(pattern_name(modalities, row))
        if chosen is None:
            continue
        patients = (observed == row).all(axis=1)
        full = tuple(chosen) + tuple(t for t in targets if t not in chosen)
        for t in targets:
            place[t][patients] = full.index(t)
    return [(t, place[t] == p) for p in range(len(targets)) for t in targets
            if (place[t] == p).any()]
