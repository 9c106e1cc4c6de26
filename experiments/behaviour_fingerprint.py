r"""Fingerprints of what a small run produces, to show a change left behaviour bit-identical.

    .venv/bin/python experiments/behaviour_fingerprint.py --out=/tmp/before.json
    # ... move code around ...
    .venv/bin/python experiments/behaviour_fingerprint.py --out=/tmp/after.json
    .venv/bin/python experiments/behaviour_fingerprint.py --compare=/tmp/before.json,/tmp/after.json

Runs `run_pipeline.py` with `experiments/configs/test.py` (a small linear-Gaussian cohort,
trained anchored denoisers, imputation of the test split, the whole evaluation) in a fresh
temporary work directory, then records a SHA-256 of every array of the saved model set (the
anchors among them), of every table of the split's imputation (draws of the run's seed) and of
the numeric columns of every report table (columns measuring seconds left out). `--compare`
lists what differs between two such files and exits 1 when anything does.
"""

from __future__ import annotations

import argparse
import gzip
import hashlib
import json
import os
import subprocess
import sys
import tempfile

import numpy as np
import pandas as pd

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)

from coherent_jax.model_set import ModelSet  # noqa: E402

TIMING_WORDS = ("second", "time_s", "wall")


def _digest(values: np.ndarray) -> str:
    values = np.ascontiguousarray(values)
    return hashlib.sha256(str(values.dtype).encode() + str(values.shape).encode()
                          + values.tobytes()).hexdigest()[:16]


def _model_arrays(folder: str) -> dict:
    """'models/<path>' -> digest of every array leaf of the saved ModelSet."""
    import jax  # noqa: PLC0415

    models = ModelSet.load(folder)
    found = {}
    for target, tm in models.targets.items():
        for family in ("specialists", "multi"):
            leaves, _ = jax.tree_util.tree_flatten_with_path(getattr(tm, family))
            for path, leaf in leaves:
                found[f"models/{target}/{family}{jax.tree_util.keystr(path)}"] = _digest(
                    np.asarray(leaf))
    return found


def _tables(folder: str, prefix: str, numeric_only: bool) -> dict:
    """'<prefix>/<file>' -> digest of each CSV table: of its text (decompressed), or with
    `numeric_only` of its numeric columns' values, columns measuring time left out."""
    found = {}
    for name in sorted(os.listdir(folder)):
        path = os.path.join(folder, name)
        if not name.endswith((".csv", ".csv.gz")):
            continue
        if not numeric_only:
            with (gzip.open(path) if name.endswith(".gz") else open(path, "rb")) as f:
                found[f"{prefix}/{name}"] = hashlib.sha256(f.read()).hexdigest()[:16]
            continue
        table = pd.read_csv(path).select_dtypes("number")
        table = table[[c for c in table.columns if not any(w in c.lower() for w in TIMING_WORDS)]]
        found[f"{prefix}/{name}"] = _digest(table.to_numpy(np.float64))
    return found


def fingerprint() -> dict:
    """Runs the small pipeline in a temporary folder and returns its fingerprints."""
    with tempfile.TemporaryDirectory() as tmp:
        workdir = os.path.join(tmp, "run")
        run = subprocess.run(
            [sys.executable, os.path.join(ROOT, "experiments", "run_pipeline.py"),
             f"--config={os.path.join(ROOT, 'experiments', 'configs', 'test.py')}",
             f"--workdir={workdir}"], capture_output=True, text=True, cwd=ROOT,
            env=dict(os.environ, JAX_PLATFORMS="cpu"))
        if run.returncode:
            raise SystemExit(f"the pipeline failed:\n{run.stderr[-3000:]}")
        return {**_model_arrays(os.path.join(workdir, "models")),
                **_tables(workdir + "_imputed", "imputation", numeric_only=False),
                **_tables(os.path.join(workdir, "report", "tables"), "report",
                          numeric_only=True)}


def compare(before: dict, after: dict) -> list[str]:
    """Lines naming every entry that differs, appears or disappears."""
    lines = [f"differs: {k}" for k in sorted(set(before) & set(after)) if before[k] != after[k]]
    lines += [f"only before: {k}" for k in sorted(set(before) - set(after))]
    lines += [f"only after: {k}" for k in sorted(set(after) - set(before))]
    return lines


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", help="write the fingerprints of a fresh run here (JSON)")
    parser.add_argument("--compare", help="two fingerprint files, comma-separated")
    args = parser.parse_args()
    if bool(args.out) == bool(args.compare):
        parser.error("give exactly one of --out or --compare.")
    if args.compare:
        paths = args.compare.split(",")
        if len(paths) != 2:
            parser.error("--compare takes two files, comma-separated.")
        before, after = (json.load(open(p))["fingerprints"] for p in paths)
        lines = compare(before, after)
        print("\n".join(lines) if lines else f"identical: {len(before)} fingerprints")
        raise SystemExit(1 if lines else 0)
    found = fingerprint()
    commit = subprocess.run(["git", "rev-parse", "HEAD"], capture_output=True, text=True,
                            cwd=ROOT).stdout.strip()
    with open(args.out, "w") as f:
        json.dump({"commit": commit, "fingerprints": found}, f, indent=1, sort_keys=True)
    print(f"wrote {len(found)} fingerprints to {args.out}")


if __name__ == "__main__":
    main()
