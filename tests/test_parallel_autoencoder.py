"""Autoencoder training on 4 fake CPU devices: sharded epochs equal single-device epochs."""

import pytest

from fake_devices import run_script

SCRIPT = r"""
import dataclasses, json
import jax, jax.numpy as jnp, numpy as np, pandas as pd
from coherent_jax.engine import parallel
from coherent_jax.data import Cohort
from coherent_jax.latent import LatentConfig, LatentSpace
from coherent_jax import autoencoder as ae

assert len(jax.devices()) == 4, jax.devices()
rng = np.random.default_rng(0)
z = rng.standard_normal((200, 3))
x = (z @ rng.standard_normal((3, 24)) + 0.1 * rng.standard_normal((200, 24))).astype(np.float32)
config = ae.AutoencoderConfig(latent_dim=4, num_layers=2, learning_rate=1e-2, batch_size=32,
                              patience=100, max_epochs=4, seed=0)
single = ae.fit_autoencoder(x[:160], x[160:], config)
mesh = parallel.make_mesh(4)
sharded = ae.fit_autoencoder(x[:160], x[160:], config, mesh=mesh)
diffs = {jax.tree_util.keystr(path): float(jnp.max(jnp.abs(a - b))) for (path, a), b in
         zip(jax.tree_util.tree_leaves_with_path(single.variables),
             jax.tree.leaves(sharded.variables))}
# The compiled sharded epoch splits each minibatch: XLA must reduce gradients across devices.
state = parallel.replicate(ae.create_state(single.model, config, 160), mesh)
hlo = ae.train_epoch.lower(state, *parallel.replicate((jnp.asarray(x[:160]),
                                                       jnp.asarray(x[160:])), mesh),
                           jax.random.key(1), jnp.int32(1), mesh).compile().as_text()
try:
    ae.fit_autoencoder(x[:160], x[160:], dataclasses.replace(config, batch_size=30), mesh=mesh)
    error = None
except ValueError as e:
    error = str(e)
# LatentSpace.fit passes the mesh to its autoencoders.
ids = [f"p{i}" for i in range(200)]
cohort = Cohort.from_tables({"rna": pd.DataFrame(x, index=ids)},
                            splits={s: "train" if i < 180 else "val" for i, s in enumerate(ids)})
space = LatentSpace.fit(cohort, LatentConfig(latent_dim=4, kinds={"rna": "autoencoder"},
                                             autoencoders={"rna": config}), mesh=mesh)
latent_devices = len(jax.tree.leaves(space.encoders["rna"].variables)[0].sharding.device_set)
print(json.dumps({"diffs": diffs, "history": [single.history, sharded.history],
                  "devices": len(jax.tree.leaves(sharded.variables)[0].sharding.device_set),
                  "all_reduce": "all-reduce" in hlo, "error": error,
                  "latent_devices": latent_devices}))
"""


@pytest.mark.slow
def test_sharded_autoencoder_epochs_equal_single_device():
    res = run_script(SCRIPT)
    assert res["devices"] == 4 and res["latent_devices"] == 4 and res["all_reduce"], res
    assert res["error"] is not None and "multiple of 4" in res["error"]
    for single, sharded in zip(*res["history"]):
        assert abs(single["train_loss"] - sharded["train_loss"]) <= 1e-5 * single["train_loss"]
        # Held-out MSE runs in inference mode, on the running means (see below): loose.
        assert abs(single["stop_mse"] - sharded["stop_mse"]) <= 0.01 * single["stop_mse"]
    for name, diff in res["diffs"].items():
        # Every Dense bias in front of a BatchNorm (each hidden Dense, and the encoder's output
        # Dense, whose shift the decoder's first BatchNorm removes) has an exactly zero
        # gradient: its "gradient" is float noise that AdamW scales to lr-sized steps, and the
        # running means absorb it; neither can be compared across reduction orders.
        decoder_out_bias = name == "['params']['decoder']['out']['bias']"
        if ("bias" in name and "norm" not in name and not decoder_out_bias) or "mean" in name:
            continue
        assert diff < 1e-5, (name, diff)
