"""The evaluation's draws: per generative method, one `impute` call per available set.

Each call holds exactly the patients and modalities a user would hand `experiments/impute.py`
(the complete patients in their order, only that set's modalities, their own sample IDs), so
the report's numbers are those the user's door gives for the same patients, settings and
seed, draw for draw (tested). The calls' results are then keyed by pattern-copy ID.
"""

from __future__ import annotations

import time
from typing import Callable

import pandas as pd

from coherent_jax.evaluate.patterns import PatternCopies
from coherent_jax.impute import Imputation, impute, supports


def _usable_methods(models, methods) -> list[str]:
    """The requested methods this model set can run (`impute.supports`)."""
    return [method for method in methods if supports(models, method)]


def generate(copies: PatternCopies, models, space, config, seed: int,
             log: Callable[[str], None], feature_copies: PatternCopies) -> dict[str, Imputation]:
    """For each method of `config.methods` (an `EvalConfig`): the Imputation of every pattern
    copy (latents, and features decoded by `space`; None: latents only), each available set
    imputed by its own `impute` call with `config.imputation`; `feature_copies` are the same
    copies in feature space (observed rows, and the conditions of models that condition on
    features)."""
    out = {}
    for method in _usable_methods(models, config.methods):
        start = time.perf_counter()
        parts = []
        for subset in copies.subsets:
            copy_ids, latents = copies.available(subset)
            _, features = feature_copies.available(subset)
            parts.append((copy_ids, impute(latents, models, config.imputation, method=method,
                                           seed=seed, latent_space=space,
                                           feature_cohort=features)))
        out[method] = _merged(parts)
        log(f"{method}: {len(copies.sample_ids)} patients x {len(copies.subsets)} available "
            f"sets x {config.imputation.num_samples} draws in "
            f"{time.perf_counter() - start:.1f} s")
    return out


def _merged(parts: list[tuple[pd.Index, Imputation]]) -> Imputation:
    """One Imputation keyed by copy ID from per-set Imputations keyed by sample ID
    (each part's copy IDs in its patients' order)."""
    def renamed(table: pd.DataFrame, copy_ids: pd.Index, ids: pd.Index) -> pd.DataFrame:
        mapping = pd.Series(copy_ids, index=ids)
        table = table.copy()
        if table.index.nlevels == 1:
            table.index = pd.Index(mapping.reindex(table.index).to_numpy(), dtype="string",
                                   name="sample_id")
        else:
            table.index = pd.MultiIndex.from_arrays(
                [pd.Index(mapping.reindex(table.index.get_level_values("sample_id")).to_numpy(),
                          dtype="string"), table.index.get_level_values("draw")],
                names=["sample_id", "draw"])
        return table

    def joined(field: str):
        tables = [(getattr(r, field), c, r.imputed.index) for c, r in parts]
        if any(t is None for t, _, _ in tables):
            return None
        if isinstance(tables[0][0], dict):
            return {m: pd.concat([renamed(t[m], c, i) for t, c, i in tables])
                    for m in tables[0][0]}
        return pd.concat([renamed(t, c, i) for t, c, i in tables])

    first = parts[0][1]
    return Imputation(draws=joined("draws"), imputed=joined("imputed"),
                      diagnostics=pd.concat([r.diagnostics for _, r in parts],
                                            ignore_index=True),
                      features=joined("features"), num_samples=first.num_samples,
                      feature_means=joined("feature_means"), acceptance=joined("acceptance"),
                      bad_fraction=joined("bad_fraction"))
