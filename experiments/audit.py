r"""Audits a trained work directory as an outsider holding its files would attack it.

    python experiments/audit.py --workdir=runs/demo                      # the run's own data
    python experiments/audit.py --workdir=runs/mine --data=example/train --out=audit_mine

Opens every file of the work directory and reports (coherent_jax/audit.py): any saved vector
that is a near copy of a training patient's row (in the input's units, the z-scores or the
latents), and the membership attacks the released files allow: conditional (imputation error
through the work directory's imputer), encoder (reconstruction error), unconditional (fully
masked multi-condition draws), each an AUC with a 95% patient-bootstrap interval (members:
complete training patients; non-members: complete test patients), and whether the coherent
methods refuse a patient with no modality. --data is the training data (a folder of tables or
a .h5mu file) when the run was trained on your own files and they moved; by default the data
named in workdir/config.json. The data must be the data the run was trained on (checked by
fingerprint). A mistake prints one line and exits with status 2; a finding (a near copy, a
flagged attack) exits with status 1 after the tables.
"""

import dataclasses
import os
import sys

from absl import app, flags, logging

import _common
from coherent_jax import audit
from coherent_jax.data.config import OWN_FILES, DataConfig, load_cohort, load_raw_cohort
from coherent_jax.errors import UserError
from coherent_jax.impute import METHODS
from coherent_jax.model_set import cohort_fingerprint
from coherent_jax.settings import from_mapping

FLAGS = flags.FLAGS
flags.DEFINE_string("workdir", None, "A trained work directory.", required=True)
flags.DEFINE_string("data", "", "The training data of the run (a folder of per-modality tables "
                    "or a .h5mu file); default: the data named in workdir/config.json.")
flags.DEFINE_string("out", "", "Folder for the tables and summary.json (new, or an earlier "
                    "audit with --overwrite); default: print only.")
flags.DEFINE_bool("overwrite", False, "Replace an earlier audit of ours in --out.")
flags.DEFINE_bool("attacks", True, "Run the membership attacks (--noattacks: the stored-row "
                  "scan only).")
flags.DEFINE_integer("num_samples", audit.AuditConfig.num_samples, "Draws per patient of the "
                     "conditional attack.")
flags.DEFINE_list("methods", list(audit.AuditConfig.methods), "Methods attacked conditionally.")
flags.DEFINE_integer("seed", 0, "Sampling and bootstrap seed.")


def training_data(run: dict, path: str):
    """The run's raw cohort with its split, checked against the run's data fingerprint."""
    data = from_mapping(DataConfig, run["config"]["data"])
    if not path and data.source in OWN_FILES and not os.path.exists(data.path):
        raise UserError(f"the run's training data {data.path!r} is not there (moved?): pass "
                        "--data=<where the training data is now>.")
    if path:
        source = data.source if data.source in OWN_FILES else "csv"
        data = dataclasses.replace(data, source=source, path=path)
    cohort, _ = load_cohort(data)
    found, expected = cohort_fingerprint(cohort), run.get("data_fingerprint")
    if expected and found != expected:
        raise UserError(f"the data {path or data.path or data.name!r} are not the data "
                        f"{FLAGS.workdir!r} was trained on (fingerprint {found} vs {expected}):"
                        " give the run's training data with --data.")
    return load_raw_cohort(data)


def main(argv):
    del argv
    logging.set_verbosity(logging.WARNING)  # Orbax logs every array it reads at INFO
    if FLAGS.out:
        audit.safe_io.check_output_folder(FLAGS.out, overwrite=FLAGS.overwrite,
                                          protected=(FLAGS.workdir, FLAGS.data), flag="--out")
    run = _common.read_run_config(FLAGS.workdir)
    config = audit.AuditConfig(methods=tuple(FLAGS.methods), num_samples=FLAGS.num_samples,
                               seed=FLAGS.seed, attacks=FLAGS.attacks)
    if config.num_samples < 1:
        raise UserError(f"--num_samples must be >= 1, got {config.num_samples}.")
    unknown = sorted(set(config.methods) - set(METHODS))
    if unknown:
        raise UserError(f"--methods {unknown} unknown; choose among {list(METHODS)}.")
    result = audit.audit_workdir(FLAGS.workdir, training_data(run, FLAGS.data), config)
    worst = (result.artefacts.sort_values("near_copies", ascending=False)
             .drop_duplicates("file").head(20) if len(result.artefacts) else result.artefacts)
    print(f"stored vectors compared: {int(result.artefacts['vectors'].sum())} in "
          f"{result.artefacts['file'].nunique()} files; near copies of a training row: "
          f"{result.near_copies}")
    print(worst.to_string(index=False, float_format="%.3f"))
    if len(result.attacks):
        print(result.attacks.drop(columns=["p"], errors="ignore")
              .to_string(index=False, float_format="%.3f"))
    if FLAGS.out:
        audit.write_audit(result, FLAGS.out, {"workdir": FLAGS.workdir, "data": FLAGS.data,
                                              "config": dataclasses.asdict(config),
                                              "seed": FLAGS.seed}, overwrite=FLAGS.overwrite,
                          protected=(FLAGS.workdir, FLAGS.data))
        print(f"wrote {FLAGS.out}")
    flagged = result.near_copies > 0 or bool(result.attacks.get("flagged", []).any()
                                             if len(result.attacks) else False)
    sys.exit(1 if flagged else 0)


if __name__ == "__main__":
    app.run(_common.cli(main))
