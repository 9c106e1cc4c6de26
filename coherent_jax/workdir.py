"""The work directory: the one owner of its folder and file names.

    workdir/
      config.json          the full config, seed, versions, data fingerprint
      preprocessing/       the fitted feature preprocessing (features, fills, scaling)
      latent_space/        fitted encoders (Orbax) + latent_quality.{csv,json}
      models/              the trained ModelSet (Orbax) + training reports
      checkpoints/         resumable denoiser training, checkpoints/<target>/<family>
      metrics.jsonl        every training record (pandas.read_json(lines=True))
      report/              the evaluation: index.md, tables/, figures/, results/

No file of it holds a patient's row (`coherent_jax.audit` checks): the imputation of the
configured split is patient data and goes beside it (`imputation_folder`). The stages that
write these parts are `pipeline.stage_*`; `Imputer.load` and the scripts read them here.
"""

from __future__ import annotations

import os

CONFIG = "config.json"
PREPROCESSING = "preprocessing"
LATENT_SPACE = "latent_space"
MODELS = "models"
CHECKPOINTS = "checkpoints"
METRICS = "metrics.jsonl"
REPORT = "report"
IMPUTER_PARTS = (CONFIG, PREPROCESSING, LATENT_SPACE, MODELS)
"""What `Imputer.load` needs of a work directory (the training data is not among them)."""


def part(workdir: str, name: str, *more: str) -> str:
    """The path of one part of a work directory (a name above), or of something inside it."""
    return os.path.join(workdir, name, *more)


def imputation_folder(workdir: str) -> str:
    """Where the pipeline writes its patients' imputation by default: `<workdir>_imputed`,
    beside the work directory, never inside it (it holds patients' rows; the work directory
    is what may be shared, `coherent_jax.audit`)."""
    return os.path.abspath(workdir).rstrip(os.sep) + "_imputed"
