"""Synthetic cohorts with known truth: a TCGA-like generator and linear-Gaussian cohorts.

TCGA-like generative story (all of it seeded by one numpy seed):
    type t ~ Categorical(p), uneven sizes like TCGA's 20 tumour types
    stage s | t ~ Categorical(type-specific probabilities over 1-4); ~8% missing stage
    shared patient factors z = mu_t + (s - 2.5) * v + N(0, I_F)
    per modality m: h_m = tanh(z A_m + b_m)  [H], signal_m = h_m W_m / sqrt(H)  [D_m], then
        rna   log2(CPM+1)-like: gene mean + scale * signal + noise, floored at 0
        cna   piecewise-constant segments, copy number round(2 * 2^signal) in 0..8,
              log2(CN/2) clipped to [-2, 2] (homozygous deletions -> -2)
        rppa  signal + noise, each sample centred on its median
        wsi   dense embedding: signal + noise
    survival: Weibull proportional hazards, log-hazard = z . beta + 0.4 (s - 1) + type effect;
        uniform censoring; os_time = min(event, censoring) days
    missingness: TCGA-like per-modality rates, never every modality of a patient.
"""

from __future__ import annotations

from typing import Mapping

import numpy as np
import pandas as pd

from coherent_jax.data import labels as labels_lib
from coherent_jax.data.cohort import Cohort
from coherent_jax.data.linear_gaussian import LinearGaussianModel
from coherent_jax.data.missingness import TCGA_LIKE_RATES, induce_missingness
from coherent_jax.errors import UnknownModalityError

TCGA_TYPES = ("BRCA", "KIRC", "LUAD", "UCEC", "THCA", "HNSC", "LUSC", "PRAD", "LGG", "COAD",
              "SKCM", "STAD", "BLCA", "LIHC", "OV", "KIRP", "CESC", "SARC", "GBM", "PAAD")
# Widths of the order of the paper's tables (gene-level copy number, filtered RNA genes,
# RPPA proteins, TITAN slide embedding).
TCGA_WIDTHS = {"cna": 20000, "rna": 16000, "rppa": 480, "wsi": 768}


def _signal(z: np.ndarray, width: int, hidden: int, rng: np.random.Generator) -> np.ndarray:
    """A random nonlinear map of the factors: [N, F] -> [N, width] float32, unit-ish scale."""
    a = rng.standard_normal((z.shape[1], hidden)) / np.sqrt(z.shape[1])
    b = rng.standard_normal(hidden) * 0.5
    w = rng.standard_normal((hidden, width)).astype(np.float32)
    h = np.tanh(z @ a + b).astype(np.float32)  # [N, H]
    return h @ w / np.float32(np.sqrt(hidden) * 0.6)


def _modality(name: str, z: np.ndarray, width: int, rng: np.random.Generator) -> np.ndarray:
    n = z.shape[0]
    noise = lambda d: rng.standard_normal((n, d), dtype=np.float32)
    if name == "cna":
        num_segments = max(width // 100, 1)
        segment = rng.integers(0, num_segments, width)  # gene -> segment
        level = 0.6 * _signal(z, num_segments, 32, rng) + 0.3 * noise(num_segments)
        copies = np.clip(np.round(2.0 * np.exp2(level)), 0, 8)[:, segment]  # [N, D]
        return np.clip(np.log2(np.maximum(copies, 0.5) / 2.0), -2, 2).astype(np.float32)
    signal = _signal(z, width, 32, rng)
    if name == "rna":
        mean = rng.uniform(0.5, 10.0, width).astype(np.float32)
        scale = rng.uniform(0.3, 2.0, width).astype(np.float32)
        return np.maximum(mean + scale * signal + 0.4 * noise(width), 0).astype(np.float32)
    if name == "rppa":
        values = signal + 0.4 * noise(width)
        return (values - np.median(values, axis=1, keepdims=True)).astype(np.float32)
    return (signal + 0.5 * noise(width)).astype(np.float32)


def tcga_like(num_samples: int, *, seed: int, num_types: int = 20, scale: float = 1.0,
              widths: Mapping[str, int] | None = None, num_factors: int = 16,
              missing_rates: Mapping[str, float] | None = TCGA_LIKE_RATES) -> Cohort:
    """A TCGA-like cohort: CNA, RNA, RPPA and WSI tables driven by shared patient factors.

    Args:
        num_samples: patients N.
        seed: numpy seed of everything.
        num_types: tumour types (named after TCGA projects up to 20).
        scale: multiplies every width (e.g. 0.01 for a tiny test cohort); widths >= 4.
        widths: modality -> width before scaling (default TCGA_WIDTHS; keys among cna, rna,
            rppa, wsi).
        num_factors: shared factor dimension F.
        missing_rates: modality -> share of patients lacking it (TCGA-like by default);
            None for a complete cohort. Removed rows are kept in `held_out`.

    Returns:
        A Cohort with labels cancer_type, stage, os_time, os_event, and no split.
    """
    widths = {m: max(int(round(w * scale)), 4) for m, w in (widths or TCGA_WIDTHS).items()}
    unknown = set(widths) - set(TCGA_WIDTHS)
    if unknown:
        raise UnknownModalityError(f"unknown modalities {sorted(unknown)}; use "
                                   f"{list(TCGA_WIDTHS)}.")
    rng = np.random.default_rng(seed)
    names = [TCGA_TYPES[i] if i < len(TCGA_TYPES) else f"TYPE{i}" for i in range(num_types)]
    share = np.exp(rng.normal(0, 0.6, num_types))
    types = rng.choice(num_types, num_samples, p=share / share.sum())  # [N]
    stage_p = rng.dirichlet([3.0, 3.0, 2.0, 1.0], num_types)  # [T, 4]
    stage = (rng.random(num_samples)[:, None] > np.cumsum(stage_p[types], axis=1)).sum(1) + 1
    centroids = rng.normal(0, 1.5, (num_types, num_factors))
    stage_direction = rng.normal(0, 1, num_factors) / np.sqrt(num_factors)
    z = (centroids[types] + (stage - 2.5)[:, None] * stage_direction
         + rng.standard_normal((num_samples, num_factors)))  # [N, F]
    ids = pd.Index([f"SYN-{i:06d}" for i in range(num_samples)], name="sample_id")
    tables = {m: pd.DataFrame(_modality(m, z, w, rng), index=ids,
                              columns=[f"{m}_{j}" for j in range(w)]) for m, w in widths.items()}
    beta = rng.normal(0, 0.3, num_factors)
    log_hazard = z @ beta + 0.4 * (stage - 1) + rng.normal(0, 0.5, num_types)[types]
    shape, median_days = 1.3, 1500.0
    base = np.log(2) / median_days ** shape
    event_time = (-np.log(rng.random(num_samples)) / (base * np.exp(log_hazard))) ** (1 / shape)
    censor_time = rng.uniform(30, 4000, num_samples)
    stage_known = rng.random(num_samples) >= 0.08
    labels = labels_lib.standard_labels(
        ids, cancer_type=np.array(names)[types],
        stage=np.where(stage_known, stage, np.nan),
        os_time=np.round(np.minimum(event_time, censor_time)),
        os_event=(event_time <= censor_time).astype(int))
    cohort = Cohort.from_tables(tables, labels, name=f"tcga-like-{num_samples}")
    if missing_rates is None:
        return cohort
    rates = {m: r for m, r in missing_rates.items() if m in widths}
    return induce_missingness(cohort, rates, seed=int(rng.integers(2**31)), splits=None)


def linear_gaussian_cohort(model: LinearGaussianModel, num_samples: int, *, seed: int,
                           missing_rates: Mapping[str, float] | None = None) -> Cohort:
    """Complete (or seeded-holed) patients from a LinearGaussianModel.

    The exact law of any modality given any others stays available from `model.conditional`;
    the cohort's tables are the model's samples in float32, features '<modality>_<j>'.

    Args:
        model: the model (e.g. LinearGaussianModel.random(...)).
        num_samples: patients N.
        seed: numpy seed of the draw (and of the holes).
        missing_rates: optional modality -> share removed (never all of a patient's).
    """
    draws = model.sample(num_samples, seed)
    ids = pd.Index([f"LG-{i:06d}" for i in range(num_samples)], name="sample_id")
    tables = {m: pd.DataFrame(v.astype(np.float32), index=ids,
                              columns=[f"{m}_{j}" for j in range(v.shape[1])])
              for m, v in draws.items()}
    cohort = Cohort.from_tables(tables, name=f"linear-gaussian-{num_samples}")
    if missing_rates is None:
        return cohort
    return induce_missingness(cohort, missing_rates, seed=seed + 1, splits=None)
