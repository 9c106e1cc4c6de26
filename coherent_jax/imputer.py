"""A trained work directory as a self-contained imputer of new patients, in their units.

    imputer = Imputer.load("runs/mine")            # needs nothing but the work directory
    patients = imputer.read("new_patients/")      # a folder of tables or a .h5mu file; whole
                                                  # modalities may be absent
    result = imputer.impute(patients)             # ImputeConfig of the run, or your own
    result.features["rna"]                        # draws in the units of the input files
    result.summary("rna", space="features")["mean"]

The work directory holds everything needed and no patient's row: the fitted preprocessing
(feature lists; a low-rank Gaussian and medians for holes inside a row; means and standard
deviations), the latent space,
the models, the run's imputation settings and the fingerprint of the data it was trained on.
Observed values come back exactly as given; generated values are mapped back through the
inverse of the preprocessing (`units='input'`), or left as the preprocessing's z-scores
(`units='zscore'`); latents are always in `result.draws`.
"""

from __future__ import annotations

import dataclasses
import os
from typing import Any, Sequence

import numpy as np
import pandas as pd

from coherent_jax import workdir as layout
from coherent_jax.data import Cohort, DataError, Preprocessor
from coherent_jax.data.inputs import load_path, read_originals
from coherent_jax.errors import UnknownModalityError, UserError
from coherent_jax.impute import ImputeConfig, Imputation, SamplerCalls, impute
from coherent_jax.latent import LatentSpace
from coherent_jax.model_set import ModelSet
from coherent_jax.settings import from_mapping

UNITS = ("input", "zscore")


@dataclasses.dataclass(frozen=True)
class RangeCheck:
    """Refuses patients whose inputs look like another scale or unit than the training data.

    A patient's modality is refused when more than `max_share` of its features lie more than
    `max_z` training standard deviations from the training mean (after the preprocessing's
    z-scoring). Genuine outliers move a few features; a unit mix-up (x1000, counts vs logs)
    moves most of them. `max_share=1` turns the check off.
    """

    max_z: float = 10.0
    max_share: float = 0.5


def check_ranges(zscores: Cohort, check: RangeCheck) -> None:
    """Raises DataError naming the modality, patients and likely cause of a scale mismatch."""
    if check.max_share >= 1:
        return
    for m in zscores.modalities:
        values, present = zscores.matrix(m)
        if not present.any():
            continue
        share = (np.abs(values[present]) > check.max_z).mean(axis=1)  # [n_present]
        bad = zscores.sample_ids[present][share > check.max_share]
        if len(bad):
            worst = float(share.max())
            raise DataError(
                f"modality {m!r}: {len(bad)} patient(s) ({', '.join(map(str, bad[:5]))}"
                f"{' ...' if len(bad) > 5 else ''}) have up to {worst:.0%} of their features "
                f"more than {check.max_z:g} training standard deviations from the training "
                "mean. Their values are probably on another scale or unit than the training "
                "files (e.g. x1000, raw counts instead of logs); convert them, or relax the "
                "check (--max_outlier_share, RangeCheck.max_share) if they are real.")


@dataclasses.dataclass(frozen=True, eq=False)
class Imputer:
    """A trained run, ready to impute new patients. Build with `Imputer.load(workdir)`.

    Attributes:
        preprocessor: the fitted feature preprocessing.
        space: the latent space.
        models: the trained ModelSet.
        settings: the run's imputation settings (ImputeConfig).
        seed: the run's seed.
        fingerprint: fingerprint of the data the run was trained on.
        workdir: where it was loaded from.
    """

    preprocessor: Preprocessor
    space: LatentSpace
    models: ModelSet
    settings: ImputeConfig
    seed: int
    fingerprint: str
    workdir: str

    @classmethod
    def load(cls, workdir: str) -> "Imputer":
        """Reads a work directory written by the pipeline; needs no training data.

        Raises:
            DataError: the folder is not a trained work directory, or predates saved
                preprocessing (rerun the pipeline on it: it adds the missing part).
        """
        parts = [layout.part(workdir, name) for name in layout.IMPUTER_PARTS]
        missing = [p for p in parts if not os.path.exists(p)]
        if missing:
            raise DataError(f"{workdir!r} is not a complete trained work directory: "
                            f"{', '.join(missing)} missing. Train it with "
                            "experiments/run_pipeline.py (a rerun on the same work directory "
                            "adds what is missing without retraining).")
        run = layout.read_run(workdir)  # in today's names, whichever version saved it
        settings = from_mapping(ImputeConfig, run["config"].get("impute", {}),
                                besides=layout.STAGES.impute.own_settings)
        return cls(Preprocessor.load(parts[1]), LatentSpace.restore(parts[2]),
                   ModelSet.load(parts[3]), settings, int(run["seed"]),
                   run.get("data_fingerprint", ""), os.path.abspath(workdir))

    @property
    def modalities(self) -> tuple[str, ...]:
        """The modalities the run was trained on."""
        return tuple(self.preprocessor.transforms)

    def read(self, path: str) -> Cohort:
        """Reads new patients from a folder of per-modality tables (.csv/.tsv/.parquet/.h5ad,
        see `load_csv_folder`) or a MuData .h5mu file (`load_h5mu`); absent modalities (no
        file or mod, or one without any value) are fine."""
        return load_path(path, allow_empty=True)

    @staticmethod
    def originals(path: str, patients: Cohort) -> dict:
        """modality -> the files' values in their own precision (the Cohort holds float32),
        so that observed values come back exactly as given (`impute(..., originals=...)`)."""
        return read_originals(path, patients.modalities)

    def impute(self, patients: Cohort, settings: ImputeConfig | None = None,
               seed: int | None = None, units: str = "input",
               range_check: RangeCheck = RangeCheck(),
               originals: dict | None = None, *, bucket: int = 256,
               mesh: Any = None, first: Sequence[str] = ()) -> Imputation:
        """Fills every missing modality of new patients (raw, in the training files' units).

        Args:
            patients: a Cohort of new patients in the units of the training files; it may
                lack whole modalities (every patient lacking one is fine).
            settings: imputation settings (default: the run's).
            seed: sampling seed (default: the run's).
            units: 'input' (the training files' units) or 'zscore' (the preprocessing's).
            range_check: refuses inputs that look like another scale.
            originals: modality -> the input values in full precision (`Imputer.originals`);
                observed rows are written from them (default: the Cohort's float32 values).
            bucket: smallest padded batch of a sampler call (`impute.impute`).
            mesh: optional ('data',) mesh (`parallel.make_mesh`): every sampler call splits
                its rows over the devices (`impute.impute`).
            first: modalities the cascade draws first, in this order, for every patient (the
                rest follow in the model set's order): the first missing modality is drawn
                from the observed ones alone, each later one also given the draws before it,
                so the first carries no other draw's error (benchmarks/RESULTS.md, "The
                cascade's order"). Default: each availability pattern's order chosen in
                training (`ModelSet.cascade_orders`), else the model set's.

        Returns:
            An Imputation whose `features` are in `units`, observed values as given.

        Raises:
            DataError: unknown modalities, missing features, a scale mismatch.
        """
        if units not in UNITS:
            raise ValueError(f"units must be one of {UNITS}, got {units!r}.")
        settings = settings or self.settings
        order = cascade_order(first, tuple(self.models.targets)) if first else None
        unknown = sorted(set(patients.modalities) - set(self.modalities))
        if unknown:
            raise UnknownModalityError(
                f"modalities {unknown} were not in the training data (trained: "
                f"{list(self.modalities)}); rename their files or leave them out.")
        full = _with_every_modality(patients, self.modalities, self.preprocessor)
        zscores = self.preprocessor.transform(full)
        check_ranges(zscores, range_check)
        result = impute(self.space.encode(zscores), self.models, settings,
                        seed=self.seed if seed is None else seed, latent_space=self.space,
                        feature_cohort=zscores,
                        calls=SamplerCalls(order=order, bucket=bucket, mesh=mesh))
        if units == "input":
            given = {m: (originals or {}).get(m, full.tables[m]) for m in full.modalities}
            features = {m: self._to_input_units(m, table, given[m])
                        for m, table in result.features.items()}
            result = dataclasses.replace(result, features=features, feature_means={
                m: self._means_in_input_units(m, table, features[m], given[m])
                for m, table in result.feature_means.items()})
        return result

    def _means_in_input_units(self, modality: str, means: pd.DataFrame, draws: pd.DataFrame,
                              given: pd.DataFrame) -> pd.DataFrame:
        """The posterior-mean estimate in input units: the z-score mean mapped back, or, where
        a shape transform (`data.marginal`) makes the map nonlinear, the mean of the draws
        already in input units (the map of a mean is not the mean of the map)."""
        if self.preprocessor.transforms[modality].shape is None:
            return self._to_input_units(modality, means, given)
        return draws.groupby(level="sample_id", sort=False).mean().reindex(means.index)

    def _to_input_units(self, modality: str, draws: pd.DataFrame,
                        given: pd.DataFrame) -> pd.DataFrame:
        """Decoded z-scores (draws or means) -> input units; observed rows as given."""
        step = self.preprocessor.transforms[modality]
        out = step.inverse(draws)
        given = given.reindex(columns=list(step.features))
        present = given.index[~given.isna().all(axis=1)]
        ids = out.index.get_level_values("sample_id") if out.index.nlevels > 1 else out.index
        rows = ids.isin(present)
        out.loc[rows] = given.reindex(ids[rows]).to_numpy(np.float64)
        return out


def cascade_order(first: Sequence[str], targets: Sequence[str]) -> tuple[str, ...]:
    """The targets' fill order: `first`, then the other `targets` in their order. Refuses
    names that are no target and repeated names."""
    unknown = [m for m in first if m not in targets]
    if unknown:
        raise UnknownModalityError(f"cannot draw {unknown} first: the models generate "
                                   f"{list(targets)}.")
    if len(set(first)) != len(first):
        raise UserError(f"a modality is named twice in the order {list(first)}.")
    return tuple(first) + tuple(t for t in targets if t not in first)


def _with_every_modality(patients: Cohort, modalities, prep: Preprocessor) -> Cohort:
    """The patients with an all-empty table for each trained modality they lack entirely."""
    tables = dict(patients.tables)
    for m in modalities:
        if m not in tables:
            tables[m] = pd.DataFrame(np.nan, index=patients.sample_ids,
                                     columns=list(prep.transforms[m].features), dtype=np.float32)
    induced = pd.DataFrame(False, index=patients.sample_ids, columns=list(modalities))
    return patients.replace(tables={m: tables[m] for m in modalities}, induced=induced,
                            held_out={})
