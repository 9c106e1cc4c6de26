"""The cascade's order per availability pattern, chosen on patients the models did not fit.

Given 'reveal' alone, the door cohorts' default cascade draws the blind 'hide' first and the
target given 'reveal' and that draw; drawing the target first brought door2's target from
1.79% to 1.32% above the exact conditional and door4's from 3.73% to 2.70%, while door's and
door3's moved within noise (benchmarks/RESULTS.md, "The cascade's order"): which order is
better depends on the cohort and the pattern, so it is chosen like the family
(`calibrate.choose_family_by_pattern`).

For every availability pattern that lacks two or more targets, each candidate order
(`cascade.candidate_orders`) draws the patients as imputation would (`impute.cascade_draws`,
method 'auto'): the validation patients with the final models and, where every target's models
are untrained anchors, the training patients in `cross_fit.FOLDS` folds, each drawn from
anchors refitted without its fold (their observed sources through the final condition maps,
fitted with them: a small advantage shared by every order). A patient's score for an order is
the sum over the missing targets of its fair energy score, each divided by that target's mean
score in the targets' order, so that every target weighs the same. The targets' order stays
unless the best other order leads by the paired test of `scoring_rules.paired_lead` on all
the patients scored.

    record = choose_orders(models, latents, features, space, residual_latents=residual)
    models.cascade_orders = record["chosen"]
"""

from __future__ import annotations

import dataclasses
import itertools
import logging
import time

import jax.numpy as jnp
import numpy as np
import pandas as pd

from coherent_jax import anchor_draws, cascade, cross_fit, scoring_rules
from coherent_jax.engine.train import fair_energy_score
from coherent_jax.fill import SamplerCalls
from coherent_jax.impute import ImputeConfig, cascade_draws

logger = logging.getLogger(__name__)

MIN_PATIENTS = 20
"""Orders are chosen only when at least this many complete patients are scored."""


@dataclasses.dataclass(frozen=True)
class _Group:
    """Complete patients drawn with one model set: `latents` (the Cohort the draws condition
    on and are scored against, as new patients would be encoded) and their `features`."""

    models: object
    latents: object
    features: object


def choose_orders(models, latents, features, space, *, residual_latents=None,
                  num_samples: int = 20, seed: int = 0) -> dict:
    """Per availability pattern lacking two or more targets, the cascade's order (module
    docstring). Leaves `models` alone: its owner stores record['chosen'] as
    `models.cascade_orders`.

    Args:
        models: the trained ModelSet (its targets' `anchor_refits` set by training, for the
            training patients' folds).
        latents: the latent Cohort it was trained on ('train' and 'val' splits); features:
            the feature Cohort of the same patients; space: the LatentSpace (decodes the
            draws that later targets condition on).
        residual_latents: the latents as new patients would be encoded
            (`latent.cross_fitted_latents`; default `latents`).
        num_samples: draws per patient.

    Returns:
        {'patterns': {pattern: {'orders': [...], 'relative': [...] (mean criterion per order),
        'energy': [...] (per order, each missing target's mean score),
        'validation_patients', 'held_out_patients', 'best' (the best other order's index),
        'best_minus_default' (the paired test)}}, 'chosen': {pattern: order} where another
        order leads, 'seconds'} ('reason' instead of patterns where fewer than MIN_PATIENTS
        complete patients are scored).
    """
    start = time.perf_counter()
    scored = residual_latents if residual_latents is not None else latents
    validation = _complete(models, scored.split("val"), features)
    groups = [g for g in [validation] + _folds(models, scored.split("train"), features, seed)
              if g is not None]
    validation_patients = 0 if validation is None else validation.latents.num_samples
    scored_patients = sum(g.latents.num_samples for g in groups)
    if scored_patients < MIN_PATIENTS:
        return {"reason": f"{scored_patients} complete patients to score, fewer than "
                          f"{MIN_PATIENTS}", "patterns": {}, "chosen": {}}
    modalities, targets = cascade.modalities_of(models), tuple(models.targets)
    config = ImputeConfig(num_samples=num_samples)
    patterns, chosen = {}, {}
    for observed in itertools.product((False, True), repeat=len(modalities)):
        missing = [t for t, have in zip(modalities, observed) if not have and t in targets]
        if not any(observed) or len(missing) < 2:
            continue
        name = cascade.pattern_name(modalities, observed)
        orders = cascade.candidate_orders(missing, targets)
        scores = [_scores(groups, space, observed, modalities, order, config, seed)
                  for order in orders]
        patterns[name] = _compare(orders, scores, validation_patients)
        test = patterns[name]["best_minus_default"]
        if test["leads"]:
            chosen[name] = orders[patterns[name]["best"]]
        logger.info("cascade given %s: %s (best other order %s, %+.4f, standard error %.4f, "
                    "%d patients)", name, " -> ".join(chosen.get(name, orders[0])),
                    " -> ".join(orders[patterns[name]["best"]]), test["mean_difference"],
                    test["standard_error"], test["patients"])
    return {"num_samples": int(num_samples), "patterns": patterns,
            "chosen": {k: list(v) for k, v in chosen.items()},
            "seconds": time.perf_counter() - start}


def _compare(orders: list, scores: list, validation_patients: int) -> dict:
    """One pattern's record: each order's criterion (module docstring) and the paired test
    of the best other order against the first (the targets' order)."""
    missing = list(scores[0])
    scale = {t: np.mean(scores[0][t]) for t in missing}
    relative = [sum(s[t] / scale[t] for t in missing) for s in scores]  # per order [n]
    best = 1 + int(np.argmin([np.mean(r) for r in relative[1:]]))
    patients = relative[0].size
    return {"orders": [list(o) for o in orders],
            "relative": [float(np.mean(r)) for r in relative],
            "energy": [{t: float(np.mean(s[t])) for t in missing} for s in scores],
            "validation_patients": int(validation_patients),
            "held_out_patients": int(patients - validation_patients), "best": best,
            "best_minus_default": scoring_rules.paired_lead(relative[best] - relative[0])}


def given_only(cohort, modalities):
    """`cohort`'s patients as new ones given only `modalities` (the others' rows emptied,
    no split)."""
    return cohort.replace(
        splits=pd.Series(pd.NA, index=cohort.sample_ids, dtype="string"),
        tables={m: table if m in modalities else table * np.nan
                for m, table in cohort.tables.items()})


def _complete(models, latents, features) -> _Group | None:
    """The group of `latents`' patients that have every modality (None: none has)."""
    ids = latents.sample_ids[latents.complete]
    if not len(ids):
        return None
    return _Group(models, latents.subset(ids), features.subset(ids))


def _folds(models, train_latents, features, seed: int) -> list:
    """The training patients in folds, each group with every target's anchors refitted
    without it ([] unless every model is an untrained anchor with a refit)."""
    families = [(tm, name, variables) for tm in models.targets.values()
                for name, variables in (("specialists", tm.specialists), ("multi", tm.multi))
                if variables is not None]
    if not families or not all(anchor_draws.untrained(v) and name in tm.anchor_refits
                               for tm, name, v in families):
        return []
    n = train_latents.num_samples
    fold = np.random.default_rng(seed).permutation(n) % cross_fit.FOLDS
    out = []
    for f in range(cross_fit.FOLDS):
        keep = fold != f
        refitted = {t: dataclasses.replace(tm, **{
            name: cross_fit.with_anchors(variables, tm.anchor_refits[name](keep),
                                         name == "specialists")
            for name, variables in (("specialists", tm.specialists), ("multi", tm.multi))
            if variables is not None}) for t, tm in models.targets.items()}
        out.append(_complete(dataclasses.replace(models, targets=refitted),
                             train_latents.subset(train_latents.sample_ids[~keep]), features))
    return out


def _scores(groups, space, observed, modalities, order, config, seed: int) -> dict:
    """{missing target: [n] fair energy scores over every group's patients} of the draws
    in `order` given the `observed` modalities (the others masked)."""
    out, given = {}, [m for m, have in zip(modalities, observed) if have]
    for g, group in enumerate(groups):
        draws = cascade_draws(given_only(group.latents, given), group.models, config,
                              seed=seed + g, latent_space=space, feature_cohort=group.features,
                              calls=SamplerCalls(order=order))
        for t in order:
            real = jnp.asarray(group.latents.matrix(t)[0], jnp.float32)
            score = np.asarray(fair_energy_score(jnp.asarray(draws[t], jnp.float32), real))
            out.setdefault(t, []).append(score.astype(np.float64))
    return {t: np.concatenate(v) for t, v in out.items()}
