"""The paper's eager PyTorch sampler, re-written by us from ../shared/METHOD.md sections 3-4.

The baseline our benchmarks compare against, kept as the original ran it: a Python loop over
the T steps, one forward per specialist per step, the pairwise cosine disagreement as a Python
double loop over member pairs, the DDPM ancestral update, under `torch.no_grad()` with the
models in eval mode.

`NormMLP` has the paper's layer order AND its state-dict key names (`time_embedding_dense`,
`cond_embeddings.j`, `mlp_layers.i`, `bn_layers.i`, and the schedule buffers
`diffusion.betas` / `diffusion.alphas_cumprod` of the diffusion object the paper's model holds),
so `coherent_jax.torch_import` reads its state dicts exactly like the paper's checkpoints.

Two details of the original, and what we do:
- At t = 0 the paper's coherent sampler divides by sqrt(1.0) while its single-model sampler
  divides by sqrt(alpha_bar_0) = sqrt(1 - beta_0); we use 1 - beta_0 (METHOD.md, and our
  engine): a 5e-5 relative change at the last step.
- Weights are softmax(1 / validation loss) over the K specialists (`softmax_inverse_weights`).

torch is a benchmark-only dependency: `pip install torch==2.13.0`.
"""

from __future__ import annotations

import math
from typing import Sequence

import torch
from torch import nn
from torch.nn import functional as F


class LinearDiffusion(nn.Module):
    """The schedule buffers the paper's models carry: betas linear in [1e-4, 0.02], cumprod."""

    def __init__(self, num_steps: int = 1000, beta_start: float = 1e-4, beta_end: float = 0.02):
        super().__init__()
        betas = torch.linspace(beta_start, beta_end, num_steps, dtype=torch.float32)
        self.register_buffer("betas", betas)
        self.register_buffer("alphas_cumprod", torch.cumprod(1.0 - betas, dim=0))

    @property
    def num_steps(self) -> int:
        return self.betas.shape[0]


def sinusoidal_embedding(t: torch.Tensor, dim: int) -> torch.Tensor:
    """t [B] int -> [B, dim]: sin | cos of t * exp(-log(10000) * i / (dim/2 - 1))."""
    half = dim // 2
    freqs = torch.exp(-math.log(10000.0) * torch.arange(half, dtype=torch.float32) / (half - 1))
    angles = t.float()[:, None] * freqs[None, :]  # [B, half]
    return torch.cat([torch.sin(angles), torch.cos(angles)], dim=1)


class NormMLP(nn.Module):
    """The paper's "norm_mlp" noise predictor (METHOD.md section 3).

    t -> sinusoidal(E) -> Linear(E, E) -> ReLU = t_emb; condition j -> Linear(D_j, Ce) -> ReLU,
    times its mask; h = [x, t_emb, e_1..e_C]; (num_layers - 1) times
    h = [ReLU(BatchNorm(Linear(h))), t_emb]; eps_hat = Linear(h) [B, D].
    """

    def __init__(self, data_dim: int, cond_dims: Sequence[int], hidden_dim: int = 512,
                 num_layers: int = 4, time_embed_dim: int = 128, cond_embed_dim: int = 32,
                 num_steps: int = 1000):
        super().__init__()
        self.time_embed_dim = time_embed_dim
        self.diffusion = LinearDiffusion(num_steps)
        self.cond_embeddings = nn.ModuleList([nn.Linear(d, cond_embed_dim) for d in cond_dims])
        self.time_embedding_dense = nn.Linear(time_embed_dim, time_embed_dim)
        widths_in = [data_dim + time_embed_dim + cond_embed_dim * len(cond_dims)]
        widths_in += [hidden_dim + time_embed_dim] * (num_layers - 1)
        widths_out = [hidden_dim] * (num_layers - 1) + [data_dim]
        self.mlp_layers = nn.ModuleList([nn.Linear(i, o) for i, o in zip(widths_in, widths_out)])
        self.bn_layers = nn.ModuleList([nn.BatchNorm1d(hidden_dim) for _ in range(num_layers - 1)])

    def forward(self, x: torch.Tensor, t: torch.Tensor, conds: Sequence[torch.Tensor],
                masks: Sequence[torch.Tensor] | None = None) -> torch.Tensor:
        """x [B, D], t [B] int, conds C x [B, D_c], masks C x [B] (None: all present)."""
        t_emb = F.relu(self.time_embedding_dense(sinusoidal_embedding(t, self.time_embed_dim)))
        embeds = []
        for j, (c, layer) in enumerate(zip(conds, self.cond_embeddings)):
            e = F.relu(layer(c))
            embeds.append(e if masks is None else e * masks[j][:, None])
        h = torch.cat([x, t_emb, *embeds], dim=1)
        for layer, bn in zip(self.mlp_layers[:-1], self.bn_layers):
            h = torch.cat([F.relu(bn(layer(h))), t_emb], dim=1)
        return self.mlp_layers[-1](h)


def random_norm_mlp(seed: int, data_dim: int, cond_dims: Sequence[int], **arch) -> NormMLP:
    """A NormMLP in eval mode with random weights AND non-trivial BatchNorm statistics.

    Running means ~ N(0, 0.5), variances ~ U(0.5, 2), affine scales ~ U(0.5, 1.5) and shifts
    ~ N(0, 0.1), so an import that mishandles any BatchNorm tensor is caught.
    """
    gen = torch.Generator().manual_seed(seed)
    torch.manual_seed(seed)
    model = NormMLP(data_dim, cond_dims, **arch)
    with torch.no_grad():
        for bn in model.bn_layers:
            shape = bn.running_mean.shape
            bn.running_mean.copy_(0.5 * torch.randn(shape, generator=gen))
            bn.running_var.copy_(0.5 + 1.5 * torch.rand(shape, generator=gen))
            bn.weight.copy_(0.5 + torch.rand(shape, generator=gen))
            bn.bias.copy_(0.1 * torch.randn(shape, generator=gen))
            bn.num_batches_tracked.fill_(100)
    return model.eval()


def softmax_inverse_weights(val_losses: Sequence[float]) -> torch.Tensor:
    """The paper's specialist weights: softmax(1 / validation loss) [K]."""
    return torch.softmax(1.0 / torch.tensor(val_losses, dtype=torch.float64), dim=0).float()


def _ddpm_update(x: torch.Tensor, eps: torch.Tensor, t: int, diffusion: LinearDiffusion,
                 z: torch.Tensor | None) -> torch.Tensor:
    """x_{t-1} = (x_t - beta_t / sqrt(1 - ab_t) eps) / sqrt(alpha_t) + sqrt(beta_t) z (t > 0)."""
    beta, alpha_bar = diffusion.betas[t], diffusion.alphas_cumprod[t]
    alpha = alpha_bar / diffusion.alphas_cumprod[t - 1] if t > 0 else 1.0 - beta
    x = (x - beta / torch.sqrt(1.0 - alpha_bar) * eps) / torch.sqrt(alpha)
    return x if t == 0 else x + torch.sqrt(beta) * z


def _noise(step_noise, i: int, t: int, shape, generator) -> torch.Tensor | None:
    """The z of sampling step i (at timestep t): none at t = 0, given, or freshly drawn."""
    if t == 0:
        return None
    return torch.randn(shape, generator=generator) if step_noise is None else step_noise[i]


@torch.no_grad()
def sample(model: NormMLP, conds: Sequence[torch.Tensor], num_samples: int, data_dim: int, *,
           masks: Sequence[torch.Tensor] | None = None, generator: torch.Generator | None = None
           ) -> torch.Tensor:
    """Eager DDPM sampling from one model (a specialist, or the multi-condition model with
    presence masks C x [N]), as the paper ran it. Returns samples [N, D]."""
    shape = (num_samples, data_dim)
    x = torch.randn(shape, generator=generator)
    for t in reversed(range(model.diffusion.num_steps)):
        eps = model(x, torch.full((num_samples,), t, dtype=torch.long), conds, masks)
        x = _ddpm_update(x, eps, t, model.diffusion, _noise(None, 0, t, shape, generator))
    return x


@torch.no_grad()
def coherent_sample(models: Sequence[NormMLP], conds: Sequence[torch.Tensor],
                    weights: torch.Tensor, num_samples: int, data_dim: int, *,
                    generator: torch.Generator | None = None, x_T: torch.Tensor | None = None,
                    step_noise: Sequence[torch.Tensor] | None = None
                    ) -> tuple[torch.Tensor, torch.Tensor]:
    """Eager Coherent Denoising with K >= 2 single-condition specialists, as the paper ran it.

    Args:
        models: K specialists (eval mode); the first one's `diffusion` buffers give the schedule.
        conds: each specialist's condition [N, D_c].
        weights: fusion weights [K], summing to 1.
        num_samples: N.
        data_dim: D.
        generator: torch RNG for x_T and the step noise (ignored where they are given).
        x_T: optional starting noise [N, D].
        step_noise: optional noise z of each step [N, D], in sampling order (t = T-1 first).

    Returns:
        samples [N, D] and disagreement [N, T] (sampling order).
    """
    if len(models) < 2:
        raise ValueError(f"coherent sampling needs >= 2 specialists, got {len(models)}.")
    shape = (num_samples, data_dim)
    diffusion = models[0].diffusion
    x = torch.randn(shape, generator=generator) if x_T is None else x_T.clone()
    disagreements = []
    for i, t in enumerate(reversed(range(diffusion.num_steps))):
        t_vec = torch.full((num_samples,), t, dtype=torch.long)
        eps = torch.stack([m(x, t_vec, [c]) for m, c in zip(models, conds)])  # [K, N, D]

        # The original's pairwise cosine loop; pair weight (w_a + w_b) / 2.
        sim = torch.zeros(num_samples)
        pair_total = 0.0
        for a in range(len(models)):
            for b in range(a + 1, len(models)):
                w_ab = 0.5 * (weights[a] + weights[b])
                pair_total = pair_total + w_ab
                sim += w_ab * F.cosine_similarity(eps[a], eps[b], dim=1)
        disagreements.append(1.0 - sim / pair_total)

        fused = torch.sum(eps * weights.view(-1, 1, 1), dim=0)  # [N, D]
        x = _ddpm_update(x, fused, t, diffusion, _noise(step_noise, i, t, shape, generator))
    return x, torch.stack(disagreements, dim=1)


def train_steps(model: NormMLP, optimizer: torch.optim.Optimizer, x0: torch.Tensor,
                cond: torch.Tensor, batch_size: int, num_steps: int,
                generator: torch.Generator) -> float:
    """`num_steps` steps of the paper's training loop for ONE model; returns the last loss.

    Each step: a random batch (drawn by index from in-memory tensors: cheaper than the paper's
    DataLoader, so this favours the reference), t ~ U{0..T-1}, eps ~ N(0, I),
    x_t = sqrt(ab_t) x0 + sqrt(1 - ab_t) eps, MSE(model(x_t, t, cond), eps), backward, step.
    """
    model.train()
    alpha_bars = model.diffusion.alphas_cumprod
    loss = torch.zeros(())
    for _ in range(num_steps):
        idx = torch.randint(0, x0.shape[0], (batch_size,), generator=generator)
        x_b, c_b = x0[idx], cond[idx]
        t = torch.randint(0, alpha_bars.shape[0], (batch_size,), generator=generator)
        eps = torch.randn(x_b.shape, generator=generator)
        ab = alpha_bars[t][:, None]
        optimizer.zero_grad()
        loss = F.mse_loss(model(torch.sqrt(ab) * x_b + torch.sqrt(1.0 - ab) * eps, t, [c_b]), eps)
        loss.backward()
        optimizer.step()
    return loss.item()
