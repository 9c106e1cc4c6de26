"""An ensemble is one pytree whose leaves carry a leading member axis K."""

from __future__ import annotations

from typing import Any, Sequence

import jax
import jax.numpy as jnp


def stack_members(members: Sequence[Any]) -> Any:
    """Stacks K same-structured pytrees into one with leaves [K, ...]."""
    if not members:
        raise ValueError("stack_members needs at least one member.")
    structures = {jax.tree.structure(m) for m in members}
    if len(structures) != 1:
        raise ValueError("members have different pytree structures; an ensemble needs members of "
                         "one architecture (same layers, same condition count).")
    try:
        return jax.tree.map(lambda *leaves: jnp.stack(leaves), *members)
    except ValueError as err:
        raise ValueError(f"members have different leaf shapes ({err}); an ensemble needs members "
                         "of one architecture and one condition width.") from None


def num_members(tree: Any) -> int:
    """K, the leading axis shared by every leaf."""
    sizes = {leaf.shape[0] for leaf in jax.tree.leaves(tree)}
    if len(sizes) != 1:
        raise ValueError(f"leaves disagree on the member axis: sizes {sorted(sizes)}.")
    return sizes.pop()


def unstack_members(tree: Any) -> list[Any]:
    """Splits a stacked pytree back into its K members."""
    return [jax.tree.map(lambda leaf: leaf[k], tree) for k in range(num_members(tree))]


def select_members(tree: Any, indices) -> Any:
    """The sub-ensemble of the given member indices (keeps the leading axis)."""
    idx = jnp.asarray(indices, jnp.int32)
    return jax.tree.map(lambda leaf: leaf[idx], tree)
