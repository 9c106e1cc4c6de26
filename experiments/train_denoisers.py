r"""Trains the specialists and multi-condition denoisers of every target (or --config.denoisers.targets).

    python experiments/train_denoisers.py --config=experiments/configs/demo.py --workdir=/tmp/run

Fits the latent space first when the work directory has none. Training resumes from
workdir/checkpoints after an interruption; the finished ModelSet lands in workdir/models/.
"""

from absl import app

import _common

FLAGS = _common.FLAGS
_common.define_flags()


def main(argv):
    del argv
    _common.trained(FLAGS.config, FLAGS.workdir)


if __name__ == "__main__":
    app.run(_common.cli(main))
