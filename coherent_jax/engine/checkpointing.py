"""Saving and restoring pytrees with Orbax. The ONLY module that imports orbax.

Two uses:
  * `save_tree` / `restore_tree`: one finished object (a fitted latent space, best denoisers)
    with its JSON metadata (config, data fingerprint, versions) beside it.
  * `TrainCheckpoints`: a resumable training run; keeps the latest and the best steps.
"""

from __future__ import annotations

import json
import os
from typing import Any

import jax
import numpy as np
import orbax.checkpoint as ocp

from coherent_jax.engine.parallel import is_primary

METADATA_FILE = "metadata.json"
TREE_DIR = "tree"


def _abstract(tree: Any) -> Any:
    return jax.tree.map(ocp.utils.to_shape_dtype_struct, tree)


def _json_default(value):
    if isinstance(value, (np.integer, np.floating)):
        return value.item()
    if isinstance(value, np.ndarray):
        return value.tolist()
    raise TypeError(f"metadata value of type {type(value).__name__} is not JSON serialisable.")


def save_tree(directory: str, tree: Any, metadata: dict | None = None) -> None:
    """Writes `tree` (arrays) and `metadata` (JSON) to `directory`, replacing what was there.

    The pipeline calls it inside `safe_io.output_folder`, so a kill mid-save leaves only a
    '.partial' folder that the next run clears. In a multi-process run every process takes
    part in the Orbax save and process 0 alone writes the JSON."""
    directory = os.path.abspath(directory)
    os.makedirs(directory, exist_ok=True)
    with ocp.StandardCheckpointer() as checkpointer:
        checkpointer.save(os.path.join(directory, TREE_DIR), tree, force=True)
        checkpointer.wait_until_finished()
    if is_primary():
        meta_path = os.path.join(directory, METADATA_FILE)
        with open(f"{meta_path}.tmp", "w") as f:
            json.dump(metadata or {}, f, indent=2, sort_keys=True, default=_json_default)
        os.replace(f"{meta_path}.tmp", meta_path)


def restore_tree(directory: str, like: Any = None) -> tuple[Any, dict]:
    """Reads what `save_tree` wrote: (tree, metadata).

    Args:
        directory: the folder given to `save_tree`.
        like: optional pytree with the expected structure, shapes and dtypes (restores into
            that structure, e.g. flax.struct dataclasses); None restores nested dicts.
    """
    directory = os.path.abspath(directory)
    path = os.path.join(directory, TREE_DIR)
    if not os.path.isdir(path):
        raise FileNotFoundError(f"no saved tree in {directory!r} (expected {path!r}); was it "
                                "written by save_tree, and is the path right?")
    with ocp.StandardCheckpointer() as checkpointer:
        tree = checkpointer.restore(path, _abstract(like) if like is not None else None)
    meta_path = os.path.join(directory, METADATA_FILE)
    metadata = {}
    if os.path.exists(meta_path):
        with open(meta_path) as f:
            metadata = json.load(f)
    return tree, metadata


def read_arrays(path: str) -> list[tuple[str, np.ndarray]]:
    """Every array of the Orbax tree at `path` (a folder holding `_METADATA`), restored without
    knowing its structure: [(key path, array)], for audits of what a folder holds."""
    with ocp.StandardCheckpointer() as checkpointer:
        tree = checkpointer.restore(os.path.abspath(path))
    return [(jax.tree_util.keystr(key), np.asarray(leaf))
            for key, leaf in jax.tree_util.tree_flatten_with_path(tree)[0]]


class TrainCheckpoints:
    """A resumable run in `directory`: the latest step's arrays plus JSON, and the run's
    identity (config and data fingerprint), which a later run must match to resume.

    Args:
        directory: checkpoint folder (created when absent).
        identity: JSON-able dict, e.g. {'config': ..., 'data_fingerprint': ...}.
        max_to_keep: how many recent steps to keep on disk.
    """

    def __init__(self, directory: str, identity: dict, max_to_keep: int = 1):
        self.directory = os.path.abspath(directory)
        os.makedirs(self.directory, exist_ok=True)
        id_path = os.path.join(self.directory, "identity.json")
        identity = json.loads(json.dumps(identity, sort_keys=True, default=_json_default))
        if os.path.exists(id_path):
            with open(id_path) as f:
                existing = json.load(f)
            if existing != identity:
                diff = sorted(k for k in set(existing) | set(identity)
                              if existing.get(k) != identity.get(k))
                raise ValueError(f"checkpoint folder {self.directory!r} belongs to a run with a "
                                 f"different {', '.join(diff)}; use a new work directory or "
                                 "delete this one to start over.")
        elif is_primary():  # written beside and renamed: a kill never leaves half a file
            with open(f"{id_path}.tmp", "w") as f:
                json.dump(identity, f, indent=2, sort_keys=True)
            os.replace(f"{id_path}.tmp", id_path)
        self._manager = ocp.CheckpointManager(
            os.path.join(self.directory, "steps"),
            options=ocp.CheckpointManagerOptions(max_to_keep=max_to_keep, create=True))

    def latest_step(self) -> int | None:
        return self._manager.latest_step()

    def save(self, step: int, tree: Any, extra: dict) -> None:
        """Saves arrays `tree` and JSON `extra` at `step`, blocking until written."""
        self._manager.save(step, args=ocp.args.Composite(
            tree=ocp.args.StandardSave(tree),
            extra=ocp.args.JsonSave(json.loads(json.dumps(extra, default=_json_default)))),
            force=True)
        self._manager.wait_until_finished()

    def restore(self, like: Any, step: int | None = None) -> tuple[Any, dict]:
        """(tree shaped like `like`, extra JSON) of `step` (default: the latest)."""
        step = self.latest_step() if step is None else step
        if step is None:
            raise FileNotFoundError(f"no checkpoint in {self.directory!r} to restore.")
        out = self._manager.restore(step, args=ocp.args.Composite(
            tree=ocp.args.StandardRestore(_abstract(like)), extra=ocp.args.JsonRestore()))
        return out.tree, out.extra

    def close(self) -> None:
        self._manager.close()
