"""Wall time of one mixture-anchor fit with the BLAS/OpenMP threads of the process against
one thread (`mixture_anchor.one_thread`, which `fit_mixture` always uses).

    .venv/bin/python benchmarks/bench_fit_threads.py [--repeats 2] [--out results.json]

Two shapes: 1,200 rows of a 20-wide target with two 28-wide conditions (a door cohort's
multi-condition model) and 400 rows of a 128-wide target with one 136-wide condition (a KIPAN
specialist): three subtypes shifted 1.5 apart, conditions a noisy linear map of the target.
"Process threads" runs the undecorated fit (`fit_mixture.__wrapped__`, with the module's
`component_fits` swapped for its undecorated self meanwhile) under the process's own
limits (OMP_NUM_THREADS / OPENBLAS_NUM_THREADS).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from threadpoolctl import threadpool_info  # noqa: E402

from coherent_jax import mixture_anchor  # noqa: E402
from coherent_jax.metrics_io import versions  # noqa: E402

SHAPES = ((1200, 20, (28, 28)), (400, 128, (136,)))  # rows, target width, condition widths


def _problem(rows: int, dim: int, widths: tuple, seed: int = 0):
    rng = np.random.default_rng(seed)
    target = rng.standard_normal((rows, dim)) + 1.5 * rng.integers(0, 3, rows)[:, None]
    conditions = [(target @ rng.standard_normal((dim, w)) * 0.3
                   + rng.standard_normal((rows, w)), np.ones(rows, bool)) for w in widths]
    return target, np.ones(rows, bool), conditions


def _process_threads(*args, **kwargs):
    """`fit_mixture` without any `one_thread`."""
    decorated = mixture_anchor.component_fits
    mixture_anchor.component_fits = decorated.__wrapped__
    try:
        return mixture_anchor.fit_mixture.__wrapped__(*args, **kwargs)
    finally:
        mixture_anchor.component_fits = decorated


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--out", default="")
    args = parser.parse_args()
    pools = {pool["internal_api"]: pool["num_threads"] for pool in threadpool_info()}
    print(f"process thread pools: {pools}")
    results = []
    for rows, dim, widths in SHAPES:
        target, present, conditions = _problem(rows, dim, widths)
        for label, fit in (("process threads", _process_threads),
                           ("one thread", mixture_anchor.fit_mixture)):
            for _ in range(args.repeats):
                start = time.perf_counter()
                fitted = fit(target, present, conditions, max_components=4)
                seconds = time.perf_counter() - start
                components = None if fitted is None else int(fitted.resp.shape[1])
                results.append({"rows": rows, "target": dim, "conditions": list(widths),
                                "threads": label, "seconds": seconds, "components": components})
                print(f"{rows} rows, target {dim}, conditions {list(widths)}: {label} "
                      f"{seconds:.1f} s ({components} components)", flush=True)
    if args.out:
        with open(args.out, "w") as f:
            json.dump({"config": vars(args), "seed": 0, "pools": pools,
                       "versions": versions(), "results": results}, f, indent=1)


if __name__ == "__main__":
    main()
