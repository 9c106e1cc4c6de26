"""Per-modality encoders to a latent width k: autoencoder, PCA, pass-through.

Every encoder maps rows [N, D] -> [N, k] and back, and splits into JSON-able settings
(`spec`) and arrays (`arrays`) so a LatentSpace can save and restore it:

    autoencoder  the paper's MLP autoencoder (autoencoder.py), early-stopped on a
                 held-out set of rows
    pca          standardise each feature, then project on the top-k principal axes (the
                 paper's choice for the 768-d slide-image embedding); decoding maps back
                 through the same axes (the best rank-k linear reconstruction)
    identity     pass-through, for a modality already at the latent width

Encoders see only the rows they are fitted on: LatentSpace gives them the training rows.
"""

from __future__ import annotations

import dataclasses
from typing import Any, Callable, ClassVar, Protocol

import jax
import jax.numpy as jnp
import numpy as np

from coherent_jax import autoencoder as ae_lib

ENCODER_KINDS = ("auto", "autoencoder", "pca", "identity")  # 'auto': chosen by LatentSpace
EMBEDDING_NAMES = ("wsi", "slide", "titan", "image")  # default to PCA, as the paper's WSI


def default_kind(modality: str, width: int, latent_dim: int, otherwise: str = "auto") -> str:
    """'identity' at the latent width, 'pca' for slide-image embeddings, else `otherwise`."""
    if width == latent_dim:
        return "identity"
    if modality.lower() in EMBEDDING_NAMES:
        return "pca"
    return otherwise


class Encoder(Protocol):
    """What LatentSpace needs from an encoder."""

    kind: ClassVar[str]
    input_dim: int
    latent_dim: int

    def encode(self, x: np.ndarray) -> np.ndarray:
        """[N, D] -> [N, k] float32."""

    def decode(self, z: np.ndarray) -> np.ndarray:
        """[N, k] -> [N, D] float32."""

    def spec(self) -> dict:
        """JSON-able settings that, with `arrays()`, rebuild the encoder."""

    def arrays(self) -> dict:
        """The fitted arrays (a pytree of arrays)."""


@dataclasses.dataclass(frozen=True, eq=False)
class IdentityEncoder:
    """Pass-through for a modality already at the latent width."""

    kind: ClassVar[str] = "identity"
    input_dim: int

    @property
    def latent_dim(self) -> int:
        return self.input_dim

    def encode(self, x: np.ndarray) -> np.ndarray:
        return np.asarray(x, np.float32)

    def decode(self, z: np.ndarray) -> np.ndarray:
        return np.asarray(z, np.float32)

    def spec(self) -> dict:
        return {"input_dim": self.input_dim}

    def arrays(self) -> dict:
        return {}

    @classmethod
    def rebuild(cls, spec: dict, arrays: dict) -> "IdentityEncoder":
        del arrays
        return cls(spec["input_dim"])


@dataclasses.dataclass(frozen=True, eq=False)
class PCAEncoder:
    """Standardisation then PCA.

    Attributes:
        mean: [D] feature means of the fitting rows.
        scale: [D] feature standard deviations (1 where a feature is constant).
        components: [k, D] principal axes (orthonormal rows), largest variance first.
        explained_variance_ratio: [k] share of the standardised variance each axis carries.
    """

    kind: ClassVar[str] = "pca"
    mean: np.ndarray
    scale: np.ndarray
    components: np.ndarray
    explained_variance_ratio: np.ndarray

    @property
    def input_dim(self) -> int:
        return self.components.shape[1]

    @property
    def latent_dim(self) -> int:
        return self.components.shape[0]

    @classmethod
    def fit(cls, x: np.ndarray, latent_dim: int) -> "PCAEncoder":
        """Fits on rows x [N, D]; needs N > latent_dim and D >= latent_dim.

        The sign of each axis is fixed (its largest-magnitude loading is positive), so a
        refit on the same rows gives the same encoder.
        """
        x = np.asarray(x, np.float64)
        n, d = x.shape
        if latent_dim > d or latent_dim >= n:
            raise ValueError(f"PCA to {latent_dim} dimensions needs more than {latent_dim} rows "
                             f"and at least {latent_dim} features; got {n} rows, {d} features. "
                             "Lower latent_dim or use more training rows.")
        mean = x.mean(axis=0)
        std = x.std(axis=0)
        scale = np.where(std > 0, std, 1.0)
        _, singular, vt = np.linalg.svd((x - mean) / scale, full_matrices=False)
        components = vt[:latent_dim]  # [k, D]
        signs = np.sign(components[np.arange(latent_dim),
                                   np.abs(components).argmax(axis=1)])
        variance = singular ** 2
        ratio = variance[:latent_dim] / max(variance.sum(), np.finfo(float).tiny)
        return cls(mean.astype(np.float32), scale.astype(np.float32),
                   (components * signs[:, None]).astype(np.float32), ratio.astype(np.float32))

    def encode(self, x: np.ndarray) -> np.ndarray:
        return ((np.asarray(x, np.float32) - self.mean) / self.scale) @ self.components.T

    def decode(self, z: np.ndarray) -> np.ndarray:
        return (np.asarray(z, np.float32) @ self.components) * self.scale + self.mean

    def spec(self) -> dict:
        return {"input_dim": self.input_dim, "latent_dim": self.latent_dim}

    def arrays(self) -> dict:
        return {"mean": self.mean, "scale": self.scale, "components": self.components,
                "explained_variance_ratio": self.explained_variance_ratio}

    @classmethod
    def rebuild(cls, spec: dict, arrays: dict) -> "PCAEncoder":
        del spec
        get = lambda name: np.asarray(arrays[name], np.float32)
        return cls(get("mean"), get("scale"), get("components"), get("explained_variance_ratio"))


@dataclasses.dataclass(frozen=True, eq=False)
class AutoencoderEncoder:
    """A trained autoencoder used as an encoder.

    Attributes:
        config: its AutoencoderConfig.
        model: the Flax module.
        variables: trained {'params', 'batch_stats'}.
        summary: how training went (best_epoch, epochs, best_mse, seconds, num_params).
    """

    kind: ClassVar[str] = "autoencoder"
    config: ae_lib.AutoencoderConfig
    model: ae_lib.Autoencoder
    variables: dict
    summary: dict

    @property
    def input_dim(self) -> int:
        return self.model.input_dim

    @property
    def latent_dim(self) -> int:
        return self.model.latent_dim

    @classmethod
    def fit(cls, train_x: np.ndarray, stop_x: np.ndarray, config: ae_lib.AutoencoderConfig,
            log_fn: Callable[[dict], None] | None = None) -> "AutoencoderEncoder":
        """Trains on train_x [N, D], early-stopped on stop_x [V, D]; see fit_autoencoder."""
        fit = ae_lib.fit_autoencoder(train_x, stop_x, config, log_fn)
        summary = {"best_epoch": fit.best_epoch, "epochs": fit.epochs, "best_mse": fit.best_mse,
                   "seconds": fit.seconds, "num_params": ae_lib.num_params(fit.variables),
                   "widths": list(ae_lib.describe(fit.model))}
        return cls(config, fit.model, fit.variables, summary)

    def encode(self, x: np.ndarray) -> np.ndarray:
        return np.asarray(ae_lib.encode(self.model, self.variables,
                                        jnp.asarray(x, jnp.float32)))

    def decode(self, z: np.ndarray) -> np.ndarray:
        return np.asarray(ae_lib.decode(self.model, self.variables,
                                        jnp.asarray(z, jnp.float32)))

    def spec(self) -> dict:
        return {"input_dim": self.input_dim, "config": dataclasses.asdict(self.config),
                "summary": self.summary}

    def arrays(self) -> dict:
        return self.variables

    @classmethod
    def rebuild(cls, spec: dict, arrays: dict) -> "AutoencoderEncoder":
        config = ae_lib.AutoencoderConfig(**spec["config"])
        model = ae_lib.Autoencoder.from_config(spec["input_dim"], config)
        like = ae_lib.init_autoencoder.eval_shape(model, jax.random.key(0))
        variables = jax.tree.map(lambda a, ref: jnp.asarray(a, ref.dtype).reshape(ref.shape),
                                 _as_dict(arrays), like)
        return cls(config, model, variables, spec["summary"])


ENCODERS: dict[str, Any] = {"autoencoder": AutoencoderEncoder, "pca": PCAEncoder,
                            "identity": IdentityEncoder}


def _as_dict(tree: Any) -> Any:
    """Restored nested mappings as plain dicts (matching the structure Flax builds)."""
    if hasattr(tree, "items"):
        return {k: _as_dict(v) for k, v in tree.items()}
    return tree


def rebuild(kind: str, spec: dict, arrays: dict) -> Encoder:
    """The encoder of `kind` from its saved spec and arrays."""
    if kind not in ENCODERS:
        raise ValueError(f"unknown encoder kind {kind!r}; known: {list(ENCODERS)}.")
    return ENCODERS[kind].rebuild(spec, arrays)
