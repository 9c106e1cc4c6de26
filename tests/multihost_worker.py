"""Subprocess body of the two-process test (tests/test_multihost.py).

    python tests/multihost_worker.py OUT                     # one process, one device
    python tests/multihost_worker.py OUT PROCESS_ID PORT     # one of two processes, 2 devices each

(a) 5 data-parallel denoiser training steps, (b) one coherent sampling call, on a ('data',)
mesh over both processes' 4 devices; each process feeds only its own rows of the training
table and of the sampling inputs. Results, the checkpoint and a JSON line of facts are
written by process 0 alone.
"""

import json
import os
import sys

import jax
import jax.numpy as jnp
import numpy as np

from coherent_jax import engine as cj
from coherent_jax.engine import parallel
from coherent_jax.engine.checkpointing import TrainCheckpoints
from coherent_jax.data.linear_gaussian import LinearGaussianModel

ROWS = 256  # training rows
PATIENTS = 16  # sampling rows


def main(out, process_id=None, port=None):
    mesh = None
    if process_id is not None:
        parallel.initialize_distributed(coordinator_address=f"127.0.0.1:{port}", num_processes=2,
                                        process_id=process_id)
        mesh = parallel.make_mesh()
    facts = {"processes": jax.process_count(), "devices": jax.device_count(),
             "local_devices": jax.local_device_count()}
    feed = lambda tree, num_rows, axis=0: parallel.from_process_rows(
        jax.tree.map(lambda a: np.asarray(a)[(slice(None),) * axis
                                              + (parallel.process_rows(num_rows, mesh, axis),)],
                     tree), mesh, num_rows, axis)

    # (a) training: the table's rows split over the processes, the state replicated.
    gauss = LinearGaussianModel.random({"x": 4, "a": 4, "b": 4}, num_factors=3, seed=1)
    d = gauss.sample(ROWS, seed=0)
    data = cj.make_member_data(d["x"], np.ones(ROWS, bool), [
        cj.Condition.of(jnp.asarray(d[s], jnp.float32)) for s in "ab"])
    model = cj.Denoiser(4, hidden_dim=32, num_layers=3, time_embed_dim=16, norm="layer")
    state = cj.create_train_state(model, cj.linear_schedule(), jax.random.key(0), cond_dims=[4],
                                  num_members=2, config=cj.TrainConfig(batch_size=64))
    sharding = None
    if mesh is not None:
        data = data.replace(target=feed(data.target, ROWS), cond=feed(data.cond, ROWS, axis=1),
                            rows=parallel.replicate(np.asarray(data.rows), mesh),
                            counts=parallel.replicate(np.asarray(data.counts), mesh))
        facts["table_shards"] = len(data.target.addressable_shards)
        state = parallel.replicate(state, mesh)
        sharding = parallel.member_batch_sharding(mesh)
    state, metrics = cj.scan_train_steps(state, data, jax.random.key(1), 5, sharding)
    trained = parallel.to_host({"params": state.params, "loss": metrics["loss"]})
    checkpoints = TrainCheckpoints(os.path.join(out, "checkpoints"), {"run": "multihost"})
    checkpoints.save(5, {"params": state.params}, {"step": 5})  # every process takes part
    restored, _ = checkpoints.restore({"params": state.params})
    facts["checkpoint_equal"] = all(
        np.array_equal(a, b) for a, b in zip(jax.tree.leaves(parallel.to_host(restored)),
                                             jax.tree.leaves(trained["params"])))
    checkpoints.close()

    # (b) one coherent sampling call; the patients' rows split over the processes.
    rng = np.random.default_rng(0)
    conds = cj.Condition(values=(rng.standard_normal((2, PATIENTS, 4)).astype(np.float32),),
                         mask=(rng.random((2, PATIENTS, 1)) < 0.8).astype(np.float32))
    weights = rng.random((PATIENTS, 2)).astype(np.float32) + 0.1
    if mesh is not None:
        conds, weights = feed(conds, PATIENTS, axis=1), feed(weights, PATIENTS)
    result = cj.coherent_sample(
        cj.DenoiserApply(model), cj.Members(state.variables, conds, weights, conds.dropped()),
        state.schedule, jax.random.key(2), shape=(PATIENTS, 4),
        config=cj.CoherentConfig(cj.SamplerConfig("ddim", 10, eta=1.0), num_candidates=2),
        mesh=mesh)
    facts["sample_devices"] = len(result.samples.sharding.device_set)
    facts["sample_local_shards"] = len(result.samples.addressable_shards)
    samples = parallel.to_host(result)
    if parallel.is_primary():  # outputs written once
        np.savez(os.path.join(out, f"result_p{jax.process_index()}.npz"),
                 loss=trained["loss"], samples=samples.samples,
                 disagreement=samples.disagreement, candidate=samples.candidate,
                 **{jax.tree_util.keystr(p): a for p, a in
                    jax.tree_util.tree_leaves_with_path(trained["params"])})
        with open(os.path.join(out, f"facts_p{jax.process_index()}.json"), "w") as f:
            json.dump(facts, f)


if __name__ == "__main__":
    main(sys.argv[1], *(int(a) for a in sys.argv[2:]))
