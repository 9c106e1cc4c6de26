r"""Imputes missing modalities with a trained work directory.

    # the configured split (test) of the training cohort:
    python experiments/impute.py --workdir=/tmp/run --out=/tmp/run_test_filled
    # your own patients: a folder of per-modality CSV files (same feature names as training):
    python experiments/impute.py --workdir=/tmp/run --input=my_cohort/ --out=/tmp/filled

Reads the run's config from workdir/config.json; --method/--num_samples/--seed override the
imputation settings. Writes per-modality CSV (+ Parquet with pyarrow) and summary.json to a
new folder --out, built beside as '<out>.partial' and renamed into place. An existing --out is
replaced only when it holds an earlier output of ours and --overwrite is given; --out inside or
around --input or --workdir, or the current directory (or a parent of it), is refused. Errors
in the input print one line and exit with status 2.
"""

import dataclasses
import json
import os

from absl import app, flags

import _common
from coherent_jax import pipeline
from coherent_jax.errors import UserError
from coherent_jax.data import load_csv_folder
from coherent_jax.impute import impute, write_imputation
from coherent_jax.latent import LatentSpace
from coherent_jax.model_set import ModelSet
from coherent_jax.safe_io import check_output_folder

FLAGS = flags.FLAGS
flags.DEFINE_string("workdir", None, "A trained work directory.", required=True)
flags.DEFINE_string("out", None, "Output folder.", required=True)
flags.DEFINE_string("input", None, "Folder of per-modality CSV files (default: the run's split).")
flags.DEFINE_string("method", None, "Override: coherent, product, multi or single.")
flags.DEFINE_integer("num_samples", None, "Override: draws per patient.")
flags.DEFINE_integer("seed", None, "Override: sampling seed.")
flags.DEFINE_bool("overwrite", False, "Replace an earlier imputation of ours in --out.")


def main(argv):
    del argv
    protected = (FLAGS.input, FLAGS.workdir)
    check_output_folder(FLAGS.out, overwrite=FLAGS.overwrite, protected=protected, flag="--out")
    path = os.path.join(FLAGS.workdir, "config.json")
    if not os.path.exists(path):
        raise UserError(f"{path} not found: --workdir must be a trained run "
                        "(experiments/run_pipeline.py or train_denoisers.py).")
    with open(path) as f:
        run = json.load(f)
    config = run["config"]
    data = pipeline.from_mapping(pipeline.DataConfig, config["data"])
    settings = pipeline.from_mapping(pipeline.ImputeConfig, config["impute"])
    overrides = {k: v for k, v in (("method", FLAGS.method), ("num_samples", FLAGS.num_samples))
                 if v is not None}
    settings = dataclasses.replace(settings, **overrides)
    seed = run["seed"] if FLAGS.seed is None else FLAGS.seed
    cohort, prep = pipeline.load_cohort(data)
    space = LatentSpace.restore(os.path.join(FLAGS.workdir, "latent_space"))
    models = ModelSet.load(os.path.join(FLAGS.workdir, "models"))
    if FLAGS.input:
        features = prep.transform(load_csv_folder(FLAGS.input))
    else:
        features = cohort.split(settings.split)
    latents = space.encode(features)
    result = impute(latents, models, method=settings.method, num_samples=settings.num_samples,
                    seed=seed, sampler=settings.sampler, num_steps=settings.num_steps or None,
                    cascade=settings.cascade, num_candidates=settings.num_candidates,
                    max_bad_fraction=settings.max_bad_fraction,
                    corrector_steps=settings.corrector_steps,
                    allow_unconditional=settings.allow_unconditional, latent_space=space,
                    feature_cohort=features)
    write_imputation(result, FLAGS.out, {"impute": dataclasses.asdict(settings), "seed": seed,
                                         "workdir": os.path.abspath(FLAGS.workdir),
                                         "input": FLAGS.input},
                     overwrite=FLAGS.overwrite, protected=protected)
    print(result.diagnostics.to_string(index=False) if len(result.diagnostics) else
          "nothing to impute: every patient has every modality", flush=True)
    print(f"wrote {FLAGS.out}")


if __name__ == "__main__":
    app.run(_common.cli(main))
