"""Privacy audit of generated samples: distance to closest record (DCR), distance-based
membership inference, and unconditional generations checked against training records.

Distances are Euclidean in the space given (z-scored latents or standardised features).
"""

from __future__ import annotations

import numpy as np
from scipy.spatial.distance import cdist
from sklearn.metrics import roc_auc_score


def closest_distance(queries: np.ndarray, records: np.ndarray, exclude_self: bool = False,
                     chunk: int = 1024) -> np.ndarray:
    """[Q] distance from each query [Q, D] to its closest record [R, D].

    With exclude_self (queries are the records, same order), each record's own zero distance
    is skipped (exact duplicates of a record still count). Brute force in chunks of `chunk`
    queries, so memory stays at chunk x R distances.
    """
    queries, records = np.asarray(queries, np.float64), np.asarray(records, np.float64)
    if exclude_self and queries.shape != records.shape:
        raise ValueError("exclude_self needs queries to be the records themselves.")
    out = np.empty(len(queries))
    for start in range(0, len(queries), chunk):
        d = cdist(queries[start:start + chunk], records)  # [chunk, R]
        if exclude_self:
            rows = np.arange(d.shape[0])
            d[rows, start + rows] = np.inf
        out[start:start + chunk] = d.min(axis=1)
    return out


def dcr_share(generated: np.ndarray, train: np.ndarray, holdout: np.ndarray, seed: int = 0
              ) -> dict:
    """Share of generated samples closer to the training set than to a held-out set.

    A generator that does not copy its training data produces samples no closer to training
    records than to unseen records from the same population: share ~0.5. Copies of training
    rows give 1. The larger of train and holdout is subsampled (with `seed`) to the size of the
    smaller, so neither side wins by density. Ties count one half.

    Args:
        generated: [G, D]; train: [N_tr, D] records the model saw; holdout: [N_ho, D] unseen.

    Returns:
        {'share', 'dcr_train_median', 'dcr_holdout_median', 'n_reference'}.
    """
    rng = np.random.default_rng(seed)
    n = min(len(train), len(holdout))
    train = np.asarray(train)[rng.permutation(len(train))[:n]]
    holdout = np.asarray(holdout)[rng.permutation(len(holdout))[:n]]
    to_train = closest_distance(generated, train)
    to_holdout = closest_distance(generated, holdout)
    share = np.mean(to_train < to_holdout) + 0.5 * np.mean(to_train == to_holdout)
    return {"share": float(share), "dcr_train_median": float(np.median(to_train)),
            "dcr_holdout_median": float(np.median(to_holdout)), "n_reference": n}


def membership_inference_auc(generated: np.ndarray, members: np.ndarray,
                             non_members: np.ndarray) -> float:
    """AUC of a distance attack telling training members from non-members.

    The attacker scores each candidate record by minus its distance to the closest generated
    sample (closer = more likely a member). 0.5: the generated data reveal nothing about
    membership; 1: every member is closer than every non-member.

    Args:
        generated: [G, D]; members: [N_in, D] training records; non_members: [N_out, D].
    """
    score = -closest_distance(np.concatenate([members, non_members]), generated)
    truth = np.r_[np.ones(len(members)), np.zeros(len(non_members))]
    return float(roc_auc_score(truth, score))


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
