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
    """Writes `tree` (arrays) and `metadata` (JSON) to `directory`, replacing what was there."""
    directory = os.path.abspath(directory)
    os.makedirs(directory, exist_ok=True)
    with ocp.StandardCheckpointer() as checkpointer:
        checkpointer.save(os.path.join(directory, TREE_DIR), tree, force=True)
        checkpointer.wait_until_finished()
    with open(os.path.join(directory, METADATA_FILE), "w") as f:
        json.dump(metadata or {}, f, indent=2, sort_keys=True, default=_json_default)


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
