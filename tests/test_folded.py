"""The folded sampling-time Denoiser computes the same eps as the module, for both norms, masked
conditions and stacked members, and samples the same chains; TargetModels folds once."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from coherent_jax.engine.ensemble import stack_members
from coherent_jax.model_set import TargetModels
from coherent_jax.engine.denoiser import Condition, Denoiser, DenoiserApply, init_denoiser
from coherent_jax.engine.folded import fold_denoiser, fold_members
from coherent_jax.engine.sampling import CoherentConfig, Members, SamplerConfig, coherent_sample
from coherent_jax.engine.schedules import linear_schedule

T = 50


def _randomised(model, key, cond_dims):
    """Variables with non-trivial BatchNorm statistics and affine parameters."""
    variables = init_denoiser(model, key, cond_dims)
    leaves, tree = jax.tree.flatten(variables)
    keys = jax.random.split(jax.random.fold_in(key, 1), len(leaves))
    noisy = [leaf + 0.3 * jax.random.normal(k, leaf.shape) for leaf, k in zip(leaves, keys)]
    variables = jax.tree.unflatten(tree, noisy)
    if "batch_stats" in variables:  # variances must stay positive
        variables["batch_stats"] = jax.tree.map(jnp.abs, variables["batch_stats"])
    return variables


def _inputs(n, cond_dims, key):
    keys = jax.random.split(key, 4)
    x = jax.random.normal(keys[0], (n, 6))
    t = jax.random.randint(keys[1], (n,), 0, T)
    values = [jax.random.normal(jax.random.fold_in(keys[2], j), (n, w))
              for j, w in enumerate(cond_dims)]
    mask = (jax.random.uniform(keys[3], (n, len(cond_dims))) > 0.4).astype(jnp.float32)
    return x, t, Condition.of(*values, mask=mask)


@pytest.mark.parametrize("norm", ["batch", "layer"])
@pytest.mark.parametrize("cond_dims", [(5,), (5, 3, 4)])
def test_folded_eps_equals_module(norm, cond_dims):
    model = Denoiser(data_dim=6, hidden_dim=24, num_layers=3, time_embed_dim=8,
                     cond_embed_dim=4, norm=norm)
    variables = _randomised(model, jax.random.key(0), cond_dims)
    x, t, cond = _inputs(32, cond_dims, jax.random.key(1))
    want = DenoiserApply(model)(variables, x, t, cond)
    apply_fn, params = fold_denoiser(model, variables, T)
    got = apply_fn(params, x, t, cond)
    np.testing.assert_allclose(got, want, rtol=1e-4, atol=1e-4 * float(jnp.abs(want).max()))
    assert hash(apply_fn) == hash(fold_denoiser(model, variables, T)[0])


def test_folded_bfloat16_matmuls_stay_close():
    model = Denoiser(data_dim=6, hidden_dim=24, num_layers=3, time_embed_dim=8, cond_embed_dim=4)
    variables = _randomised(model, jax.random.key(0), (5,))
    x, t, cond = _inputs(32, (5,), jax.random.key(1))
    want = DenoiserApply(model)(variables, x, t, cond)
    apply_fn, params = fold_denoiser(model, variables, T, dtype=jnp.bfloat16)
    got = apply_fn(params, x, t, cond)
    assert got.dtype == jnp.float32
    assert float(jnp.linalg.norm(got - want) / jnp.linalg.norm(want)) < 2e-2


def test_folded_members_match_each_member():
    model = Denoiser(data_dim=6, hidden_dim=24, num_layers=4, time_embed_dim=8, cond_embed_dim=4)
    members = [_randomised(model, jax.random.key(k), (5,)) for k in range(3)]
    apply_fn, stacked = fold_members(model, stack_members(members), T)
    x, t, cond = _inputs(16, (5,), jax.random.key(2))
    for k, variables in enumerate(members):
        one = jax.tree.map(lambda a, k=k: a[k], stacked)
        np.testing.assert_allclose(apply_fn(one, x, t, cond),
                                   DenoiserApply(model)(variables, x, t, cond),
                                   rtol=1e-4, atol=1e-4)


def test_coherent_sampling_with_folded_members_matches():
    model = Denoiser(data_dim=6, hidden_dim=24, num_layers=3, time_embed_dim=8, cond_embed_dim=4)
    members = stack_members([_randomised(model, jax.random.key(k), (5,)) for k in range(2)])
    schedule = linear_schedule(T)
    conds = stack_members([Condition.of(jax.random.normal(jax.random.key(10 + k), (20, 5)))
                           for k in range(2)])
    common = dict(shape=(20, 6), config=CoherentConfig(SamplerConfig("ddim", 10)))
    weights = np.array([0.6, 0.4])
    want = coherent_sample(DenoiserApply(model), Members(members, conds, weights), schedule,
                           jax.random.key(3), **common)
    apply_fn, folded = fold_members(model, members, T)
    got = coherent_sample(apply_fn, Members(folded, conds, weights), schedule,
                          jax.random.key(3), **common)
    np.testing.assert_allclose(got.samples, want.samples, rtol=1e-3, atol=1e-3)
    np.testing.assert_allclose(got.disagreement, want.disagreement, atol=1e-3)


def test_target_models_fold_once_per_variables():
    model = Denoiser(data_dim=6, hidden_dim=24, num_layers=3, time_embed_dim=8, cond_embed_dim=4)
    members = stack_members([_randomised(model, jax.random.key(k), (5,)) for k in range(2)])
    tm = TargetModels(target="a", sources=("b", "c"), specialist_model=model, specialists=members)
    first = tm.sampling_specialists(T)
    assert tm.sampling_specialists(T)[1] is first[1]  # cached
    assert tm.sampling_specialists(T + 1)[1]["tables"][0].shape[-2] == T + 1  # per T
    tm.specialists = jax.tree.map(lambda a: a + 1.0, members)  # new weights are refolded
    assert tm.sampling_specialists(T)[1] is not first[1]
