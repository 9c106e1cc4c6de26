"""The engine underneath the imputation API: denoisers, noise schedules, member training,
populations, sampling and fusion, for people who build their own pipeline on it.

    from coherent_jax import engine
    model = engine.Denoiser(data_dim=32, hidden_dim=512, num_layers=4)
"""

from coherent_jax.engine.ensemble import select_members, stack_members, unstack_members
from coherent_jax.engine.fusion import (availability_weights, disagreement, fuse_mean, fuse_product,
                                        fuse_sharpened, inverse_mse_weights)
from coherent_jax.engine.denoiser import Condition, Denoiser, DenoiserApply, init_denoiser
from coherent_jax.engine.population import (Population, init_population, make_population, search,
                                            select)
from coherent_jax.engine.sampling import (CoherentConfig, CoherentSamples, Members, SamplerConfig,
                                          coherent_sample, sample, select_candidates)
from coherent_jax.engine.schedules import Schedule, cosine_schedule, linear_schedule, make_schedule
from coherent_jax.engine.train import (EarlyStop, FitResult, LoopConfig, LoopRuntime, MemberData,
                                       TrainConfig, TrainState, create_train_state,
                                       evaluate_members, fit, make_member_data, row_energy_scores,
                                       scan_train_steps, train_step)

__all__ = [
    "CoherentConfig", "CoherentSamples", "Condition", "Denoiser", "DenoiserApply", "EarlyStop",
    "FitResult", "LoopConfig", "LoopRuntime", "MemberData", "Members", "Population",
    "SamplerConfig", "Schedule", "TrainConfig", "TrainState", "availability_weights",
    "coherent_sample", "cosine_schedule", "create_train_state", "disagreement", "evaluate_members",
    "fit", "fuse_mean", "fuse_product", "fuse_sharpened", "init_denoiser", "init_population",
    "inverse_mse_weights", "linear_schedule", "make_member_data", "make_population",
    "make_schedule", "row_energy_scores", "sample", "scan_train_steps", "search", "select",
    "select_candidates", "select_members", "stack_members", "train_step", "unstack_members",
]
