r"""Fits the per-modality latent space (autoencoders / PCA) on the train split.

    python experiments/train_latents.py --config=experiments/configs/demo.py --workdir=/tmp/run

Writes workdir/latent_space/ (encoders + latent_quality.csv/json) and prints the quality table.
"""

from absl import app

import _common

FLAGS = _common.FLAGS
_common.define_flags()


def main(argv):
    del argv
    cohort, _ = _common.setup(FLAGS.config, FLAGS.workdir)
    _common.latent_cohort(FLAGS.config, FLAGS.workdir, cohort)


if __name__ == "__main__":
    app.run(_common.cli(main))
