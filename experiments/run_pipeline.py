r"""The whole job: data -> latent space -> denoisers -> imputation -> evaluation report, in one
work directory.

    python experiments/run_pipeline.py --config=experiments/configs/demo.py --workdir=/tmp/demo

Each stage reloads its output when the work directory already has it, and denoiser training
resumes from checkpoints, so an interrupted run is continued by running it again.
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
    cohort, space, latents, models = _common.trained(c, FLAGS.workdir)
    result = pipeline.stage_impute(FLAGS.workdir, latents, cohort, space, models,
                                   _common.impute_config(c), c.seed, split=c.impute.split,
                                   calibrate_quantile=c.impute.calibrate_quantile)
    print(result.diagnostics.to_string(index=False) if len(result.diagnostics) else
          "nothing to impute: every patient has every modality", flush=True)
    _common.logger.info(f"[{time.perf_counter() - start:.0f} s] imputation written")
    report = _common.evaluate(c, FLAGS.workdir, cohort, latents, space, models)
    print(f"[{time.perf_counter() - start:.0f} s] done; report: {report.index}", flush=True)


if __name__ == "__main__":
    app.run(_common.cli(main))
