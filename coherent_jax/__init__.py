"""coherent-jax: coherent cross-modal generation of missing biomedical modalities in JAX."""

from coherent_jax.ensemble import select_members, stack_members, unstack_members
from coherent_jax.fusion import availability_weights, disagreement, inverse_mse_weights
from coherent_jax.models.denoiser import Condition, Denoiser, DenoiserApply, init_denoiser
from coherent_jax.sampling import CoherentSamples, coherent_sample, sample, select_candidates
from coherent_jax.schedules import Schedule, cosine_schedule, linear_schedule, make_schedule
from coherent_jax.train import (FitResult, MemberData, TrainConfig, TrainState, create_train_state,
                                evaluate_members, fit, make_member_data, train_step, train_steps)

__version__ = "0.1.0"
