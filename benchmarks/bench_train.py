"""Specialist training throughput: our vmapped K-member step vs the paper's one-model loop.

  ours   coherent_jax.engine.train.scan_train_steps: K members in ONE jitted, vmapped Adam step, `--steps`
         steps per call in one lax.scan (batch drawing included), as `fit` runs them.
  torch  benchmarks/reference_torch.train_steps: the paper's loop, one model after another,
         one eager step (forward in train mode, backward, Adam) at a time.
Paper-size specialists (norm_mlp, hidden 512, 5 layers, E 128: 1.13M parameters), 8,305
training rows (the paper's train split size), Adam lr 1e-3. Model-steps/s = K x steps / s
(median of `--repeats` calls after a warm-up call); GFLOP/s counts 3x the forward FLOPs.

    python benchmarks/bench_train.py
    python benchmarks/bench_train.py --k 1 3 7 --batch 64 128 --steps 200
"""

from __future__ import annotations

import argparse

import jax
import jax.numpy as jnp
import numpy as np
import torch

import reference_torch
from _machine import (COND_DIM, PAPER_ARCH, denoiser_flops, describe_machine, fmt_table,
                      time_it)
from coherent_jax.engine.denoiser import Condition, Denoiser
from coherent_jax.engine.schedules import linear_schedule
from coherent_jax.engine.train import (TrainConfig, create_train_state, make_member_data,
                                       scan_train_steps)

TRAIN_ROWS = 8305
LEARNING_RATE = 1e-3


def time_ours(num_members: int, batch_size: int, target, conds, args):
    state = create_train_state(Denoiser(**PAPER_ARCH), linear_schedule(1000), jax.random.key(0),
                               cond_dims=[COND_DIM], num_members=num_members,
                               learning_rate=LEARNING_RATE,
                               config=TrainConfig(batch_size=batch_size))
    data = make_member_data(target, np.ones(len(target), bool),
                            [Condition.of(jnp.asarray(c)) for c in conds[:num_members]])
    key = jax.random.key(1)

    def run():
        nonlocal state  # scan_train_steps donates the state: thread it through the calls
        state, metrics = scan_train_steps(state, data, key, args.steps)
        return metrics

    return time_it(run, args.repeats)


def time_torch(num_members: int, batch_size: int, target, conds, args):
    arch = {k: v for k, v in PAPER_ARCH.items() if k != "data_dim"}
    models = [reference_torch.NormMLP(PAPER_ARCH["data_dim"], [COND_DIM], **arch)
              for _ in range(num_members)]
    optimizers = [torch.optim.Adam(m.parameters(), lr=LEARNING_RATE) for m in models]
    x0 = torch.from_numpy(target)
    torch_conds = [torch.from_numpy(c) for c in conds]
    generator = torch.Generator().manual_seed(0)

    def run():
        for model, optimizer, cond in zip(models, optimizers, torch_conds):
            reference_torch.train_steps(model, optimizer, x0, cond, batch_size, args.steps,
                                        generator)

    return time_it(run, args.repeats)


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--k", type=int, nargs="+", default=[1, 3], help="members trained")
    parser.add_argument("--batch", type=int, nargs="+", default=[64, 128], help="batch sizes")
    parser.add_argument("--steps", type=int, default=200, help="optimizer steps per member")
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()

    print(describe_machine())
    torch.manual_seed(0)
    rng = np.random.default_rng(0)
    target = rng.standard_normal((TRAIN_ROWS, PAPER_ARCH["data_dim"])).astype(np.float32)
    conds = [rng.standard_normal((TRAIN_ROWS, COND_DIM)).astype(np.float32)
             for _ in range(max(args.k))]
    print(f"model: norm_mlp {PAPER_ARCH}; {TRAIN_ROWS} rows; {args.steps} steps per member\n")
    rows = []
    for k in args.k:
        for batch in args.batch:
            ours = time_ours(k, batch, target, conds, args)
            ref = time_torch(k, batch, target, conds, args)
            flops = 3 * denoiser_flops(**PAPER_ARCH) * batch * k * args.steps
            rows.append([k, batch, k * args.steps / ours.seconds, flops / ours.seconds / 1e9,
                         k * args.steps / ref.seconds, flops / ref.seconds / 1e9,
                         ref.seconds / ours.seconds, max(ours.foreign, ref.foreign)])
            print(f"  done K={k} batch={batch}", flush=True)
    header = ["K", "batch", "ours model-steps/s", "ours GF/s", "torch model-steps/s",
              "torch GF/s", "speedup", "max foreign cores"]
    print("\n" + fmt_table(header, rows))


if __name__ == "__main__":
    main()
