"""Shared fixtures; tests run on the CPU, sized for a 2-core machine.

`tiny_run` trains ONE tiny model set per test session (`tiny.train_tiny_run`: a labelled
linear-Gaussian cohort, exact conditionals known); the imputation and evaluation tests share
it. Tests that change the model set (e.g. calibrate its thresholds) work on a copy.
"""

import os
import sys

import pytest

os.environ.setdefault("JAX_PLATFORMS", "cpu")
# One persistent XLA cache for the whole run, shared by both workers and by the scripts the
# tests start: most tests compile the same small models, and a pipeline run in a subprocess
# spends about half its time compiling. Compiled code is keyed by its program, JAX version
# and flags, so a cached executable computes exactly what a fresh compile would.
os.environ.setdefault("JAX_COMPILATION_CACHE_DIR", os.path.join(
    os.path.dirname(os.path.dirname(os.path.abspath(__file__))), ".jax_cache"))
os.environ.setdefault("JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS", "0")
sys.path.insert(0, os.path.dirname(__file__))  # lets tests import their helper modules


@pytest.fixture(scope="session")
def tiny_run():
    import tiny  # noqa: PLC0415 - after JAX_PLATFORMS is set

    return tiny.train_tiny_run()
