"""The paper's per-modality autoencoder (METHOD.md section 2) and its early-stopped training.

    x [B, D] -> (Dense(h_i) -> BatchNorm -> ReLU) for i = 1..L -> Dense(k)    = z     [B, k]
    z [B, k] -> (Dense(h_i) -> BatchNorm -> ReLU) for i = L..1 -> Dense(D)    = x_hat [B, D]

with hidden widths shrinking geometrically from D to the latent width k:
    h_i = max(int(D * (k / D) ** ((i / L) ** (1 / s))), k),   i = 1..L,
L layers and shrink exponent s (s > 1 shrinks faster near the input). The paper fixes k = 32.

Training: AdamW (lr 1e-3, weight decay 1e-5), minibatches of 64, reconstruction MSE; after
every epoch the MSE on held-out rows is computed in inference mode (BatchNorm running
statistics); training stops after `patience` epochs without improvement and the best epoch's
weights are returned. One epoch is ONE jitted call: a lax.scan over the shuffled minibatches.
Data parallel like the denoisers: with a ('data',) mesh the state and the tables are
replicated and each minibatch is split over the devices (XLA reduces the gradients and the
BatchNorm statistics over the whole minibatch).
"""

from __future__ import annotations

import dataclasses
import functools
import logging
import math
import time
from typing import Any, Callable

import flax.linen as nn
import flax.struct
import jax
import jax.numpy as jnp
import numpy as np
import optax
from jax.sharding import Mesh

from coherent_jax.engine import parallel, progress

logger = logging.getLogger(__name__)

# Paper settings (layers L, shrink exponent s) by modality, and our choices where the paper
# has no autoencoder: miRNA (hundreds of features, RPPA-like width) as RPPA; methylation
# (thousands of CpG sites, RNA-like width) as RNA.
MODALITY_LAYERS = {"rna": (3, 1.0), "rppa": (2, 1.0), "cna": (2, 3.0), "mirna": (2, 1.0),
                   "meth": (3, 1.0)}
_ALIASES = {"rnaseq": "rna", "protein": "rppa", "cnv": "cna", "copy_number": "cna",
            "methylation": "meth", "mirna_seq": "mirna"}
WIDE = 1000  # unknown modalities: L=3 from this many features on, else L=2 (both s=1)


def hidden_widths(input_dim: int, latent_dim: int, num_layers: int,
                  shrink: float) -> tuple[int, ...]:
    """The paper's geometric hidden widths h_1..h_L from D down to the latent width k.

    Example: D=2284, k=32, L=3, s=1 -> (550, 132, 32).
    """
    if input_dim < 1 or latent_dim < 1 or num_layers < 1 or shrink <= 0:
        raise ValueError(f"need input_dim, latent_dim, num_layers >= 1 and shrink > 0; got "
                         f"{input_dim}, {latent_dim}, {num_layers}, {shrink}.")
    ratio = latent_dim / input_dim
    return tuple(max(int(input_dim * ratio ** ((i / num_layers) ** (1.0 / shrink))), latent_dim)
                 for i in range(1, num_layers + 1))


@dataclasses.dataclass(frozen=True)
class AutoencoderConfig:
    """Architecture and training options of one modality's autoencoder.

    Attributes:
        latent_dim: latent width k (the paper: 32).
        num_layers: hidden layers L of the encoder (the decoder mirrors them).
        shrink: shrink exponent s of the hidden widths.
        learning_rate: AdamW learning rate.
        weight_decay: AdamW decoupled weight decay.
        batch_size: rows per minibatch (capped at the number of training rows).
        patience: epochs without a better held-out MSE before stopping.
        max_epochs: hard limit on epochs.
        seed: seed of the initialisation and of the minibatch shuffles.
    """

    latent_dim: int = 32
    num_layers: int = 2
    shrink: float = 1.0
    learning_rate: float = 1e-3
    weight_decay: float = 1e-5
    batch_size: int = 64
    patience: int = 10
    max_epochs: int = 500
    seed: int = 0

    def __post_init__(self):
        for name in ("latent_dim", "num_layers", "batch_size", "patience", "max_epochs"):
            if getattr(self, name) < 1:
                raise ValueError(f"AutoencoderConfig.{name} must be >= 1, got "
                                 f"{getattr(self, name)}.")
        if not (self.shrink > 0 and self.learning_rate > 0 and self.weight_decay >= 0):
            raise ValueError("AutoencoderConfig needs shrink > 0, learning_rate > 0 and "
                             f"weight_decay >= 0; got {self.shrink}, {self.learning_rate}, "
                             f"{self.weight_decay}.")


def default_config(modality: str, input_dim: int, **overrides: Any) -> AutoencoderConfig:
    """The per-modality defaults: paper values for RNA (L=3, s=1), RPPA (L=2, s=1) and CNA
    (L=2, s=3); miRNA like RPPA, methylation like RNA; an unknown modality gets L=3 when it
    has >= 1000 features, else L=2, both with s=1. `overrides` replace any field.
    """
    key = _ALIASES.get(modality.lower(), modality.lower())
    layers, shrink = MODALITY_LAYERS.get(key, (3 if input_dim >= WIDE else 2, 1.0))
    return dataclasses.replace(AutoencoderConfig(num_layers=layers, shrink=shrink), **overrides)


class _MLP(nn.Module):
    """(Dense -> BatchNorm -> ReLU) per hidden width, then Dense(out_dim)."""

    hidden: tuple[int, ...]
    out_dim: int

    @nn.compact
    def __call__(self, x: jax.Array, train: bool) -> jax.Array:
        for i, width in enumerate(self.hidden):
            x = nn.Dense(width, name=f"dense_{i}")(x)
            x = nn.BatchNorm(use_running_average=not train, momentum=0.9, epsilon=1e-5,
                             name=f"norm_{i}")(x)  # torch's BatchNorm1d defaults
            x = nn.relu(x)
        return nn.Dense(self.out_dim, name="out")(x)


class Autoencoder(nn.Module):
    """MLP autoencoder with a mirrored decoder (see the module docstring).

    Attributes:
        input_dim: feature count D.
        hidden: encoder hidden widths h_1..h_L (the decoder uses them reversed).
        latent_dim: latent width k.
    """

    input_dim: int
    hidden: tuple[int, ...]
    latent_dim: int

    def setup(self):
        self.encoder = _MLP(self.hidden, self.latent_dim)
        self.decoder = _MLP(tuple(reversed(self.hidden)), self.input_dim)

    def encode(self, x: jax.Array, train: bool = False) -> jax.Array:
        """x [B, D] -> z [B, k]."""
        return self.encoder(x, train)

    def decode(self, z: jax.Array, train: bool = False) -> jax.Array:
        """z [B, k] -> x_hat [B, D]."""
        return self.decoder(z, train)

    def __call__(self, x: jax.Array, train: bool = False) -> jax.Array:
        """x [B, D] -> x_hat [B, D]."""
        return self.decode(self.encode(x, train), train)

    @classmethod
    def from_config(cls, input_dim: int, config: AutoencoderConfig) -> "Autoencoder":
        return cls(input_dim=input_dim, latent_dim=config.latent_dim,
                   hidden=hidden_widths(input_dim, config.latent_dim, config.num_layers,
                                        config.shrink))


@functools.partial(jax.jit, static_argnames=("model",))
def init_autoencoder(model: Autoencoder, key: jax.Array) -> dict:
    """Initial variables {'params', 'batch_stats'}."""
    return dict(model.init(key, jnp.zeros((2, model.input_dim), jnp.float32), train=False))


@flax.struct.dataclass
class AutoencoderState:
    """Training state of one autoencoder."""

    step: jax.Array
    params: Any
    batch_stats: Any
    opt_state: Any
    model: Autoencoder = flax.struct.field(pytree_node=False)
    tx: optax.GradientTransformation = flax.struct.field(pytree_node=False)
    batch_size: int = flax.struct.field(pytree_node=False)

    @property
    def variables(self) -> dict:
        return {"params": self.params, "batch_stats": self.batch_stats}


@functools.lru_cache(maxsize=None)
def adamw(learning_rate: float, weight_decay: float) -> optax.GradientTransformation:
    """AdamW, one object per setting, so jitted epochs compile once per architecture."""
    return optax.adamw(learning_rate, weight_decay=weight_decay)


def create_state(model: Autoencoder, config: AutoencoderConfig, num_rows: int) -> AutoencoderState:
    """Initial state with AdamW, seeded by `config.seed`."""
    variables = init_autoencoder(model, jax.random.fold_in(jax.random.key(config.seed), 0))
    tx = adamw(config.learning_rate, config.weight_decay)
    return AutoencoderState(step=jnp.zeros((), jnp.int32), params=variables["params"],
                            batch_stats=variables["batch_stats"],
                            opt_state=jax.jit(tx.init)(variables["params"]), model=model, tx=tx,
                            batch_size=min(config.batch_size, num_rows))


def _reconstruction_step(state: AutoencoderState, x: jax.Array):
    """One AdamW step on the minibatch x [B, D]; returns (state, loss)."""

    def loss_fn(params):
        x_hat, updates = state.model.apply({"params": params, "batch_stats": state.batch_stats},
                                           x, train=True, mutable=["batch_stats"])
        return jnp.mean((x_hat - x) ** 2), updates["batch_stats"]

    (loss, stats), grads = jax.value_and_grad(loss_fn, has_aux=True)(state.params)
    updates, opt_state = state.tx.update(grads, state.opt_state, state.params)
    return state.replace(step=state.step + 1, params=optax.apply_updates(state.params, updates),
                         batch_stats=stats, opt_state=opt_state), loss


def reconstruction_mse(model: Autoencoder, variables: dict, x: jax.Array) -> jax.Array:
    """Mean squared reconstruction error over x [N, D] in inference mode."""
    return jnp.mean((model.apply(variables, x, train=False) - x) ** 2)


@functools.partial(jax.jit, static_argnames=("mesh",), donate_argnums=0)
def train_epoch(state: AutoencoderState, train_x: jax.Array, stop_x: jax.Array,
                key: jax.Array, epoch: jax.Array,
                mesh: Mesh | None = None) -> tuple[AutoencoderState, dict]:
    """One epoch over train_x [N, D] in shuffled minibatches, then the MSE on stop_x [V, D].

    Every row is visited once per epoch; the last minibatch is topped up with rows from the
    start of the same shuffle, so all minibatches have `state.batch_size` rows and the epoch is
    one lax.scan. The shuffle key is fold_in(key, epoch). With a `mesh`, each minibatch [B, D]
    is split over its 'data' axis (B a multiple of the device count); the result equals the
    single-device epoch up to float reduction order. Returns the new state and
    {'train_loss': mean minibatch loss, 'stop_mse': held-out MSE in inference mode}.
    """
    n, b = train_x.shape[0], state.batch_size
    num_batches = math.ceil(n / b)
    order = jax.random.permutation(jax.random.fold_in(key, epoch), n)
    order = jnp.concatenate([order, order[:num_batches * b - n]]).reshape(num_batches, b)
    state, losses = jax.lax.scan(
        lambda s, rows: _reconstruction_step(s, parallel.constrain_rows(train_x[rows], mesh)),
        state, order)
    return state, {"train_loss": jnp.mean(losses),
                   "stop_mse": reconstruction_mse(state.model, state.variables, stop_x)}


@dataclasses.dataclass
class AutoencoderFit:
    """Outcome of `fit_autoencoder`.

    Attributes:
        model: the Flax module.
        variables: the best epoch's {'params', 'batch_stats'}.
        best_epoch: the epoch (1-based) whose weights were kept.
        best_mse: its held-out MSE.
        epochs: epochs run.
        seconds: wall time of the training loop (compilation included).
        history: one {'epoch', 'train_loss', 'stop_mse'} per epoch.
    """

    model: Autoencoder
    variables: dict
    best_epoch: int
    best_mse: float
    epochs: int
    seconds: float
    history: list


def fit_autoencoder(train_x: np.ndarray, stop_x: np.ndarray, config: AutoencoderConfig,
                    log_fn: Callable[[dict], None] | None = None,
                    mesh: Mesh | None = None, label: str = "autoencoder") -> AutoencoderFit:
    """Trains an autoencoder with early stopping on the held-out rows `stop_x`.

    Args:
        train_x: [N, D] training rows (finite; z-scored features work best).
        stop_x: [V, D] held-out rows for early stopping (never trained on).
        config: architecture and training options; `config.seed` fixes everything, so the
            same inputs and config give the same weights.
        log_fn: called with each epoch's record (None: logged at DEBUG).
        mesh: optional ('data',) mesh (`parallel.make_mesh`): each minibatch is split over its
            devices, the state and the rows replicated; same weights as on one device up to
            float reduction order. The minibatch (config.batch_size, capped at the training
            rows) must be a multiple of the device count.
        label: the text of the epochs' progress bar (`progress.bar`).

    Raises:
        ValueError: bad shapes, non-finite inputs, fewer than 2 training rows, no held-out
            row, or a minibatch that does not split over the mesh.
        FloatingPointError: the training loss became NaN or inf.
    """
    train_x, stop_x = _checked_rows(train_x, stop_x)
    model = Autoencoder.from_config(train_x.shape[1], config)
    state = create_state(model, config, train_x.shape[0])
    key = jax.random.fold_in(jax.random.key(config.seed), 1)
    train_dev, stop_dev = jnp.asarray(train_x), jnp.asarray(stop_x)
    if mesh is not None:
        parallel.check_batch_size(state.batch_size, mesh)
        state, train_dev, stop_dev = parallel.replicate((state, train_dev, stop_dev), mesh)
    best = jax.tree.map(jnp.copy, state.variables)
    best_mse, best_epoch, history = math.inf, 0, []
    start = time.perf_counter()
    with progress.bar(label, total=config.max_epochs) as epochs:
        for epoch in range(1, config.max_epochs + 1):
            state, metrics = train_epoch(state, train_dev, stop_dev, key, jnp.int32(epoch), mesh)
            record = _epoch_record(epoch, metrics)
            history.append(record)
            if log_fn is not None:
                log_fn(record)
            else:
                logger.debug("%s epoch %d: %s", label, epoch, record)
            epochs.advance()
            if record["stop_mse"] < best_mse:
                best_mse, best_epoch = record["stop_mse"], epoch
                best = jax.tree.map(jnp.copy, state.variables)  # state is donated next epoch
            elif epoch - best_epoch >= config.patience:
                break
    return AutoencoderFit(model=model, variables=best, best_epoch=best_epoch, best_mse=best_mse,
                          epochs=len(history), seconds=time.perf_counter() - start,
                          history=history)


def _checked_rows(train_x, stop_x) -> tuple[np.ndarray, np.ndarray]:
    """train_x [N, D] and stop_x [V, D] as float32, checked: same D, N >= 2, V >= 1, finite.

    Raises:
        ValueError: naming the first check that fails.
    """
    train_x, stop_x = np.asarray(train_x, np.float32), np.asarray(stop_x, np.float32)
    if train_x.ndim != 2 or stop_x.ndim != 2 or stop_x.shape[1] != train_x.shape[1]:
        raise ValueError(f"train_x and stop_x must be [N, D] and [V, D] with the same D; got "
                         f"{train_x.shape} and {stop_x.shape}.")
    if train_x.shape[0] < 2 or stop_x.shape[0] < 1:
        raise ValueError(f"need >= 2 training rows and >= 1 held-out row, got "
                         f"{train_x.shape[0]} and {stop_x.shape[0]}.")
    if not (np.isfinite(train_x).all() and np.isfinite(stop_x).all()):
        raise ValueError("autoencoder inputs hold NaN or inf; fill or drop them first "
                         "(Preprocessor fills missing features).")
    return train_x, stop_x


def _epoch_record(epoch: int, metrics: dict) -> dict:
    """{'epoch', 'train_loss', 'stop_mse'} of one epoch, pulled to the host.

    Raises:
        FloatingPointError: the training loss or the held-out MSE is NaN or inf.
    """
    record = {"epoch": epoch, **{k: float(v) for k, v in metrics.items()}}
    if not (math.isfinite(record["train_loss"]) and math.isfinite(record["stop_mse"])):
        raise FloatingPointError(f"autoencoder training loss {record['train_loss']}, "
                                 f"held-out MSE {record['stop_mse']} at epoch {epoch}; "
                                 "lower learning_rate or check the inputs for extreme "
                                 "values.")
    return record


@functools.partial(jax.jit, static_argnames=("model",))
def encode(model: Autoencoder, variables: dict, x: jax.Array) -> jax.Array:
    """x [N, D] -> z [N, k] in inference mode."""
    return model.apply(variables, x, method=Autoencoder.encode)


@functools.partial(jax.jit, static_argnames=("model",))
def decode(model: Autoencoder, variables: dict, z: jax.Array) -> jax.Array:
    """z [N, k] -> x_hat [N, D] in inference mode."""
    return model.apply(variables, z, method=Autoencoder.decode)


def num_params(variables: dict) -> int:
    """Trainable parameter count."""
    return sum(int(p.size) for p in jax.tree.leaves(variables["params"]))


def describe(model: Autoencoder) -> tuple[int, ...]:
    """The layer widths D -> h_1 .. h_L -> k of the encoder."""
    return (model.input_dim, *model.hidden, model.latent_dim)
