"""What a run leaves in its work directory: config.json with versions, JSON-lines metrics,
and a progress line on long runs (logged)."""

from __future__ import annotations

import importlib.metadata
import json
import logging
import os
import platform
import sys
import time
from typing import Any

import numpy as np
import pandas as pd

from coherent_jax.engine import progress

logger = logging.getLogger(__name__)

PACKAGES = ("coherent-jax", "jax", "jaxlib", "flax", "optax", "orbax-checkpoint", "numpy",
            "pandas", "scikit-learn")


def versions() -> dict:
    """Python, platform, devices and library versions of this process."""
    import jax  # noqa: PLC0415 - keep module import light for non-JAX users of this file

    found = {}
    for name in PACKAGES:
        try:
            found[name] = importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            found[name] = None
    return {"python": sys.version.split()[0], "platform": platform.platform(),
            "devices": [str(d) for d in jax.devices()], "packages": found}


def _jsonable(value: Any):
    if isinstance(value, (np.integer, np.floating, np.bool_)):
        return value.item()
    if isinstance(value, np.ndarray):
        return value.tolist()
    raise TypeError(f"{type(value).__name__} is not JSON serialisable")


def write_json(path: str, payload: dict) -> None:
    """Writes JSON atomically (a temporary file renamed into place): never half-written."""
    tmp = f"{path}.tmp"
    with open(tmp, "w") as f:
        json.dump(payload, f, indent=2, sort_keys=True, default=_jsonable)
    os.replace(tmp, path)


def write_run_info(workdir: str, config: dict, seed: int, name: str = "config.json",
                   extra: dict | None = None) -> str:
    """Records config, seed, library versions and `extra` in `workdir/name`; returns the path."""
    os.makedirs(workdir, exist_ok=True)
    path = os.path.join(workdir, name)
    write_json(path, {"config": config, "seed": seed, "versions": versions(),
                      "written": time.strftime("%Y-%m-%dT%H:%M:%S%z"), **(extra or {})})
    return path


class MetricsWriter:
    """Appends one JSON object per line; `read_metrics` loads the file as a DataFrame."""

    def __init__(self, path: str):
        os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
        self.path = path
        self._drop_torn_line()

    def _drop_torn_line(self) -> None:
        """Cuts an unfinished last line (a run killed mid-write), so the file stays readable."""
        if not os.path.exists(self.path):
            return
        with open(self.path, "rb+") as f:
            data = f.read()
            if data and not data.endswith(b"\n"):
                f.truncate(data.rfind(b"\n") + 1)

    def write(self, record: dict) -> None:
        with open(self.path, "a") as f:
            f.write(json.dumps(record, default=_jsonable) + "\n")


def read_metrics(path: str) -> pd.DataFrame:
    """The JSON-lines metrics file as a DataFrame (one row per record)."""
    return pd.read_json(path, lines=True)


class Progress:
    """Logs 'label: step s/total (p%), r steps/s, ETA' at most every `every_seconds` (INFO;
    DEBUG while a progress bar shows the same)."""

    def __init__(self, total: int, label: str = "train", every_seconds: float = 10.0):
        self.total, self.label, self.every = total, label, every_seconds
        self.start_step = self.start = None
        self.last = -float("inf")

    def update(self, step: int) -> str | None:
        """Records `step`; the first call only sets the baseline the rate is measured from."""
        now = time.perf_counter()
        if self.start is None:
            self.start_step, self.start, self.last = step, now, now
            return None
        if now - self.last < self.every and step < self.total:
            return None
        self.last = now
        rate = (step - self.start_step) / max(now - self.start, 1e-9)
        eta = (self.total - step) / rate if rate > 0 else float("inf")
        line = (f"{self.label}: step {step}/{self.total} ({100 * step / self.total:.0f}%), "
                f"{rate:.1f} steps/s, ETA {eta:.0f} s")
        logger.log(logging.DEBUG if progress.shown() else logging.INFO, line)
        return line
