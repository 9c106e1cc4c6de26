import jax
import jax.numpy as jnp
import numpy as np
import pytest

from coherent_jax.engine.ensemble import stack_members, unstack_members
from coherent_jax.engine.denoiser import (Condition, Denoiser, DenoiserApply, init_denoiser,
                                          num_params)


def _inputs(n=6, d=8, dc=5, seed=0):
    rng = np.random.default_rng(seed)
    x = jnp.asarray(rng.standard_normal((n, d)), jnp.float32)
    t = jnp.asarray(rng.integers(0, 1000, n), jnp.int32)
    return x, t, Condition.of(jnp.asarray(rng.standard_normal((n, dc)), jnp.float32))


def test_paper_sizes():
    # METHOD.md: 0.77M (hidden 512, 4 layers) to 6.1M (1024, 7) with 32-d latents.
    small = num_params(init_denoiser(Denoiser(32, 512, 4), jax.random.key(0), [32]))
    large = num_params(init_denoiser(Denoiser(32, 1024, 7), jax.random.key(0), [32]))
    assert 0.74e6 < small < 0.82e6 and 6.0e6 < large < 6.2e6


@pytest.mark.parametrize("norm", ["batch", "layer"])
def test_vmapped_ensemble_equals_python_loop(norm):
    model = Denoiser(8, hidden_dim=32, num_layers=3, time_embed_dim=16, cond_embed_dim=8, norm=norm)
    members = [init_denoiser(model, jax.random.key(i), [5]) for i in range(3)]
    conds = [_inputs(seed=i)[2] for i in range(3)]
    x, t, _ = _inputs()
    apply_fn = DenoiserApply(model)
    stacked = jax.vmap(apply_fn, in_axes=(0, None, None, 0))(
        stack_members(members), x, t, stack_members(conds))
    for k, (variables, cond) in enumerate(zip(unstack_members(stack_members(members)), conds)):
        np.testing.assert_allclose(stacked[k], apply_fn(variables, x, t, cond), rtol=1e-5, atol=1e-6)


def test_mask_turns_condition_off():
    model = Denoiser(8, hidden_dim=32, num_layers=2, time_embed_dim=16)
    variables = init_denoiser(model, jax.random.key(0), [5])
    x, t, cond = _inputs()
    other = Condition.of(cond.values[0] + 3.0)
    f = DenoiserApply(model)
    off_a, off_b = f(variables, x, t, cond.dropped()), f(variables, x, t, other.dropped())
    np.testing.assert_array_equal(off_a, off_b)
    assert not np.allclose(f(variables, x, t, cond), f(variables, x, t, other))


def test_multi_condition_with_masks():
    model = Denoiser(8, hidden_dim=32, num_layers=2, time_embed_dim=16)
    variables = init_denoiser(model, jax.random.key(0), [5, 3])
    x, t, c = _inputs()
    b = jnp.ones((6, 3))
    mask = jnp.array([[1, 1], [1, 0], [0, 1], [0, 0], [1, 1], [1, 0]], jnp.float32)
    out = DenoiserApply(model)(variables, x, t, Condition.of(c.values[0], b, mask=mask))
    alone = DenoiserApply(model)(variables, x, t, Condition.of(c.values[0], b * 7, mask=mask))
    # Rows whose second condition is masked ignore its value.
    np.testing.assert_allclose(out[1], alone[1], rtol=1e-6)
    assert not np.allclose(out[0], alone[0])


def test_bad_configs_raise():
    with pytest.raises(ValueError, match="norm must be"):
        init_denoiser(Denoiser(4, norm="group"), jax.random.key(0), [4])
    with pytest.raises(ValueError, match="num_layers"):
        init_denoiser(Denoiser(4, num_layers=1), jax.random.key(0), [4])
    with pytest.raises(ValueError, match="different pytree structures"):
        m = Denoiser(4, hidden_dim=8, num_layers=2, time_embed_dim=8)
        stack_members([init_denoiser(m, jax.random.key(0), [4]),
                       init_denoiser(m, jax.random.key(0), [4, 4])])
