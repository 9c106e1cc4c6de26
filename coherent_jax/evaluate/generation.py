"""The evaluation's draws: one `impute` call per generative method over pattern copies."""

from __future__ import annotations

import time
from typing import Callable

from coherent_jax.evaluate.patterns import PatternCopies
from coherent_jax.impute import Imputation, impute, supports


def _usable_methods(models, methods) -> list[str]:
    """The requested methods this model set can run (`impute.supports`)."""
    return [method for method in methods if supports(models, method)]


def generate(copies: PatternCopies, models, space, config, seed: int,
             log: Callable[[str], None], feature_copies: PatternCopies) -> dict[str, Imputation]:
    """One `impute` call per method of `config.methods` (an `EvalConfig`) over all pattern
    copies (latents and decoded features), each with `config.imputation`;
    `feature_copies` are the same copies in feature space (observed rows, and the conditions
    of models that condition on features)."""
    out = {}
    for method in _usable_methods(models, config.methods):
        start = time.perf_counter()
        out[method] = impute(copies.cohort, models, config.imputation, method=method, seed=seed,
                             latent_space=space, feature_cohort=feature_copies.cohort)
        log(f"{method}: {copies.cohort.num_samples} pattern copies x "
            f"{config.imputation.num_samples} draws "
            f"in {time.perf_counter() - start:.1f} s")
    return out
