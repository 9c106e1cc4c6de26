"""Training denoisers: K ensemble members in ONE jitted, vmapped step.

An ensemble of K members (the specialists of one target, or K copies of a multi-condition
model for seeds) is one TrainState whose params, batch statistics and optimizer state carry a
leading member axis. Each member draws its own batch from the rows it may use (rows where the
target and its condition exist), so specialists with different source coverage train together.

Shapes: K members, N rows, B batch, D target width, C conditions per member.
"""

from __future__ import annotations

import dataclasses
import functools
import logging
import math
import time
from typing import Any, Callable, Sequence

import flax.struct
import jax
import jax.numpy as jnp
import numpy as np
import optax

from coherent_jax.engine import progress
from coherent_jax.engine.deprecation import old_call_form, pop_fields
from coherent_jax.engine.ensemble import stack_members
from coherent_jax.engine.denoiser import Condition, Denoiser, DenoiserApply, init_denoiser
from coherent_jax.engine.sampling import SamplerConfig, sample
from coherent_jax.engine.schedules import Schedule

logger = logging.getLogger(__name__)

CRITERIA = ("sample_mse", "sample_cosine", "noise_mse", "energy_score")
"""Validation criteria: the paper's three (single-draw MSE and cosine distance, one-step noise
MSE) and the fair energy score of several draws per row, which scores the draws as a
distribution (a single-draw MSE rewards draws narrower than the truth's spread)."""

ENERGY_DRAWS = 8
"""Draws per validation row of the energy-score criterion."""


@dataclasses.dataclass(frozen=True)
class TrainConfig:
    """Static options of the training step.

    Attributes:
        batch_size: rows per member per step.
        uncond_prob: per-row probability of masking every condition (condition dropout), so
            the model also learns the unconditional prediction for product-of-experts fusion.
        mask_drop_prob: per-condition probability of extra random masking (multi-condition
            model); at least one present condition is always kept.
        ema_decay: > 0 keeps an exponential moving average of the parameters (ema <- d ema +
            (1 - d) params after every step, starting at the initial parameters: an anchored
            model's average starts at its anchor), and validation, checkpoint selection and
            sampling use the average; 0 (default) uses the parameters themselves.
    """

    batch_size: int = 128
    uncond_prob: float = 0.0
    mask_drop_prob: float = 0.0
    ema_decay: float = 0.0

    def __post_init__(self):
        if not 0.0 <= self.ema_decay < 1.0:
            raise ValueError(f"ema_decay must lie in [0, 1), got {self.ema_decay}.")


@dataclasses.dataclass(frozen=True)
class EarlyStop:
    """Stop training once no member has improved its best `criterion` score (one of
    `CRITERIA`) for `patience` validations in a row: the best checkpoints are then older than
    `patience * eval_every` steps for every member, and more steps only cost time (an
    anchored model whose anchor stays best validates as its anchor either way)."""

    criterion: str = "energy_score"
    patience: int = 2

    def __post_init__(self):
        if self.criterion not in CRITERIA:
            raise ValueError(f"unknown early-stopping criterion {self.criterion!r}; choose one "
                             f"of {CRITERIA}.")
        if self.patience < 1:
            raise ValueError(f"patience must be >= 1 validations, got {self.patience}.")

    def stale(self, done: int, best_steps: dict, eval_every: int) -> bool:
        """Whether every member's best checkpoint is `patience` validations old at `done`."""
        steps = np.asarray(best_steps[self.criterion])
        return bool(np.all((steps >= 0) & (done - steps >= self.patience * eval_every)))


@flax.struct.dataclass
class TrainState:
    """State of K members trained together; every pytree leaf has a leading axis K."""

    step: jax.Array
    params: Any
    batch_stats: Any
    opt_state: Any
    schedule: Schedule
    ema_params: Any  # the parameters' moving average (config.ema_decay > 0; else unused)
    model: Denoiser = flax.struct.field(pytree_node=False)
    tx: optax.GradientTransformation = flax.struct.field(pytree_node=False)
    config: TrainConfig = flax.struct.field(pytree_node=False)

    @property
    def variables(self) -> dict:
        """The members' Flax variables as validated and sampled (the moving average of the
        parameters when config.ema_decay > 0), stacked [K, ...]."""
        params = self.ema_params if self.config.ema_decay > 0 else self.params
        return {"params": params, "batch_stats": self.batch_stats}

    def with_params(self, params) -> "TrainState":
        """The state with new parameters (e.g. anchors set), the moving average restarted at
        them."""
        return self.replace(params=params, ema_params=jax.tree.map(jnp.array, params))

    @property
    def num_members(self) -> int:
        return jax.tree.leaves(self.params)[0].shape[0]


@flax.struct.dataclass
class MemberData:
    """Device-resident training (or validation) data of K members sharing one target.

    Attributes:
        target: target modality values [N, D] (any finite value on rows without it).
        cond: each member's conditions, leaves [K, N, ...]; mask [K, N, C] = presence.
        rows: indices of the rows each member may use [K, R_max], padded by repetition.
        counts: number of usable rows of each member [K].
    """

    target: jax.Array
    cond: Condition
    rows: jax.Array
    counts: jax.Array


def make_member_data(target, target_present, member_conds: Sequence[Condition],
                     bucket: int = 1) -> MemberData:
    """Builds MemberData; a member uses rows where the target and >= 1 condition are present.

    Args:
        target: [N, D] float values; rows where the target is absent may hold NaN.
        target_present: bool [N].
        member_conds: K Conditions for the N rows; their masks give condition presence.
        bucket: the row tables are padded to a multiple of this. Training draws only a
            member's first `count` rows, so for training data a bucket changes no number and
            lets targets with nearly equal row counts share one compiled step; validation
            scores every row of the table (keep 1 there).
    """
    target = np.asarray(target, np.float32)
    present = np.asarray(target_present, bool)
    if target.ndim != 2 or present.shape != (target.shape[0],):
        raise ValueError(f"target must be [N, D] with target_present [N]; got {target.shape} and "
                         f"{present.shape}.")
    if not member_conds:
        raise ValueError("member_conds is empty: give at least one member's Condition.")
    if not np.all(np.isfinite(target[present])):
        raise ValueError("target has NaN or inf values on rows marked present; fix the data or "
                         "mark those rows missing.")
    rows, counts = [], []
    for k, cond in enumerate(member_conds):
        mask = np.asarray(cond.mask) > 0
        if mask.shape[0] != target.shape[0]:
            raise ValueError(f"member {k}: condition has {mask.shape[0]} rows, target {target.shape[0]}.")
        for j, v in enumerate(cond.values):
            if not np.all(np.isfinite(np.asarray(v)[mask[:, j]])):
                raise ValueError(f"member {k}, condition {j}: NaN or inf on rows marked present.")
        usable = np.flatnonzero(present & mask.any(axis=1))
        if usable.size == 0:
            raise ValueError(f"member {k} has no row where both the target and a condition exist; "
                             "drop that member or supply paired samples.")
        rows.append(usable)
        counts.append(usable.size)
    width = -(-max(counts) // bucket) * bucket
    rows = np.stack([np.resize(r, width) for r in rows]).astype(np.int32)
    clean = lambda a: jnp.asarray(np.nan_to_num(np.asarray(a, np.float32)))
    cond = stack_members([Condition(values=tuple(clean(v) for v in c.values),
                                    mask=jnp.asarray(c.mask, jnp.float32)) for c in member_conds])
    return MemberData(target=clean(target), cond=cond, rows=jnp.asarray(rows),
                      counts=jnp.asarray(counts, jnp.int32))


@functools.lru_cache(maxsize=None)
def _adam() -> optax.GradientTransformation:
    """Adam with the learning rate in its state (per-member rates); one object for every
    TrainState, so jitted steps of equal architectures share one compilation."""
    return optax.inject_hyperparams(optax.adam)(learning_rate=1e-3)


def create_train_state(model: Denoiser, schedule: Schedule, key: jax.Array, *,
                       cond_dims: Sequence[int], num_members: int,
                       learning_rate: float | Sequence[float] = 1e-3,
                       config: TrainConfig = TrainConfig()) -> TrainState:
    """Initialises K members (independent inits) with Adam; learning_rate may differ per member."""
    if num_members < 1:
        raise ValueError(f"num_members must be >= 1, got {num_members}.")
    return init_members(model, schedule, jax.random.split(key, num_members), cond_dims=cond_dims,
                        learning_rate=learning_rate, config=config)


def init_members(model: Denoiser, schedule: Schedule, keys: jax.Array, *,
                 cond_dims: Sequence[int], learning_rate: float | Sequence[float] = 1e-3,
                 config: TrainConfig = TrainConfig()) -> TrainState:
    """Like `create_train_state`, with one explicit init key per member (keys [K])."""
    num_members = keys.shape[0]
    lr = np.broadcast_to(np.asarray(learning_rate, np.float32), (num_members,))
    if np.any(lr <= 0) or not np.all(np.isfinite(lr)):
        raise ValueError(f"learning rates must be finite and > 0, got {lr.tolist()}.")
    tx = _adam()
    variables = jax.vmap(lambda k: init_denoiser(model, k, cond_dims))(keys)
    opt_state = jax.vmap(tx.init)(variables["params"])
    opt_state.hyperparams["learning_rate"] = jnp.asarray(lr)
    return TrainState(step=jnp.zeros((), jnp.int32), params=variables["params"],
                      batch_stats=variables.get("batch_stats", {}), opt_state=opt_state,
                      schedule=jax.tree.map(jnp.array, schedule),  # own copy: state is donated
                      ema_params=jax.tree.map(jnp.array, variables["params"]),
                      model=model, tx=tx, config=config)


def _augment_mask(mask, key, config: TrainConfig):
    """Condition dropout and extra random masking of one member's batch mask [B, C]."""
    drop_key, unc_key, keep_key = jax.random.split(key, 3)
    present = mask > 0
    if config.mask_drop_prob > 0:
        kept = present & ~jax.random.bernoulli(drop_key, config.mask_drop_prob, mask.shape)
        # Keep one random present condition when every present one was dropped.
        scores = jnp.where(present, jax.random.uniform(keep_key, mask.shape), -1.0)
        one = jax.nn.one_hot(jnp.argmax(scores, axis=1), mask.shape[1], dtype=bool) & present
        present = jnp.where(kept.any(axis=1, keepdims=True), kept, one)
    if config.uncond_prob > 0:
        present = present & ~jax.random.bernoulli(unc_key, config.uncond_prob, (mask.shape[0], 1))
    return present.astype(mask.dtype)


def _noise_loss(model, schedule, variables, x0, cond, key, train: bool):
    """Epsilon-prediction MSE at uniformly drawn timesteps; returns (loss, new batch_stats)."""
    t_key, e_key = jax.random.split(key)
    t = jax.random.randint(t_key, (x0.shape[0],), 0, schedule.diffusion_steps)
    eps = jax.random.normal(e_key, x0.shape)
    ab = schedule.alpha_bars[t][:, None]
    x_t = jnp.sqrt(ab) * x0 + jnp.sqrt(1.0 - ab) * eps
    if train:
        eps_hat, updates = model.apply(variables, x_t, t, cond, train=True, mutable=["batch_stats"])
        return jnp.mean((eps_hat - eps) ** 2), updates.get("batch_stats", {})
    eps_hat = model.apply(variables, x_t, t, cond, train=False)
    return jnp.mean((eps_hat - eps) ** 2), variables.get("batch_stats", {})


def _member_update(state: TrainState, params, batch_stats, opt_state, x0, cond, key):
    """One Adam step of one member (vmapped over members by `train_step`)."""
    aug_key, loss_key = jax.random.split(key)
    cond = cond.replace(mask=_augment_mask(cond.mask, aug_key, state.config))

    def loss_fn(p):
        return _noise_loss(state.model, state.schedule, {"params": p, "batch_stats": batch_stats},
                           x0, cond, loss_key, train=True)

    (loss, new_stats), grads = jax.value_and_grad(loss_fn, has_aux=True)(params)
    updates, opt_state = state.tx.update(grads, opt_state, params)
    params = optax.apply_updates(params, updates)
    return params, new_stats, opt_state, {"loss": loss, "grad_norm": optax.tree.norm(grads)}


def _train_step(state: TrainState, batch: dict, key: jax.Array):
    keys = jax.random.split(jax.random.fold_in(key, state.step), state.num_members)
    params, stats, opt_state, metrics = jax.vmap(functools.partial(_member_update, state))(
        state.params, state.batch_stats, state.opt_state, batch["x0"], batch["cond"], keys)
    ema = state.ema_params
    decay = state.config.ema_decay
    if decay > 0:
        ema = jax.tree.map(lambda e, p: decay * e + (1.0 - decay) * p, ema, params)
    new_state = state.replace(step=state.step + 1, params=params, batch_stats=stats,
                              opt_state=opt_state, ema_params=ema)
    return new_state, metrics


train_step = jax.jit(_train_step, donate_argnums=0)
train_step.__doc__ = """One optimizer step of all K members: (state, batch, key) -> (state, metrics).

batch = {'x0': [K, B, D], 'cond': Condition with leaves [K, B, ...]}; metrics {'loss': [K],
'grad_norm': [K]}. Pure and jitted; `state` is donated. The per-step key is
fold_in(key, state.step), so a run is reproduced exactly by its seed.
"""


def draw_batch(data: MemberData, key: jax.Array, batch_size: int) -> dict:
    """Each member draws `batch_size` of its usable rows (with replacement)."""
    keys = jax.random.split(key, data.rows.shape[0])

    def one(rows, count, cond, k):
        idx = rows[jax.random.randint(k, (batch_size,), 0, count)]
        return data.target[idx], jax.tree.map(lambda a: a[idx], cond)

    x0, cond = jax.vmap(one)(data.rows, data.counts, data.cond, keys)
    return {"x0": x0, "cond": cond}


@functools.partial(jax.jit, static_argnames=("count", "batch_sharding"), donate_argnums=0)
def scan_train_steps(state: TrainState, data: MemberData, key: jax.Array, count: int,
                     batch_sharding: Any = None):
    """`count` optimiser steps of draw_batch + train_step in one lax.scan; metrics [count, K].

    `batch_sharding` (from `parallel.member_batch_sharding`) splits each drawn batch over
    devices; the result equals the single-device run up to float reduction order.
    """

    def body(s, _):
        batch_key = jax.random.fold_in(jax.random.fold_in(key, s.step), 1)
        batch = draw_batch(data, batch_key, s.config.batch_size)
        if batch_sharding is not None:
            batch = jax.lax.with_sharding_constraint(batch, batch_sharding)
        return _train_step(s, batch, key)

    return jax.lax.scan(body, state, None, length=count)


def fair_energy_score(draws: jax.Array, real: jax.Array) -> jax.Array:
    """[R] fair energy score of draws [M, R, D] for real [R, D] (M >= 2); lower is better."""
    m = draws.shape[0]
    error = jnp.mean(jnp.linalg.norm(draws - real[None], axis=-1), axis=0)  # [R]
    pairs = jnp.sum(jnp.linalg.norm(draws[:, None] - draws[None], axis=-1), axis=(0, 1))  # [R]
    return error - pairs / (2 * m * (m - 1))


def _member_draws(model: Denoiser, schedule: Schedule, variables: dict, x0: jax.Array, cond,
                  key: jax.Array, config: SamplerConfig, energy_draws: int) -> jax.Array:
    """[M, R, D] draws of rows x0 [R, D] given their conditions (leaves [R, ...]) by full
    reverse sampling of one member's variables."""
    tiled = jax.tree.map(lambda a: jnp.tile(a, (energy_draws,) + (1,) * (a.ndim - 1)), cond)
    return sample(DenoiserApply(model), variables, tiled, schedule, key,
                  shape=(energy_draws * x0.shape[0], x0.shape[1]), config=config
                  ).reshape(energy_draws, *x0.shape)


def _check_energy_draws(energy_draws: int) -> None:
    if energy_draws < 2:
        raise ValueError(f"energy_draws must be >= 2 (the energy score's pair term), got "
                         f"{energy_draws}.")


@functools.partial(jax.jit, static_argnames=("sampler", "sample_steps", "energy_draws"))
def evaluate_members(state: TrainState, data: MemberData, key: jax.Array, *, sampler: str = "ddpm",
                     sample_steps: int | None = None, energy_draws: int = ENERGY_DRAWS) -> dict:
    """The validation criteria (`CRITERIA`) per member, on each member's usable rows.

    Every row is drawn `energy_draws` times by full reverse sampling from its member's
    condition; the paper's sample MSE and cosine score the first draw, the fair energy score
    (E||X - y|| - E||X - X'|| / 2, unbiased pair term) all of them.
    Returns {criterion: [K]}, lower is better.
    """
    _check_energy_draws(energy_draws)
    width = data.rows.shape[1]
    valid = jnp.arange(width)[None, :] < data.counts[:, None]  # [K, R]
    sample_key, noise_key = jax.random.split(key)
    config = SamplerConfig(sampler, sample_steps)

    def one(params, stats, rows, valid_k, cond, k_sample, k_noise):
        variables = {"params": params, "batch_stats": stats}
        x0 = data.target[rows]  # [R, D]
        c = jax.tree.map(lambda a: a[rows], cond)
        draws = _member_draws(state.model, state.schedule, variables, x0, c, k_sample, config,
                              energy_draws)  # [M, R, D]
        gen = draws[0]
        w = valid_k.astype(jnp.float32) / jnp.sum(valid_k)
        energy = fair_energy_score(draws, x0)  # [R]
        mse = jnp.sum(w * jnp.mean((gen - x0) ** 2, axis=1))
        cos = jnp.sum(gen * x0, 1) / jnp.maximum(
            jnp.linalg.norm(gen, axis=1) * jnp.linalg.norm(x0, axis=1), 1e-12)
        noise_mse, _ = _noise_loss(state.model, state.schedule, variables, x0, c, k_noise,
                                   train=False)  # padded rows repeat real rows: unbiased enough
        return {"sample_mse": mse, "sample_cosine": jnp.sum(w * (1.0 - cos)),
                "noise_mse": noise_mse, "energy_score": jnp.sum(w * energy)}

    k = state.num_members
    return jax.vmap(one)(state.variables["params"], state.batch_stats, data.rows, valid,
                         data.cond, jax.random.split(sample_key, k), jax.random.split(noise_key, k))


@functools.partial(jax.jit, static_argnames=("model", "sampler", "sample_steps", "energy_draws"))
def row_energy_scores(model: Denoiser, schedule: Schedule, variables: dict, data: MemberData,
                      key: jax.Array, *, sampler: str = "ddpm", sample_steps: int | None = None,
                      energy_draws: int = ENERGY_DRAWS) -> jax.Array:
    """[K, R] fair energy score of `energy_draws` draws of each member's row `data.rows[k, r]`
    (NaN on padding, r >= counts[k]): the per-patient validation scores that a paired
    comparison of two models needs. `variables` are the K members' stacked [K, ...]; with the
    same `key`, two models' draws start from the same noise."""
    _check_energy_draws(energy_draws)
    width = data.rows.shape[1]
    valid = jnp.arange(width)[None, :] < data.counts[:, None]  # [K, R]
    config = SamplerConfig(sampler, sample_steps)

    def one(member_variables, rows, cond, k_sample):
        x0 = data.target[rows]  # [R, D]
        c = jax.tree.map(lambda a: a[rows], cond)
        draws = _member_draws(model, schedule, member_variables, x0, c, k_sample, config,
                              energy_draws)
        return fair_energy_score(draws, x0)  # [R]

    k = data.rows.shape[0]
    energy = jax.vmap(one)(variables, data.rows, data.cond, jax.random.split(key, k))
    return jnp.where(valid, energy, jnp.nan)


@dataclasses.dataclass
class FitResult:
    """Outcome of `fit`.

    Attributes:
        state: the final TrainState.
        best: criterion -> the members' best variables (stacked [K, ...]) by that criterion.
        best_scores: criterion -> each member's best validation score [K].
        best_steps: criterion -> the step at which each member was best [K].
        history: one dict per log or validation point (step, losses, scores, seconds).
    """

    state: TrainState
    best: dict
    best_scores: dict
    best_steps: dict
    history: list


@dataclasses.dataclass(frozen=True)
class LoopConfig:
    """The settings of `fit`'s loop: how long it trains, when it validates and logs, with which
    sampler it validates and whether it stops early.

    Attributes:
        train_steps: optimiser steps; 0 trains nothing and returns the initial models
            (meaningful for anchored models: their anchors).
        eval_every: steps between validations (and checkpoints).
        log_every: steps between history records.
        val_sampler, val_sample_steps: the sampler used for validation ('ddpm' is the paper).
        early_stop: stops before `train_steps` once every member's best checkpoint is stale
            (`EarlyStop`); the last record then carries 'stopped_early'. None: all steps.
    """

    train_steps: int
    eval_every: int
    log_every: int = 100
    val_sampler: str = "ddpm"
    val_sample_steps: int | None = None
    early_stop: EarlyStop | None = None

    def __post_init__(self):
        if self.train_steps < 0 or self.eval_every < 1 or self.log_every < 1:
            raise ValueError("train_steps must be >= 0 (0: validate the initial models only, "
                             "e.g. anchored models as their anchors), eval_every and log_every "
                             ">= 1.")


@dataclasses.dataclass(frozen=True)
class LoopRuntime:
    """What `fit`'s loop reports to and runs on; none of it changes the numbers (a sharded
    batch only the order of float reductions).

    Attributes:
        label: the text of the steps' progress bar (`progress.bar`) and of the DEBUG log lines.
        log_fn: called with each history record (a dict of JSON-able values; None: logged at
            DEBUG).
        checkpoints: optional `checkpointing.TrainCheckpoints`; the run saves at every
            validation and, when the folder holds a checkpoint, resumes from it.
        batch_sharding: optional `parallel.member_batch_sharding(mesh)` for data parallelism.
    """

    label: str = "denoisers"
    log_fn: Callable[[dict], None] | None = None
    checkpoints: Any = None
    batch_sharding: Any = None

    def emit(self, record: dict) -> None:
        """Hands a history record to `log_fn` (None: logs it at DEBUG)."""
        if self.log_fn is not None:
            self.log_fn(record)
        else:
            logger.debug("%s %s", self.label, record)


@dataclasses.dataclass
class _Tally:
    """Each member's best variables, scores and steps by every criterion, updated in place at
    each validation (the part of a run's checkpoint besides the state)."""

    best: dict
    best_scores: dict
    best_steps: dict

    @classmethod
    def start(cls, state: TrainState) -> "_Tally":
        k = state.num_members
        return cls(best={c: jax.tree.map(jnp.array, state.variables) for c in CRITERIA},
                   best_scores={c: np.full(k, np.inf) for c in CRITERIA},
                   best_steps={c: np.full(k, -1) for c in CRITERIA})

    def tree(self, state: TrainState) -> dict:
        """The checkpointed tree: the state and the tally."""
        return {"state": state, "best": self.best, "best_scores": self.best_scores,
                "best_steps": self.best_steps}

    def update(self, state: TrainState, scores: dict, done: int, record: dict) -> None:
        """Keeps each member's variables where its score `scores[c]` [K] beats its best; writes
        the scores into `record`."""
        for c in CRITERIA:
            score = np.asarray(scores[c])
            better = score < self.best_scores[c]
            self.best_scores[c] = np.where(better, score, self.best_scores[c])
            self.best_steps[c] = np.where(better, done, self.best_steps[c])
            sel = jnp.asarray(better)
            self.best[c] = jax.tree.map(
                lambda new, old: jnp.where(sel.reshape((-1,) + (1,) * (new.ndim - 1)), new, old),
                state.variables, self.best[c])
            record[c] = score.tolist()


def _resume(state: TrainState, checkpoints) -> tuple[TrainState, _Tally, list, float]:
    """(state, tally, history, seconds) of the latest checkpoint, or the start of a run."""
    tally = _Tally.start(state)
    if checkpoints is None or checkpoints.latest_step() is None:
        return state, tally, [], 0.0
    tree, extra = checkpoints.restore(tally.tree(state))
    tally = _Tally(best=tree["best"],
                   best_scores={c: np.asarray(v) for c, v in tree["best_scores"].items()},
                   best_steps={c: np.asarray(v) for c, v in tree["best_steps"].items()})
    return tree["state"], tally, extra["history"], extra["seconds"]


def _train_chunk(state: TrainState, data: MemberData, key: jax.Array, count: int,
                 batch_sharding: Any, start: float) -> tuple[TrainState, dict]:
    """`count` steps, and their history record (mean loss per member); raises
    FloatingPointError on a non-finite loss."""
    state, metrics = scan_train_steps(state, data, key, count, batch_sharding)
    done = int(state.step)
    losses = np.asarray(metrics["loss"])  # [count, K]
    if not np.all(np.isfinite(losses)):
        bad = sorted(set(np.nonzero(~np.isfinite(losses))[1].tolist()))
        raise FloatingPointError(f"non-finite training loss at step <= {done} for member(s) "
                                 f"{bad}; lower the learning rate or check the inputs for "
                                 "extreme values.")
    return state, {"step": done, "loss": losses.mean(axis=0).tolist(),
                   "seconds": time.perf_counter() - start}


def _stops_early(loop: LoopConfig, done: int, tally: _Tally, history: list, label: str) -> bool:
    """Whether early stopping ends the run at `done` (then marks its last record)."""
    stop = loop.early_stop
    if stop is None or not stop.stale(done, tally.best_steps, loop.eval_every):
        return False
    history[-1]["stopped_early"] = True
    logger.info("%s: stopped at step %d of %d, no member's validation %s improved in %d "
                "validations", label, done, loop.train_steps, stop.criterion, stop.patience)
    return True


_LOOP_FIELDS = tuple(f.name for f in dataclasses.fields(LoopConfig))
_RUNTIME_FIELDS = tuple(f.name for f in dataclasses.fields(LoopRuntime))


def _old_fit_call(args: tuple, kwargs: dict):
    """fit(..., train_steps=, eval_every=, log_fn=, ...) as fit(..., loop=LoopConfig(...),
    runtime=LoopRuntime(...))."""
    kwargs = dict(kwargs)
    loop, runtime = pop_fields(kwargs, _LOOP_FIELDS), pop_fields(kwargs, _RUNTIME_FIELDS)
    if not (loop or runtime):
        return None
    if loop:
        kwargs["loop"] = (dataclasses.replace(kwargs["loop"], **loop) if "loop" in kwargs
                          else LoopConfig(**loop))
    if runtime:
        kwargs["runtime"] = dataclasses.replace(kwargs.get("runtime", LoopRuntime()), **runtime)
    return args, kwargs


@old_call_form("fit(state, train_data, val_data, key, loop=LoopConfig(train_steps=, "
               "eval_every=, ...), runtime=LoopRuntime(log_fn=, checkpoints=, ...))",
               _old_fit_call)
def fit(state: TrainState, train_data: MemberData, val_data: MemberData, key: jax.Array, *,
        loop: LoopConfig, runtime: LoopRuntime = LoopRuntime()) -> FitResult:
    """Trains all members for `loop.train_steps`, validating by full sampling every
    `loop.eval_every` steps and once before the first step (the initial models are candidates:
    an anchored model starts as its linear-Gaussian anchor).

    Keeps each member's best variables by each validation criterion (`CRITERIA`: the paper's
    sample MSE, sample cosine distance and one-step noise MSE, and the energy score of several
    draws), every validation scored on the same noise. Raises FloatingPointError on a
    non-finite loss.

    Args:
        state, train_data, val_data: from `create_train_state` and `make_member_data`.
        key: the run's key; with the same key a run (resumed or not) gives the same numbers.
        loop: steps, validation and early stopping (`LoopConfig`).
        runtime: the progress label, log function, checkpoints and batch sharding
            (`LoopRuntime`).
    """
    train_key, val_key = jax.random.split(key)
    state, tally, history, elapsed = _resume(state, runtime.checkpoints)
    start = time.perf_counter() - elapsed

    def validate(state: TrainState, done: int, record: dict) -> None:
        # one key for every validation: each checkpoint is scored on the same noise (common
        # random numbers), so the differences between checkpoints, against the initial model
        # above all, are the models' and not the draws'
        scores = evaluate_members(state, val_data, val_key, sampler=loop.val_sampler,
                                  sample_steps=loop.val_sample_steps)
        tally.update(state, scores, done, record)

    chunk = math.gcd(loop.log_every, loop.eval_every)
    done = int(state.step)
    with progress.bar(runtime.label, total=loop.train_steps) as steps:
        steps.update(completed=done)
        if done == 0 and not history:  # the initial models are candidates too: an anchored
            record = {"step": 0, "seconds": time.perf_counter() - start}  # model is its anchor
            validate(state, 0, record)
            history.append(record)
            runtime.emit(record)
        while (done < loop.train_steps
               and not _stops_early(loop, done, tally, history, runtime.label)):
            state, record = _train_chunk(state, train_data, train_key,
                                         min(chunk, loop.train_steps - done),
                                         runtime.batch_sharding, start)
            done = record["step"]
            evaluated = done % loop.eval_every == 0 or done == loop.train_steps
            if evaluated:
                validate(state, done, record)
            history.append(record)
            runtime.emit(record)
            steps.update(completed=done)
            if evaluated and runtime.checkpoints is not None:
                runtime.checkpoints.save(done, tally.tree(state),
                                         {"history": history, "seconds": record["seconds"]})
    return FitResult(state=state, best=tally.best, best_scores=tally.best_scores,
                     best_steps=tally.best_steps, history=history)
