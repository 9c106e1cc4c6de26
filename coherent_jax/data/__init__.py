"""Cohorts: containers, loaders, validation, splits, missingness and preprocessing."""

from coherent_jax.data.cohort import Cohort
from coherent_jax.data.csv_folder import load_csv_folder
from coherent_jax.data.formats import load_h5mu
from coherent_jax.data.inputs import load_path
from coherent_jax.data.labels import encode_stage, overall_survival
from coherent_jax.data.linear_gaussian import LinearGaussianModel
from coherent_jax.data.missingness import TCGA_LIKE_RATES, induce_missingness, tcga_like_rates
from coherent_jax.data.mixture import MixtureModel, hidden_subtype_model, mixture_cohort
from coherent_jax.data.paper_layout import PAPER_MODALITIES, load_paper_layout
from coherent_jax.data.preprocess import Preprocessor
from coherent_jax.data.split import paper_split
from coherent_jax.data.synthetic import TCGA_TYPES, TCGA_WIDTHS, linear_gaussian_cohort, tcga_like
from coherent_jax.data.tcga import COHORTS, describe_overlap, load_pan_cancer, load_tcga
from coherent_jax.data.validate import DataError

__all__ = [
    "COHORTS", "Cohort", "DataError", "LinearGaussianModel", "MixtureModel",
    "PAPER_MODALITIES", "Preprocessor", "TCGA_LIKE_RATES", "TCGA_TYPES", "TCGA_WIDTHS",
    "describe_overlap", "encode_stage", "hidden_subtype_model", "induce_missingness",
    "linear_gaussian_cohort", "load_csv_folder", "load_h5mu", "load_pan_cancer",
    "load_paper_layout", "load_path", "load_tcga", "mixture_cohort", "overall_survival",
    "paper_split", "tcga_like", "tcga_like_rates",
]
