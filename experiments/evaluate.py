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
from coherent_jax import pipeline

FLAGS = _common.FLAGS
_common.define_flags()


def main(argv):
    del argv
    c = FLAGS.config
    start = time.perf_counter()
    cohort, _ = _common.setup(c, FLAGS.workdir)
    space, latents = _common.latent_cohort(c, FLAGS.workdir, cohort)
    models = pipeline.stage_denoisers(FLAGS.workdir, latents, _common.model_config(c), c.seed,
                                      targets=_common.targets(c),
                                      batch_sharding=_common.batch_sharding(c))
    result = _common.evaluate(c, FLAGS.workdir, cohort, latents, space, models)
    print(f"[{time.perf_counter() - start:.0f} s] report: {result['index']}", flush=True)


if __name__ == "__main__":
    app.run(main)
