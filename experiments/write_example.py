r"""Writes a small example cohort to try the own-data path end to end.

    python experiments/write_example.py --out=example
    # example/train/{cna,rna,rppa,wsi,clinical}.csv   600 TCGA-like patients, real holes
    # example/new/{cna,rna,wsi}.csv                    40 new patients: nobody has rppa,
    #                                                  some lack rna or wsi as well
    python experiments/write_example.py --out=example --format=h5mu
    # example/train.h5mu   one mod per modality, the clinical labels as the MuData's obs
    # example/new.h5mu     no rppa mod; patients lacking rna or wsi are not in that mod
    # --format=h5ad / parquet: the folders of the CSV layout with <modality>.h5ad / .parquet
    # tables (clinical.csv beside)

Synthetic (coherent_jax.data.tcga_like: shared patient factors drive every modality), in
positive, log-expression-like units rather than z-scores, so that imputations written in
the input's units are easy to recognise. Every format holds the same numbers. Refuses an
--out that exists.
"""

import os

import numpy as np
from absl import app, flags

import _common
from coherent_jax.data import formats, tcga_like
from coherent_jax.errors import UserError

FLAGS = flags.FLAGS
flags.DEFINE_string("out", None, "New folder to write (train and new inside).", required=True)
flags.DEFINE_integer("num_train", 600, "Patients of the training cohort.")
flags.DEFINE_integer("num_new", 40, "New patients to impute.")
flags.DEFINE_integer("seed", 0, "Seed of the cohort.")
flags.DEFINE_enum("format", "csv", ["csv", "h5mu", "h5ad", "parquet"], "File format: a folder "
                  "of .csv/.h5ad/.parquet tables per part, or one .h5mu file per part.")

OFFSET = {"cna": 0.0, "rna": 8.0, "rppa": 0.0, "wsi": 0.0}
SCALE = {"cna": 0.3, "rna": 2.0, "rppa": 1.0, "wsi": 1.0}


def _write_folder(folder, tables, labels, fmt):
    """One table per modality (rows of samples that have it) plus clinical.csv."""
    os.makedirs(folder)
    for m, table in tables.items():
        table = table.dropna(how="all")
        path = os.path.join(folder, f"{m}.{fmt}")
        if fmt == "csv":
            table.to_csv(path)
        elif fmt == "parquet":
            formats.require("pyarrow", path, "writing")
            table.rename_axis("sample_id").to_parquet(path)
        else:
            adata = formats.to_anndata(table)
            with formats.plain_strings():
                adata.write_h5ad(path)
    if labels is not None:
        labels.to_csv(os.path.join(folder, "clinical.csv"))


def main(argv):
    del argv
    if os.path.exists(FLAGS.out):
        raise UserError(f"--out {FLAGS.out!r} exists; give a new folder.")
    cohort = tcga_like(FLAGS.num_train + FLAGS.num_new, seed=FLAGS.seed, num_types=4,
                       scale=0.1)
    ids = cohort.sample_ids
    train_ids, new_ids = ids[:FLAGS.num_train], ids[FLAGS.num_train:]
    rng = np.random.default_rng(FLAGS.seed)
    train, new = {}, {}
    for m, table in cohort.tables.items():
        table = table * SCALE[m] + OFFSET[m]
        train[m] = table.loc[train_ids].dropna(how="all")
        if m == "rppa":
            continue  # no new patient has rppa
        rows = table.loc[new_ids].dropna(how="all")
        new[m] = rows.drop(index=rows.index[rng.random(len(rows)) < 0.25])  # some lack it too
    labels = cohort.labels.loc[train_ids]
    os.makedirs(FLAGS.out)
    if FLAGS.format == "h5mu":
        formats.write_h5mu(train, os.path.join(FLAGS.out, "train.h5mu"), labels)
        formats.write_h5mu(new, os.path.join(FLAGS.out, "new.h5mu"))
        parts = ("train.h5mu", "new.h5mu")
    else:
        _write_folder(os.path.join(FLAGS.out, "train"), train, labels, FLAGS.format)
        _write_folder(os.path.join(FLAGS.out, "new"), new, None, FLAGS.format)
        parts = ("train", "new")
    print(f"wrote {FLAGS.out}/{parts[0]} ({len(train_ids)} patients) and {FLAGS.out}/{parts[1]}"
          f" ({len(new_ids)} patients, no rppa)")


if __name__ == "__main__":
    app.run(_common.cli(main))
