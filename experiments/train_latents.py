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
    _common.trained(FLAGS.config, FLAGS.workdir, through=_common.STAGES.latent.name)


if __name__ == "__main__":
    app.run(_common.cli(main))
