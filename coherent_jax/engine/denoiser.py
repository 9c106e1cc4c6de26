"""The paper's noise predictor ("norm_mlp"), as a single-condition specialist or multi-condition model.

    t      -> sinusoidal(E) -> Dense(E) -> ReLU                      = t_emb   [B, E]
    c_j    -> Dense(Ce) -> ReLU, times presence mask m_j            = e_j     [B, Ce]
    h = [x, t_emb, e_1..e_C]
    (num_layers - 1) times: h = [ReLU(Norm(Dense(hidden)(h))), t_emb]
    eps_hat = Dense(D)(h)                                                     [B, D]

With one condition the module is a specialist; with all other modalities and their masks it is
the multi-condition model. A zero mask turns a condition off, so a model trained with condition
dropout also gives the unconditional prediction that product-of-experts fusion needs.

Anchored form (`anchored=True`, ours, after CARD, Han et al. 2022): the prediction is the exact
eps of a linear-Gaussian posterior plus the network as a learned correction,

    eps_hat = sqrt(1 - ab_t) (ab_t Sigma_S + (1 - ab_t) I)^-1 (x_t - sqrt(ab_t) a) + net(x_t, t, c),

where for the set S of conditions present (the mask) a = [m_1 c_1, ..., m_C c_C] W_S + b_S is a
ridge regression of the target on those conditions and Sigma_S = Q_S diag(exp(log_var_S)) Q_S^T
the full covariance of its held-out residuals, kept in its eigenbasis Q_S so the inverse is
exact and cheap at every noise level; S = {} gives the prior (training mean and covariance). The
anchor parameters (`anchor_*`, one row per subset, indexed by the mask bits) are fitted by
`coherent_jax.anchor`, never by gradient descent (stop_gradient), and the correction's output
layer starts at zero: an untrained anchored model is the ridge posterior, and training adds only
what the data support beyond it. On small cohorts this is what makes the mean of the draws as
good as a ridge regression while the draws keep a calibrated spread.

Mixture anchors (`anchor_components = M > 1`): each subset's anchor is a Gaussian mixture
whose component weights depend on the conditions (`coherent_jax.mixture_anchor`); its eps is
still exact at every noise level: each component's Gaussian eps weighted by the component's
posterior given the conditions and x_t (`mixture_anchor_eps`).
"""

from __future__ import annotations

import dataclasses
import math
from typing import Any, Sequence

import flax.linen as nn
import flax.struct
import jax
import jax.numpy as jnp

from coherent_jax.engine.schedules import make_schedule

NORMS = ("batch", "layer")


@flax.struct.dataclass
class Condition:
    """The conditioning inputs of a batch.

    Attributes:
        values: C arrays [B, D_c], one per condition (missing rows may hold any finite value).
        mask: presence [B, C], 1.0 where condition c is given for that row, else 0.0.
    """

    values: tuple[jax.Array, ...]
    mask: jax.Array

    @classmethod
    def of(cls, *values: jax.Array, mask: jax.Array | None = None) -> "Condition":
        """Conditions from arrays [B, D_c]; all present unless `mask` [B, C] is given."""
        if not values:
            raise ValueError("Condition.of needs at least one condition array.")
        if mask is None:
            mask = jnp.ones((values[0].shape[0], len(values)), jnp.float32)
        return cls(values=tuple(values), mask=jnp.asarray(mask, jnp.float32))

    @property
    def num_conditions(self) -> int:
        return len(self.values)

    def dropped(self) -> "Condition":
        """The same inputs with every condition masked out (the unconditional query)."""
        return self.replace(mask=jnp.zeros_like(self.mask))


def sinusoidal_embedding(t: jax.Array, dim: int) -> jax.Array:
    """Transformer-style embedding of integer timesteps t [B] -> [B, dim] (sin | cos halves)."""
    if dim < 4 or dim % 2:
        raise ValueError(f"time embedding dim must be even and >= 4, got {dim}.")
    half = dim // 2
    freqs = jnp.exp(-math.log(10000.0) * jnp.arange(half, dtype=jnp.float32) / (half - 1))
    angles = t.astype(jnp.float32)[:, None] * freqs[None, :]  # [B, half]
    return jnp.concatenate([jnp.sin(angles), jnp.cos(angles)], axis=-1)


class Denoiser(nn.Module):
    """Noise predictor eps_hat(x_t, t, cond) of the paper (METHOD.md section 3).

    Attributes:
        data_dim: width D of the generated modality.
        hidden_dim: width of the hidden Dense layers.
        num_layers: the paper's `layers`; there are num_layers - 1 hidden blocks.
        time_embed_dim: E, the time-embedding width.
        cond_embed_dim: per-condition embedding width (the paper: 32).
        norm: 'batch' (the paper; running statistics at sampling) or 'layer'.
        dtype: computation dtype of the Dense layers (parameters stay float32).
        anchored: add the linear-Gaussian anchor (see the module docstring).
        anchor_components: 1, a Gaussian anchor; M > 1, a mixture of M (module docstring).
        schedule, diffusion_steps: the noise schedule the anchor's eps is exact for.
    """

    data_dim: int
    hidden_dim: int = 512
    num_layers: int = 4
    time_embed_dim: int = 128
    cond_embed_dim: int = 32
    norm: str = "batch"
    dtype: Any = jnp.float32
    anchored: bool = False
    anchor_components: int = 1
    schedule: str = "linear"
    diffusion_steps: int = 1000

    @nn.compact
    def __call__(self, x: jax.Array, t: jax.Array, cond: Condition,
                 train: bool = False) -> jax.Array:
        """x [B, D], t [B] int, cond with C conditions -> eps_hat [B, D] float32."""
        if self.norm not in NORMS:
            raise ValueError(f"norm must be one of {NORMS}, got {self.norm!r}.")
        if self.num_layers < 2:
            raise ValueError(f"num_layers must be >= 2, got {self.num_layers}.")
        dense = lambda width, name: nn.Dense(width, dtype=self.dtype, name=name)
        t_emb = nn.relu(dense(self.time_embed_dim, "time_dense")(
            sinusoidal_embedding(t, self.time_embed_dim)))  # [B, E]
        embeds = [nn.relu(dense(self.cond_embed_dim, f"cond_dense_{j}")(v)) * cond.mask[:, j:j + 1]
                  for j, v in enumerate(cond.values)]  # C x [B, Ce]
        h = jnp.concatenate([x.astype(t_emb.dtype), t_emb, *[e.astype(t_emb.dtype) for e in embeds]],
                            axis=-1)
        for i in range(self.num_layers - 1):
            h = dense(self.hidden_dim, f"hidden_{i}")(h)
            if self.norm == "batch":
                h = nn.BatchNorm(use_running_average=not train, momentum=0.9, epsilon=1e-5,
                                 dtype=self.dtype, name=f"norm_{i}")(h)
            else:
                h = nn.LayerNorm(epsilon=1e-5, dtype=self.dtype, name=f"norm_{i}")(h)
            h = jnp.concatenate([nn.relu(h), t_emb.astype(h.dtype)], axis=-1)
        if not self.anchored:
            return dense(self.data_dim, "out")(h).astype(jnp.float32)
        correction = nn.Dense(self.data_dim, dtype=self.dtype, name="out",
                              kernel_init=nn.initializers.zeros)(h).astype(jnp.float32)
        subsets, width = 2 ** cond.num_conditions, sum(v.shape[-1] for v in cond.values)
        m = () if self.anchor_components == 1 else (self.anchor_components,)
        zeros = nn.initializers.zeros
        anchor = {"kernel": self.param("anchor_kernel", zeros, (subsets, *m, width, self.data_dim)),
                  "bias": self.param("anchor_bias", zeros, (subsets, *m, self.data_dim)),
                  "log_var": self.param("anchor_log_var", zeros, (subsets, *m, self.data_dim)),
                  "basis": self.param("anchor_basis", identity_bases, (subsets, *m),
                                      self.data_dim)}
        if m:
            anchor.update(gate_const=self.param("anchor_gate_const", zeros, (subsets, *m)),
                          gate_mean=self.param("anchor_gate_mean", zeros, (subsets, *m, width)),
                          gate_prec=self.param("anchor_gate_prec", zeros,
                                               (subsets, *m, width, width)))
        alpha_bars = make_schedule(self.schedule, self.diffusion_steps).alpha_bars
        return anchor_eps(jax.lax.stop_gradient(anchor), alpha_bars[t], x, cond) + correction


def identity_bases(key, lead: tuple[int, ...], dim: int) -> jax.Array:
    """[*lead, dim, dim] identity eigenbases (an anchor with a diagonal covariance)."""
    del key
    return jnp.broadcast_to(jnp.eye(dim, dtype=jnp.float32), (*lead, dim, dim))


def anchor_eps(anchor: dict, alpha_bar: jax.Array, x: jax.Array, cond: Condition) -> jax.Array:
    """Exact eps of x0 | c ~ N(a, Sigma) at noise level alpha_bar [B] (module docstring);
    a mixture anchor (with 'gate_*' entries) goes to `mixture_anchor_eps`.

    Args:
        anchor: {'kernel' [S, sum D_c, D], 'bias' [S, D], 'log_var' [S, D], 'basis'
            [S, D, D]}, S = 2^C subsets; Sigma_s = basis_s diag(exp(log_var_s)) basis_s^T.
        alpha_bar: [B] alpha_bar_t of each row.
        x: [B, D] noisy inputs x_t.
        cond: the C conditions and their mask [B, C].
    """
    if "gate_const" in anchor:
        return mixture_anchor_eps(anchor, alpha_bar, x, cond)
    onehot, inputs = _subset_inputs(anchor, cond)
    mean = jnp.einsum("bs,sbd->bd", onehot, jnp.einsum("bi,sid->sbd", inputs, anchor["kernel"]))
    mean = mean + onehot @ anchor["bias"]  # [B, D]
    ab = alpha_bar[:, None]
    rotated = jnp.einsum("bd,sde->sbe", x - jnp.sqrt(ab) * mean, anchor["basis"])  # [S, B, D]
    rotated = rotated / (ab[None] * jnp.exp(anchor["log_var"])[:, None, :] + 1.0 - ab[None])
    back = jnp.einsum("sbe,sde->sbd", rotated, anchor["basis"])  # [S, B, D]
    return jnp.sqrt(1.0 - ab) * jnp.einsum("bs,sbd->bd", onehot, back)


def _subset_inputs(anchor: dict, cond: Condition) -> tuple[jax.Array, jax.Array]:
    """(one-hot [B, S] of each row's condition subset (mask bits), the conditions
    concatenated with masked ones zeroed [B, sum D_c])."""
    present = (cond.mask > 0.5).astype(jnp.int32)  # [B, C]
    index = present @ (2 ** jnp.arange(cond.num_conditions, dtype=jnp.int32))  # [B]
    onehot = jax.nn.one_hot(index, anchor["bias"].shape[0], dtype=jnp.float32)  # [B, S]
    inputs = jnp.concatenate([v.astype(jnp.float32) * cond.mask[:, j:j + 1]
                              for j, v in enumerate(cond.values)], axis=-1)  # [B, sum D_c]
    return onehot, inputs


def mixture_anchor_eps(anchor: dict, alpha_bar: jax.Array, x: jax.Array,
                       cond: Condition) -> jax.Array:
    """Exact eps of x0 | c ~ sum_j w_j(c) N(a_j, Sigma_j) at noise level alpha_bar [B].

    x_t | c is the mixture of N(sqrt(ab) a_j, ab Sigma_j + (1 - ab) I) with the same weights,
    so eps = sum_j r_j eps_j: component j's Gaussian eps weighted by its posterior r_j given c
    and x_t.

    Args:
        anchor: `mixture_anchor.fit_mixture_anchors`' arrays: 'kernel' [S, M, W, D], 'bias'
            [S, M, D], 'log_var' [S, M, D], 'basis' [S, M, D, D], 'gate_const' [S, M],
            'gate_mean' [S, M, W], 'gate_prec' [S, M, W, W].
        alpha_bar, x, cond: as `anchor_eps`.
    """
    onehot, inputs = _subset_inputs(anchor, cond)  # [B, S], [B, W]
    mean = jnp.einsum("bs,smbd->bmd", onehot, jnp.einsum("bi,smid->smbd", inputs, anchor["kernel"]))
    mean = mean + jnp.einsum("bs,smd->bmd", onehot, anchor["bias"])  # [B, M, D]
    ab = alpha_bar[:, None, None]  # [B, 1, 1]
    rotated = jnp.einsum("bmd,smde->sbme", x[:, None, :] - jnp.sqrt(ab) * mean,
                         anchor["basis"])  # [S, B, M, D]
    var = ab[None] * jnp.exp(anchor["log_var"])[:, None] + 1.0 - ab[None]  # [S, B, M, D]
    log_density = -0.5 * jnp.sum(jnp.square(rotated) / var + jnp.log(var), axis=-1)  # [S, B, M]
    back = jnp.einsum("sbme,smde->sbmd", rotated / var, anchor["basis"])  # [S, B, M, D]
    centred = inputs[:, None, :] - jnp.einsum("bs,smw->bmw", onehot, anchor["gate_mean"])
    scaled = jnp.einsum("bs,sbmv->bmv", onehot,
                        jnp.einsum("bmw,smwv->sbmv", centred, anchor["gate_prec"]))  # [B, M, W]
    logits = (onehot @ anchor["gate_const"] - 0.5 * jnp.sum(centred * scaled, axis=-1)
              + jnp.einsum("bs,sbm->bm", onehot, log_density))  # [B, M]
    posterior = jax.nn.softmax(logits, axis=-1)
    eps = jnp.einsum("bm,bs,sbmd->bd", posterior, onehot, back)
    return jnp.sqrt(1.0 - alpha_bar)[:, None] * eps


def init_denoiser(model: Denoiser, key: jax.Array, cond_dims: Sequence[int]) -> dict:
    """Initial variables ({'params', 'batch_stats'?}) for conditions of widths `cond_dims`."""
    x = jnp.zeros((2, model.data_dim), jnp.float32)
    cond = Condition.of(*[jnp.zeros((2, d), jnp.float32) for d in cond_dims])
    variables = model.init(key, x, jnp.zeros((2,), jnp.int32), cond, train=False)
    return dict(variables)


@dataclasses.dataclass(frozen=True)
class DenoiserApply:
    """`apply_fn(variables, x_t, t, cond) -> eps` of a Denoiser in inference mode.

    A hashable value (equal for equal module configs), so jitted samplers that take it as a
    static argument compile once per architecture, not once per call.
    """

    model: Denoiser

    def __call__(self, variables: dict, x: jax.Array, t: jax.Array, cond: Condition) -> jax.Array:
        return self.model.apply(variables, x, t, cond, train=False)


def num_params(variables: dict) -> int:
    """Number of trainable parameters in `variables['params']`."""
    return sum(int(p.size) for p in jax.tree.leaves(variables["params"]))
