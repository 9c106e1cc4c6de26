"""Shared fixtures; tests run on the CPU, sized for a 2-core machine.

`tiny_run` trains ONE tiny model set per test session (`tiny.train_tiny_run`: a labelled
linear-Gaussian cohort, exact conditionals known); the imputation and evaluation tests share
it. Tests that change the model set (e.g. calibrate its thresholds) work on a copy.
"""

import os
import sys

import pytest

os.environ.setdefault("JAX_PLATFORMS", "cpu")
sys.path.insert(0, os.path.dirname(__file__))  # lets tests import their helper modules


@pytest.fixture(scope="session")
def tiny_run():
    import tiny  # noqa: PLC0415 - after JAX_PLATFORMS is set

    return tiny.train_tiny_run()
