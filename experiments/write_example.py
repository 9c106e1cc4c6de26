r"""Writes a small example cohort as CSV folders, to try the own-data path end to end.

    python experiments/write_example.py --out=example
    # example/train/{cna,rna,rppa,wsi,clinical}.csv   600 TCGA-like patients, real holes
    # example/new/{cna,rna,wsi}.csv                    40 new patients: nobody has rppa,
    #                                                  some lack rna or wsi as well

Synthetic (coherent_jax.data.tcga_like: shared patient factors drive every modality), in
positive, log-expression-like units rather than z-scores, so that imputations written in
the input's units are easy to recognise. Refuses an --out that exists.
"""

import os

import numpy as np
from absl import app, flags

import _common
from coherent_jax.data import tcga_like
from coherent_jax.errors import UserError

FLAGS = flags.FLAGS
flags.DEFINE_string("out", None, "New folder to write (train/ and new/ inside).", required=True)
flags.DEFINE_integer("num_train", 600, "Patients of the training cohort.")
flags.DEFINE_integer("num_new", 40, "New patients to impute.")
flags.DEFINE_integer("seed", 0, "Seed of the cohort.")

OFFSET = {"cna": 0.0, "rna": 8.0, "rppa": 0.0, "wsi": 0.0}
SCALE = {"cna": 0.3, "rna": 2.0, "rppa": 1.0, "wsi": 1.0}


def main(argv):
    del argv
    if os.path.exists(FLAGS.out):
        raise UserError(f"--out {FLAGS.out!r} exists; give a new folder.")
    cohort = tcga_like(FLAGS.num_train + FLAGS.num_new, seed=FLAGS.seed, num_types=4,
                       scale=0.1)
    ids = cohort.sample_ids
    train_ids, new_ids = ids[:FLAGS.num_train], ids[FLAGS.num_train:]
    rng = np.random.default_rng(FLAGS.seed)
    os.makedirs(os.path.join(FLAGS.out, "train"))
    os.makedirs(os.path.join(FLAGS.out, "new"))
    for m, table in cohort.tables.items():
        table = table * SCALE[m] + OFFSET[m]
        table.loc[train_ids].dropna(how="all").to_csv(os.path.join(FLAGS.out, "train",
                                                                  f"{m}.csv"))
        if m == "rppa":
            continue  # no new patient has rppa
        new = table.loc[new_ids].dropna(how="all")
        new = new.drop(index=new.index[rng.random(len(new)) < 0.25])  # some lack it too
        new.to_csv(os.path.join(FLAGS.out, "new", f"{m}.csv"))
    cohort.labels.loc[train_ids].to_csv(os.path.join(FLAGS.out, "train", "clinical.csv"))
    print(f"wrote {FLAGS.out}/train ({len(train_ids)} patients) and {FLAGS.out}/new "
          f"({len(new_ids)} patients, no rppa)")


if __name__ == "__main__":
    app.run(_common.cli(main))
