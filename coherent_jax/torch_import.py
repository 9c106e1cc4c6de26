"""Import of the paper's trained PyTorch "norm_mlp" denoisers into our `Denoiser`.

The key names and the checkpoint layout are those of the paper's public code
(github.com/r-marchesi/coherent-genAI, `code/lib/diffusion_models.py`,
`MultiConditioningDiffusionModelNormMLP`, and `code/lib/train.py`, which writes the
`best_by_{mse,cosine,timestep}.pth` files):

    state dict                                   ours (Flax)
    time_embedding_dense.{weight,bias}           params/time_dense/{kernel (= weight.T), bias}
    cond_embeddings.{j}.{weight,bias}            params/cond_dense_{j}/{kernel, bias}
    mlp_layers.{i}.{weight,bias}, i < L-1        params/hidden_{i}/{kernel, bias}
    mlp_layers.{L-1}.{weight,bias}               params/out/{kernel, bias}
    bn_layers.{i}.{weight,bias}                  params/norm_{i}/{scale, bias}
    bn_layers.{i}.{running_mean,running_var}     batch_stats/norm_{i}/{mean, var}
    bn_layers.{i}.num_batches_tracked            (unused at inference)
    diffusion.{betas,alphas_cumprod}             the returned Schedule (built from betas)

    checkpoint = {'best_model_mse': state dict, 'best_model_cosine': ..., 'best_model_timestep':
                  ..., 'config': {'architecture': 'norm_mlp', 'initial_size': hidden,
                  'n_layers': L, 'time_embedding_dimension': E, 'cond_embedding_dim': 32, ...},
                  'best_loss': float}

The architecture (widths, layer count, conditions) is read from the tensor shapes and, for a
checkpoint, checked against its config. Both sides use BatchNorm epsilon 1e-5 and the same
sinusoidal embedding, so eps predictions agree to float32 rounding. torch is imported only to
read `.pth` files; state dicts of numpy arrays need no torch at all.
"""

from __future__ import annotations

import dataclasses
import os
import re
from typing import Any, Mapping

import jax.numpy as jnp
import numpy as np

from coherent_jax.engine.denoiser import Denoiser
from coherent_jax.engine.schedules import Schedule, linear_schedule

CRITERIA = ("mse", "cosine", "timestep")
_SCHEDULE_KEYS = ("diffusion.betas", "diffusion.alphas_cumprod")
# The paper's config keys and the Denoiser fields the tensor shapes must agree with.
_CONFIG_CHECKS = (("initial_size", "hidden_dim"), ("n_layers", "num_layers"),
                  ("time_embedding_dimension", "time_embed_dim"),
                  ("cond_embedding_dim", "cond_embed_dim"))


@dataclasses.dataclass(frozen=True)
class ImportedDenoiser:
    """A paper model in our terms.

    Attributes:
        model: the Denoiser module (norm 'batch'), ready for `DenoiserApply(model)`.
        variables: {'params', 'batch_stats'} for `model`.
        cond_dims: widths of the model's conditions (one for a specialist).
        schedule: the training schedule (from the `diffusion.betas` buffer when present, else
            the paper's linear 1000-step schedule).
        config: the checkpoint's config dict ({} for a bare state dict).
        best_loss: the checkpoint's `best_loss` (the paper weights specialists by
            softmax(1 / best_loss)), or None.
    """

    model: Denoiser
    variables: dict
    cond_dims: tuple[int, ...]
    schedule: Schedule
    config: dict
    best_loss: float | None


def _to_numpy(value: Any) -> np.ndarray:
    if hasattr(value, "detach"):  # a torch tensor
        value = value.detach().cpu().numpy()
    return np.asarray(value, dtype=np.float32)


def _indices(keys, prefix: str) -> list[int]:
    """Sorted i of the keys `{prefix}.{i}.weight`; raises if they are not 0..n-1."""
    pattern = re.compile(rf"{re.escape(prefix)}\.(\d+)\.weight$")
    found = sorted(int(m.group(1)) for k in keys if (m := pattern.match(k)))
    if found != list(range(len(found))):
        raise ValueError(f"state dict has {prefix}.i.weight for i in {found}; expected 0..n-1 "
                         "without gaps.")
    return found


def _expected_shapes(arch: dict, cond_dims: list[int]) -> dict[str, tuple[int, ...]]:
    """Every tensor of a norm_mlp of this architecture and its shape."""
    e, ce, h, layers, d = (arch["time_embed_dim"], arch["cond_embed_dim"], arch["hidden_dim"],
                           arch["num_layers"], arch["data_dim"])
    shapes = {"time_embedding_dense.weight": (e, e), "time_embedding_dense.bias": (e,)}
    for j, dc in enumerate(cond_dims):
        shapes[f"cond_embeddings.{j}.weight"] = (ce, dc)
        shapes[f"cond_embeddings.{j}.bias"] = (ce,)
    widths_in = [d + e + ce * len(cond_dims)] + [h + e] * (layers - 1)
    widths_out = [h] * (layers - 1) + [d]
    for i, (w_in, w_out) in enumerate(zip(widths_in, widths_out)):
        shapes[f"mlp_layers.{i}.weight"] = (w_out, w_in)
        shapes[f"mlp_layers.{i}.bias"] = (w_out,)
    for i in range(layers - 1):
        for name in ("weight", "bias", "running_mean", "running_var"):
            shapes[f"bn_layers.{i}.{name}"] = (h,)
        shapes[f"bn_layers.{i}.num_batches_tracked"] = ()
    return shapes


def _infer_architecture(state: Mapping[str, Any]) -> tuple[dict, list[int]]:
    """Denoiser fields and condition widths read off the tensor shapes."""
    required = ("time_embedding_dense.weight", "cond_embeddings.0.weight", "mlp_layers.0.weight")
    absent = [k for k in required if k not in state]
    if absent:
        raise ValueError(f"not a norm_mlp state dict: missing {absent}. Expected the paper's "
                         "MultiConditioningDiffusionModelNormMLP keys (time_embedding_dense, "
                         f"cond_embeddings.j, mlp_layers.i, bn_layers.i); got keys "
                         f"{sorted(state)[:8]}...")
    layers = _indices(state, "mlp_layers")
    if len(layers) < 2:
        raise ValueError(f"a norm_mlp needs >= 2 mlp_layers, the state dict has {len(layers)}.")
    if not any(k.startswith("bn_layers.") for k in state):
        raise ValueError("state dict has mlp_layers but no bn_layers: this is the paper's plain "
                         "'mlp' architecture, not 'norm_mlp'; only norm_mlp can be imported.")
    cond_dims = [int(np.shape(state[f"cond_embeddings.{j}.weight"])[1])
                 for j in _indices(state, "cond_embeddings")]
    arch = dict(
        data_dim=int(np.shape(state[f"mlp_layers.{len(layers) - 1}.weight"])[0]),
        hidden_dim=int(np.shape(state["mlp_layers.0.weight"])[0]),
        num_layers=len(layers),
        time_embed_dim=int(np.shape(state["time_embedding_dense.weight"])[0]),
        cond_embed_dim=int(np.shape(state["cond_embeddings.0.weight"])[0]),
    )
    return arch, cond_dims


def import_state_dict(state_dict: Mapping[str, Any]) -> ImportedDenoiser:
    """Converts one paper norm_mlp state dict (torch tensors or arrays) into our Denoiser.

    Raises:
        ValueError: on missing or unexpected keys or a tensor of the wrong shape, naming them.
    """
    state = dict(state_dict)
    arch, cond_dims = _infer_architecture(state)
    expected = _expected_shapes(arch, cond_dims)
    missing = sorted(set(expected) - set(state))
    unexpected = sorted(set(state) - set(expected) - set(_SCHEDULE_KEYS))
    wrong = [f"{k}: {tuple(np.shape(state[k]))} != expected {shape}"
             for k, shape in expected.items() if k in state and tuple(np.shape(state[k])) != shape]
    problems = ([f"missing keys {missing}"] if missing else []) + \
               ([f"unexpected keys {unexpected}"] if unexpected else []) + \
               ([f"shape mismatches {wrong}"] if wrong else [])
    if problems:
        raise ValueError(f"state dict does not match a norm_mlp with {arch} and condition widths "
                         f"{cond_dims}: " + "; ".join(problems))

    dense = lambda key: {"kernel": jnp.asarray(_to_numpy(state[f"{key}.weight"]).T),
                         "bias": jnp.asarray(_to_numpy(state[f"{key}.bias"]))}
    last = arch["num_layers"] - 1
    params = {"time_dense": dense("time_embedding_dense"), "out": dense(f"mlp_layers.{last}")}
    batch_stats = {}
    for j in range(len(cond_dims)):
        params[f"cond_dense_{j}"] = dense(f"cond_embeddings.{j}")
    for i in range(last):
        bn = lambda name: jnp.asarray(_to_numpy(state[f"bn_layers.{i}.{name}"]))
        params[f"hidden_{i}"] = dense(f"mlp_layers.{i}")
        params[f"norm_{i}"] = {"scale": bn("weight"), "bias": bn("bias")}
        batch_stats[f"norm_{i}"] = {"mean": bn("running_mean"), "var": bn("running_var")}
    schedule = (Schedule.from_betas(_to_numpy(state["diffusion.betas"]))
                if "diffusion.betas" in state else linear_schedule())
    return ImportedDenoiser(model=Denoiser(norm="batch", **arch),
                            variables={"params": params, "batch_stats": batch_stats},
                            cond_dims=tuple(cond_dims), schedule=schedule, config={},
                            best_loss=None)


def load_checkpoint(checkpoint: str | os.PathLike | Mapping[str, Any],
                    criterion: str = "mse") -> ImportedDenoiser:
    """Imports one model of a paper checkpoint (`best_by_{metric}.pth` or its loaded dict).

    Args:
        checkpoint: path of a `.pth` file (read with `torch.load(weights_only=True)` on the
            CPU; needs torch) or the already-loaded dictionary.
        criterion: which of its three state dicts: 'mse', 'cosine' or 'timestep' (the paper's
            test scripts use the one named like the file, `best_model_{metric}`).

    Raises:
        ValueError: for an unknown criterion, a dict that is not a paper checkpoint, a
            non-norm_mlp architecture, or a config that disagrees with the tensor shapes.
    """
    if criterion not in CRITERIA:
        raise ValueError(f"criterion must be one of {CRITERIA}, got {criterion!r}.")
    if isinstance(checkpoint, (str, os.PathLike)):
        import torch  # pylint: disable=import-outside-toplevel  (optional dependency)

        checkpoint = torch.load(os.fspath(checkpoint), map_location="cpu", weights_only=True)
    key = f"best_model_{criterion}"
    if key not in checkpoint or "config" not in checkpoint:
        raise ValueError(f"not a paper checkpoint: expected keys {key!r} and 'config', got "
                         f"{sorted(checkpoint)}. For a bare state dict use import_state_dict.")
    config = dict(checkpoint["config"])
    architecture = config.get("architecture", "norm_mlp")
    if architecture != "norm_mlp":
        raise ValueError(f"checkpoint architecture is {architecture!r}; only 'norm_mlp' "
                         "can be imported.")
    imported = import_state_dict(checkpoint[key])
    conflicts = [f"{cfg_key}={config[cfg_key]} but the tensors give "
                 f"{field}={getattr(imported.model, field)}"
                 for cfg_key, field in _CONFIG_CHECKS
                 if cfg_key in config and int(config[cfg_key]) != getattr(imported.model, field)]
    if conflicts:
        raise ValueError("checkpoint config disagrees with its state dict: " + "; ".join(conflicts))
    best_loss = checkpoint.get("best_loss")
    return dataclasses.replace(imported, config=config,
                               best_loss=None if best_loss is None else float(best_loss))
