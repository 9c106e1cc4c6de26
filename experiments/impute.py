r"""Imputes missing modalities with a trained work directory.

    # the configured split (test) of the training cohort:
    python experiments/impute.py --workdir=/tmp/run --out=/tmp/run_test_filled
    # your own patients: a folder of per-modality tables (.csv/.tsv/.parquet/.h5ad; same
    # feature names as training) or a MuData file, written as CSV and MuData:
    python experiments/impute.py --workdir=/tmp/run --input=my_cohort/ --out=/tmp/filled
    python experiments/impute.py --workdir=/tmp/run --input=new.h5mu --out=/tmp/filled \
        --format=csv,h5mu

Reads the run's config from workdir/config.json; --method/--num_samples/--seed/--cascade
override the imputation settings; --num_devices splits every sampler call's rows over several
devices (same seed, same draws up to float reduction order) and --bucket sets its smallest
batch. The work directory is all it needs for --input patients (its saved preprocessing,
latent space and models; the training files may be gone); features are written in the units
of the input files (--units=zscore for the preprocessing's z-scores), observed values exactly
as given. Writes per-modality CSV (--format: also h5mu, i.e. imputation.h5mu,
and parquet) and summary.json to a new folder --out, built beside as '<out>.partial' and
renamed into place. An existing --out is replaced only when it holds an earlier output of ours
and --overwrite is given; --out inside or around --input or --workdir, or the current
directory (or a parent of it), is refused. Errors in the input print one line and exit with
status 2.
"""

import dataclasses
import os

from absl import app, flags, logging

import _common
from coherent_jax import pipeline
from coherent_jax.data.config import DataConfig, load_raw_cohort
from coherent_jax.errors import UserError
from coherent_jax.formats_out import check_formats, write_imputation
from coherent_jax.imputer import UNITS, Imputer, RangeCheck
from coherent_jax.safe_io import check_output_folder
from coherent_jax.settings import from_mapping

FLAGS = flags.FLAGS
flags.DEFINE_string("workdir", None, "A trained work directory.", required=True)
flags.DEFINE_string("out", None, "Output folder (new, or an earlier output with --overwrite).",
                    required=True)
flags.DEFINE_string("input", None, "New patients, in the units of the training files: a "
                    "folder of per-modality tables (.csv/.tsv/.parquet/.h5ad) or a MuData .h5mu "
                    "file (default: the run's configured split, which needs the training data).")
flags.DEFINE_list("format", ["csv"], "Output formats, comma-separated: csv, h5mu "
                  "(imputation.h5mu: mean in X, std/lower/upper layers, draws in obsm, the "
                  "imputed mask in obs), parquet. h5mu and parquet need pip install -e "
                  "'.[formats]'.")
flags.DEFINE_string("method", None, "Override: auto (the default: per availability pattern, "
                    "the family validation preferred), coherent, product, multi, single or "
                    "gaussian.")
flags.DEFINE_integer("num_samples", None, "Override: draws per patient.")
flags.DEFINE_integer("seed", None, "Override: sampling seed.")
flags.DEFINE_bool("cascade", None, "Override (default: on): a patient's missing modalities "
                  "are drawn one after another, each given the observed ones and the draws "
                  "before it, so a draw's modalities agree with each other (one subtype, say). "
                  "--nocascade draws each from the observed ones alone: each modality's own "
                  "draws can be closer to its conditional, but the modalities of one draw no "
                  "longer agree (benchmarks/RESULTS.md, 'One draw, several missing "
                  "modalities'). --method=gaussian draws them jointly either way.")
flags.DEFINE_list("first", [], "Modalities the cascade draws first, in this order, for "
                  "every patient (the rest follow in the models' order), e.g. --first=rna: the "
                  "first missing one is drawn from the observed modalities alone, later ones "
                  "also given the draws before them (benchmarks/RESULTS.md, 'The cascade's "
                  "order'). Default: the order training chose for each availability pattern "
                  "(reports.json, 'cascade_orders'), else the models' order.")
flags.DEFINE_integer("num_devices", 1, "Devices every sampler call splits its rows over (a "
                     "('data',) mesh); 0: every visible device. On CPU, set XLA_FLAGS="
                     "--xla_force_host_platform_device_count=N first.")
flags.DEFINE_integer("bucket", 256, "Smallest padded batch of a sampler call: row counts are "
                     "padded to bucket * 2^k, so new row counts reuse compiled samplers.")
flags.DEFINE_bool("overwrite", False, "Replace an earlier imputation of ours in --out.")
flags.DEFINE_enum("units", "input", UNITS, "Units of the written features: the input files' "
                  "units, or the preprocessing's z-scores.")
flags.DEFINE_float("max_outlier_share", RangeCheck.max_share, "Refuse a patient's modality "
                   "when more than this share of its features lie over --max_outlier_z training"
                   " SDs from the training mean (a scale or unit mix-up); 1 disables.")
flags.DEFINE_float("max_outlier_z", RangeCheck.max_z, "See --max_outlier_share.")


def main(argv):
    del argv
    logging.set_verbosity(logging.WARNING)  # Orbax logs every array it restores at INFO
    protected = (FLAGS.input, FLAGS.workdir)
    check_output_folder(FLAGS.out, overwrite=FLAGS.overwrite, protected=protected, flag="--out")
    formats = check_formats(FLAGS.format)
    imputer = Imputer.load(FLAGS.workdir)
    overrides = {k: v for k, v in (("method", FLAGS.method), ("num_samples", FLAGS.num_samples),
                                   ("cascade", FLAGS.cascade)) if v is not None}
    try:
        settings = dataclasses.replace(imputer.settings, **overrides)
    except ValueError as error:  # a bad --method / --num_samples: the user's to fix
        raise UserError(f"{error} (--method, --num_samples)") from error
    mesh = _common.imputation_mesh(FLAGS.num_devices)
    if FLAGS.bucket < 1:
        raise UserError(f"--bucket must be >= 1 rows, got {FLAGS.bucket}.")
    originals = None
    if FLAGS.input:
        patients = imputer.read(FLAGS.input)
        originals = imputer.originals(FLAGS.input, patients)
    else:  # the run's own split: reads the training data the run was configured with
        run = _common.read_run_config(FLAGS.workdir)
        data = from_mapping(DataConfig, run["config"]["data"])
        split = run["config"].get("impute", {}).get("split", "test")
        patients = load_raw_cohort(data).split(split)
    _common.logger.info(pipeline.describe_patterns(patients))
    seed = imputer.seed if FLAGS.seed is None else FLAGS.seed
    result = imputer.impute(patients, settings, seed=seed, units=FLAGS.units,
                            range_check=RangeCheck(FLAGS.max_outlier_z, FLAGS.max_outlier_share),
                            originals=originals, bucket=FLAGS.bucket, mesh=mesh,
                            first=FLAGS.first)
    write_imputation(result, FLAGS.out, {"impute": dataclasses.asdict(settings), "seed": seed,
                                         "units": FLAGS.units, "first": FLAGS.first,
                                         "cascade_orders": {} if FLAGS.first else {
                                             k: list(v) for k, v in
                                             imputer.models.cascade_orders.items()},
                                         "workdir": imputer.workdir,
                                         "trained_on_fingerprint": imputer.fingerprint,
                                         "input": FLAGS.input and os.path.abspath(FLAGS.input)},
                     overwrite=FLAGS.overwrite, protected=protected, formats=formats)
    print(result.diagnostics.to_string(index=False) if len(result.diagnostics) else
          "nothing to impute: every patient has every modality", flush=True)
    print(f"wrote {FLAGS.out} ({', '.join(formats)}; features in {FLAGS.units} units)")


if __name__ == "__main__":
    app.run(_common.cli(main))
