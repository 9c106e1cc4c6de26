"""coherent-jax: coherent cross-modal generation of missing biomedical modalities in JAX.

The user's calls are here: load a cohort, fit a latent space, train the model set, impute,
evaluate, and reload a trained work directory as an imputer of new patients. The engine
(denoisers, schedules, training steps, samplers, fusion) is `coherent_jax.engine`.
"""

from coherent_jax import _moved

_moved.install()  # old module paths (coherent_jax.sampling, ...) keep importing

from coherent_jax.calibrate import (FusionCalibration, calibrate_fusion, calibrate_thresholds,
                                    choose_fusion_sharpness, rejection_thresholds)
from coherent_jax.data import Cohort
from coherent_jax.errors import UnknownModalityError, UserError
from coherent_jax.evaluate import EvalConfig, TrainedRun, evaluate_suite
from coherent_jax.formats_out import write_imputation
from coherent_jax.impute import ImputeConfig, Imputation, SamplerCalls, impute
from coherent_jax.imputer import Imputer, RangeCheck
from coherent_jax.latent import LatentConfig, LatentSpace, quality_table
from coherent_jax.model_set import (ModelSet, ModelSetConfig, TargetModels, TrainingRuntime,
                                    train_model_set)
from coherent_jax.autoencoder import AutoencoderConfig
from coherent_jax.pipeline import DataConfig, load_cohort

__all__ = [
    "AutoencoderConfig", "Cohort", "DataConfig", "EvalConfig", "FusionCalibration", "Imputation",
    "ImputeConfig", "Imputer", "LatentConfig", "LatentSpace", "ModelSet", "ModelSetConfig",
    "RangeCheck", "SamplerCalls", "TargetModels", "TrainedRun", "TrainingRuntime",
    "UnknownModalityError", "UserError", "calibrate_fusion", "calibrate_thresholds",
    "choose_fusion_sharpness", "evaluate_suite", "impute", "load_cohort", "quality_table",
    "rejection_thresholds", "train_model_set", "write_imputation",
]

__version__ = "0.1.0"
