r"""The whole job: data -> latent space -> denoisers -> imputation -> evaluation report, in one
work directory.

    python experiments/run_pipeline.py --config=experiments/configs/demo.py --workdir=/tmp/demo

The imputation of the configured split (patients' rows) is written to --out, by default
'<workdir>_imputed' beside the work directory: the work directory itself holds no patient's
row (experiments/audit.py checks).

Each stage reloads its output when the work directory already has it, and denoiser training
resumes from checkpoints, so an interrupted run is continued by running it again.
"""

import os
import time

from absl import app

from absl import flags

import _common
from coherent_jax import pipeline
from coherent_jax import workdir as layout
from coherent_jax.impute import SamplerCalls
from coherent_jax.safe_io import check_output_folder

FLAGS = _common.FLAGS
_common.define_flags()
flags.DEFINE_string("out", "", "Folder for the imputation of the configured split (default: "
                    "'<workdir>_imputed'); an earlier imputation of ours there is replaced.")


def main(argv):
    del argv
    c = FLAGS.config
    start = time.perf_counter()
    out = FLAGS.out or layout.imputation_folder(FLAGS.workdir)
    check_output_folder(out, overwrite=True, protected=(FLAGS.workdir,), flag="--out")  # early
    cohort, space, latents, models = _common.trained(c, FLAGS.workdir)
    earlier = layout.part(FLAGS.workdir, layout.EARLIER_IMPUTATION)
    if os.path.isdir(earlier):
        _common.logger.warning(
            f"{earlier} (written there by an earlier version) holds patients' rows: move it "
            f"out before sharing the work directory; imputations now go to {out}")
    stage = pipeline.ImputeStage(
        _common.impute_config(c), split=c.impute.split,
        calibrate_quantile=c.impute.calibrate_quantile,
        calls=SamplerCalls(bucket=c.impute.bucket,
                           mesh=_common.imputation_mesh(c.parallel.num_devices)))
    result = pipeline.stage_impute(out, latents, cohort, space, models, stage, c.seed,
                                   protected=(FLAGS.workdir,))
    print(result.diagnostics.to_string(index=False) if len(result.diagnostics) else
          "nothing to impute: every patient has every modality", flush=True)
    _common.logger.info(f"[{time.perf_counter() - start:.0f} s] imputation written to {out}")
    report = _common.evaluate(c, FLAGS.workdir, cohort, latents, space, models)
    print(f"[{time.perf_counter() - start:.0f} s] done; report: {report.index}", flush=True)


if __name__ == "__main__":
    app.run(_common.cli(main))
