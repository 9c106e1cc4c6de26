"""The tiny labelled linear-Gaussian run shared by the imputation and evaluation tests (the
`tiny_run` fixture of conftest.py trains it once per session)."""

import copy
import dataclasses

import numpy as np
import pandas as pd

from coherent_jax.data import LinearGaussianModel, linear_gaussian_cohort, paper_split
from coherent_jax.latent import LatentConfig, LatentSpace
from coherent_jax.model_set import ModelSetConfig, train_model_set

GAUSS = LinearGaussianModel.random({"a": 4, "b": 4, "c": 4}, num_factors=3, noise_std=0.4, seed=3)
TINY_MODELS = ModelSetConfig(hidden_dim=32, num_layers=2, time_embed_dim=16, cond_embed_dim=8,
                             batch_size=64, train_steps=60, eval_every=30, log_every=30,
                             val_sampler="ddim", val_sample_steps=5)


def labelled_cohort(n: int = 360):
    """`GAUSS` cohort with a type label (sign of one modality) and survival times, split as the
    paper splits."""
    cohort = linear_gaussian_cohort(GAUSS, n, seed=0)
    a = cohort.tables["a"].to_numpy()
    rng = np.random.default_rng(0)
    labels = pd.DataFrame({
        "cancer_type": np.where(a[:, 0] > 0, "T1", "T2"),
        "os_time": np.round(rng.exponential(500 * np.exp(-0.5 * a[:, 1]))) + 1,
        "os_event": rng.integers(0, 2, n)}, index=cohort.sample_ids)
    labelled = cohort.from_tables(cohort.tables, labels=labels, name="gauss")
    return paper_split(labelled, seed=42)


@dataclasses.dataclass(frozen=True)
class TinyRun:
    cohort: object  # features, all splits
    space: LatentSpace
    latents: object  # the cohort encoded by `space`
    models: object  # the trained ModelSet (conditions from the sources' features)
    reports: dict


def train_tiny_run() -> TinyRun:
    """The cohort, a 4-d latent space, and the tiny model set trained on it (seed 0)."""
    cohort = labelled_cohort()
    space = LatentSpace.fit(cohort, LatentConfig(latent_dim=4))
    latents = space.encode(cohort)
    models, reports = train_model_set(latents, TINY_MODELS, seed=0, features=cohort)
    return TinyRun(cohort, space, latents, models, reports)


def with_a_correction(models, shift: float = 1e-3):
    """A copy of a model set whose every anchored model has a non-zero learned correction
    (its output bias shifted), so imputation runs the chain even where training kept the
    anchors (which `anchor_draws` would draw without one)."""
    out = copy.deepcopy(models)
    for tm in out.targets.values():
        for name in ("specialists", "multi"):
            variables = getattr(tm, name)
            if variables is not None:
                params = dict(variables["params"])
                params["out"] = {**params["out"], "bias": np.asarray(params["out"]["bias"]) + shift}
                setattr(tm, name, {**variables, "params": params})
    return out
