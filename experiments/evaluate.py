r"""Evaluates a trained work directory on its held-out split and writes workdir/report/.

    python experiments/evaluate.py --config=experiments/configs/demo.py --workdir=/tmp/demo

Trains whatever the work directory still lacks (latent space, denoisers), then runs the whole
evaluation (coherent_jax.evaluate.suite): reconstruction for every target and available set
against the baselines, fidelity, privacy, downstream rescue and prioritisation. --config.evaluate.*
overrides are allowed on a trained work directory. Prints the path of the report's index.md.
"""

import time

from absl import app

import _common

FLAGS = _common.FLAGS
_common.define_flags()


def main(argv):
    del argv
    c = FLAGS.config
    start = time.perf_counter()
    cohort, space, latents, models = _common.trained(c, FLAGS.workdir)
    result = _common.evaluate(c, FLAGS.workdir, cohort, latents, space, models)
    print(f"[{time.perf_counter() - start:.0f} s] report: {result.index}", flush=True)


if __name__ == "__main__":
    app.run(_common.cli(main))
