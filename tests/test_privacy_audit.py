"""The privacy audit can fail: a generator that memorises its training patients (it answers
with the nearest training record) is flagged by the conditional membership inference and by
the near-copy share, while the exact conditional law of a linear-Gaussian cohort (which knows
the population, not the patients) passes both."""

import numpy as np
import pytest

from coherent_jax.data import LinearGaussianModel
from coherent_jax.evaluate import copy_audit, membership_audit
from coherent_jax.evaluate.privacy import closest_distance

GAUSS = LinearGaussianModel.random({"a": 6, "b": 6, "c": 6}, num_factors=3, noise_std=0.5,
                                   seed=7)
K = 5


def _split(num_train=400, num_test=100):
    data = GAUSS.sample(num_train + num_test, seed=1)
    return ({m: v[:num_train] for m, v in data.items()},
            {m: v[num_train:] for m, v in data.items()})


def _memorising(train, given, target, rng):
    """K copies of the target of the training record nearest in the given modalities."""
    keys = np.concatenate([train[m] for m in given], axis=1)
    query = np.concatenate([given[m] for m in given], axis=1)
    nearest = np.argmin(((query[:, None] - keys[None]) ** 2).sum(-1), axis=1)
    return np.stack([train[target][nearest]] * K)  # [K, N, D]


def _fresh(train, given, target, rng):
    """K draws from the exact conditional law (the population's, no training record)."""
    mean, cov = GAUSS.conditional(target, given)
    noise = rng.multivariate_normal(np.zeros(len(cov)), cov, size=(K, len(mean)))
    return mean[None] + noise


def _audit(generator, seed=0):
    train, test = _split()
    rng = np.random.default_rng(seed)
    target = "c"
    errors = {}
    for name, group in (("members", train), ("non_members", test)):
        given = {m: group[m] for m in ("a", "b")}
        draws = generator(train, given, target, rng)
        errors[name] = np.mean((draws.mean(0) - group[target]) ** 2, axis=1)
        if name == "non_members":
            copies = copy_audit(draws, train[target], test[target], num=300)
    return membership_audit(errors["members"], errors["non_members"], num=300), copies


@pytest.mark.parametrize("generator, flagged", [(_memorising, True), (_fresh, False)])
def test_the_audit_flags_a_memorising_generator_and_passes_a_fresh_one(generator, flagged):
    membership, copies = _audit(generator)
    assert membership["flagged"] is flagged and copies["flagged"] is flagged
    if flagged:  # own records: error 0 for every member
        assert membership["auc"] > 0.95 and membership["low"] > 0.9
        assert copies["near_copy_share"] == 1.0 and copies["draw_train_nn_median"] == 0.0
    else:
        assert membership["low"] < 0.5 < membership["high"]
        assert copies["near_copy_share"] < 0.05
        assert copies["nn_ratio"] > 0.7


def test_the_old_holdout_check_missed_what_the_full_training_set_shows():
    """Against 31 subsampled training records (the old audit) a copy of the nearest training
    record looks as far from 'training' as a fresh draw; against the full set it is at 0."""
    train, test = _split()
    given = {m: test[m] for m in ("a", "b")}
    copies = _memorising(train, given, "c", np.random.default_rng(0))[0]
    subsample = train["c"][np.random.default_rng(1).permutation(400)[:31]]
    assert np.median(closest_distance(copies, subsample)) > 1.0
    assert np.median(closest_distance(copies, train["c"])) == 0.0
