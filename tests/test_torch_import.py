"""Import of the paper's PyTorch norm_mlp checkpoints: eps and whole-sampler agreement."""

import os
import sys

import pytest

torch = pytest.importorskip("torch")

import jax  # noqa: E402
import jax.numpy as jnp  # noqa: E402
import numpy as np  # noqa: E402

sys.path.insert(0, os.path.join(os.path.dirname(__file__), os.pardir, "benchmarks"))
import reference_torch as ref  # noqa: E402

from coherent_jax.engine.ensemble import stack_members  # noqa: E402
from coherent_jax.engine.denoiser import Condition, DenoiserApply  # noqa: E402
from coherent_jax.engine.sampling import Members, coherent_sample  # noqa: E402
from coherent_jax.torch_import import import_state_dict, load_checkpoint  # noqa: E402

SMALL = dict(hidden_dim=32, num_layers=4, time_embed_dim=16, cond_embed_dim=8)


def _paper_checkpoint(seed=0, **arch):
    """A dict laid out like the paper's best_by_*.pth, each state dict of a different model."""
    arch = {**SMALL, **arch}
    states = {c: ref.random_norm_mlp(seed + i, 6, [5], **arch).state_dict()
              for i, c in enumerate(("mse", "cosine", "timestep"))}
    config = {"architecture": "norm_mlp", "batch_size": 64, "learning_rate": 1e-3,
              "initial_size": arch["hidden_dim"], "n_layers": arch["num_layers"],
              "time_embedding_dimension": arch["time_embed_dim"],
              "cond_embedding_dim": arch["cond_embed_dim"], "bottleneck_size": 16}
    return {**{f"best_model_{c}": s for c, s in states.items()}, "config": config,
            "best_loss": 0.25}


@pytest.mark.parametrize("data_dim,cond_dims,arch", [
    (32, [32], dict(hidden_dim=512, num_layers=5, time_embed_dim=128, cond_embed_dim=32)),
    (6, [5, 3, 4], SMALL),  # a multi-condition model, with masks
])
def test_eps_matches_torch_in_eval_mode(data_dim, cond_dims, arch):
    model = ref.random_norm_mlp(0, data_dim, cond_dims, **arch)
    imported = import_state_dict(model.state_dict())
    assert imported.cond_dims == tuple(cond_dims) and imported.model.hidden_dim == arch["hidden_dim"]
    rng = np.random.default_rng(1)
    n = 64
    x = rng.standard_normal((n, data_dim)).astype(np.float32)
    t = rng.integers(0, 1000, n)
    conds = [rng.standard_normal((n, d)).astype(np.float32) for d in cond_dims]
    mask = (rng.random((n, len(cond_dims))) < 0.7).astype(np.float32)
    with torch.no_grad():
        expected = model(torch.from_numpy(x), torch.from_numpy(t),
                         [torch.from_numpy(c) for c in conds],
                         [torch.from_numpy(m) for m in mask.T]).numpy()
    cond = Condition.of(*map(jnp.asarray, conds), mask=jnp.asarray(mask))
    got = DenoiserApply(imported.model)(imported.variables, jnp.asarray(x), jnp.asarray(t), cond)
    np.testing.assert_allclose(np.asarray(got), expected, rtol=1e-5, atol=1e-5)


def test_schedule_comes_from_the_diffusion_buffers():
    imported = import_state_dict(ref.random_norm_mlp(0, 6, [5], num_steps=10, **SMALL).state_dict())
    assert imported.schedule.diffusion_steps == 10
    np.testing.assert_allclose(imported.schedule.betas, np.linspace(1e-4, 0.02, 10), rtol=1e-6)


def test_load_checkpoint_file_picks_the_criterion(tmp_path):
    ckpt = _paper_checkpoint()
    path = tmp_path / "best_by_cosine.pth"
    torch.save(ckpt, path)
    imported = load_checkpoint(path, criterion="cosine")
    kernel = np.asarray(imported.variables["params"]["hidden_1"]["kernel"])
    np.testing.assert_array_equal(kernel, ckpt["best_model_cosine"]["mlp_layers.1.weight"].numpy().T)
    stats = imported.variables["batch_stats"]["norm_2"]
    np.testing.assert_array_equal(stats["var"], ckpt["best_model_cosine"]["bn_layers.2.running_var"])
    assert imported.best_loss == 0.25 and imported.config["n_layers"] == 4


def _engine_noise(key, shape, num_steps):
    """x_T and per-step z exactly as coherent_jax.engine.sampling draws them from `key`."""
    init_key, step_key = jax.random.split(key)
    x_T = jax.random.normal(init_key, shape, jnp.float32)
    z = [jax.random.normal(k, shape, jnp.float32) for k in jax.random.split(step_key, num_steps)]
    return torch.from_numpy(np.array(x_T)), [torch.from_numpy(np.array(a)) for a in z]


def test_coherent_sampler_matches_the_eager_reference():
    num_steps, n, d, k = 10, 16, 6, 3
    models = [ref.random_norm_mlp(i, d, [5], num_steps=num_steps, **SMALL) for i in range(k)]
    imported = [import_state_dict(m.state_dict()) for m in models]
    rng = np.random.default_rng(2)
    conds = [rng.standard_normal((n, 5)).astype(np.float32) for _ in range(k)]
    weights = ref.softmax_inverse_weights([0.3, 0.5, 0.4])
    key = jax.random.key(7)
    x_T, z = _engine_noise(key, (n, d), num_steps)
    expected, expected_dis = ref.coherent_sample(models, [torch.from_numpy(c) for c in conds],
                                                 weights, n, d, x_T=x_T, step_noise=z)
    got = coherent_sample(DenoiserApply(imported[0].model),
                          Members(stack_members([i.variables for i in imported]),
                                  stack_members([Condition.of(jnp.asarray(c)) for c in conds]),
                                  weights.numpy()),
                          imported[0].schedule, key, shape=(n, d))
    np.testing.assert_allclose(np.asarray(got.samples), expected.numpy(), rtol=1e-4, atol=1e-4)
    np.testing.assert_allclose(np.asarray(got.disagreement), expected_dis.numpy(), atol=1e-4)


def test_missing_unexpected_and_misshaped_keys_are_named():
    state = ref.random_norm_mlp(0, 6, [5], **SMALL).state_dict()
    with pytest.raises(ValueError, match=r"missing keys \['bn_layers.1.running_var'\]"):
        import_state_dict({k: v for k, v in state.items() if k != "bn_layers.1.running_var"})
    with pytest.raises(ValueError, match=r"unexpected keys \['extra.weight'\]"):
        import_state_dict({**state, "extra.weight": torch.zeros(3)})
    bad = {**state, "mlp_layers.2.weight": torch.zeros(32, 40)}
    with pytest.raises(ValueError, match=r"mlp_layers.2.weight: \(32, 40\) != expected \(32, 48\)"):
        import_state_dict(bad)
    with pytest.raises(ValueError, match="not a norm_mlp state dict"):
        import_state_dict({"module." + k: v for k, v in state.items()})
    with pytest.raises(ValueError, match="plain 'mlp' architecture"):
        import_state_dict({k: v for k, v in state.items() if not k.startswith("bn_layers")})


def test_bad_checkpoints_raise_clear_errors():
    ckpt = _paper_checkpoint()
    with pytest.raises(ValueError, match="criterion must be one of"):
        load_checkpoint(ckpt, criterion="r2")
    with pytest.raises(ValueError, match="not a paper checkpoint"):
        load_checkpoint(ckpt["best_model_mse"])
    with pytest.raises(ValueError, match="only 'norm_mlp'"):
        load_checkpoint({**ckpt, "config": {**ckpt["config"], "architecture": "unet"}})
    with pytest.raises(ValueError, match="initial_size=64 but the tensors give hidden_dim=32"):
        load_checkpoint({**ckpt, "config": {**ckpt["config"], "initial_size": 64}})
