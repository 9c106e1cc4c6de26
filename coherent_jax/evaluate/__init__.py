"""Evaluation: reconstruction, baselines, fidelity, privacy, downstream usefulness, statistics
and the report. Pure functions on arrays and DataFrames indexed by sample ID."""

from coherent_jax.evaluate.align import draws_array, join_labels
from coherent_jax.evaluate.baselines import BASELINES, predict_missing
from coherent_jax.evaluate.downstream import (feature_table, fit_forest, harrell_c_index,
                                              prioritisation_curve, removed_subsets, rescue,
                                              train_real_test_synthetic)
from coherent_jax.evaluate.fidelity import energy_distance, prdc
from coherent_jax.evaluate.patterns import PatternCopies, pattern_copies, source_subsets
from coherent_jax.evaluate.privacy import (closest_distance, dcr_share, membership_inference_auc,
                                           unconditional_check)
from coherent_jax.evaluate.reconstruction import (comparison_table, cosine_distance, crps,
                                                  interval_coverage, mse, r2,
                                                  reconstruction_metrics)
from coherent_jax.evaluate.report import write_report
from coherent_jax.evaluate.stats import benjamini_hochberg, paired_tests
from coherent_jax.evaluate.suite import EvalConfig, evaluate_suite

__all__ = [
    "BASELINES", "EvalConfig", "PatternCopies", "benjamini_hochberg", "closest_distance", "comparison_table", "cosine_distance",
    "crps", "dcr_share", "draws_array", "energy_distance", "evaluate_suite", "feature_table", "fit_forest",
    "harrell_c_index", "interval_coverage", "join_labels", "membership_inference_auc", "mse",
    "paired_tests", "pattern_copies", "prdc", "predict_missing", "prioritisation_curve", "r2",
    "reconstruction_metrics", "removed_subsets", "rescue", "source_subsets", "train_real_test_synthetic",
    "unconditional_check", "write_report",
]
