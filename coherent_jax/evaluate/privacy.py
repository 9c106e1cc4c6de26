"""Privacy audit of generated samples, built to fail when a generator memorises its training
patients:

* conditional membership inference (`membership_audit`): each target is imputed from all
  other modalities for training patients (members) and for patients never trained on nor used
  for selection (non-members); the attacker calls a patient a member when its imputation error
  is small. AUC 0.5: the imputations reveal nothing about membership; 1: every training patient
  is reconstructed better than every unseen one.
* copies (`copy_audit`): each draw's distance to its nearest record of the FULL training set,
  against the distances of real unseen patients to their nearest training record: a copy sits
  at distance 0, a fresh draw as far as unseen patients do.
* unconditional draws (`unconditional_check`): fully masked generations against the training
  records' own nearest-neighbour distances.

Distances are Euclidean in the space given (z-scored latents or standardised features), by
`sklearn.neighbors.NearestNeighbors`.
"""

from __future__ import annotations

import numpy as np
from sklearn.neighbors import NearestNeighbors

from coherent_jax.evaluate import stats

MEMBERSHIP_AUC_BAND = (0.40, 0.60)
"""A conditional membership AUC outside this band flags the model: above it training patients
are imputed better than new ones (memorisation, the target of issue 16), below it worse (a
model pushed away from its training patients reveals membership as well)."""
NEAR_COPY_QUANTILE = 0.01
"""Draws nearer to a training record than this quantile of the real unseen patients'
nearest-training-record distances count as near-copies; a fresh generator has ~1% of them."""
MAX_NEAR_COPY_SHARE = 0.05
"""A near-copy share above this (5x what a fresh generator gives) flags copying."""


def closest_distance(queries: np.ndarray, records: np.ndarray, exclude_self: bool = False
                     ) -> np.ndarray:
    """[Q] distance from each query [Q, D] to its closest record [R, D].

    With exclude_self (queries are the records, same order), each record's own zero distance
    is skipped (exact duplicates of a record still count).
    """
    queries, records = np.asarray(queries, np.float64), np.asarray(records, np.float64)
    if exclude_self and queries.shape != records.shape:
        raise ValueError("exclude_self needs queries to be the records themselves.")
    index = NearestNeighbors(n_neighbors=1).fit(records)
    if exclude_self:  # kneighbors() without X leaves each point out of its own neighbours
        return index.kneighbors(return_distance=True)[0][:, 0]
    return index.kneighbors(queries, return_distance=True)[0][:, 0]


def membership_audit(member_errors, non_member_errors, num: int = stats.NUM_BOOTSTRAP,
                     seed: int = 0) -> dict:
    """Conditional membership inference from per-patient imputation errors.

    Args:
        member_errors: [N_in] error of each training patient's imputation (e.g. latent MSE of
            the target imputed from all other modalities).
        non_member_errors: [N_out] the same for patients never trained on nor used for
            selection.
        num, seed: bootstrap resamples (each group resampled on its own) and their seed.

    Returns:
        {'auc' (P(member error < non-member error)), 'low', 'high' (95% bootstrap interval),
        'p' (one-sided Mann-Whitney p of AUC = 0.5), 'n_members', 'n_non_members',
        'member_error_median', 'non_member_error_median', 'flagged' (auc outside
        MEMBERSHIP_AUC_BAND)}.
    """
    members = np.asarray(member_errors, np.float64)
    non_members = np.asarray(non_member_errors, np.float64)
    found = stats.auc_test(-members, -non_members, num=num, seed=seed)
    return {**found, "member_error_median": float(np.median(members)),
            "non_member_error_median": float(np.median(non_members)),
            "flagged": not MEMBERSHIP_AUC_BAND[0] <= found["auc"] <= MEMBERSHIP_AUC_BAND[1]}


def copy_audit(draws: np.ndarray, train: np.ndarray, holdout: np.ndarray,
               quantile: float = NEAR_COPY_QUANTILE, num: int = stats.NUM_BOOTSTRAP,
               seed: int = 0) -> dict:
    """Are the draws training records in disguise? Distances to the full training set.

    Args:
        draws: [K, P, D] K draws for each of P evaluated patients (or [P, D]).
        train: [N, D] every training record of the target.
        holdout: [H, D] real records of patients never trained on (e.g. the evaluated ones).
        quantile: the holdout-to-train distance quantile below which a draw is a near-copy.
        num, seed: bootstrap over the P patients for the near-copy share's interval.

    Returns:
        {'draw_train_nn_median', 'holdout_train_nn_median', 'nn_ratio' (draw / holdout
        median; ~1 or above is healthy, 0 for copies), 'near_copy_share' (share of draws
        nearer to a training record than the `quantile` of the holdout distances), 'low',
        'high' (its 95% interval over patients), 'near_copy_cut', 'quantile', 'flagged'
        (near_copy_share > MAX_NEAR_COPY_SHARE)}.
    """
    draws = np.asarray(draws, np.float64)
    draws = draws[None] if draws.ndim == 2 else draws
    k, p, d = draws.shape
    to_train = closest_distance(draws.reshape(k * p, d), train).reshape(k, p)
    reference = closest_distance(holdout, train)  # [H]
    cut = float(np.quantile(reference, quantile))
    per_patient = np.mean(to_train < cut, axis=0)  # [P]
    boot = per_patient[stats.bootstrap_indices(p, num, seed)].mean(axis=1) if p > 1 else [np.nan]
    low, high = stats.percentile_interval(boot)
    median = float(np.median(reference))
    share = float(per_patient.mean())
    return {"draw_train_nn_median": float(np.median(to_train)),
            "holdout_train_nn_median": median,
            "nn_ratio": float(np.median(to_train) / median) if median > 0 else float("nan"),
            "near_copy_share": share, "low": low, "high": high, "near_copy_cut": cut,
            "quantile": quantile, "flagged": bool(share > MAX_NEAR_COPY_SHARE)}


def unconditional_check(generated: np.ndarray, train: np.ndarray, quantile: float = 0.01
                        ) -> dict:
    """Are unconditional (fully masked) generations training records in disguise?

    Compares each generated sample's distance to its nearest training record with the training
    records' distances to their nearest OTHER training record. A generator that memorised its
    data puts many samples closer to a training record than almost any training record is to
    another one.

    Args:
        generated: [G, D] samples generated with every condition masked.
        train: [N, D] training records.
        quantile: the reference quantile of train-train nearest-neighbour distances.

    Returns:
        {'gen_train_nn_median', 'train_train_nn_median', 'train_duplicate_share' (training
        records with an exact duplicate; high values point at a collapsed encoder), 'nn_ratio'
        (gen / train median; ~1 or above is healthy, << 1 suggests copies; NaN when most
        training records are duplicates), 'share_below_quantile' (share of generated
        samples nearer to a training record than the `quantile` of train-train distances;
        ~quantile is healthy, ~1 means copies), 'quantile'}.
    """
    gen_nn = closest_distance(generated, train)  # [G]
    train_nn = closest_distance(train, train, exclude_self=True)  # [N]
    cut = np.quantile(train_nn, quantile)
    reference = np.median(train_nn)  # 0 when most training records have an exact duplicate
    return {"gen_train_nn_median": float(np.median(gen_nn)),
            "train_train_nn_median": float(reference),
            "train_duplicate_share": float(np.mean(train_nn == 0)),
            "nn_ratio": float(np.median(gen_nn) / reference) if reference > 0 else float("nan"),
            "share_below_quantile": float(np.mean(gen_nn < cut)), "quantile": quantile}
