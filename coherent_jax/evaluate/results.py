"""What `evaluate_suite` found, typed: the input of `report.write_report`."""

from __future__ import annotations

import dataclasses
from typing import Any

import pandas as pd


@dataclasses.dataclass
class Downstream:
    """The downstream forests' results (None where skipped: no label, no survival times).

    Attributes:
        trts: train on real, test on synthetic: target, data, balanced accuracy.
        rescue, rescue_survival: `downstream.RescueResult` of the classification and survival
            forests with modalities removed and filled.
        rescue_intervals, rescue_survival_intervals: their patient-bootstrap intervals.
        rescue_tests, rescue_survival_tests: paired tests against the retrained forest.
        prioritisation: modality, method, areas under the prioritisation curve.
        prioritisation_curves: '<modality>_<method>' -> the curve.
    """

    trts: pd.DataFrame | None = None
    rescue: Any = None
    rescue_intervals: pd.DataFrame | None = None
    rescue_tests: pd.DataFrame | None = None
    rescue_survival: Any = None
    rescue_survival_intervals: pd.DataFrame | None = None
    rescue_survival_tests: pd.DataFrame | None = None
    prioritisation: pd.DataFrame | None = None
    prioritisation_curves: dict = dataclasses.field(default_factory=dict)


@dataclasses.dataclass
class EvalResults:
    """Every table of one evaluation.

    Attributes:
        config: the `EvalConfig` that ran.
        methods: the generative methods that ran (those of config.methods the model set can).
        patients, available_sets: evaluated complete patients and source subsets per patient.
        scores: the long reconstruction table (`scoring.reconstruction`).
        headline: rows what is scored, columns targets: feature-space R^2, every other
            modality given; headline_cells: the same with patient intervals and the paired
            differences to the raw-feature ridge; headline_tests: those tests.
        reconstruction_latent: `headline` in latent space.
        calibration: coverage of the central 90% interval of the draws.
        distributions: the draws scored as distributions (energy score, projection
            coverage) beside the closed form (`scoring.distribution_table`).
        joint: patients given one modality, their missing modalities scored together
            (`joint.joint_table`; empty with two modalities).
        fidelity: PRDC and energy distance of single draws; copies: near-copies of the
            training set; membership: the conditional membership inference;
            unconditional: fully masked multi-condition draws vs training records.
        disagreement: [steps, targets] mean per-step disagreement of coherent sampling.
        downstream: the forests' results.
        pca: name -> (real [N, D], generated [N, D]) latents for the PCA figures.
        diagnostics: the imputation diagnostics of every method.
        timings: seconds per part.
        index: path of the report's index.md once written.
    """

    config: Any
    methods: list
    patients: int
    available_sets: int
    scores: pd.DataFrame
    headline: pd.DataFrame
    headline_cells: pd.DataFrame
    headline_tests: pd.DataFrame
    reconstruction_latent: pd.DataFrame
    calibration: pd.DataFrame
    distributions: pd.DataFrame
    joint: pd.DataFrame
    fidelity: pd.DataFrame
    copies: pd.DataFrame
    membership: pd.DataFrame
    unconditional: dict
    disagreement: pd.DataFrame
    downstream: Downstream
    pca: dict
    diagnostics: pd.DataFrame
    timings: dict
    index: str | None = None

    def __repr__(self) -> str:  # the tables are large: name them, do not print them
        return (f"EvalResults(methods={self.methods}, patients={self.patients}, "
                f"available_sets={self.available_sets}, index={self.index!r}; "
                f"tables: {sorted(self.tables())})")

    def tables(self) -> dict[str, pd.DataFrame]:
        """name -> table, each written as the report's tables/<name>.csv."""
        out = {"reconstruction_all": self.scores, "reconstruction_latent":
               self.reconstruction_latent, "reconstruction_tests": self.headline_tests,
               "calibration": self.calibration, "distributions": self.distributions,
               "joint": self.joint,
               "fidelity": self.fidelity,
               "privacy_membership": self.membership, "privacy_copies": self.copies,
               "imputation_diagnostics": self.diagnostics}
        down = self.downstream
        for name in ("trts", "rescue_intervals", "rescue_tests", "rescue_survival_intervals",
                     "rescue_survival_tests", "prioritisation"):
            if getattr(down, name) is not None:
                out[name] = getattr(down, name)
        for name in ("rescue", "rescue_survival"):
            if getattr(down, name) is not None:
                out[name] = getattr(down, name).scores
        return out
