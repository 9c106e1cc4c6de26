"""The cascade's order per availability pattern: the plan imputation follows and its choice."""

import dataclasses

import numpy as np
import pytest

from coherent_jax import cascade
from coherent_jax.cascade_choice import choose_orders, given_only
from coherent_jax.fill import SamplerCalls
from coherent_jax.impute import ImputeConfig, cascade_draws
from coherent_jax.latent import LatentConfig, LatentSpace
from coherent_jax.model_set import ModelSet, train_model_set
from tiny import TINY_MODELS, labelled_cohort

TARGETS = ("a", "b", "c")


def _present(*rows: str) -> dict:
    """modality -> [N] observed, one patient per string of its observed modalities."""
    return {m: np.array([m in row for row in rows]) for m in TARGETS}


def test_without_orders_each_target_is_one_call_in_the_targets_order():
    plan = cascade.fill_plan(_present("a", "ab", "c"), TARGETS, TARGETS)
    assert [t for t, _ in plan] == list(TARGETS)
    assert all(patients.all() for _, patients in plan)


def test_a_patterns_order_moves_only_its_patients():
    plan = cascade.fill_plan(_present("a", "ab", "c", "a"), TARGETS, TARGETS,
                             orders={"a": ("c", "b")})
    # given 'a': c, b, then a (observed: nothing to draw); the others a, b, c
    assert [(t, patients.tolist()) for t, patients in plan] == [
        ("a", [False, True, True, False]), ("c", [True, False, False, True]),
        ("b", [True, True, True, True]),
        ("a", [True, False, False, True]), ("c", [False, True, True, False])]


def test_the_users_order_replaces_the_patterns_and_fills_only_its_targets():
    plan = cascade.fill_plan(_present("a", "b"), TARGETS, TARGETS, orders={"a": ("c", "b")},
                             order=("b",))
    assert [(t, p.tolist()) for t, p in plan] == [("b", [True, True])]


def test_candidate_orders_start_with_the_targets_order():
    assert cascade.candidate_orders(["c", "b"], TARGETS) == [("b", "c"), ("c", "b")]
    assert len(cascade.candidate_orders(["a", "b", "c"], TARGETS)) == 6
    four = cascade.candidate_orders(list("wxyz"), tuple("wxyz"))
    assert four == [tuple("wxyz"), tuple("xwyz"), tuple("ywxz"), tuple("zwxy")]


def _shifted(anchors: list, shift: float) -> list:
    return [{**a, "bias": np.asarray(a["bias"]) + shift} for a in anchors]


def _with_bad_draws_of(models: ModelSet, target: str, shift: float) -> ModelSet:
    """A copy whose `target` draws sit `shift` off in every latent dimension, refits too."""
    tm = models.targets[target]
    changed = {}
    for name in ("specialists", "multi"):
        params = dict(getattr(tm, name)["params"])
        params["anchor_bias"] = np.asarray(params["anchor_bias"]) + shift
        changed[name] = {**getattr(tm, name), "params": params}
    refits = {name: (lambda keep, f=f: _shifted(f(keep), shift))
              for name, f in tm.anchor_refits.items()}
    bad = dataclasses.replace(tm, **changed)
    bad.anchor_refits.update(refits)
    return dataclasses.replace(models, targets={**models.targets, target: bad})


@pytest.fixture(scope="module")
def untrained_run():
    """The tiny labelled cohort (290 training, 17 validation patients), its latents and a
    model set of untrained Gaussian anchors."""
    cohort = labelled_cohort()
    space = LatentSpace.fit(cohort, LatentConfig(latent_dim=4))
    latents = space.encode(cohort)
    config = dataclasses.replace(TINY_MODELS, train_steps=0, anchor_components=1)
    models, _ = train_model_set(latents, config, seed=0, features=cohort)
    return cohort, space, latents, models


def test_the_order_that_spares_a_target_a_bad_draw_is_chosen_and_followed(untrained_run,
                                                                          tmp_path):
    cohort, space, latents, models = untrained_run
    bad = _with_bad_draws_of(models, "b", 3.0)
    record = choose_orders(bad, latents, cohort, space, num_samples=8)
    # Given 'a', the targets' order draws 'b' first and 'c' given its bad draw: 'c' first
    # spares it. Given 'c', drawing 'b' first would hand its bad draw to 'a': kept as is.
    assert record["chosen"] == {"a": ["c", "b"]}, record["patterns"]
    assert record["patterns"]["a"]["held_out_patients"] > 200
    energy = record["patterns"]["a"]["energy"]
    assert energy[1]["c"] < energy[0]["c"]

    bad.cascade_orders = {k: tuple(v) for k, v in record["chosen"].items()}
    given_a = given_only(latents.split("test"), ["a"])
    features = cohort.split("test")
    config = ImputeConfig(num_samples=3)
    followed = cascade_draws(given_a, bad, config, seed=1, latent_space=space,
                             feature_cohort=features)
    by_hand = cascade_draws(given_a, bad, config, seed=1, latent_space=space,
                            feature_cohort=features, calls=SamplerCalls(order=("c", "b")))
    default = cascade_draws(given_a, dataclasses.replace(bad, cascade_orders={}), config,
                            seed=1, latent_space=space, feature_cohort=features)
    np.testing.assert_array_equal(followed["c"], by_hand["c"])
    assert not np.allclose(followed["c"], default["c"])

    bad.save(str(tmp_path / "models"))
    assert ModelSet.load(str(tmp_path / "models")).cascade_orders == {"a": ("c", "b")}
