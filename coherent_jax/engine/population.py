"""Populations: every (member, seed, learning rate) trial of one architecture in ONE step.

The paper runs a 10-configuration random search per model, one process per configuration.
Here all trials that share an architecture (the K specialists of a target x seeds x learning
rates) are members of one vmapped TrainState; architectures (hidden width, depth, embedding
sizes) are the outer loop. Selection uses the paper's three criteria.
"""

from __future__ import annotations

import dataclasses
import itertools
import warnings
from typing import Any, Sequence

import jax
import numpy as np

from coherent_jax.engine.ensemble import select_members
from coherent_jax.engine.denoiser import Denoiser
from coherent_jax.engine.schedules import Schedule
from coherent_jax.engine.train import (CRITERIA, FitResult, MemberData, TrainConfig, TrainState,
                                       fit, init_members)


@dataclasses.dataclass(frozen=True)
class Population:
    """Trials trained together. Trial p trains ensemble member `member[p]` (e.g. the specialist
    of one source) from seed `seed[p]` with learning rate `learning_rate[p]`."""

    member: np.ndarray
    seed: np.ndarray
    learning_rate: np.ndarray

    @property
    def size(self) -> int:
        return int(self.member.shape[0])

    def describe(self, p: int) -> dict:
        return {"member": int(self.member[p]), "seed": int(self.seed[p]),
                "learning_rate": float(self.learning_rate[p])}


def make_population(num_members: int, seeds: Sequence[int],
                    learning_rates: Sequence[float]) -> Population:
    """The full grid members x seeds x learning rates (member-major)."""
    if num_members < 1 or not seeds or not learning_rates:
        raise ValueError("a population needs >= 1 member, >= 1 seed and >= 1 learning rate.")
    grid = list(itertools.product(range(num_members), seeds, learning_rates))
    member, seed, lr = (np.asarray(v) for v in zip(*grid))
    return Population(member.astype(np.int32), seed.astype(np.int64), lr.astype(np.float32))


def init_population(model: Denoiser, schedule: Schedule, population: Population, *,
                    cond_dims: Sequence[int], config: TrainConfig = TrainConfig()) -> TrainState:
    """One TrainState with a member per trial; trial inits depend only on (seed, member)."""
    keys = jax.vmap(lambda s, m: jax.random.fold_in(jax.random.key(s), m))(
        population.seed.astype(np.uint32), population.member)
    return init_members(model, schedule, keys, cond_dims=cond_dims,
                        learning_rate=population.learning_rate, config=config)


def population_data(data: MemberData, population: Population) -> MemberData:
    """Each trial sees its member's rows and conditions (member data indexed by trial)."""
    return data.replace(cond=select_members(data.cond, population.member),
                        rows=data.rows[population.member], counts=data.counts[population.member])


@dataclasses.dataclass
class Selection:
    """The best trial of each ensemble member by one criterion.

    Attributes:
        trial: index of the chosen trial per member [K].
        variables: the chosen trials' best variables, stacked [K, ...].
        scores: their validation scores [K].
    """

    trial: np.ndarray
    variables: Any
    scores: np.ndarray


def select(result: FitResult, population: Population, criterion: str) -> Selection:
    """Per ensemble member, the trial with the lowest best-`criterion` validation score."""
    if criterion not in CRITERIA:
        raise ValueError(f"unknown criterion {criterion!r}; choose one of {CRITERIA}.")
    scores = result.best_scores[criterion]  # [P]
    num_members = int(population.member.max()) + 1
    trials = []
    for k in range(num_members):
        mine = np.flatnonzero(population.member == k)
        trials.append(int(mine[np.argmin(scores[mine])]))
    trials = np.asarray(trials)
    return Selection(trial=trials, variables=select_members(result.best[criterion], trials),
                     scores=scores[trials])


def search(models: Sequence[Denoiser], schedule: Schedule, population: Population,
           train_data: MemberData, val_data: MemberData, key: jax.Array, *,
           config: TrainConfig, **fit_kwargs) -> list[tuple]:
    """The outer loop over architectures: fits one population per model.

    The models condition on inputs of the widths of `train_data`'s conditions; `fit_kwargs`
    go to `train.fit` (train_steps, eval_every, ...). An old call's `cond_dims=` is ignored
    with a DeprecationWarning.

    Returns [(model, FitResult)] in the order of `models`; every trial's curve is in the
    result's history (per-member lists indexed by trial).
    """
    if fit_kwargs.pop("cond_dims", None) is not None:
        warnings.warn("search(cond_dims=...) is deprecated: the widths are read from "
                      "train_data's conditions; leave it out.", DeprecationWarning, stacklevel=2)
    cond_dims = [int(v.shape[-1]) for v in train_data.cond.values]
    train_p, val_p = population_data(train_data, population), population_data(val_data, population)
    results = []
    for i, model in enumerate(models):
        state = init_population(model, schedule, population, cond_dims=cond_dims, config=config)
        results.append((model, fit(state, train_p, val_p, jax.random.fold_in(key, i),
                                   **fit_kwargs)))
    return results
