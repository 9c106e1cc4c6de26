"""Reverse diffusion: one jax.jit around one lax.scan over timesteps.

`apply_fn(params, x_t, t, cond) -> eps_hat` is any pure function: a trained Flax denoiser
(`DenoiserApply`) or an analytic expert in tests. It must be hashable and equal across calls
(a module-level function or a frozen dataclass) so the samplers compile once per architecture.

Shapes: N samples, D data dims, K members, S reverse steps, R rejection candidates.

Samplers: 'ddpm' (ancestral, all T steps), 'ddim' (Song et al. 2021), 'dpmpp_2m'
(DPM-Solver++(2M), Lu et al. 2022: a second-order multistep solver of the probability flow
ODE that deterministic DDIM solves to first order), 'dpmpp_2m_sde' and 'dpmpp_3m_sde' (second
and third-order multistep solvers of the reverse SDE, whose limit DDPM samples; ODE and SDE
have the same marginals for an exact noise prediction, not for fused or learned ones). The
few-step samplers visit `sample_steps` of the T timesteps (`timesteps`); every step of every
sampler is one denoiser call, so a chain costs its step count.

Devices: with a `mesh` (`parallel.make_mesh`) the rows (patients x candidates) are split over
its 'data' axis and padded to a multiple of the device count inside the jitted call; the
members' variables are replicated. Each row's noise is drawn as on one device, so the same
key gives the same draws on 1 or N devices (up to float reduction order in the model).
"""

from __future__ import annotations

import functools
from typing import Any, Callable

import flax.struct
import jax
import jax.numpy as jnp
import numpy as np

from coherent_jax.engine import fusion as fusion_lib
from coherent_jax.engine import parallel
from coherent_jax.engine.deprecation import old_call_form, pop_fields
from coherent_jax.engine.ensemble import num_members
from coherent_jax.engine.schedules import Schedule

ApplyFn = Callable[[Any, jax.Array, jax.Array, Any], jax.Array]
SAMPLERS = ("ddpm", "ddim", "dpmpp_2m", "dpmpp_2m_sde", "dpmpp_3m_sde")
# DPM-Solver++ samplers: (order, eta; None: the caller's eta).
DPM_SOLVERS = {"dpmpp_2m": (2, None), "dpmpp_2m_sde": (2, 1.0), "dpmpp_3m_sde": (3, 1.0)}


@flax.struct.dataclass
class CoherentSamples:
    """Output of `coherent_sample`.

    Attributes:
        samples: the kept sample of each patient [N, D].
        disagreement: its per-step disagreement [N, S], in sampling order (first = t = T-1).
        candidate: index of the kept candidate [N] (0 when it is the first draw).
        accepted: whether the kept candidate passed the rejection test [N].
        bad_fraction: share of its steps with disagreement above the threshold [N].
    """

    samples: jax.Array
    disagreement: jax.Array
    candidate: jax.Array
    accepted: jax.Array
    bad_fraction: jax.Array

    @property
    def acceptance_rate(self) -> float:
        return float(jnp.mean(self.accepted))


@flax.struct.dataclass
class SamplerConfig:
    """How a reverse chain runs: the one source of the samplers' defaults.

    Its integer and name fields shape the compiled chain (they ride in the pytree's structure:
    a new value compiles a new sampler); `eta` and `corrector_snr` are traced, so changing
    them reuses the compiled one.

    Attributes:
        sampler: 'ddpm' (all T ancestral steps), 'ddim', 'dpmpp_2m' (DPM-Solver++(2M)),
            'dpmpp_2m_sde' or 'dpmpp_3m_sde' (its SDE forms); see the module docstring.
        sample_steps: the step count of the few-step samplers (None: all T steps; DDPM: None).
        eta: stochasticity of 'ddim' and 'dpmpp_2m' (0: deterministic; the SDE forms are
            eta = 1).
        corrector_steps: Langevin corrector steps after each reverse step (0 = none).
        corrector_snr: signal-to-noise ratio setting the corrector step size.
        unroll: lax.scan unroll factor.
    """

    sampler: str = flax.struct.field(pytree_node=False, default="ddpm")
    sample_steps: int | None = flax.struct.field(pytree_node=False, default=None)
    eta: float = 0.0
    corrector_steps: int = flax.struct.field(pytree_node=False, default=0)
    corrector_snr: float = 0.16
    unroll: int = flax.struct.field(pytree_node=False, default=1)


@flax.struct.dataclass
class CoherentConfig:
    """How `coherent_sample` fuses its members and rejects candidates, beside its chain.

    As in `SamplerConfig`, `fusion` and `num_candidates` shape the compiled sampler; the
    float settings are traced (a sweep over `sharpness` compiles once).

    Attributes:
        chain: the reverse chain (`SamplerConfig`).
        fusion: 'mean' (the paper: weighted mean) or 'product' (eps_u + sum_i (eps_i - eps_u)).
        sharpness: 'mean' only: the sharpness of `fusion.fuse_sharpened` (0: the paper's
            weighted mean; up to 1: a weighted product of experts); calibrated per target by
            `calibrate.choose_fusion_sharpness`.
        num_candidates: R, candidates drawn per patient.
        threshold: disagreement above which a step counts as bad (the paper: 1.0).
        max_bad_fraction: a candidate fails with more bad steps than this share (paper: 0.1).
    """

    chain: SamplerConfig = SamplerConfig()
    fusion: str = flax.struct.field(pytree_node=False, default="mean")
    sharpness: float = 0.0
    num_candidates: int = flax.struct.field(pytree_node=False, default=1)
    threshold: float = 1.0
    max_bad_fraction: float = 0.1


@flax.struct.dataclass
class Members:
    """The K members of a coherent draw and what each of the N rows gives them.

    Attributes:
        params: the members' variables stacked on a leading axis [K, ...].
        conds: each member's conditioning pytree for the N rows, leaves [K, N, ...].
        weights: member weights [K] or per row [N, K] (zero = source unavailable).
        uncond_conds: for 'product' and a sharpened 'mean', conditioning that makes each
            member unconditional, leaves [K, N, ...] (e.g. `conds.dropped()` for models
            trained with condition dropout); None otherwise.
    """

    params: Any
    conds: Any
    weights: Any
    uncond_conds: Any = None


def _traced(config):
    """`config` with its float settings as float32 arrays, the jitted samplers' inputs."""
    return jax.tree.map(jnp.float32, config)


def timesteps(diffusion_steps: int, sampler: str, sample_steps: int | None) -> np.ndarray:
    """The descending timesteps visited by a sampler [S].

    DDPM visits all T steps. DDIM visits `sample_steps` steps evenly spread over 0..T-1;
    DPM-Solver++ (every form) `sample_steps` steps quadratically spaced over 0..T-1 (at 10-20
    steps on exact Gaussian experts its covariance lands 5-10x closer to the target than with
    even spacing). All end with t = 0, whose step ends at the data.
    """
    if sampler not in SAMPLERS:
        raise ValueError(f"unknown sampler {sampler!r}; choose one of {SAMPLERS}.")
    if sampler == "ddpm":
        if sample_steps not in (None, diffusion_steps):
            raise ValueError(f"DDPM ancestral sampling visits all {diffusion_steps} steps; got "
                             f"sample_steps={sample_steps}. Use sampler='ddim' or one of "
                             f"{tuple(DPM_SOLVERS)} for fewer steps.")
        return np.arange(diffusion_steps - 1, -1, -1)
    sample_steps = diffusion_steps if sample_steps is None else int(sample_steps)
    if not 1 <= sample_steps <= diffusion_steps:
        raise ValueError(f"{sampler} sample_steps must be in [1, {diffusion_steps}], "
                         f"got {sample_steps}.")
    if sampler == "ddim":
        ts = np.unique(np.round(np.linspace(0, diffusion_steps - 1, sample_steps)).astype(np.int64))
        return ts[::-1].copy()
    # Quadratic spacing (Song et al. 2021), dense near the data where the log-SNR of the
    # linear schedule moves fastest; each step at least one timestep after the previous.
    ts = np.round(np.linspace(0.0, np.sqrt(diffusion_steps - 1), sample_steps) ** 2).astype(np.int64)
    ts = np.maximum.accumulate(ts - np.arange(sample_steps)) + np.arange(sample_steps)
    return ts[::-1].copy()


def ddpm_step(schedule: Schedule, x_t: jax.Array, eps: jax.Array, t: jax.Array,
              noise: jax.Array) -> jax.Array:
    """Ancestral DDPM step (METHOD.md section 3), sigma_t = sqrt(beta_t), no noise at t = 0.

    x_{t-1} = (x_t - beta_t / sqrt(1 - ab_t) * eps) / sqrt(alpha_t) + sigma_t * z.
    """
    beta, alpha, ab = schedule.betas[t], schedule.alphas[t], schedule.alpha_bars[t]
    mean = (x_t - beta / jnp.sqrt(1.0 - ab) * eps) / jnp.sqrt(alpha)
    sigma = jnp.where(t > 0, jnp.sqrt(beta), 0.0)
    return mean + sigma * noise


def ddim_step(schedule: Schedule, x_t: jax.Array, eps: jax.Array, t: jax.Array,
              t_prev: jax.Array, noise: jax.Array, eta: jax.Array) -> jax.Array:
    """DDIM step from t to t_prev (t_prev = -1 ends at the data, alpha_bar = 1); eta = 0 is
    deterministic, eta = 1 the DDPM posterior variance."""
    ab = schedule.alpha_bars[t]
    ab_prev = jnp.where(t_prev >= 0, schedule.alpha_bars[jnp.maximum(t_prev, 0)], 1.0)
    x0 = (x_t - jnp.sqrt(1.0 - ab) * eps) / jnp.sqrt(ab)
    sigma = eta * jnp.sqrt((1.0 - ab_prev) / (1.0 - ab) * (1.0 - ab / ab_prev))
    direction = jnp.sqrt(jnp.maximum(1.0 - ab_prev - sigma**2, 0.0)) * eps
    return jnp.sqrt(ab_prev) * x0 + direction + sigma * noise


def _vp(schedule: Schedule, t: jax.Array):
    """(alpha, sigma, lambda) of timestep t: sqrt(ab), sqrt(1 - ab), log(alpha / sigma);
    t = -1 is the data (alpha 1, sigma 0, lambda +inf)."""
    ab = jnp.where(t >= 0, schedule.alpha_bars[jnp.maximum(t, 0)], 1.0)
    alpha, sigma = jnp.sqrt(ab), jnp.sqrt(1.0 - ab)
    return alpha, sigma, jnp.log(alpha) - jnp.log(sigma)


def dpmpp_step(schedule: Schedule, state: tuple, eps: jax.Array, t: jax.Array,
               t_prev: jax.Array, noise: jax.Array, eta: jax.Array,
               order: int) -> tuple[jax.Array, tuple]:
    """One multistep DPM-Solver++ step from t to t_prev (Lu et al. 2022, data prediction).

    With x0 = (x_t - sigma_t eps) / alpha_t, h = lambda_prev - lambda_t (lambda = log(alpha /
    sigma)) and g = (1 + eta) h:

        x_prev = sigma_prev / sigma_t e^{-eta h} x_t + alpha_prev ((1 - e^{-g}) x0 + C)
                 + sigma_prev sqrt(1 - e^{-2 eta h}) z,

    C the multistep correction from the last x0s (x0_1, x0_2 at step sizes h_1, h_2; r_i =
    h_i / h): order 2 (2M, midpoint form) C = (1 - e^{-g}) (x0 - x0_1) / (2 r_1); order 3
    (3M, as k-diffusion's `sample_dpmpp_3m_sde`) C = phi_2 d1 - phi_3 d2 with d1_0 = (x0 -
    x0_1) / r_1, d1_1 = (x0_1 - x0_2) / r_2, d1 = d1_0 + (d1_0 - d1_1) r_1 / (r_1 + r_2), d2 =
    (d1_0 - d1_1) / (r_1 + r_2), phi_2 = 1 - (1 - e^{-g}) / g, phi_3 = phi_2 / g - 1/2, and
    phi_2 d1_0 while only one x0 is known. C = 0 on the first step; the last step, to the data
    (t_prev = -1), returns x0. eta = 0 solves the probability flow ODE, eta = 1 the reverse SDE.

    Args:
        state: the solver's state at t, (x_t [N, D], history); history: (x0_1 [N, D],
            x0_2 [N, D], h_1, h_2), h = 0 where not yet known.
        eps, noise: [N, D]; t, t_prev, eta: scalars; order: 2 or 3 (static).

    Returns:
        The state at t_prev: (x_prev [N, D], the history for the next step).
    """
    x_t, (x0_1, x0_2, h_1, h_2) = state
    alpha, sigma, lam = _vp(schedule, t)
    alpha_prev, sigma_prev, lam_prev = _vp(schedule, t_prev)
    x0 = (x_t - sigma * eps) / alpha
    final = t_prev < 0
    h = jnp.where(final, 1.0, lam_prev - lam)  # a finite placeholder on the step to the data
    g = (1.0 + eta) * h
    decay = -jnp.expm1(-g)  # 1 - e^{-g}
    inv_r1 = h / jnp.where(h_1 > 0, h_1, 1.0)  # 1 / r_1
    if order == 2:
        correction = jnp.where(h_1 > 0, 0.5 * decay * inv_r1, 0.0) * (x0 - x0_1)
    else:
        phi_2 = 1.0 - decay / g
        phi_3 = phi_2 / g - 0.5
        r1 = h_1 / h
        r12 = jnp.where(h_2 > 0, r1 + h_2 / h, 1.0)  # r_1 + r_2, 1 while unused
        d1_0 = (x0 - x0_1) * inv_r1
        d1_1 = (x0_1 - x0_2) * h / jnp.where(h_2 > 0, h_2, 1.0)
        third = phi_2 * (d1_0 + (d1_0 - d1_1) * r1 / r12) - phi_3 * (d1_0 - d1_1) / r12
        correction = jnp.where(h_2 > 0, third, jnp.where(h_1 > 0, phi_2 * d1_0, 0.0))
    x_prev = (sigma_prev / sigma * jnp.exp(-eta * h) * x_t
              + alpha_prev * (decay * x0 + correction)
              + sigma_prev * jnp.sqrt(-jnp.expm1(-2.0 * eta * h)) * noise)
    return jnp.where(final, x0, x_prev), (x0, x0_1, h, h_1)


def _row_noise(key: jax.Array, shape: tuple[int, int], mesh) -> jax.Array:
    """N(0, I) noise for `shape` = (rows, D) exactly as on one device, padded to the mesh's
    row count and split over it [padded rows, D]. Traced code."""
    noise = jax.random.normal(key, shape, jnp.float32)
    return parallel.constrain_rows(
        parallel.pad_rows(noise, parallel.padded_rows(shape[0], mesh)), mesh)


def langevin_correct(eps_fn, schedule: Schedule, x: jax.Array, t: jax.Array, key: jax.Array,
                     config: SamplerConfig, num_rows: int | None = None,
                     mesh=None) -> jax.Array:
    """`config.corrector_steps` Langevin corrector steps at timestep t (Song et al. 2021,
    predictor-corrector).

    score = -eps_hat / sqrt(1 - ab_t); x <- x + d * score + sqrt(2 d) z with the step
    d = 2 (snr * |z| / |score|)^2 (snr = `config.corrector_snr`), norms averaged over the
    batch as in Song et al. (per-sample norms blow up for samples near a mode). Helps sampling
    a product of experts exactly (Du et al. 2023). `num_rows`: the leading rows of x that are
    samples (the rest is padding for `mesh`, left out of the averages; None: all).
    """
    num_rows = x.shape[0] if num_rows is None else num_rows
    t_vec = jnp.full((x.shape[0],), t, jnp.int32)
    sd = jnp.sqrt(1.0 - schedule.alpha_bars[t])

    def one(x, k):
        eps, _ = eps_fn(x, t_vec)
        score = -eps / sd
        z = _row_noise(k, (num_rows, x.shape[1]), mesh)
        ratio = jnp.mean(jnp.linalg.norm(z[:num_rows], axis=1)) / jnp.maximum(
            jnp.mean(jnp.linalg.norm(score[:num_rows], axis=1)), 1e-12)
        d = 2.0 * (config.corrector_snr * ratio) ** 2
        return x + d * score + jnp.sqrt(2.0 * d) * z, None

    x, _ = jax.lax.scan(one, x, jax.random.split(key, config.corrector_steps))
    return x


def _reverse(eps_fn, shape, schedule, key, config: SamplerConfig, mesh):
    """Runs the reverse chain from x_T ~ N(0, I); eps_fn(x, t_vec) -> (eps, aux). Traced code.

    shape = (rows, D). With a `mesh` the chain runs on the rows padded to a multiple of its
    device count and split over it: x [padded rows, D] and eps_fn's inputs likewise (the
    caller drops the padding)."""
    sampler = config.sampler
    ts = timesteps(schedule.diffusion_steps, sampler, config.sample_steps)
    t_prev = np.append(ts[1:], -1)
    init_key, step_key = jax.random.split(key)
    x_T = _row_noise(init_key, shape, mesh)
    step_keys = jax.random.split(step_key, len(ts))

    def body(carry, inputs):
        x, history = carry  # x [rows, D]; DPM-Solver++'s history (`dpmpp_step`), else None
        t, tp, k = inputs
        eps, aux = eps_fn(x, jnp.full((x.shape[0],), t, jnp.int32))
        noise_key, corrector_key = jax.random.split(k) if config.corrector_steps else (k, None)
        noise = _row_noise(noise_key, shape, mesh)
        if sampler == "ddpm":
            x = ddpm_step(schedule, x, eps, t, noise)
        elif sampler == "ddim":
            x = ddim_step(schedule, x, eps, t, tp, noise, config.eta)
        else:
            order, solver_eta = DPM_SOLVERS[sampler]
            x, history = dpmpp_step(schedule, (x, history), eps, t, tp, noise,
                                    config.eta if solver_eta is None else solver_eta, order)
            history = (parallel.constrain_rows(history[0], mesh),
                       parallel.constrain_rows(history[1], mesh), *history[2:])
        if config.corrector_steps:
            corrected = langevin_correct(eps_fn, schedule, x, jnp.maximum(tp, 0), corrector_key,
                                         config, shape[0], mesh)
            x = jnp.where(tp >= 0, corrected, x)
        return (parallel.constrain_rows(x, mesh), history), aux

    xs = (jnp.asarray(ts, jnp.int32), jnp.asarray(t_prev, jnp.int32), step_keys)
    history = ((jnp.zeros_like(x_T), jnp.zeros_like(x_T), jnp.float32(0.0), jnp.float32(0.0))
               if sampler in DPM_SOLVERS else None)
    (x0, _), aux = jax.lax.scan(body, (x_T, history), xs, unroll=config.unroll)
    return x0, aux


def select_candidates(disagreement: jax.Array, threshold, max_bad_fraction):
    """Rejection without retries: picks one of R candidates per sample.

    A candidate fails when more than `max_bad_fraction` of its steps have disagreement above
    `threshold`. The first passing candidate is kept, else the one with the fewest bad steps.

    Args:
        disagreement: [R, N, S] per-candidate, per-sample, per-step disagreement.

    Returns:
        (chosen [N] int, accepted [N] bool, bad_fraction [R, N]).
    """
    bad_fraction = jnp.mean(disagreement > threshold, axis=-1)  # [R, N]
    passed = bad_fraction <= max_bad_fraction
    accepted = jnp.any(passed, axis=0)
    chosen = jnp.where(accepted, jnp.argmax(passed, axis=0), jnp.argmin(bad_fraction, axis=0))
    return chosen, accepted, bad_fraction


def _check_common(shape, config: SamplerConfig, schedule):
    if len(shape) != 2 or min(shape) < 1:
        raise ValueError(f"shape must be (num_samples, data_dim) with both >= 1, got {shape}.")
    if int(config.corrector_steps) < 0:
        raise ValueError(f"corrector_steps must be >= 0, got {config.corrector_steps}.")
    timesteps(schedule.diffusion_steps, config.sampler, config.sample_steps)


_CHAIN_FIELDS = ("sampler", "sample_steps", "eta", "corrector_steps", "corrector_snr", "unroll")
_FUSION_FIELDS = ("fusion", "sharpness", "num_candidates", "threshold", "max_bad_fraction")


def _old_sample_call(args: tuple, kwargs: dict):
    """sample(..., sampler=, sample_steps=, ...) as sample(..., config=SamplerConfig(...))."""
    kwargs = dict(kwargs)
    chain = pop_fields(kwargs, _CHAIN_FIELDS)
    if not chain:
        return None
    return args, {**kwargs, "config": kwargs.get("config", SamplerConfig()).replace(**chain)}


def _old_coherent_call(args: tuple, kwargs: dict):
    """coherent_sample(apply_fn, member_params, member_conds, weights, schedule, key, *,
    sampler=, fusion=, uncond_conds=, ...) as coherent_sample(apply_fn, Members(...),
    schedule, key, config=CoherentConfig(...))."""
    kwargs = dict(kwargs)
    chain, fused = pop_fields(kwargs, _CHAIN_FIELDS), pop_fields(kwargs, _FUSION_FIELDS)
    uncond = pop_fields(kwargs, ("uncond_conds",))
    if len(args) != 6 and not (chain or fused or uncond):
        return None
    if len(args) == 6:
        apply_fn, params, conds, weights, schedule, key = args
        args = (apply_fn, Members(params, conds, weights, uncond.get("uncond_conds")), schedule,
                key)
    elif uncond:
        raise TypeError("uncond_conds belongs to Members(params, conds, weights, uncond_conds).")
    config = kwargs.get("config", CoherentConfig())
    config = config.replace(chain=config.chain.replace(**chain), **fused)
    return args, {**kwargs, "config": config}


@old_call_form("sample(apply_fn, params, cond, schedule, key, shape=, config=SamplerConfig(...))",
               _old_sample_call)
def sample(apply_fn: ApplyFn, params: Any, cond: Any, schedule: Schedule, key: jax.Array, *,
           shape: tuple[int, int], config: SamplerConfig = SamplerConfig(),
           mesh: Any = None) -> jax.Array:
    """Draws samples [N, D] from one denoiser (a specialist, or the multi-condition model with
    masks in `cond`).

    Args:
        apply_fn: pure `apply_fn(params, x_t [N, D], t [N], cond) -> eps [N, D]`.
        params: the denoiser's variables.
        cond: conditioning pytree for N rows (e.g. a `Condition`).
        schedule: the training noise schedule.
        key: a typed PRNG key; same key, same samples.
        shape: (N, D).
        config: the sampler, its step count, eta and corrector (`SamplerConfig`).
        mesh: optional ('data',) mesh: the N rows are split over its devices (every leaf of
            `cond` must then have N rows); the same key gives the same samples as without.
            Inputs already on the mesh keep their sharding (multi-host: rows from
            `parallel.from_process_rows`), others are replicated to it. The output is split
            over the devices when N is a multiple of their count.
    """
    shape = tuple(int(s) for s in shape)
    _check_common(shape, config, schedule)
    args = parallel.on_mesh((params, cond, schedule, key, _traced(config)), mesh)
    return _sample_jit(apply_fn, *args, shape=shape, mesh=mesh)


@functools.partial(jax.jit, static_argnames=("apply_fn", "shape", "mesh"))
def _sample_jit(apply_fn, params, cond, schedule, key, config, *, shape, mesh):
    size = parallel.padded_rows(shape[0], mesh)
    cond = parallel.constrain_rows(jax.tree.map(lambda a: parallel.pad_rows(a, size), cond), mesh)
    eps_fn = lambda x, t: (apply_fn(params, x, t, cond), None)
    x0, _ = _reverse(eps_fn, shape, schedule, key, config, mesh)
    return parallel.constrain_even_rows(x0[: shape[0]], mesh)


def _normalised_weights(weights, num_samples: int, k: int):
    """Weights [K] or [N, K] -> [N, K] rows summing to 1; checked on host when concrete."""
    weights = jnp.asarray(weights, jnp.float32)
    if weights.ndim == 1:
        weights = jnp.broadcast_to(weights[None, :], (num_samples, weights.shape[0]))
    if weights.shape != (num_samples, k):
        raise ValueError(f"weights must be [K={k}] or [N={num_samples}, K={k}], "
                         f"got {tuple(weights.shape)}.")
    try:  # no host check for rows spread over processes, or traced inside a caller's jit
        w = np.asarray(weights) if weights.is_fully_addressable else None
    except (jax.errors.TracerArrayConversionError, jax.errors.ConcretizationTypeError):
        w = None
    if w is not None:
        if not np.all(np.isfinite(w)) or np.any(w < 0):
            raise ValueError("weights must be finite and non-negative.")
        empty = np.flatnonzero(w.sum(axis=1) <= 0)
        if empty.size:
            raise ValueError(f"{empty.size} sample(s) (rows {empty[:5].tolist()}) have all-zero "
                             "weights, i.e. an empty condition set; coherent sampling needs at "
                             "least one available specialist per sample.")
    return weights / jnp.sum(weights, axis=1, keepdims=True)


@old_call_form("coherent_sample(apply_fn, Members(params, conds, weights), schedule, key, "
               "shape=, config=CoherentConfig(chain=SamplerConfig(...), ...))",
               _old_coherent_call)
def coherent_sample(apply_fn: ApplyFn, members: Members, schedule: Schedule, key: jax.Array, *,
                    shape: tuple[int, int], config: CoherentConfig = CoherentConfig(),
                    mesh: Any = None) -> CoherentSamples:
    """Coherent Denoising: K specialists predict eps from the same x_t at every step, fused.

    Rejection without a retry loop: R = `config.num_candidates` draws per patient run in one
    batched call; the first candidate whose share of steps with disagreement >
    `config.threshold` is at most `config.max_bad_fraction` is kept, else the one with the
    smallest share.

    Args:
        apply_fn: pure `apply_fn(params, x_t [N, D], t [N], cond) -> eps [N, D]`.
        members: the K members' variables, conditioning and weights (`Members`).
        schedule: the training noise schedule.
        key: a typed PRNG key; same key, same samples.
        shape: (N, D).
        config: the chain, fusion and rejection settings (`CoherentConfig`).
        mesh: optional ('data',) mesh: the R x N rows are split over its devices, the members'
            variables replicated; the same key gives the same samples as without. Inputs
            already on the mesh keep their sharding (multi-host: rows of `members.conds`,
            `members.uncond_conds` (axis 1) and `members.weights` (axis 0) from
            `parallel.from_process_rows`), others are replicated to it. The outputs are split
            over the devices when N is a multiple of their count.
    """
    shape = tuple(int(s) for s in shape)
    _check_common(shape, config.chain, schedule)
    _check_coherent(config, members)
    k = num_members(members.params)
    for leaf in jax.tree.leaves(members.conds):
        if leaf.shape[:2] != (k, shape[0]):
            raise ValueError(f"members.conds leaves must be [K={k}, N={shape[0]}, ...], "
                             f"got {tuple(leaf.shape)}.")
    members = members.replace(weights=_normalised_weights(members.weights, shape[0], k))
    fusion = "sharpened" if float(config.sharpness) > 0 else config.fusion
    args = parallel.on_mesh((members, schedule, key, _traced(config)), mesh)
    return _coherent_jit(apply_fn, *args, shape=shape, fusion=fusion, mesh=mesh)


def _check_coherent(config: CoherentConfig, members: Members) -> None:
    """Refuses fusion, sharpness and rejection settings out of range, and a fusion that
    needs the members' unconditional inputs without them."""
    fusion, sharpness = config.fusion, float(config.sharpness)
    if fusion not in fusion_lib.FUSIONS:
        raise ValueError(f"unknown fusion {fusion!r}; choose one of {fusion_lib.FUSIONS}.")
    if fusion == "product" and sharpness != 0.0:
        raise ValueError("sharpness applies to fusion='mean' only.")
    if not 0.0 <= sharpness <= 1.0:
        raise ValueError(f"sharpness must be in [0, 1], got {sharpness}.")
    if (fusion == "product" or sharpness > 0) and members.uncond_conds is None:
        raise ValueError(f"fusion={fusion!r} with sharpness={sharpness} needs uncond_conds (the "
                         "members' unconditional inputs, e.g. members.conds.dropped() for "
                         "denoisers trained with condition dropout).")
    if int(config.num_candidates) < 1:
        raise ValueError(f"num_candidates must be >= 1, got {config.num_candidates}.")
    if not 0.0 <= config.max_bad_fraction <= 1.0:
        raise ValueError(f"max_bad_fraction must be in [0, 1], got {config.max_bad_fraction}.")


def _fused_eps_fn(apply_fn, members: Members, config: CoherentConfig, fusion: str, size: int,
                  mesh):
    """eps_fn(x [size, D], t [size]) -> (fused eps [size, D], disagreement [size]) of the
    members for `size` rows: the R candidates x N rows, padded. Traced code."""
    r = config.num_candidates

    def tile(a):  # [K, N, ...] -> [K, size, ...], rows split over the mesh
        tiled = jnp.tile(a, (1, r) + (1,) * (a.ndim - 2))
        return parallel.constrain_rows(parallel.pad_rows(tiled, size, axis=1), mesh, axis=1)

    weights_r = parallel.constrain_rows(
        parallel.pad_rows(jnp.tile(members.weights, (r, 1)), size), mesh)  # [size, K]
    apply_members = jax.vmap(apply_fn, in_axes=(0, None, None, 0))
    if fusion in ("product", "sharpened"):
        # Conditional and unconditional queries in one batch: [K, 2*size, ...].
        both = jax.tree.map(lambda c, u: jnp.concatenate([tile(c), tile(u)], axis=1),
                            members.conds, members.uncond_conds)

        def eps_fn(x, t):
            eps_all = apply_members(members.params, jnp.concatenate([x, x]),
                                    jnp.concatenate([t, t]), both)
            eps_c, eps_u = eps_all[:, :size], eps_all[:, size:]
            fused = (fusion_lib.fuse_product(eps_c, eps_u, weights_r) if fusion == "product" else
                     fusion_lib.fuse_sharpened(eps_c, eps_u, weights_r, config.sharpness))
            return fused, fusion_lib.disagreement(eps_c, weights_r)
        return eps_fn
    conds_r = jax.tree.map(tile, members.conds)

    def eps_fn(x, t):
        eps_c = apply_members(members.params, x, t, conds_r)  # [K, size, D]
        return fusion_lib.fuse_mean(eps_c, weights_r), fusion_lib.disagreement(eps_c, weights_r)
    return eps_fn


@functools.partial(jax.jit, static_argnames=("apply_fn", "shape", "fusion", "mesh"))
def _coherent_jit(apply_fn, members, schedule, key, config, *, shape, fusion, mesh):
    n, d = shape
    r = config.num_candidates
    size = parallel.padded_rows(r * n, mesh)  # R*N rows, padded to a multiple of the devices
    eps_fn = _fused_eps_fn(apply_fn, members, config, fusion, size, mesh)
    x0, dis = _reverse(eps_fn, (r * n, d), schedule, key, config.chain, mesh)
    x0 = x0[: r * n].reshape(r, n, d)
    dis = jnp.moveaxis(dis[:, : r * n], 0, 1).reshape(r, n, -1)  # [S, size] -> [R, N, S]
    chosen, accepted, bad_fraction = select_candidates(dis, config.threshold,
                                                       config.max_bad_fraction)
    cols = jnp.arange(n)
    return parallel.constrain_even_rows(
        CoherentSamples(samples=x0[chosen, cols], disagreement=dis[chosen, cols],
                        candidate=chosen, accepted=accepted,
                        bad_fraction=bad_fraction[chosen, cols]), mesh)
