"""Noise schedules of the forward diffusion process, as small frozen pytrees of arrays."""

from __future__ import annotations

import flax.struct
import jax
import jax.numpy as jnp
import numpy as np


@flax.struct.dataclass
class Schedule:
    """A discrete-time DDPM noise schedule over `diffusion_steps` steps t = 0..T-1.

    Attributes:
        betas: beta_t [T].
        alphas: alpha_t = 1 - beta_t [T].
        alpha_bars: cumulative product of alphas [T].
    """

    betas: jax.Array
    alphas: jax.Array
    alpha_bars: jax.Array

    @property
    def diffusion_steps(self) -> int:
        return self.betas.shape[0]

    @classmethod
    def from_betas(cls, betas) -> "Schedule":
        """Builds a schedule from betas in (0, 1), computed in float64 then stored float32."""
        betas = np.asarray(betas, dtype=np.float64)
        if betas.ndim != 1 or betas.size < 1:
            raise ValueError(f"betas must be a non-empty 1-D array, got shape {betas.shape}.")
        if not np.all((betas > 0) & (betas < 1)):
            raise ValueError("every beta must lie strictly between 0 and 1.")
        alphas = 1.0 - betas
        alpha_bars = np.cumprod(alphas)
        as32 = lambda a: jnp.asarray(a, dtype=jnp.float32)
        return cls(betas=as32(betas), alphas=as32(alphas), alpha_bars=as32(alpha_bars))


def linear_schedule(diffusion_steps: int = 1000, beta_start: float = 1e-4,
                    beta_end: float = 0.02) -> Schedule:
    """The paper's schedule: betas linear from `beta_start` to `beta_end` (Ho et al. 2020)."""
    return Schedule.from_betas(np.linspace(beta_start, beta_end, diffusion_steps))


def cosine_schedule(diffusion_steps: int = 1000, offset: float = 0.008,
                    max_beta: float = 0.999) -> Schedule:
    """The cosine schedule of Nichol & Dhariwal (2021), betas clipped at `max_beta`."""
    steps = np.arange(diffusion_steps + 1, dtype=np.float64) / diffusion_steps
    f = np.cos((steps + offset) / (1 + offset) * np.pi / 2) ** 2
    betas = np.clip(1.0 - f[1:] / f[:-1], 1e-8, max_beta)
    return Schedule.from_betas(betas)


def make_schedule(name: str, diffusion_steps: int = 1000) -> Schedule:
    """Schedule by name: 'linear' (the paper) or 'cosine'."""
    builders = {"linear": linear_schedule, "cosine": cosine_schedule}
    if name not in builders:
        raise ValueError(f"unknown schedule {name!r}; choose one of {sorted(builders)}.")
    return builders[name](diffusion_steps)
