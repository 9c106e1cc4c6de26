"""An Imputation written out: CSV tables (`write_imputation`), MuData (.h5mu) and Parquet.

    write_imputation(result, "filled/", formats=("csv", "h5mu", "parquet"))
    mdata = mudata.read_h5mu("filled/imputation.h5mu")
    mdata["rna"].X                      # [N, D] point estimate (the mean), every patient
    mdata["rna"].layers["std"]          # also "lower" / "upper": the central interval
    mdata["rna"].obsm["draws"]          # [N, K, D] the K draws (float32)
    mdata["rna"].obs["imputed"]         # True where rna was generated, False where observed

One mod per modality with a full set of draws (imputed or observed), obs = every patient in
the order of `imputed.csv`, var = the features. X and the layers hold the feature-space
summaries (in the units the Imputation carries: the input's, or z-scores) at full precision,
so observed rows are the values given; without decoded features they hold the latents. The
latents are in obsm too ('latent_mean' [N, L], 'latent_draws' [N, K, L]). obs per mod:
'imputed', and for generated rows the patient's 'acceptance' (share of its K draws that passed
the disagreement check) and 'disagreement' (mean share of bad reverse steps), from
`Imputation.acceptance` / `bad_fraction`; `mdata.pull_obs()` copies them to the MuData's obs as
'rna:imputed' (mudata 0.3 does so when reading). uns holds the run's summary as JSON ('coherent_jax'), the
interval and K; each mod's uns['space'] says whether X holds features or latents.

Parquet: each CSV table of `write_imputation` as `<name>.parquet` (index kept). Needs the
optional packages (`pip install -e '.[formats]'`).
"""

from __future__ import annotations

import gzip
import json
import os
from typing import Sequence

import numpy as np
import pandas as pd

from coherent_jax import metrics_io, safe_io
from coherent_jax.data import formats as formats_in
from coherent_jax.errors import UserError

FORMATS = ("csv", "h5mu", "parquet")
NEEDS = {"csv": (), "h5mu": ("mudata", "anndata"), "parquet": ("pyarrow",)}
H5MU_NAME = "imputation.h5mu"


def check_formats(formats: str | Sequence[str]) -> tuple[str, ...]:
    """Parses 'csv,h5mu' (or a list) and checks the packages each format needs, so a missing
    package is reported before any work is done.

    Raises:
        UserError: an unknown or empty format list. MissingPackageError: a package is missing.
    """
    if isinstance(formats, str):
        formats = formats.split(",")
    chosen = tuple(dict.fromkeys(f.strip().lower() for f in formats if f.strip()))
    unknown = [f for f in chosen if f not in FORMATS]
    if unknown or not chosen:
        raise UserError(f"unknown output format(s) {unknown or formats!r}; choose one or more of "
                        f"{', '.join(FORMATS)} (e.g. --format=csv,h5mu).")
    for fmt in chosen:
        for module in NEEDS[fmt]:
            formats_in.require(module, action=f"writing the imputation as {fmt}")
    return chosen


def write_parquet(table: pd.DataFrame, path: str) -> None:
    """One table of the imputation as Parquet (its index, e.g. sample_id and draw, kept)."""
    formats_in.require("pyarrow", path, "writing")
    table.to_parquet(path)


def _per_patient(draws: pd.DataFrame, ids: pd.Index, k: int) -> np.ndarray:
    """Draws indexed (sample_id, draw) as a [N, K, D] float32 array in the order of `ids`."""
    index = pd.MultiIndex.from_product([ids, range(k)], names=["sample_id", "draw"])
    values = draws.reindex(index).to_numpy(np.float32)
    return values.reshape(len(ids), k, draws.shape[1])


def to_mudata(result, interval: float = 0.9, summary: dict | None = None):
    """The Imputation as a MuData (see the module docstring)."""
    mudata = formats_in.require("mudata", action="writing the imputation as h5mu")
    anndata = formats_in.require("anndata", action="writing the imputation as h5mu")
    ids = pd.Index(result.imputed.index)
    k = result.num_samples
    features = result.features is not None
    mods = {}
    with formats_in.plain_strings():
        obs_index = pd.Index([str(i) for i in ids], dtype=object)
        for m, latent_draws in result.draws.items():
            space = "features" if features and m in result.features else "latent"
            stats = {s: t.reindex(ids) for s, t in result.summary(m, space, interval).items()}
            imputed = result.imputed[m].reindex(ids).to_numpy(bool)
            obs = pd.DataFrame({"imputed": imputed}, index=obs_index)
            for column, table in (("acceptance", result.acceptance),
                                  ("disagreement", result.bad_fraction)):
                obs[column] = table[m].reindex(ids).to_numpy(np.float64)
            var = pd.DataFrame(index=pd.Index([str(c) for c in stats["mean"].columns],
                                              dtype=object))
            adata = anndata.AnnData(X=stats["mean"].to_numpy(), obs=obs, var=var)
            for layer in ("std", "lower", "upper"):
                adata.layers[layer] = stats[layer].to_numpy()
            table = result.features[m] if space == "features" else latent_draws
            adata.obsm["draws"] = _per_patient(table, ids, k)
            latent = result.summary(m, "latent", interval)["mean"].reindex(ids)
            adata.obsm["latent_mean"] = latent.to_numpy(np.float32)
            adata.obsm["latent_draws"] = _per_patient(latent_draws, ids, k)
            adata.uns["space"] = space
            mods[m] = adata
        mdata = mudata.MuData(mods)
        mdata.uns["interval"] = float(interval)
        mdata.uns["num_samples"] = int(k)
        mdata.uns["coherent_jax"] = json.dumps(summary or {}, default=str)
    return mdata


def write_h5mu(result, folder: str, interval: float = 0.9, summary: dict | None = None) -> str:
    """Writes `imputation.h5mu` into `folder` (the `.partial` folder of `write_imputation`,
    never anywhere else); returns its path."""
    path = os.path.join(folder, H5MU_NAME)
    mdata = to_mudata(result, interval, summary)
    with formats_in.plain_strings():
        mdata.write(path)
    return path


def write_csv(table: pd.DataFrame, path: str) -> None:
    """Writes a numeric table with its index as CSV (gzip level 1 for a '.gz' path).

    pyarrow's writer when installed (the 'formats' extra): faster than pandas' on wide float
    tables (benchmarks/RESULTS.md, "Measurements behind comments in the code"), the same
    shortest round-trip digits (strings are quoted); pandas' otherwise.
    Either reads back with `pd.read_csv(path, index_col=...)` to the same values.
    """
    try:
        import pyarrow as pa  # noqa: PLC0415 - optional ('formats' extra)
        from pyarrow import csv as pa_csv  # noqa: PLC0415
    except ImportError:
        table.to_csv(path, compression={"method": "gzip", "compresslevel": 1}
                     if path.endswith(".gz") else None)
        return
    columns = table.reset_index()
    columns.columns = [str(c) for c in columns.columns]
    arrow = pa.Table.from_pandas(columns, preserve_index=False)
    options = pa_csv.WriteOptions(quoting_style="needed")
    with (gzip.open(path, "wb", compresslevel=1) if path.endswith(".gz")
          else open(path, "wb")) as f:
        pa_csv.write_csv(arrow, f, options)


def write_imputation(result, folder: str, metadata: dict | None = None,
                     interval: float = 0.9, *, overwrite: bool = False,
                     protected: Sequence[str | None] = (),
                     formats: str | Sequence[str] = ("csv",)) -> str:
    """Writes an Imputation as tables, all indexed by sample_id; returns the folder.

    Per modality m: m_latent_draws.csv (sample_id, draw, latents), m_latent_{mean,std,lower,
    upper}.csv, and when decoded m_features_draws.csv.gz and m_features_{mean,...}.csv;
    imputed.csv (which entries were generated), diagnostics.csv and summary.json (metadata,
    counts, acceptance, versions). `formats` ('csv', 'h5mu', 'parquet'; see above):
    'parquet' writes each per-modality table as .parquet too, 'h5mu' adds imputation.h5mu
    (mean in X, std/lower/upper layers, draws in obsm, the mask in obs); without 'csv' the
    per-modality CSV tables are left out.

    The folder is written beside and renamed into place (`safe_io.output_folder`): it is never
    half-written, an earlier output of ours is replaced only with `overwrite`, and a folder
    holding anything else, or overlapping a `protected` folder, is refused.
    """
    formats = check_formats(formats)
    spaces = [("latent", result.draws)] + ([("features", result.features)]
                                          if result.features is not None else [])
    with safe_io.output_folder(folder, overwrite=overwrite, protected=protected,
                               kind="imputation") as tmp:
        for space, tables in spaces:
            for m, draws in tables.items():
                stats = result.summary(m, "latent" if space == "latent" else "features",
                                       interval)
                if "csv" in formats and space == "features":  # the largest: gzip, level 1 for speed
                    write_csv(draws, os.path.join(tmp, f"{m}_{space}_draws.csv.gz"))
                elif "csv" in formats:
                    write_csv(draws, os.path.join(tmp, f"{m}_{space}_draws.csv"))
                for stat, table in [("draws", draws)] + list(stats.items()):
                    if "csv" in formats and stat != "draws":
                        write_csv(table, os.path.join(tmp, f"{m}_{space}_{stat}.csv"))
                    if "parquet" in formats:
                        write_parquet(table, os.path.join(
                            tmp, f"{m}_{space}_{stat}.parquet"))
        result.imputed.to_csv(os.path.join(tmp, "imputed.csv"))
        result.diagnostics.to_csv(os.path.join(tmp, "diagnostics.csv"), index=False)
        summary = {"metadata": metadata or {}, "num_patients": int(len(result.imputed)),
                   "num_samples": result.num_samples, "interval": interval,
                   "generated_entries": {m: int(v) for m, v in result.imputed.sum().items()},
                   "diagnostics": result.diagnostics.to_dict(orient="records"),
                   "formats": list(formats), "versions": metrics_io.versions()}
        metrics_io.write_json(os.path.join(tmp, "summary.json"), summary)
        if "h5mu" in formats:
            write_h5mu(result, tmp, interval, summary)
    return folder
