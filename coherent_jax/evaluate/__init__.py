"""Evaluation: reconstruction, baselines, fidelity, privacy, downstream usefulness, statistics
and the report. Pure functions on arrays and DataFrames indexed by sample ID."""

from coherent_jax.evaluate.align import draws_array, join_labels
from coherent_jax.evaluate.baselines import BASELINES, predict_missing
from coherent_jax.evaluate.downstream import (PrioritisationConfig, RescueConfig, RescueResult,
                                              c_index, feature_table, fit_forest,
                                              prioritisation_curve, removed_subsets, rescue,
                                              train_real_test_synthetic)
from coherent_jax.evaluate.fidelity import energy_distance, prdc, prdc_per_sample
from coherent_jax.evaluate.patterns import PatternCopies, pattern_copies, source_subsets
from coherent_jax.evaluate.privacy import (closest_distance, copy_audit, membership_audit,
                                           unconditional_check)
from coherent_jax.evaluate.reconstruction import (comparison_table, cosine_distance, crps,
                                                  ideal_coverage, interval_coverage, mse,
                                                  patient_errors, r2, r2_bootstrap,
                                                  reconstruction_metrics)
from coherent_jax.evaluate.render import Page, write_page
from coherent_jax.evaluate.report import write_report
from coherent_jax.evaluate.results import Downstream, EvalResults
from coherent_jax.evaluate.stats import (auc_test, benjamini_hochberg, bootstrap_indices,
                                         paired_difference, percentile_interval)
from coherent_jax.evaluate.suite import EvalConfig, TrainedRun, evaluate_suite

__all__ = [
    "BASELINES", "Downstream", "EvalConfig", "EvalResults", "Page", "PatternCopies",
    "PrioritisationConfig", "RescueConfig", "RescueResult", "auc_test", "benjamini_hochberg", "bootstrap_indices", "c_index",
    "closest_distance", "comparison_table", "copy_audit", "cosine_distance", "crps", "draws_array",
    "energy_distance", "evaluate_suite", "feature_table", "fit_forest", "ideal_coverage",
    "interval_coverage", "join_labels", "membership_audit", "mse", "paired_difference",
    "patient_errors", "pattern_copies", "percentile_interval", "prdc", "prdc_per_sample",
    "predict_missing", "prioritisation_curve", "r2", "r2_bootstrap", "reconstruction_metrics",
    "removed_subsets", "rescue", "source_subsets", "train_real_test_synthetic",
    "TrainedRun", "unconditional_check", "write_page", "write_report",
]
