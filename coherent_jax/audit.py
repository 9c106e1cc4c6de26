"""Audit of a work directory as an outsider holding its files would attack it.

Two questions, each answered against the data the run was trained on:

* **Stored rows** (`scan_artefacts`): does any saved array (NumPy, CSV/TSV/Parquet, JSON, the
  Orbax trees of the latent space, models and checkpoints) hold a training patient's row or
  a near copy of one? Every vector of a saved array whose length is a modality's feature
  count (read both as the input's units and as the preprocessing's z-scores) or the latent
  width is compared, in z-scores / latents, with the training patients' rows and with the
  held-out (test) patients' rows. A vector is a near copy when it lies nearer to a training
  row than half the distance at which the closest held-out patient lies to its nearest
  training row (`cut` = that distance x `CUT_SHARE`) AND at most `COPY_RATIO` as far from
  the training rows as from the held-out ones (a mean or a loading vector, equally near both,
  reveals no patient). Both bounds keep chance out in few dimensions, where some of the
  hundreds of thousands of weight vectors of a model fall near a training row; a stored row,
  or one with a little noise added, sits far inside both.
* **Membership attacks** (`membership_attacks`): what the released files let an attacker
  tell about whether a patient was trained on; each an AUC with a 95% patient-bootstrap
  interval, members = complete training patients, non-members = complete test patients:
  conditional (each target imputed from the others through the work directory's `Imputer`,
  the user's door; score = the patient's squared error of the mean of K draws in feature
  z-scores), encoder (reconstruction error of the latent space's encode -> decode), and
  unconditional (the multi-condition models' fully masked draws: a patient near a draw looks
  like a member). The coherent methods must refuse a patient with no modality; the audit
  checks that they do.

`audit_workdir` runs both; `write_audit` writes the tables and a summary.json.
"""

from __future__ import annotations

import dataclasses
import gzip
import json
import os
import warnings
from typing import Iterator

import numpy as np
import pandas as pd

from coherent_jax import metrics_io, safe_io

from coherent_jax.engine import checkpointing
from coherent_jax.data import Cohort
from coherent_jax.errors import UserError
from coherent_jax.evaluate import privacy, stats
from coherent_jax.impute import ImputeConfig, supports, unconditional_draws
from coherent_jax.imputer import Imputer, RangeCheck

TABLE_SUFFIXES = (".csv", ".csv.gz", ".tsv", ".tsv.gz", ".parquet")
COPY_RATIO = 0.1
"""A vector counts as a near copy only when it is at most this share as far from the training
rows as from the held-out rows (besides being inside the cut)."""
CUT_SHARE = 0.5
"""The cut: this share of the smallest distance of a held-out patient to a training row."""


@dataclasses.dataclass(frozen=True)
class AuditConfig:
    """What the audit runs.

    Attributes:
        methods: imputation methods attacked conditionally.
        num_samples: draws per patient of the conditional attack (the mean is scored).
        num_unconditional: fully masked draws per multi-condition model.
        num_bootstrap: bootstrap resamples of the AUC intervals.
        seed: sampling and bootstrap seed.
        attacks: run the membership attacks (False: the stored-row scan only).
    """

    methods: tuple[str, ...] = ("coherent", "multi", "gaussian")
    num_samples: int = 10
    num_unconditional: int = 1000
    num_bootstrap: int = stats.NUM_BOOTSTRAP
    seed: int = 0
    attacks: bool = True


@dataclasses.dataclass
class AuditResult:
    """What `audit_workdir` found.

    Attributes:
        artefacts: one row per (file, array, modality, reading) compared: vectors, the
            smallest distance to a training row, the cut, near_copies.
        attacks: one row per (attack, method, target): auc, low, high, n_members,
            n_non_members, flagged (outside `privacy.MEMBERSHIP_AUC_BAND`), or `refused` for
            the coherent methods' no-modality check.
        unread: files holding no array we could read, with the reason.
    """

    artefacts: pd.DataFrame
    attacks: pd.DataFrame
    unread: pd.DataFrame

    @property
    def near_copies(self) -> int:
        """Vectors found within the near-copy rule, over every file."""
        return int(self.artefacts["near_copies"].sum()) if len(self.artefacts) else 0


# ------------------------------------------------------------------------------------------
# reading every file of a work directory
def _numeric_lists(value, found: list) -> None:
    """Collects every list of numbers (or list of such lists) inside parsed JSON."""
    if isinstance(value, dict):
        for v in value.values():
            _numeric_lists(v, found)
    elif isinstance(value, list) and value:
        try:
            array = np.asarray(value, np.float64)
        except (TypeError, ValueError):
            array = None
        if array is not None and array.ndim >= 1 and array.size >= 2:
            found.append(array)
        else:
            for v in value:
                _numeric_lists(v, found)


def _read_json(path: str) -> list[np.ndarray]:
    opener = gzip.open if path.endswith(".gz") else open
    with opener(path, "rt") as f:
        text = f.read()
    records = ([json.loads(line) for line in text.splitlines() if line.strip()]
               if ".jsonl" in path else [json.loads(text)])
    found: list = []
    for record in records:
        _numeric_lists(record, found)
    return found


def _read_table(path: str) -> list[np.ndarray]:
    table = (pd.read_parquet(path) if path.endswith(".parquet")
             else pd.read_csv(path, sep="\t" if ".tsv" in path else ",", index_col=0))
    numeric = table.select_dtypes("number")
    return [numeric.to_numpy(np.float64)] if numeric.size else []


def stored_arrays(workdir: str) -> Iterator[tuple[str, str, np.ndarray | None, str]]:
    """Every array saved under `workdir`: (file, array name, array or None, why unread).

    Orbax trees (folders with `_METADATA`) are restored whole; NumPy, JSON / JSON-lines and
    tables (CSV, TSV, Parquet) are parsed; other files (Markdown, figures, Orbax's own
    internals) are listed as unread with the reason."""
    trees = set()
    for root, dirs, files in os.walk(workdir):
        dirs.sort()
        if "_METADATA" in files and not any(root.startswith(t + os.sep) for t in trees):
            trees.add(root)
            rel = os.path.relpath(root, workdir)
            try:
                for name, array in checkpointing.read_arrays(root):
                    yield rel, name, array, ""
            except Exception as error:  # noqa: BLE001 - reported, never silently skipped
                yield rel, "", None, f"Orbax tree not readable: {error}"
            continue
        if any(root == t or root.startswith(t + os.sep) for t in trees):
            continue
        for file in sorted(files):
            path = os.path.join(root, file)
            rel = os.path.relpath(path, workdir)
            try:
                if file.endswith((".npz", ".npy")):
                    with np.load(path, allow_pickle=False) as loaded:
                        for key in loaded.files:
                            yield rel, key, np.asarray(loaded[key]), ""
                    continue
                if file.endswith((".json", ".jsonl", ".json.gz", ".jsonl.gz")):
                    arrays = _read_json(path)
                elif file.endswith(TABLE_SUFFIXES):
                    arrays = _read_table(path)
                else:
                    yield rel, "", None, "not a numeric format"
                    continue
            except Exception as error:  # noqa: BLE001 - reported, never silently skipped
                yield rel, "", None, f"not readable: {error}"
                continue
            for i, array in enumerate(arrays):
                yield rel, str(i), array, ""


def _vectors(array: np.ndarray, width: int) -> np.ndarray:
    """[n, width] vectors of an array in each orientation where one axis has that width."""
    array = np.asarray(array, np.float64)
    out = []
    if array.ndim >= 1 and array.shape[-1] == width:
        out.append(array.reshape(-1, width))
    if array.ndim == 2 and array.shape[0] == width and array.shape[1] != width:
        out.append(array.T)
    if not out:
        return np.zeros((0, width))
    rows = np.concatenate(out)
    return rows[np.isfinite(rows).all(axis=1)]


@dataclasses.dataclass(frozen=True)
class _Reference:
    """One modality in one space: training and held-out rows and the near-copy cut."""

    modality: str
    space: str  # 'features' or 'latent'
    train: np.ndarray  # [n, W]
    heldout: np.ndarray  # [h, W]
    cut: float  # CUT_SHARE x the smallest held-out -> nearest training row distance

    @classmethod
    def of(cls, modality, space, train, heldout):
        return cls(modality, space, train, heldout,
                   CUT_SHARE * float(np.min(privacy.closest_distance(heldout, train))))

    def compare(self, vectors: np.ndarray) -> dict:
        to_train = privacy.closest_distance(vectors, self.train)
        to_held = privacy.closest_distance(vectors, self.heldout)
        near = (to_train < self.cut) & (to_train <= COPY_RATIO * to_held)
        return {"vectors": len(vectors), "min_distance_to_train": float(to_train.min()),
                "cut": self.cut, "near_copies": int(near.sum())}


def scan_artefacts(workdir: str, imputer: Imputer, members: Cohort, heldout: Cohort
                   ) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Compares every saved vector with the training and held-out rows (module docstring).

    Args:
        workdir: the work directory.
        imputer: `Imputer.load(workdir)` (its preprocessing and latent space).
        members: the training patients (raw units, every one with the modality counts).
        heldout: patients never trained on (raw units).

    Returns:
        (artefacts table, unread files table).
    """
    references = {}
    train_z, heldout_z = _zscores(imputer, members), _zscores(imputer, heldout)
    for m in imputer.modalities:
        step = imputer.preprocessor.transforms[m]
        zs = {"train": train_z[m], "heldout": heldout_z[m]}
        references[m] = (step, _Reference.of(m, "features", zs["train"], zs["heldout"]),
                         _Reference.of(m, "latent", imputer.space.encode_values(m, zs["train"]),
                                       imputer.space.encode_values(m, zs["heldout"])))
    rows, unread = [], []
    for file, name, array, why in stored_arrays(workdir):
        if array is None:
            unread.append({"file": file, "why": why})
            continue
        for m, (step, features, latent) in references.items():
            width = len(step.features)
            vectors = _vectors(array, width)
            if len(vectors):
                for reading, z in (("input units", (vectors - step.mean) / step.std),
                                   ("z-scores", vectors)):
                    rows.append({"file": file, "array": name, "modality": m,
                                 "reading": reading, **features.compare(z)})
            vectors = _vectors(array, latent.train.shape[1])
            if len(vectors):
                rows.append({"file": file, "array": name, "modality": m, "reading": "latent",
                             **latent.compare(vectors)})
    return pd.DataFrame(rows), pd.DataFrame(unread, columns=["file", "why"])


# ------------------------------------------------------------------------------------------
# membership attacks through the released files
def _zscores(imputer: Imputer, cohort: Cohort) -> dict[str, np.ndarray]:
    """modality -> [n_present, D] the preprocessing's z-scores of the patients having it."""
    z = imputer.preprocessor.transform(cohort)
    out = {}
    for m in imputer.modalities:
        values, present = z.matrix(m)
        out[m] = values[present].astype(np.float64)
    return out


def _emptied(table: pd.DataFrame) -> pd.DataFrame:
    return pd.DataFrame(np.nan, index=table.index, columns=table.columns, dtype=np.float32)


def _without(cohort: Cohort, target: str) -> Cohort:
    return cohort.replace(tables={m: t if m != target else _emptied(t)
                                  for m, t in cohort.tables.items()})


def _attack_row(attack: str, method: str, target: str, member_scores, non_member_scores,
                config: AuditConfig) -> dict:
    """A membership AUC (higher score = called a member) with its bootstrap interval."""
    found = stats.auc_test(member_scores, non_member_scores, num=config.num_bootstrap,
                           seed=config.seed)
    band = privacy.MEMBERSHIP_AUC_BAND
    return {"attack": attack, "method": method, "target": target, **found,
            "flagged": not band[0] <= found["auc"] <= band[1]}


def membership_attacks(imputer: Imputer, members: Cohort, non_members: Cohort,
                       config: AuditConfig = AuditConfig()) -> pd.DataFrame:
    """The conditional, encoder and unconditional attacks (module docstring).

    Args:
        imputer: the work directory's imputer.
        members, non_members: complete patients in raw units (training / never trained on).
        config: methods, draws, bootstrap.

    Returns:
        One row per (attack, method, target) with `_attack_row`'s columns (methods the model
        set cannot run are skipped); the coherent methods' no-modality check as attack
        'no modality given' with `refused`.
    """
    n_in = members.num_samples
    zs = [_zscores(imputer, members), _zscores(imputer, non_members)]  # complete patients
    space = imputer.space
    rows = []
    for target in imputer.modalities:
        truth = np.concatenate([z[target] for z in zs])
        for method in (m for m in config.methods if supports(imputer.models, m)):
            settings = dataclasses.replace(imputer.settings, method=method,
                                           num_samples=config.num_samples)
            errors = []
            for part in (members, non_members):
                result = imputer.impute(_without(part, target), settings, seed=config.seed,
                                        units="zscore", range_check=RangeCheck(max_share=1.0))
                errors.append(result.feature_means[target].reindex(part.sample_ids)
                              .to_numpy(np.float64))
            error = np.mean((np.concatenate(errors) - truth) ** 2, axis=1)
            rows.append(_attack_row("conditional", method, target, -error[:n_in],
                                    -error[n_in:], config))
        recon = space.decode(target, space.encode_values(target, truth.astype(np.float32)))
        error = np.mean((recon.to_numpy(np.float64) - truth) ** 2, axis=1)
        rows.append(_attack_row("encoder", "", target, -error[:n_in], -error[n_in:], config))
    latent_widths = {m: space.width(m) for m in imputer.modalities}
    draws = unconditional_draws(imputer.models, latent_widths, config.num_unconditional,
                                ImputeConfig(method="multi", sampler=imputer.settings.sampler,
                                             sample_steps=imputer.settings.sample_steps),
                                config.seed)
    for target, generated in draws.items():
        latents = [space.encode_values(target, z[target].astype(np.float32)) for z in zs]
        near = [-privacy.closest_distance(x, generated) for x in latents]
        rows.append(_attack_row("unconditional", "multi", target, near[0], near[1], config))
    rows.extend(_no_modality_rows(imputer, members))
    return pd.DataFrame(rows)


def _no_modality_rows(imputer: Imputer, members: Cohort) -> list[dict]:
    """Whether each coherent method the model set can run refuses a patient with no
    modality given."""
    ids = members.sample_ids[:1]
    empty = members.subset(ids)
    empty = empty.replace(tables={m: _emptied(t) for m, t in empty.tables.items()})
    rows = []
    for method in (m for m in ("coherent", "product") if supports(imputer.models, m)):
        settings = dataclasses.replace(imputer.settings, method=method, num_samples=1)
        try:
            imputer.impute(empty, settings, seed=0, units="zscore")
            refused = False
        except UserError:
            refused = True
        rows.append({"attack": "no modality given", "method": method, "target": "",
                     "refused": refused, "flagged": not refused})
    return rows


# ------------------------------------------------------------------------------------------
# the whole audit
def audit_workdir(workdir: str, cohort: Cohort, config: AuditConfig = AuditConfig()
                  ) -> AuditResult:
    """Audits a trained work directory against the data it was trained on.

    Args:
        workdir: a work directory written by the pipeline.
        cohort: the raw cohort (input units) with the run's split: members are the training
            patients, non-members the test patients (validation patients chose settings and
            are left out).
        config: what to run.

    Raises:
        UserError: not a work directory, or a cohort without the run's split or modalities.
    """
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        imputer = Imputer.load(workdir)
    for w in caught:  # an old preprocessing's donors: the scan finds them, say it once
        warnings.warn(str(w.message), stacklevel=2)
    missing = sorted(set(imputer.modalities) - set(cohort.modalities))
    if missing:
        raise UserError(f"the data lack modalities {missing} that {workdir!r} was trained on; "
                        "give the training data of this work directory.")
    train, test = cohort.split("train"), cohort.split("test")
    if train.num_samples == 0 or test.num_samples == 0:
        raise UserError("the data have no train or no test patients: give the training data "
                        "of this work directory with the run's split.")
    artefacts, unread = scan_artefacts(workdir, imputer, train, test)
    attacks = pd.DataFrame()
    if config.attacks:
        members = train.subset(train.sample_ids[train.complete])
        non_members = test.subset(test.sample_ids[test.complete])
        if members.num_samples < 2 or non_members.num_samples < 2:
            raise UserError("the membership attacks need at least 2 complete training and 2 "
                            "complete test patients; pass attacks=False (--noattacks) to scan "
                            "the stored arrays only.")
        attacks = membership_attacks(imputer, _unsplit(members), _unsplit(non_members), config)
    return AuditResult(artefacts=artefacts, attacks=attacks, unread=unread)


def _unsplit(cohort: Cohort) -> Cohort:
    """New patients as a user would pass them: no split, no induced holes."""
    return cohort.replace(splits=pd.Series(pd.NA, index=cohort.sample_ids, dtype="string"))


def write_audit(result: AuditResult, folder: str, run_info: dict, *,
                overwrite: bool = False, protected=()) -> None:
    """Writes artefacts.csv, attacks.csv, unread.csv and summary.json (config, seed,
    versions) into a new folder (written beside and renamed into place)."""
    with safe_io.output_folder(folder, overwrite=overwrite, protected=protected,
                               kind="privacy audit", flag="--out") as tmp:
        result.artefacts.to_csv(os.path.join(tmp, "artefacts.csv"), index=False)
        result.attacks.to_csv(os.path.join(tmp, "attacks.csv"), index=False)
        result.unread.to_csv(os.path.join(tmp, "unread.csv"), index=False)
        metrics_io.write_json(os.path.join(tmp, "summary.json"), {
            **run_info, "near_copies": result.near_copies,
            "flagged_attacks": int(result.attacks.get("flagged", pd.Series(dtype=bool)).sum()),
            "versions": metrics_io.versions()})
