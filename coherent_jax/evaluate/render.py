"""A report page as a folder of CSV/JSON tables and PNG figures with an index.md.

Headless: figures are drawn on matplotlib `Figure` objects (Agg canvas), never through pyplot,
so no display and no global backend change is needed. Every JSON file records the config, the
seed and the library versions. What an evaluation shows is `report.write_report`'s choice;
this module only lays a `Page` out.

    write_page(workdir / "report", Page(reconstruction=comparison_table(scores),
                                        prioritisation={"rna": curve}), config=cfg, seed=0)
"""

from __future__ import annotations

import dataclasses
import importlib.metadata
import os
from typing import Mapping, Sequence

import numpy as np
import pandas as pd
from sklearn.decomposition import PCA

from coherent_jax import metrics_io, safe_io

EXTRA_PACKAGES = ("scipy", "matplotlib", "scikit-survival", "mofapy2")


def _figure(width: float = 7.0, height: float = 4.0):
    from matplotlib.figure import Figure  # noqa: PLC0415 - matplotlib only for reports

    fig = Figure(figsize=(width, height), layout="constrained")
    return fig, fig.subplots()


def _versions() -> dict:
    found = metrics_io.versions()
    for name in EXTRA_PACKAGES:
        try:
            found["packages"][name] = importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            found["packages"][name] = None
    return found


def plot_disagreement(disagreement: pd.DataFrame, path: str) -> None:
    """Lines of per-step disagreement: index = step (first step first), one column per series
    (e.g. per target or percentile)."""
    fig, ax = _figure()
    for name in disagreement.columns:
        ax.plot(np.asarray(disagreement.index), disagreement[name].to_numpy(), label=str(name))
    ax.set(xlabel="reverse step", ylabel="disagreement (1 - weighted cosine)",
           title="Specialist disagreement over the reverse process")
    ax.legend(fontsize="small")
    fig.savefig(path, dpi=120)


def plot_pca(real: np.ndarray, generated: np.ndarray, path: str, title: str = "") -> None:
    """Real [N, D] and generated [M, D] on the first two principal components of the real."""
    pca = PCA(n_components=2).fit(real)
    fig, ax = _figure(5.0, 4.5)
    for data, name, colour in ((real, "real", "tab:blue"), (generated, "generated", "tab:orange")):
        xy = pca.transform(data)
        ax.scatter(xy[:, 0], xy[:, 1], s=6, alpha=0.5, label=name, color=colour)
    ratio = pca.explained_variance_ratio_
    ax.set(xlabel=f"PC1 ({ratio[0]:.0%})", ylabel=f"PC2 ({ratio[1]:.0%})",
           title=title or "PCA of real vs generated")
    ax.legend()
    fig.savefig(path, dpi=120)


def plot_grouped_bars(table: pd.DataFrame, path: str, ylabel: str, title: str,
                      errors: pd.DataFrame | None = None, reference: float | None = None) -> None:
    """Grouped bars: x = table columns, one bar per table row (e.g. rows methods, columns
    targets); optional error bars of the same shape and a horizontal reference line."""
    fig, ax = _figure(max(6.0, 0.9 * table.shape[1] * max(1, table.shape[0]) / 3), 4.0)
    width = 0.8 / max(1, table.shape[0])
    x = np.arange(table.shape[1])
    for i, (name, row) in enumerate(table.iterrows()):
        err = None if errors is None else errors.loc[name, table.columns].to_numpy(np.float64)
        ax.bar(x + (i - (table.shape[0] - 1) / 2) * width, row.to_numpy(np.float64), width,
               yerr=err, label=str(name), capsize=2)
    if reference is not None:
        ax.axhline(reference, color="black", linestyle="--", linewidth=1, label="all observed")
    ax.set_xticks(x, [str(c) for c in table.columns], rotation=45 if table.shape[1] > 4 else 0,
                  ha="right" if table.shape[1] > 4 else "center")
    ax.set(ylabel=ylabel, title=title)
    ax.legend(fontsize="small", loc="upper left", bbox_to_anchor=(1.01, 1.0))  # beside the bars
    fig.savefig(path, dpi=120)


def plot_prioritisation(curve: pd.DataFrame, path: str, title: str = "",
                        ylabel: str = "score") -> None:
    """Prioritised vs random withholding (mean +- std) over the withheld fraction rho."""
    fig, ax = _figure(5.5, 4.0)
    rho = curve["rho"].to_numpy()
    ax.plot(rho, curve["prioritised"], label="counterfactual prioritisation")
    ax.plot(rho, curve["random_mean"], label="random withholding", color="grey")
    ax.fill_between(rho, curve["random_mean"] - curve["random_std"],
                    curve["random_mean"] + curve["random_std"], color="grey", alpha=0.3)
    ax.set(xlabel="fraction withheld (rho)", ylabel=ylabel, title=title or "Test prioritisation")
    ax.legend()
    fig.savefig(path, dpi=120)


def markdown_table(table: pd.DataFrame, digits: int = 3) -> str:
    """A DataFrame as a GitHub markdown table (index first), floats rounded."""
    frame = table.reset_index()
    cells = [[f"{v:.{digits}f}" if isinstance(v, (float, np.floating)) else str(v) for v in row]
             for row in frame.itertuples(index=False)]
    header = [str(c) for c in frame.columns]
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    return "\n".join(lines + ["| " + " | ".join(r) + " |" for r in cells])


@dataclasses.dataclass
class Page:
    """What a report page shows; every part is optional.

    Attributes:
        title: the index.md heading.
        tables: name -> DataFrame, written as tables/<name>.csv and linked.
        results: name -> dict (e.g. privacy or prioritisation areas), written as
            results/<name>.json with config, seed and versions.
        disagreement: per-step disagreement (index step, one column per series).
        pca: name -> (real [N, D], generated [M, D]) for PCA overlays.
        reconstruction: rows methods, columns targets (`comparison_table`); shown inline.
        reconstruction_metric: what the table holds; the part before ' (' labels the y axis.
        reconstruction_cells: shown inline instead of `reconstruction`'s numbers (e.g. the
            same scores with their intervals, as strings); the CSV and figure keep the numbers.
        rescue: `rescue` score rows (any number of seeds); bars of the mean over seeds, their
            std as error bars.
        rescue_metric: its metric column (default: balanced_accuracy or c_index).
        prioritisation: name -> `prioritisation_curve` table.
        prioritisation_metric: its y-axis label ('C-index' for survival).
        summaries: heading -> small DataFrame shown inline (e.g. privacy, rescue tests).
        notes: lines listed under "Notes" (e.g. analyses skipped and why).
    """

    title: str = "coherent-jax evaluation"
    tables: Mapping[str, pd.DataFrame] | None = None
    results: Mapping[str, dict] | None = None
    disagreement: pd.DataFrame | None = None
    pca: Mapping[str, tuple[np.ndarray, np.ndarray]] | None = None
    reconstruction: pd.DataFrame | None = None
    reconstruction_metric: str = "R^2 (mean of K draws)"
    reconstruction_cells: pd.DataFrame | None = None
    rescue: pd.DataFrame | None = None
    rescue_metric: str | None = None
    prioritisation: Mapping[str, pd.DataFrame] | None = None
    prioritisation_metric: str = "weighted F1"
    summaries: Mapping[str, pd.DataFrame] | None = None
    notes: Sequence[str] = ()


def write_page(folder: str, page: Page, *, config: dict, seed: int,
               overwrite: bool = True) -> str:
    """Writes the page's folder and returns the path of its index.md.

    Args:
        folder: written beside as '<folder>.partial' and renamed into place
            (`safe_io.output_folder`), so it is never half-written and holds nothing from an
            earlier report. A folder holding files we did not write is refused.
        page: what to show.
        config: the run's configuration (JSON-serialisable); seed: its seed.
        overwrite: replace an earlier report of ours in `folder` (False: refuse).

    Returns:
        Path of index.md.
    """
    with safe_io.output_folder(folder, overwrite=overwrite, kind="report") as directory:
        for sub in ("tables", "results", "figures"):
            os.makedirs(os.path.join(directory, sub), exist_ok=True)
        versions = _versions()
        lines = [f"# {page.title}", "", f"Seed: {seed}. Config and library versions: "
                 "[report.json](report.json).", ""]
        written = []

        def save_table(name: str, table: pd.DataFrame) -> str:
            rel = f"tables/{name}.csv"
            table.to_csv(os.path.join(directory, rel))
            written.append(rel)
            return rel

        def save_figure(name: str, draw, *args, **kwargs) -> str:
            rel = f"figures/{name}.png"
            draw(*args, os.path.join(directory, rel), **kwargs)
            written.append(rel)
            return rel

        if page.reconstruction is not None:
            rel = save_table("reconstruction", page.reconstruction)
            fig = save_figure("reconstruction", plot_grouped_bars, page.reconstruction,
                              ylabel=page.reconstruction_metric.split(" (")[0],
                              title=f"Reconstruction: {page.reconstruction_metric}")
            lines += ["## Reconstruction (rows methods, columns targets)", "",
                      f"{page.reconstruction_metric}; [CSV]({rel})", "",
                      markdown_table(page.reconstruction if page.reconstruction_cells is None
                                     else page.reconstruction_cells),
                      "", f"![reconstruction]({fig})", ""]
        for heading, table in (page.summaries or {}).items():
            lines += [f"## {heading}", "", markdown_table(table), ""]
        if page.rescue is not None:
            metric = page.rescue_metric or ("balanced_accuracy"
                                            if "balanced_accuracy" in page.rescue else "c_index")
            rel = save_table("rescue", page.rescue)
            is_reference = page.rescue["removed"] == ""
            reference = (float(page.rescue.loc[is_reference, metric].mean())
                         if is_reference.any() else None)
            bars = page.rescue[~is_reference].groupby(["removed", "fill"], sort=False)[
                metric].agg(["mean", "std"])
            means = bars["mean"].unstack("removed")
            stds = bars["std"].unstack("removed").fillna(0.0)
            fig = save_figure("rescue", plot_grouped_bars, means, ylabel=metric,
                              title="Performance rescue by removed modalities and fill",
                              errors=stds, reference=reference)
            lines += ["## Performance rescue", "", f"{metric}; [CSV]({rel})", "",
                      f"![rescue]({fig})", ""]
        if page.prioritisation:
            lines += ["## Counterfactual test prioritisation", ""]
            for name, curve in page.prioritisation.items():
                rel = save_table(f"prioritisation_{name}", curve.set_index("rho"))
                fig = save_figure(f"prioritisation_{name}", plot_prioritisation, curve,
                                  title=f"Withholding {name}",
                                  ylabel=page.prioritisation_metric)
                lines += [f"### {name}", "", f"[CSV]({rel})", "",
                          f"![prioritisation {name}]({fig})", ""]
        if page.disagreement is not None:
            rel = save_table("disagreement", page.disagreement)
            fig = save_figure("disagreement", plot_disagreement, page.disagreement)
            lines += ["## Disagreement over steps", "", f"[CSV]({rel})", "",
                      f"![disagreement]({fig})",
                      ""]
        if page.pca:
            lines += ["## PCA of real vs generated", ""]
            for name, (real, generated) in page.pca.items():
                fig = save_figure(f"pca_{name}", plot_pca, np.asarray(real), np.asarray(generated),
                                  title=f"{name}: real vs generated")
                lines += [f"![pca {name}]({fig})", ""]
        if page.tables:
            lines += ["## Tables", ""]
            for name, table in page.tables.items():
                lines.append(f"- [{name}]({save_table(name, table)})")
            lines.append("")
        if page.results:
            lines += ["## Results", ""]
            for name, result in page.results.items():
                rel = f"results/{name}.json"
                metrics_io.write_json(os.path.join(directory, rel),
                                      {"config": config, "seed": seed, "versions": versions,
                                       "result": result})
                written.append(rel)
                lines.append(f"- [{name}]({rel})")
            lines.append("")
        if page.notes:
            lines += ["## Notes", ""] + [f"- {note}" for note in page.notes] + [""]
        metrics_io.write_json(os.path.join(directory, "report.json"),
                              {"config": config, "seed": seed, "versions": versions,
                               "files": written})
        with open(os.path.join(directory, "index.md"), "w") as f:
            f.write("\n".join(lines))
    return os.path.join(folder, "index.md")
