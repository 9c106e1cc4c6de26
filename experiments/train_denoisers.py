r"""Trains the specialists and multi-condition denoisers of every target (or --config.denoisers.targets).

    python experiments/train_denoisers.py --config=experiments/configs/demo.py --workdir=/tmp/run

Fits the latent space first when the work directory has none. Training resumes from
workdir/checkpoints after an interruption; the finished ModelSet lands in workdir/models/.
"""

from absl import app

import _common
from coherent_jax import pipeline

FLAGS = _common.FLAGS
_common.define_flags()


def main(argv):
    del argv
    c = FLAGS.config
    cohort, _ = _common.setup(c, FLAGS.workdir)
    _, latents = _common.latent_cohort(c, FLAGS.workdir, cohort)
    pipeline.stage_denoisers(FLAGS.workdir, latents, _common.model_config(c), c.seed,
                             targets=_common.targets(c), batch_sharding=_common.batch_sharding(c))


if __name__ == "__main__":
    app.run(main)
