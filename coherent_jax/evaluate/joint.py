"""Patients given one modality and missing two or more: their missing modalities scored together.

A per-target score cannot see whether the draws of two missing modalities depend on each other
as the real ones do (a cascade that conditions the second on a draw of the first, or
independent draws, both give good per-target scores). Here, per generative method and source:

- the fair energy score of the missing modalities side by side (feature z-scores), with a
  patient-bootstrap interval and the paired difference to the joint closed form ('gaussian');
- the coverage of random projections of that joint vector (joint calibration);
- the cross-modality dependence of the residuals: for the leading latent dimensions of each
  missing modality, the correlation matrix between the two modalities' residuals, real
  (truth minus the mean of the draws, over patients) and generated (each draw minus the mean
  of the draws, over patients and draws); reported as the mean |correlation| of each and the
  root-mean-square difference of the two matrices.
"""

from __future__ import annotations

import itertools

import numpy as np
import pandas as pd

from coherent_jax.evaluate import stats
from coherent_jax.evaluate.patterns import tag
from coherent_jax.evaluate.reconstruction import energy_score, projection_coverage

LEADING_DIMS = 5
"""Latent dimensions per modality in the dependence check (the PCA's leading ones)."""


def _stacked(copies, tables, target: str, subset, ids) -> np.ndarray:
    """[K, N, D] the draws of `target` for the copies of `subset`, patients in `ids` order."""
    draws = copies.draws_of(tables, target, subset)
    k = int(draws.index.get_level_values("draw").max()) + 1
    return np.stack([draws.xs(j, level="draw").reindex(ids).to_numpy(np.float64)
                     for j in range(k)])


def _cross_correlation(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """[Da, Db] correlations between the columns of a [n, Da] and b [n, Db]."""
    a = (a - a.mean(axis=0)) / np.maximum(a.std(axis=0), 1e-12)
    b = (b - b.mean(axis=0)) / np.maximum(b.std(axis=0), 1e-12)
    return a.T @ b / len(a)


def dependence(real: list[np.ndarray], draws: list[np.ndarray],
               dims: int = LEADING_DIMS) -> dict:
    """Cross-modality residual dependence of two missing modalities (module docstring).

    Args:
        real: two [N, D_t] true latents; draws: the two [K, N, D_t] draws.

    Returns:
        {'real |r|', 'drawn |r|', 'rms difference'} over the leading `dims` x `dims` block.
    """
    residual = [r[:, :dims] - d[:, :, :dims].mean(axis=0) for r, d in zip(real, draws)]
    spread = [(d[:, :, :dims] - d[:, :, :dims].mean(axis=0)).reshape(-1, min(dims, d.shape[2]))
              for d in draws]
    c_real = _cross_correlation(*residual)
    c_drawn = _cross_correlation(*spread)
    return {"real |r|": float(np.mean(np.abs(c_real))),
            "drawn |r|": float(np.mean(np.abs(c_drawn))),
            "rms difference": float(np.sqrt(np.mean((c_real - c_drawn) ** 2)))}


def joint_table(copies, imputations: dict, test_latent, test_features, indices: np.ndarray,
                reference: str = "gaussian") -> pd.DataFrame:
    """The joint scores of every generative method for each single-source set with two or
    more modalities missing (module docstring).

    Returns:
        rows (method, given, missing); columns 'energy (features)' with its interval,
        'energy - <reference>' (paired, when the reference ran), 'projection coverage',
        and per pair of missing modalities the dependence numbers; empty when no available
        set leaves two modalities missing.
    """
    ids = copies.sample_ids
    modalities = tuple(test_latent.modalities)
    rows, energies = [], {}
    for subset in (s for s in copies.subsets if len(modalities) - len(s) >= 2):
        missing = [m for m in modalities if m not in subset]
        real = np.concatenate([test_features.tables[m].loc[ids].to_numpy(np.float64)
                               for m in missing], axis=1)  # [N, sum D]
        for method, result in imputations.items():
            drawn = np.concatenate([_stacked(copies, result.features, m, subset, ids)
                                    for m in missing], axis=2)  # [K, N, sum D]
            energy = energy_score(real, drawn)
            energies[(method, tag(subset))] = energy
            covered = projection_coverage(real, drawn)
            row = {"method": method, "given": tag(subset), "missing": "+".join(missing),
                   "energy (features)": stats.cell(
                       float(np.mean(energy)),
                       *stats.percentile_interval(energy[indices].mean(axis=1))),
                   "projection coverage": stats.cell(
                       float(np.mean(covered)),
                       *stats.percentile_interval(covered[indices].mean(axis=1)))}
            for a, b in itertools.combinations(missing, 2):
                found = dependence(
                    [test_latent.tables[m].loc[ids].to_numpy(np.float64) for m in (a, b)],
                    [_stacked(copies, result.draws, m, subset, ids) for m in (a, b)])
                row.update({f"{a}~{b} {name}": round(value, 3) for name, value in found.items()})
            rows.append(row)
    if not rows:
        return pd.DataFrame()
    table = pd.DataFrame(rows)
    if reference in imputations:
        table.insert(4, f"energy - {reference}", [
            stats.cell(float(np.mean(d)), *stats.percentile_interval(d[indices].mean(axis=1)),
                       signed=True)
            for d in (energies[(m, g)] - energies[(reference, g)]
                      for m, g in zip(table["method"], table["given"]))])
    return table.set_index(["method", "given", "missing"])
