"""Whether a modality's shape transform (`data.marginal`) helps, decided on validation patients.

The per-feature criterion of `AsinhShape` is a likelihood: it finds heavy tails wherever they
are, also on a modality already on a log scale, where taking them out gains nothing and costs a
little (KIPAN through the files: R^2 -0.003 to -0.010). What the transform is for is better
draws of a missing modality in its own units, so that is what decides: for each modality the
transform changes, the closed form (a ridge from the other modalities' z-scores, Gaussian
residuals per feature) is fitted on the complete training patients in both units, 20 draws for
each complete validation patient are mapped back to the input's units, and the transform is
kept only where their mean fair CRPS (in the plain z-scores) is lower by at least `MIN_GAIN`.
Draws, not the Gaussian CRPS in closed form: in the input's units neither arm is Gaussian (the
shape's inverse, and each feature's domain clipping `inverse` applies to both), and the two
arms share their noise, so the comparison is paired.

    keep = shape_helps(cohort, "rna", plain_transforms, shaped_transforms["rna"])
"""

from __future__ import annotations

from typing import Mapping

import numpy as np
import pandas as pd
from sklearn.linear_model import RidgeCV

from coherent_jax.scoring_rules import crps

MIN_GAIN = 0.005
"""The share of the plain closed form's validation CRPS the transform must take off."""
DRAWS = 20
MIN_PATIENTS = {"train": 20, "val": 10}
"""Fewer complete patients than this in a split: the transform is not kept (nothing to decide
on)."""
ALPHAS = np.logspace(-2, 4, 13)


def shape_helps(cohort, modality: str, plain: Mapping, shaped) -> bool:
    """True when `shaped` (a ModalityTransform with a shape) gives the closed form's draws of
    `modality` a lower validation CRPS than `plain[modality]` (module docstring).

    Args:
        cohort: the cohort the preprocessing is fitted on, splits assigned.
        modality: the modality decided on.
        plain: modality -> its ModalityTransform without a shape (the sources' z-scores).
        shaped: the candidate ModalityTransform of `modality`.
    """
    others = [m for m in cohort.modalities if m != modality]
    parts = {s: cohort.split(s) for s in MIN_PATIENTS}
    parts = {s: p.subset(p.sample_ids[p.complete]) for s, p in parts.items()}
    if not others or any(p.num_samples < MIN_PATIENTS[s] for s, p in parts.items()):
        return False
    x = {s: np.concatenate([plain[m].apply(p.tables[m]).to_numpy(np.float64) for m in others],
                           axis=1) for s, p in parts.items()}  # [n, sum D_sources]
    real = plain[modality].apply(parts["val"].tables[modality]).to_numpy(np.float64)
    noise = np.random.default_rng(0).standard_normal((DRAWS,) + real.shape)  # shared: paired
    scores = {}
    for name, step in (("plain", plain[modality]), ("shaped", shaped)):
        y = step.apply(parts["train"].tables[modality]).to_numpy(np.float64)
        ridge = RidgeCV(alphas=ALPHAS).fit(x["train"], y)
        spread = np.std(y - ridge.predict(x["train"]), axis=0)  # [D]
        draws = ridge.predict(x["val"])[None] + spread * noise  # [K, n_val, D] its z-scores
        scores[name] = float(crps(real, _plain_zscores(draws, step, plain[modality]),
                                  fair=True).mean())
    return scores["shaped"] < (1 - MIN_GAIN) * scores["plain"]


def _plain_zscores(draws: np.ndarray, step, plain) -> np.ndarray:
    """Draws [K, n, D] in `step`'s z-scores -> the plain transform's z-scores (through the
    input's units)."""
    features = list(step.features)
    flat = pd.DataFrame(draws.reshape(-1, draws.shape[-1]), columns=features)
    units = step.inverse(flat).to_numpy(np.float64)
    return ((units - plain.mean) / plain.std).reshape(draws.shape)
