"""coherent-jax: coherent cross-modal generation of missing biomedical modalities in JAX."""

from coherent_jax.ensemble import select_members, stack_members, unstack_members
from coherent_jax.fusion import availability_weights, disagreement, inverse_mse_weights
from coherent_jax.impute import Imputation, calibrate_thresholds, impute, write_imputation
from coherent_jax.imputer import Imputer, RangeCheck
from coherent_jax.latent import LatentConfig, LatentSpace, quality_table
from coherent_jax.model_set import (ModelSet, ModelSetConfig, TargetModels, train_model_set,
                                    train_target)
from coherent_jax.models.autoencoder import AutoencoderConfig
from coherent_jax.models.denoiser import Condition, Denoiser, DenoiserApply, init_denoiser
from coherent_jax.population import Population, init_population, make_population, search, select
from coherent_jax.sampling import CoherentSamples, coherent_sample, sample, select_candidates
from coherent_jax.schedules import Schedule, cosine_schedule, linear_schedule, make_schedule
from coherent_jax.train import (FitResult, MemberData, TrainConfig, TrainState, create_train_state,
                                evaluate_members, fit, make_member_data, train_step, train_steps)

__version__ = "0.1.0"
