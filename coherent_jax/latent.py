"""The shared latent space: one encoder per modality, then centring and one scale per modality
(or per-dimension z-scoring, the paper's; `LatentConfig.scaling`).

    space = LatentSpace.fit(cohort, LatentConfig(latent_dim=32))   # learns from train rows only
    latents = space.encode(cohort)          # a Cohort of [N, 32] tables rna_z0..rna_z31
    genes = space.decode("rna", generated)  # DataFrame with the original gene names
    space.save(workdir + "/latent"); space = LatentSpace.restore(workdir + "/latent")
    table = quality_table(space, cohort)    # reconstruction on val and test
    save_quality_table(table, workdir)

Everything the space learns (encoder weights or axes, centring and scale) comes from the
TRAIN rows that have the modality; validation and test rows are never read while fitting.
Autoencoders are early-stopped on a seeded hold-out of those train rows by default
(`stop_on='holdout'`); `stop_on='val'` stops on the validation split as the paper did.
"""

from __future__ import annotations

import dataclasses
import json
import os
from typing import Any, Callable, Mapping, Sequence

import numpy as np
import pandas as pd

from coherent_jax.engine import checkpointing
from coherent_jax import encoders as enc_lib
from coherent_jax.data import Cohort, DataError
from coherent_jax.data.lowrank_fill import LowRankFill
from coherent_jax.errors import UnknownModalityError
from coherent_jax import autoencoder as ae_lib

FORMAT = "coherent_jax.LatentSpace/1"
AUTO_MIN_ROWS = 200  # 'auto' tries the autoencoder from this many train rows
STOP_ON = ("holdout", "val")
SCALINGS = ("global", "per_dimension")


@dataclasses.dataclass(frozen=True)
class LatentConfig:
    """How to build the latent space.

    Attributes:
        latent_dim: latent width k of every modality not named in `widths` (the paper: 32).
        widths: modality -> its own latent width, for modalities that need another (e.g. a
            small table that cannot fill `latent_dim`, while the others keep it).
        kinds: modality -> 'auto', 'autoencoder', 'pca' or 'identity'; modalities not named
            get `encoders.default_kind` (identity at width k, PCA for slide embeddings such as
            'wsi', else `default_kind`).
        default_kind: the kind of the other modalities: 'auto' (PCA or the paper's
            autoencoder, whichever reconstructs held-out training rows better; PCA alone
            below AUTO_MIN_ROWS rows), 'autoencoder' (the paper) or 'pca'.
        autoencoders: modality -> AutoencoderConfig replacing the per-modality default
            (`models.autoencoder.default_config`); its latent_dim must equal the modality's
            width (`width`).
        stop_on: rows that early-stop the autoencoders: 'holdout' (a seeded share of the
            train rows, never trained on) or 'val' (the validation split, as the paper).
        holdout_fraction: share of each modality's train rows held out when stop_on='holdout'.
        seed: seed of the hold-out draw and of every autoencoder (unless its config says
            otherwise).
        scaling: how each modality's encoder outputs are scaled: 'global' (centred, one scale
            per modality: the encoder's geometry is kept, so a PCA latent's distances are
            those of the standardised features it spans, and a weak component stays weak) or
            'per_dimension' (every latent dimension z-scored, the paper: a component carrying
            1% of the variance weighs as much as the first in the denoisers' loss, the noise
            and every distance). KIPAN (README ablation): 'global' scored higher R^2 on the
            validation patients for every target.
    """

    latent_dim: int = 32
    widths: Mapping[str, int] = dataclasses.field(default_factory=dict)
    kinds: Mapping[str, str] = dataclasses.field(default_factory=dict)
    default_kind: str = "auto"
    autoencoders: Mapping[str, ae_lib.AutoencoderConfig] = dataclasses.field(default_factory=dict)
    stop_on: str = "holdout"
    holdout_fraction: float = 0.1
    seed: int = 0
    scaling: str = "global"

    def __post_init__(self):
        if self.scaling not in SCALINGS:
            raise ValueError(f"scaling must be one of {SCALINGS}, got {self.scaling!r}.")
        if self.latent_dim < 1:
            raise ValueError(f"latent_dim must be >= 1, got {self.latent_dim}.")
        for m, width in self.widths.items():
            if isinstance(width, bool) or not isinstance(width, (int, np.integer)) or width < 1:
                raise ValueError(f"the latent width of {m!r} must be an integer >= 1, got "
                                 f"{width!r}.")
        if self.stop_on not in STOP_ON:
            raise ValueError(f"stop_on must be one of {STOP_ON}, got {self.stop_on!r}.")
        if not 0 < self.holdout_fraction < 1:
            raise ValueError(f"holdout_fraction must lie in (0, 1), got {self.holdout_fraction}.")
        for m, kind in [*self.kinds.items(), ("default_kind", self.default_kind)]:
            if kind not in enc_lib.ENCODER_KINDS:
                raise ValueError(f"encoder kind for {m!r} is {kind!r}; use one of "
                                 f"{enc_lib.ENCODER_KINDS}.")
        for m, config in self.autoencoders.items():
            if config.latent_dim != self.width(m):
                raise ValueError(f"autoencoder config of {m!r} has latent_dim "
                                 f"{config.latent_dim}, the space gives {m!r} {self.width(m)}; "
                                 "make them equal.")

    def width(self, modality: str) -> int:
        """The latent width of `modality`: its entry in `widths`, else `latent_dim`."""
        return int(self.widths.get(modality, self.latent_dim))

    def to_json(self) -> dict:
        return dataclasses.asdict(self)

    @classmethod
    def from_json(cls, data: Mapping) -> "LatentConfig":
        data = {"scaling": "per_dimension", **data}  # spaces saved before 'scaling' existed
        data["autoencoders"] = {m: ae_lib.AutoencoderConfig(**c)
                                for m, c in data["autoencoders"].items()}
        return cls(**data)


def _scale(std: np.ndarray, scaling: str) -> np.ndarray:
    """[k] divisors of the centred encoder outputs whose per-dimension SDs are `std`."""
    if scaling == "global":
        return np.full_like(std, max(float(np.sqrt(np.mean(std ** 2))), 1e-12), np.float32)
    return np.where(std > 0, std, 1.0).astype(np.float32)


def latent_names(modality: str, latent_dim: int) -> list[str]:
    """Column names of a modality's latents: '<modality>_z0' .. '<modality>_z{k-1}'."""
    return [f"{modality}_z{j}" for j in range(latent_dim)]


@dataclasses.dataclass(frozen=True, eq=False)
class LatentSpace:
    """Fitted per-modality encoders with centring and scaling on top. Build with
    `LatentSpace.fit`.

    Attributes:
        config: the LatentConfig it was fitted with.
        encoders: modality -> fitted encoder (see encoders.py).
        feature_names: modality -> the feature names it was fitted on, in order.
        z_mean: modality -> [k] mean of the train rows' encoder outputs.
        z_std: modality -> [k] their scale: per dimension, their standard deviation (1 where
            constant); with config.scaling 'global', the root mean variance of all k.
        residual_std: modality -> [D] per-feature standard deviation of what the latent space
            leaves out (x - decode(encode(x))), measured on held-out training rows; decoded
            draws add it back as independent Gaussian noise (`decode(..., rng=...)`), so
            single draws and intervals carry the spread of the features, not only of the
            latents. Zero for identity encoders.
        selection: modality -> {'held_out_r2': {kind: R^2}, 'chosen': kind} for modalities
            whose kind was 'auto'.
        residual_loadings: modality -> [D, r] the dependence between features of that
            residual (a low-rank Gaussian fitted on the held-out residuals, `lowrank_fill`):
            decoded draws add loadings @ z plus independent noise for the rest of each
            feature's `residual_std`, so the spread of sums and contrasts of features (random
            projections) is right, not only each feature's. Absent: independent noise (spaces
            saved before it existed, identity encoders).
    """

    config: LatentConfig
    encoders: Mapping[str, enc_lib.Encoder]
    feature_names: Mapping[str, tuple[str, ...]]
    z_mean: Mapping[str, np.ndarray]
    z_std: Mapping[str, np.ndarray]
    residual_std: Mapping[str, np.ndarray]
    selection: Mapping[str, dict] = dataclasses.field(default_factory=dict)
    residual_loadings: Mapping[str, np.ndarray] = dataclasses.field(default_factory=dict)

    # ----------------------------------------------------------------------------------------
    # fitting
    @classmethod
    def fit(cls, cohort: Cohort, config: LatentConfig = LatentConfig(),
            log_fn: Callable[[dict], None] | None = None, mesh: Any = None) -> "LatentSpace":
        """Learns every modality's encoder, centring and scale from the cohort's train rows.

        Args:
            cohort: a preprocessed cohort (no missing cells inside present rows) with a split.
            config: the options.
            log_fn: called with each autoencoder epoch's record, plus its 'modality'.
            mesh: optional ('data',) mesh (`parallel.make_mesh`): autoencoder minibatches are
                split over its devices (`fit_autoencoder`); PCA is unaffected.

        Raises:
            DataError: no split, or a modality with fewer than 2 train rows (or no validation
                row when stop_on='val').
            ValueError: an encoder kind does not fit the modality (identity at another width,
                PCA wider than the train rows allow).
        """
        if cohort.splits.isna().all():
            raise DataError("the cohort has no split: call paper_split(cohort) first, so the "
                            "latent space is learned from training samples only.")
        unknown = set(config.kinds) | set(config.autoencoders) | set(config.widths)
        unknown -= set(cohort.modalities)
        if unknown:
            raise KeyError(f"config names modalities {sorted(unknown)} the cohort lacks; it has "
                           f"{list(cohort.modalities)}.")
        train = cohort.split("train")
        encoders, z_mean, z_std, residual_std, selection = {}, {}, {}, {}, {}
        loadings = {}
        for m in cohort.modalities:
            values, present = train.matrix(m)
            rows = values[present]  # [n, D]
            if rows.shape[0] < 2:
                raise DataError(f"modality {m!r} has {rows.shape[0]} train sample(s); at least 2 "
                                "are needed to learn its encoder.")
            width, k = rows.shape[1], config.width(m)
            kind = config.kinds.get(m, enc_lib.default_kind(m, width, k, config.default_kind))
            if width < k or (kind != "identity" and rows.shape[0] <= k + 1):
                raise DataError(f"modality {m!r} has {width} features and {rows.shape[0]} "
                                f"training rows; a {k}-d latent space needs more of both. "
                                "Lower its width (LatentConfig.widths, or latent_dim for "
                                f"every modality) below {min(width, rows.shape[0] - 1)}.")
            if kind == "auto":
                kind, selection[m] = _select_kind(m, rows, cohort, config, mesh)
            encoder, residual = _fit_encoder(kind, m, rows, cohort, config, log_fn, mesh)
            residual_std[m] = np.sqrt(np.mean(np.square(residual, dtype=np.float64), axis=0)
                                      ).astype(np.float32)
            if residual_std[m].any() and residual.shape[0] >= 4:
                loadings[m] = LowRankFill.fit(residual).loadings.astype(np.float32)
            z = encoder.encode(rows)  # [n, k]
            std = z.std(axis=0)
            encoders[m] = encoder
            z_mean[m] = z.mean(axis=0).astype(np.float32)
            z_std[m] = _scale(std, config.scaling)
        return cls(config, encoders, {m: tuple(cohort.feature_names[m]) for m in encoders},
                   z_mean, z_std, residual_std, selection, loadings)

    # ----------------------------------------------------------------------------------------
    # views
    @property
    def modalities(self) -> tuple[str, ...]:
        return tuple(self.encoders)

    @property
    def latent_dim(self) -> int:
        """The configured width: that of every modality not given its own (`width`)."""
        return self.config.latent_dim

    def width(self, modality: str) -> int:
        """The latent width k of one fitted modality."""
        return self._encoder(modality).latent_dim

    def kinds(self) -> dict[str, str]:
        """modality -> encoder kind."""
        return {m: e.kind for m, e in self.encoders.items()}

    def summary(self) -> dict:
        """modality -> {'kind', 'features', plus training facts of autoencoders or the
        explained variance of PCA}."""
        out = {}
        for m, e in self.encoders.items():
            info = {"kind": e.kind, "features": e.input_dim}
            if isinstance(e, enc_lib.AutoencoderEncoder):
                info.update(e.summary)
            elif isinstance(e, enc_lib.PCAEncoder):
                info["explained_variance"] = float(e.explained_variance_ratio.sum())
            out[m] = info
        return out

    # ----------------------------------------------------------------------------------------
    # encoding and decoding
    def encode_values(self, modality: str, values: np.ndarray) -> np.ndarray:
        """Feature rows [N, D] (the fitted feature order, no NaN) -> scaled latents [N, k]."""
        encoder = self._encoder(modality)
        values = np.asarray(values, np.float32)
        if values.ndim != 2 or values.shape[1] != encoder.input_dim:
            raise ValueError(f"modality {modality!r} expects [N, {encoder.input_dim}] feature "
                             f"rows, got shape {values.shape}.")
        if not np.isfinite(values).all():
            raise ValueError(f"feature rows of {modality!r} hold NaN or inf; encode only "
                             "present rows of a preprocessed cohort.")
        if values.shape[0] == 0:
            return np.zeros((0, self.width(modality)), np.float32)
        return ((encoder.encode(values) - self.z_mean[modality])
                / self.z_std[modality]).astype(np.float32)

    def encode(self, cohort: Cohort) -> Cohort:
        """The latent cohort: same samples, labels, splits and missingness; each modality's
        table becomes [N, k] float32 with columns '<modality>_z<j>' (NaN rows where absent).
        Held-out rows (from induce_missingness) are encoded too.

        Raises:
            KeyError: the cohort has a modality this space was not fitted on.
            DataError: a modality's features differ from the fitted ones, or a present row has
                missing cells.
        """
        tables, held = {}, {}
        for m in cohort.modalities:
            order = self._column_order(m, cohort.tables[m].columns)
            values, present = cohort.matrix(m)
            names = latent_names(m, self.width(m))
            latent = np.full((cohort.num_samples, len(names)), np.nan, np.float32)
            latent[present] = self.encode_values(m, values[present][:, order])
            tables[m] = pd.DataFrame(latent, index=cohort.sample_ids, columns=names)
            if m in cohort.held_out:
                rows = cohort.held_out[m]
                held[m] = pd.DataFrame(self.encode_values(m, rows.to_numpy()[:, order]),
                                       index=rows.index, columns=names)
        return cohort.replace(tables=tables, held_out=held)

    def decode(self, modality: str, latents: pd.DataFrame | np.ndarray,
               rng: np.random.Generator | None = None) -> pd.DataFrame:
        """Latents back to features: [N, k] -> DataFrame [N, D] with the original feature names.

        Without `rng` the result is the decoder's output, the expected features given the
        latents; with `rng` each row is one draw: that output plus independent Gaussian noise
        of the held-out residual standard deviation per feature (`residual_std`).

        Args:
            modality: a fitted modality.
            latents: a DataFrame (its index is kept, e.g. sample IDs or (sample_id, draw);
                columns either this modality's latent names in any order, or any k columns
                taken in order) or an array [N, k] (the result gets a RangeIndex). Every value
                must be finite: drop absent rows first (`latents.dropna()`).

        Raises:
            KeyError: unknown modality.
            ValueError: wrong width, another modality's latents, NaN or inf.
        """
        encoder = self._encoder(modality)
        k = self.width(modality)
        if isinstance(latents, pd.DataFrame):
            index, columns = latents.index, list(latents.columns)
            values = latents.to_numpy(np.float32)
            for other in self.modalities:
                if set(columns) == set(latent_names(other, self.width(other))):
                    if other != modality:
                        raise ValueError(f"these are latents of {other!r}, not of "
                                         f"{modality!r}; call decode({other!r}, ...).")
                    values = latents[latent_names(modality, k)].to_numpy(np.float32)
        else:
            values = np.asarray(latents, np.float32)
            index = pd.RangeIndex(values.shape[0]) if values.ndim == 2 else None
        if values.ndim != 2 or values.shape[1] != k:
            raise ValueError(f"latents of {modality!r} must be [N, {k}], got shape "
                             f"{values.shape}.")
        bad = ~np.isfinite(values).all(axis=1)
        if bad.any():
            raise ValueError(f"latents of {modality!r} hold NaN or inf in {int(bad.sum())} "
                             f"row(s), e.g. row {index[np.flatnonzero(bad)[0]]!r}; decode only "
                             "rows that exist (latents.dropna()) and check the generator.")
        raw = values * self.z_std[modality] + self.z_mean[modality]
        features = encoder.decode(raw) if len(raw) else np.zeros((0, encoder.input_dim))
        if rng is not None:
            features = features + self.residual_noise(modality, len(features), rng)
        return pd.DataFrame(np.asarray(features, np.float32), index=index,
                            columns=list(self.feature_names[modality]))

    def residual_noise(self, modality: str, num_rows: int, rng: np.random.Generator
                       ) -> np.ndarray:
        """[num_rows, D] draws of what the latent space leaves out: low rank
        (`residual_loadings`) plus independent per-feature noise, with `residual_std` as each
        feature's total spread; independent noise alone where no loadings were fitted."""
        sd = self.residual_std[modality]
        loadings = self.residual_loadings.get(modality)
        if loadings is None or loadings.shape[1] == 0:
            return (rng.standard_normal((num_rows, len(sd))) * sd).astype(np.float32)
        loadings = np.asarray(loadings, np.float64)
        rest = np.sqrt(np.maximum(sd.astype(np.float64) ** 2 - (loadings ** 2).sum(axis=1), 0.0))
        shared = rng.standard_normal((num_rows, loadings.shape[1])) @ loadings.T
        return (shared + rng.standard_normal((num_rows, len(sd))) * rest).astype(np.float32)

    # ----------------------------------------------------------------------------------------
    # persistence
    def save(self, directory: str) -> None:
        """Writes the arrays (Orbax) and the config, kinds, encoder settings and feature names
        (JSON) to `directory`, replacing what was there."""
        tree = {m: {"encoder": e.arrays(), "z_mean": self.z_mean[m], "z_std": self.z_std[m],
                    "residual_std": self.residual_std[m]} for m, e in self.encoders.items()}
        for m, value in self.residual_loadings.items():
            tree[m]["residual_loadings"] = value
        metadata = {
            "format": FORMAT,
            "config": self.config.to_json(),
            "modalities": list(self.encoders),
            "selection": dict(self.selection),
            "encoders": {m: {"kind": e.kind, "spec": e.spec(),
                             "feature_names": list(self.feature_names[m])}
                         for m, e in self.encoders.items()},
        }
        checkpointing.save_tree(directory, tree, metadata)

    @classmethod
    def restore(cls, directory: str) -> "LatentSpace":
        """Reads what `save` wrote; the restored space encodes and decodes identically."""
        tree, metadata = checkpointing.restore_tree(directory)
        if metadata.get("format") != FORMAT:
            raise ValueError(f"{directory!r} holds no LatentSpace (format "
                             f"{metadata.get('format')!r}, expected {FORMAT!r}).")
        encoders, names, z_mean, z_std, residual_std = {}, {}, {}, {}, {}
        loadings = {}
        for m in metadata["modalities"]:
            info = metadata["encoders"][m]
            encoders[m] = enc_lib.rebuild(info["kind"], info["spec"], tree[m]["encoder"])
            names[m] = tuple(info["feature_names"])
            z_mean[m] = np.asarray(tree[m]["z_mean"], np.float32)
            z_std[m] = np.asarray(tree[m]["z_std"], np.float32)
            residual_std[m] = np.asarray(tree[m]["residual_std"], np.float32)
            if "residual_loadings" in tree[m]:
                loadings[m] = np.asarray(tree[m]["residual_loadings"], np.float32)
        return cls(LatentConfig.from_json(metadata["config"]), encoders, names, z_mean, z_std,
                   residual_std, metadata.get("selection", {}), loadings)

    # ----------------------------------------------------------------------------------------
    def _encoder(self, modality: str) -> enc_lib.Encoder:
        if modality not in self.encoders:
            raise UnknownModalityError(f"unknown modality {modality!r}; this latent space was "
                                       f"fitted on {list(self.encoders)}.")
        return self.encoders[modality]

    def _column_order(self, modality: str, columns: pd.Index) -> np.ndarray:
        """Positions of the fitted features among `columns` (the same names, any order)."""
        self._encoder(modality)
        fitted = pd.Index(self.feature_names[modality])
        if len(columns) != len(fitted) or not fitted.isin(columns).all():
            missing = fitted.difference(columns)
            extra = pd.Index(columns).difference(fitted)
            example = (f"e.g. missing {missing[0]!r}" if len(missing)
                       else f"e.g. unexpected {extra[0]!r}" if len(extra) else "duplicates")
            raise DataError(f"modality {modality!r} has {len(columns)} features, the latent "
                            f"space was fitted on {len(fitted)} ({example}). Apply the same "
                            "Preprocessor that the space was fitted after.")
        return pd.Index(columns).get_indexer(fitted)


def _train_autoencoder(train_x: np.ndarray, stop_x: np.ndarray, config: ae_lib.AutoencoderConfig,
                       log_fn, mesh, label: str) -> enc_lib.AutoencoderEncoder:
    """`AutoencoderEncoder.fit` with the minibatches split over `mesh` (None: one device);
    `label` names its progress bar."""
    fit = ae_lib.fit_autoencoder(train_x, stop_x, config, log_fn, mesh, label=label)
    summary = {"best_epoch": fit.best_epoch, "epochs": fit.epochs, "best_mse": fit.best_mse,
               "seconds": fit.seconds, "num_params": ae_lib.num_params(fit.variables),
               "widths": list(ae_lib.describe(fit.model))}
    return enc_lib.AutoencoderEncoder(config, fit.model, fit.variables, summary)


def _fit_encoder(kind: str, m: str, rows: np.ndarray, cohort: Cohort, config: LatentConfig,
                 log_fn, mesh) -> tuple[enc_lib.Encoder, np.ndarray]:
    """(encoder of `kind` fitted on the train rows [n, D], residuals x - decode(encode(x)) of
    rows it was not fitted on [n_held, D]: PCA's out-of-fold over every train row, an
    autoencoder's early-stopping rows; zeros for the identity)."""
    width, k = rows.shape[1], config.width(m)
    if kind == "identity":
        if width != k:
            raise ValueError(f"modality {m!r} has {width} features; the identity encoder needs "
                             f"exactly its latent width {k}. Use 'pca' or 'autoencoder'.")
        return enc_lib.IdentityEncoder(width), np.zeros((1, width), np.float32)
    if kind == "pca":
        return enc_lib.PCAEncoder.fit(rows, k), _pca_out_of_fold_residuals(rows, k, config)
    ae_config = config.autoencoders.get(m) or ae_lib.default_config(m, width, latent_dim=k,
                                                                    seed=config.seed)
    fit_rows, stop_rows = _stopping_rows(cohort, m, rows, config)
    encoder = _train_autoencoder(
        fit_rows, stop_rows, ae_config,
        None if log_fn is None else (lambda r: log_fn({"modality": m, **r})), mesh,
        f"autoencoder {m}")
    return encoder, _residual(encoder, stop_rows)


def _pca_out_of_fold_residuals(rows: np.ndarray, k: int, config: LatentConfig,
                               folds: int = 5) -> np.ndarray:
    """[n, D] residuals of every train row under a PCA fitted without it (K folds); the
    in-sample residuals when the folds are too small for a k-d PCA."""
    n = rows.shape[0]
    if n * (folds - 1) // folds <= k + 1:
        return _residual(enc_lib.PCAEncoder.fit(rows, k), rows)
    out = np.zeros(rows.shape, np.float32)
    order = np.random.default_rng(config.seed).permutation(n)
    for held in np.array_split(order, folds):
        fit = np.setdiff1d(order, held)
        out[held] = _residual(enc_lib.PCAEncoder.fit(rows[fit], k), rows[held])
    return out


def cross_fitted_latents(space: "LatentSpace", cohort: Cohort, folds: int = 5) -> Cohort:
    """`space.encode(cohort)`, except that each training row of a PCA modality is encoded as a
    new patient's would be: by a PCA fitted on the other folds' training rows, its axes
    rotated onto the space's (orthogonal Procrustes), centred and scaled as the space's.

    A PCA fitted on a row captures more of that row's variance than of a new patient's, in
    all but its leading dimensions (README, KIPAN: "spreads fitted on cross-fitted latents").
    Residual spreads fitted on in-sample latents are therefore too wide for new patients in
    those dimensions; fitted on these they are not.
    Other encoders (identity: no fit; autoencoder: not refitted per fold) keep their latents.
    """
    latents = space.encode(cohort)
    tables = dict(latents.tables)
    train = cohort.splits == "train"
    for m, encoder in space.encoders.items():
        if not isinstance(encoder, enc_lib.PCAEncoder):
            continue
        order = space._column_order(m, cohort.tables[m].columns)
        values, present = cohort.matrix(m)
        index = np.flatnonzero(present & train.to_numpy())
        rows = values[index][:, order].astype(np.float64)  # [n, D]
        k = encoder.latent_dim
        if len(rows) * (folds - 1) // folds <= k + 1:
            continue  # folds too small for a k-d PCA: in-sample latents
        z = np.empty((len(rows), k))
        shuffled = np.random.default_rng(space.config.seed).permutation(len(rows))
        for held in np.array_split(shuffled, folds):
            fold = enc_lib.PCAEncoder.fit(rows[np.setdiff1d(shuffled, held)], k)
            u, _, wt = np.linalg.svd(fold.components @ encoder.components.T)  # [k, k]
            centre = encoder.encode(fold.mean[None]).astype(np.float64)  # fold mean, full axes
            z[held] = fold.encode(rows[held]) @ (u @ wt) + centre
        table = tables[m].copy()
        table.iloc[index] = ((z - space.z_mean[m]) / space.z_std[m]).astype(np.float32)
        tables[m] = table
    return latents.replace(tables=tables)


def _select_kind(m: str, rows: np.ndarray, cohort: Cohort, config: LatentConfig,
                 mesh) -> tuple[str, dict]:
    """'pca' or 'autoencoder' for one modality, whichever reconstructs held-out training rows
    better (pooled R^2); the autoencoder is tried only with at least `AUTO_MIN_ROWS` rows."""
    fit_rows, held_rows = _holdout_rows(m, rows, config)
    k = config.width(m)
    scores = {}
    if fit_rows.shape[0] > k:
        pca = enc_lib.PCAEncoder.fit(fit_rows, k)
        scores["pca"] = reconstruction_scores(held_rows, pca.decode(pca.encode(held_rows)))[
            "r2_overall"]
    if rows.shape[0] >= AUTO_MIN_ROWS:
        ae_config = config.autoencoders.get(m) or ae_lib.default_config(
            m, rows.shape[1], latent_dim=k, seed=config.seed)
        ae = _train_autoencoder(fit_rows, held_rows, ae_config, None, mesh,
                                f"autoencoder {m} (vs PCA)")
        scores["autoencoder"] = reconstruction_scores(
            held_rows, ae.decode(ae.encode(held_rows)))["r2_overall"]
    if not scores:
        raise DataError(f"modality {m!r} has {rows.shape[0]} train rows: too few for a "
                        f"{k}-d latent space; lower its width below the number of rows.")
    chosen = max(scores, key=scores.get)
    return chosen, {"held_out_r2": scores, "chosen": chosen}


def _residual(encoder: enc_lib.Encoder, held: np.ndarray) -> np.ndarray:
    """[n, D] held - decode(encode(held)) (rows the encoder was not fitted on)."""
    return (held - encoder.decode(encoder.encode(held))).astype(np.float32)


def _stopping_rows(cohort: Cohort, modality: str, rows: np.ndarray,
                   config: LatentConfig) -> tuple[np.ndarray, np.ndarray]:
    """(rows to train on, rows that early-stop) for one modality's autoencoder."""
    if config.stop_on == "val":
        values, present = cohort.split("val").matrix(modality)
        if not present.any():
            raise DataError(f"modality {modality!r} has no validation sample to early-stop on; "
                            "use stop_on='holdout' or give the cohort a validation split.")
        return rows, values[present]
    return _holdout_rows(modality, rows, config)


def _holdout_rows(modality: str, rows: np.ndarray,
                  config: LatentConfig) -> tuple[np.ndarray, np.ndarray]:
    """(fitting rows, seeded held-out share of the train rows) of one modality."""
    n = rows.shape[0]
    num_held = min(max(int(round(config.holdout_fraction * n)), 1), n - 2)
    if num_held < 1:
        raise DataError(f"modality {modality!r} has only {n} train samples: too few to hold "
                        "some out for early stopping; use stop_on='val'.")
    order = np.random.default_rng(config.seed).permutation(n)
    return rows[np.sort(order[num_held:])], rows[np.sort(order[:num_held])]


# --------------------------------------------------------------------------------------------
# reconstruction quality
QUALITY_COLUMNS = ("modality", "split", "encoder", "samples", "features", "r2_median", "r2_q25",
                   "r2_q75", "r2_overall", "mse")


def reconstruction_scores(x: np.ndarray, x_hat: np.ndarray) -> dict:
    """Scores of a reconstruction x_hat of rows x [N, D].

    Returns:
        'r2_features' [D]: per feature, 1 - SS_res / SS_tot with SS_tot taken around that
            feature's mean over these N rows (NaN for a feature constant over them);
        'r2_overall': 1 - sum_j SS_res_j / sum_j SS_tot_j (pooled over features, each around
            its own mean): the share of the rows' total variance the reconstruction explains;
        'mse': mean of (x - x_hat)^2 over rows and features.
    """
    x, x_hat = np.asarray(x, np.float64), np.asarray(x_hat, np.float64)
    ss_res = ((x - x_hat) ** 2).sum(axis=0)  # [D]
    ss_tot = ((x - x.mean(axis=0)) ** 2).sum(axis=0)  # [D]
    varies = ss_tot > 0
    r2 = np.full(x.shape[1], np.nan)
    r2[varies] = 1.0 - ss_res[varies] / ss_tot[varies]
    total = ss_tot.sum()
    return {"r2_features": r2,
            "r2_overall": float(1.0 - ss_res.sum() / total) if total > 0 else float("nan"),
            "mse": float(ss_res.sum() / x.size) if x.size else float("nan")}


def quality_table(space: LatentSpace, cohort: Cohort,
                  splits: Sequence[str] = ("val", "test")) -> pd.DataFrame:
    """Reconstruction quality decode(encode(x)) per modality and split.

    Scores are in the feature space the space was fitted on (preprocessed, z-scored features),
    on the split's samples that have the modality; see `reconstruction_scores` for the
    definitions. Per-feature R2 is summarised by its median and quartiles over features.

    Returns:
        One row per (modality, split) with QUALITY_COLUMNS.
    """
    records = []
    for m in cohort.modalities:
        order = space._column_order(m, cohort.tables[m].columns)
        for split in splits:
            values, present = cohort.split(split).matrix(m)
            x = values[present][:, order]  # [n, D]
            record = {"modality": m, "split": split, "encoder": space.encoders[m].kind,
                      "samples": x.shape[0], "features": x.shape[1]}
            if x.shape[0] >= 2:
                x_hat = space.decode(m, space.encode_values(m, x)).to_numpy()
                scores = reconstruction_scores(x, x_hat)
                q25, q50, q75 = np.nanquantile(scores["r2_features"], [0.25, 0.5, 0.75])
                record.update(r2_median=q50, r2_q25=q25, r2_q75=q75,
                              r2_overall=scores["r2_overall"], mse=scores["mse"])
            records.append(record)
    return pd.DataFrame.from_records(records, columns=list(QUALITY_COLUMNS))


def save_quality_table(table: pd.DataFrame, workdir: str,
                       name: str = "latent_quality") -> tuple[str, str]:
    """Writes the table to `<workdir>/<name>.csv` and `.json` (a list of records); returns
    both paths."""
    os.makedirs(workdir, exist_ok=True)
    csv_path = os.path.join(workdir, f"{name}.csv")
    json_path = os.path.join(workdir, f"{name}.json")
    table.to_csv(csv_path, index=False)
    with open(json_path, "w") as f:
        json.dump(json.loads(table.to_json(orient="records")), f, indent=2)
    return csv_path, json_path
