"""Shared fixtures; tests run on the CPU, sized for a 2-core machine."""

import os
import sys

os.environ.setdefault("JAX_PLATFORMS", "cpu")
sys.path.insert(0, os.path.dirname(__file__))  # lets tests import their helper modules
