"""benchmarks/bench_mixture_fit.py on a small draw: it runs and its fitted mixtures land near
the exact conditional."""

import os
import sys

import numpy as np

sys.path.insert(0, os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))),
                                "benchmarks"))

import bench_mixture_fit  # noqa: E402


def test_fitted_mixtures_score_near_the_exact_conditional_for_every_source_set():
    model = bench_mixture_fit.cohort_model("bench", seed=0)
    excess = bench_mixture_fit.excess(model, rows=400, test=40, draws=30, seed=0)
    assert set(excess) == {"hide", "reveal", "hide+reveal"}
    values = np.array(list(excess.values()))
    assert np.isfinite(values).all()
    # within 6% of the exact energy score (one Gaussian is about 10% above it given 'reveal')
    assert (np.abs(values) < 0.06).all(), excess
