"""The report page folder: every section written headless, every link resolves, JSON carries
config, seed and versions."""

import json
import os
import re

import numpy as np
import pandas as pd
import pytest

from coherent_jax.evaluate import Page, write_page

pytest.importorskip("matplotlib")


def _inputs():
    rng = np.random.default_rng(0)
    reconstruction = pd.DataFrame([[0.5, 0.4], [0.2, 0.1]], index=["coherent", "knn"],
                                  columns=["rna", "rppa"]).rename_axis("method")
    rescue = pd.DataFrame([{"seed": s, "removed": r, "fill": f,
                            "balanced_accuracy": 0.5 + 0.1 * rng.random()}
                           for s in range(2) for r, f in [("", "none"), ("rna", "none"),
                                                          ("rna", "coherent"), ("rna+cna", "none"),
                                                          ("rna+cna", "coherent")]])
    curve = pd.DataFrame({"rho": np.linspace(0, 1, 21), "prioritised": np.linspace(0.9, 0.6, 21),
                          "random_mean": np.linspace(0.9, 0.5, 21), "random_std": 0.02})
    disagreement = pd.DataFrame({"rna": np.linspace(0.01, 1.1, 50)},
                                index=pd.Index(np.arange(50), name="step"))
    pca = {"rna": (rng.normal(size=(60, 5)), rng.normal(size=(60, 5)))}
    return reconstruction, rescue, curve, disagreement, pca


def test_report_writes_every_section_and_links_resolve(tmp_path):
    reconstruction, rescue, curve, disagreement, pca = _inputs()
    folder = tmp_path / "report"
    page = Page(reconstruction=reconstruction, rescue=rescue, prioritisation={"rna": curve},
                disagreement=disagreement, pca=pca,
                tables={"privacy": pd.DataFrame({"share": [0.5]})},
                results={"privacy": {"share": 0.51, "auc": np.float64(0.5)}},
                summaries={"Privacy": pd.DataFrame({"share": [0.5]}, index=["rna"])},
                notes=["survival skipped: no os_time labels"])
    index = write_page(str(folder), page, config={"data": "synthetic", "k": 3}, seed=7)
    text = open(index).read()
    assert "## Privacy" in text and "| rna | 0.500 |" in text
    assert "- survival skipped: no os_time labels" in text
    links = re.findall(r"\]\(([^)]+)\)", text)
    pngs = [link for link in links if link.endswith(".png")]
    assert len(pngs) == 5  # reconstruction, rescue, prioritisation, disagreement, PCA
    for link in links:
        path = folder / link
        assert path.is_file(), link
        if link.endswith(".png"):
            assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert "| coherent | 0.500 | 0.400 |" in text
    for name in ("report.json", "results/privacy.json"):
        payload = json.loads((folder / name).read_text())
        assert payload["seed"] == 7 and payload["config"] == {"data": "synthetic", "k": 3}
        assert payload["versions"]["packages"]["numpy"] == np.__version__
    assert json.loads((folder / "results/privacy.json").read_text())["result"]["auc"] == 0.5
    written = json.loads((folder / "report.json").read_text())["files"]
    assert all(os.path.isfile(folder / f) for f in written) and len(written) >= 9


def test_report_with_nothing_but_config_is_valid(tmp_path):
    index = write_page(str(tmp_path / "empty"), Page(), config={}, seed=0)
    assert open(index).read().startswith("# coherent-jax evaluation")
    assert json.loads((tmp_path / "empty" / "report.json").read_text())["files"] == []


def test_the_report_says_how_the_condition_maps_were_fitted():
    from coherent_jax.evaluate.report import _condition_notes  # noqa: PLC0415

    assert _condition_notes({"denoisers": {"feature_conditions": False}}) == []
    plain, = _condition_notes({"denoisers": {"feature_conditions": True}})
    distilled, = _condition_notes({"denoisers": {"feature_conditions": True,
                                                 "distill_conditions": True}})
    assert "distill_conditions=False" in plain and "membership" in plain
    assert "leave-one-out" in distilled


def test_distribution_table_pairs_every_method_with_both_closed_forms():
    """Per patient differences: coherent is 0.1 below 'gaussian' and 0.3 above the
    raw-feature closed form for every patient; the intervals collapse on those values."""
    from coherent_jax.evaluate.scoring import distribution_table  # noqa: PLC0415

    n = 20
    base = np.linspace(1.0, 3.0, n)
    energy = {"coherent": base, "gaussian": base + 0.1, "gaussian_features": base - 0.3}
    errors = {(m, "rna", space): {"energy": e, "projection_covered": np.full(n, 0.9)}
              for m, e in energy.items() for space in ("latent", "features")}
    scores = pd.DataFrame({"method": list(energy), "target": "rna"})
    indices = np.random.default_rng(0).integers(0, n, (50, n))
    table = distribution_table(scores, errors, ("coherent", "gaussian"), indices)
    assert table.loc[("coherent", "rna"), "energy (features) - gaussian"].startswith("-0.100")
    assert table.loc[("coherent", "rna"),
                     "energy (features) - gaussian (features)"].startswith("+0.300")
    assert table.loc[("gaussian (features)", "rna"),
                     "energy (features) - gaussian"].startswith("-0.400")
    assert pd.isna(table.loc[("gaussian", "rna"), "energy (features) - gaussian"])
