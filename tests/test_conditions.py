"""The condition values of a target's models (`conditions.Conditions`): latents for plain
models, the condition map of the observed features for mapped ones, of the decoded draws for
sources drawn earlier in a cascade; the error without the features they need."""

import types

import numpy as np
import pandas as pd
import pytest

from coherent_jax.conditions import Conditions, Work
from coherent_jax.data.validate import DataError


def _models(maps):
    tm = types.SimpleNamespace(target="t", sources=("a",), condition_maps=maps)
    return types.SimpleNamespace(covariate=None, targets={"t": tm}), tm


class _Space:
    """Decodes a latent row z [2] to features [3] = (z0, z1, z0 + z1)."""

    def decode(self, modality, latents):
        return pd.DataFrame(np.c_[latents, latents.sum(axis=1)])


def test_plain_models_condition_on_the_work_values():
    models, tm = _models(None)
    latents = np.arange(8, dtype=np.float32).reshape(4, 2)  # K=2 draws x N=2 patients
    work = Work({"a": latents}, {"a": np.ones(4, bool)})
    got = Conditions(models, {"a": np.ones(2, bool)}, ["p", "q"], None, None).values(
        tm, "a", np.array([1, 3]), work)
    np.testing.assert_array_equal(got, latents[[1, 3]])


def test_mapped_models_condition_on_observed_features_and_decoded_draws():
    cmap = {"kernel": np.array([[1.0], [2.0], [3.0]], np.float32),
            "bias": np.array([0.5], np.float32)}
    models, tm = _models({"a": cmap})
    features = pd.DataFrame([[1.0, 0.0, 0.0], [np.nan] * 3], index=["p", "q"])
    cohort = types.SimpleNamespace(tables={"a": features}, modalities=["a"], labels=None)
    present = {"a": np.array([True, False])}  # q's 'a' is drawn earlier in the cascade
    work = Work({"a": np.array([[0.0, 0.0], [1.0, 1.0]], np.float32)},
                {"a": np.array([True, True])})
    got = Conditions(models, present, ["p", "q"], _Space(), cohort).values(
        tm, "a", np.array([0, 1]), work)
    # p: observed features (1, 0, 0) -> 1 + 0.5; q: decoded (1, 1, 2) -> 1 + 2 + 6 + 0.5
    np.testing.assert_allclose(got, [[1.5], [9.5]])


def test_mapped_models_without_features_are_refused():
    models, _ = _models({"a": {"kernel": np.ones((3, 1)), "bias": np.zeros(1)}})
    with pytest.raises(ValueError, match="pass feature_cohort"):
        Conditions(models, {"a": np.ones(2, bool)}, ["p", "q"], None, None)


def test_a_covariate_without_labels_is_refused_in_one_line():
    models, _ = _models({"a": {"kernel": np.ones((3, 1)), "bias": np.zeros(1)}})
    models.covariate = types.SimpleNamespace(column="cohort")
    cohort = types.SimpleNamespace(tables={"a": pd.DataFrame(np.ones((2, 3)), index=["p", "q"])},
                                   modalities=["a"], labels=None)
    with pytest.raises(DataError, match="covariate 'cohort'.*clinical.csv"):
        Conditions(models, {"a": np.ones(2, bool)}, ["p", "q"], None, cohort)
