"""Subprocess body of the kill-and-resume test: a small checkpointed training run.

    python tests/resume_worker.py CHECKPOINT_DIR OUT.npz
"""

import sys

import jax
import jax.numpy as jnp
import numpy as np

from coherent_jax import engine as cj
from coherent_jax.engine.checkpointing import TrainCheckpoints
from coherent_jax.data.linear_gaussian import LinearGaussianModel

NUM_STEPS = 400


def main(checkpoint_dir, out_path):
    gauss = LinearGaussianModel.random({"x": 4, "a": 4, "b": 4}, num_factors=3, seed=1)

    def data(n, seed):
        d = gauss.sample(n, seed=seed)
        return cj.make_member_data(d["x"], np.ones(n, bool), [
            cj.Condition.of(jnp.asarray(d[s], jnp.float32)) for s in "ab"])

    model = cj.Denoiser(4, hidden_dim=32, num_layers=2, time_embed_dim=16)
    state = cj.create_train_state(model, cj.linear_schedule(), jax.random.key(0), cond_dims=[4],
                                  num_members=2, config=cj.TrainConfig(batch_size=32))
    checkpoints = TrainCheckpoints(checkpoint_dir, {"config": {"steps": NUM_STEPS}})
    result = cj.fit(state, data(256, 0), data(32, 1), jax.random.key(1),
                    loop=cj.LoopConfig(train_steps=NUM_STEPS, eval_every=10, log_every=10,
                                       val_sampler="ddim", val_sample_steps=3),
                    runtime=cj.LoopRuntime(checkpoints=checkpoints))
    checkpoints.close()
    leaves = jax.tree.leaves({"params": result.state.params, "best": result.best})
    np.savez(out_path, *[np.asarray(leaf) for leaf in leaves])


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2])
