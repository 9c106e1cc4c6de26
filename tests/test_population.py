import jax
import jax.numpy as jnp
import numpy as np
import pytest

from coherent_jax import engine as cj
from coherent_jax.data.linear_gaussian import LinearGaussianModel
from coherent_jax.engine.population import (init_population, make_population, population_data,
                                            search, select)

GAUSS = LinearGaussianModel.random({"x": 4, "a": 4, "b": 4}, num_factors=3, seed=1)


def _data(n, seed, missing_b=0):
    d = GAUSS.sample(n, seed=seed)
    has_b = np.arange(n) >= missing_b
    return cj.make_member_data(d["x"], np.ones(n, bool), [
        cj.Condition.of(jnp.asarray(d["a"], jnp.float32)),
        cj.Condition.of(jnp.asarray(d["b"], jnp.float32), mask=has_b[:, None])])


def test_population_grid_inits_and_data():
    pop = make_population(2, seeds=[0, 1], learning_rates=[1e-3, 1e-4])
    assert pop.size == 8 and pop.member.tolist() == [0, 0, 0, 0, 1, 1, 1, 1]
    model = cj.Denoiser(4, hidden_dim=16, num_layers=2, time_embed_dim=8)
    state = init_population(model, cj.linear_schedule(), pop, cond_dims=[4])
    kernel = np.asarray(state.params["out"]["kernel"])  # [8, ...]
    np.testing.assert_array_equal(kernel[0], kernel[1])  # same (member, seed), other lr
    assert not np.allclose(kernel[0], kernel[2]) and not np.allclose(kernel[0], kernel[4])
    np.testing.assert_allclose(state.opt_state.hyperparams["learning_rate"], pop.learning_rate)
    data = population_data(_data(40, 0, missing_b=10), pop)
    assert data.counts.tolist() == [40] * 4 + [30] * 4
    with pytest.raises(ValueError, match="population needs"):
        make_population(2, seeds=[], learning_rates=[1e-3])


@pytest.mark.slow
def test_search_and_select_pick_the_best_trial_per_member():
    pop = make_population(2, seeds=[0], learning_rates=[1e-3, 1e-2])
    models = [cj.Denoiser(4, hidden_dim=h, num_layers=2, time_embed_dim=8) for h in (16, 32)]
    results = search(models, cj.linear_schedule(), pop, _data(200, 0), _data(40, 1),
                     jax.random.key(0), config=cj.TrainConfig(batch_size=32),
                     loop=cj.LoopConfig(train_steps=20, eval_every=10, log_every=10,
                                        val_sampler="ddim", val_sample_steps=3))
    assert [m.hidden_dim for m, _ in results] == [16, 32]
    for _, result in results:
        assert len(result.history[-1]["loss"]) == 4  # every trial's curve is kept
        chosen = select(result, pop, "noise_mse")
        scores = result.best_scores["noise_mse"]
        assert chosen.trial.tolist() == [int(np.argmin(scores[:2])), 2 + int(np.argmin(scores[2:]))]
        assert jax.tree.leaves(chosen.variables)[0].shape[0] == 2
    with pytest.raises(ValueError, match="unknown criterion"):
        select(results[0][1], pop, "accuracy")
