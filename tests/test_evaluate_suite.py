"""The whole evaluation on a tiny labelled Gaussian cohort: pattern copies, every part of the
report, baselines ordered as theory says."""

import json
import os

import numpy as np
import pandas as pd
import pytest

from coherent_jax.data import LinearGaussianModel, linear_gaussian_cohort, paper_split
from coherent_jax.evaluate.patterns import pattern_copies, source_subsets
from coherent_jax.evaluate.suite import EvalConfig, evaluate_suite
from coherent_jax.latent import LatentConfig, LatentSpace
from coherent_jax.model_set import ModelSetConfig, train_model_set

pytest.importorskip("matplotlib")
pytest.importorskip("sksurv")

GAUSS = LinearGaussianModel.random({"a": 4, "b": 4, "c": 4}, num_factors=3, noise_std=0.4, seed=3)
MODELS = ModelSetConfig(hidden_dim=32, num_layers=2, time_embed_dim=16, cond_embed_dim=8,
                        batch_size=64, num_steps=60, eval_every=30, log_every=30,
                        val_sampler="ddim", val_num_steps=5)
EVAL = EvalConfig(baselines=("mean", "knn", "ridge"), num_samples=3, num_steps=6,
                  num_candidates=1, num_seeds=2, n_estimators=20, num_unconditional=50)


def _labelled_cohort(n=360):
    """Gaussian cohort with a type label (sign of one modality) and survival times."""
    cohort = linear_gaussian_cohort(GAUSS, n, seed=0)
    a = cohort.tables["a"].to_numpy()
    rng = np.random.default_rng(0)
    labels = pd.DataFrame({
        "cancer_type": np.where(a[:, 0] > 0, "T1", "T2"),
        "os_time": np.round(rng.exponential(500 * np.exp(-0.5 * a[:, 1]))) + 1,
        "os_event": rng.integers(0, 2, n)}, index=cohort.sample_ids)
    labelled = cohort.from_tables(cohort.tables, labels=labels, name="gauss")
    return paper_split(labelled, seed=42)


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    cohort = _labelled_cohort()
    space = LatentSpace.fit(cohort, LatentConfig(latent_dim=4))
    latents = space.encode(cohort)
    models, _ = train_model_set(latents, MODELS, seed=0)
    folder = str(tmp_path_factory.mktemp("report"))
    return cohort, evaluate_suite(cohort, latents, space, models, EVAL, seed=0, folder=folder,
                                  log=lambda line: None), folder


def test_pattern_copies_cover_every_subset_and_map_back():
    cohort = _labelled_cohort(60).split("test")
    copies = pattern_copies(cohort)
    assert copies.subsets == tuple(source_subsets(cohort.modalities))
    assert len(copies.subsets) == 6
    assert copies.cohort.num_samples == 6 * int(cohort.complete.sum())
    presence = copies.cohort.presence
    for copy_id, (sid, subset) in copies.origin.iterrows():
        assert presence.loc[copy_id].to_dict() == {m: m in subset.split("+") for m in "abc"}
    fake = {"c": pd.DataFrame(np.arange(copies.cohort.num_samples, dtype=float)[:, None],
                              index=pd.MultiIndex.from_arrays(
                                  [copies.cohort.sample_ids, [0] * copies.cohort.num_samples],
                                  names=["sample_id", "draw"]))}
    part = copies.draws_of(fake, "c", ("a", "b"))
    assert sorted(part.index.get_level_values("sample_id")) == sorted(copies.sample_ids)
    with pytest.raises(ValueError, match="nothing to score"):
        copies.draws_of(fake, "c", ("c",))


def test_pattern_copies_refuse_a_split_without_complete_patients():
    cohort = linear_gaussian_cohort(GAUSS, 20, seed=1)  # no split yet
    tables = {m: t.copy() for m, t in cohort.tables.items()}
    tables["a"].iloc[::2] = np.nan
    tables["b"].iloc[1::2] = np.nan
    with pytest.raises(ValueError, match="no patient with every modality"):
        pattern_copies(cohort.replace(tables=tables))


def test_report_holds_every_part(run):
    cohort, result, folder = run
    scores = result["scores"]
    assert set(scores["method"]) == {"coherent", "product", "multi", "mean", "knn", "ridge"}
    assert set(scores["space"]) == {"latent", "features"}
    # 3 targets x 2 available sets each that exclude the target... plus the pair: 9 pairs
    pairs = scores[["target", "source"]].drop_duplicates()
    assert len(pairs) == 9
    assert {"T1", "T2", "all"} <= set(scores["group"])
    headline = result["headline"]
    assert list(headline.columns) == ["a", "b", "c"] and "coherent" in headline.index
    # the ridge regressor of the exact linear-Gaussian model beats the training mean
    assert (headline.loc["ridge"] > headline.loc["mean"] + 0.2).all()
    assert headline.loc["mean"].abs().max() < 0.15
    fidelity = result["fidelity"]
    assert fidelity[["precision", "recall", "dcr_share", "mia_auc"]].apply(
        lambda c: c.between(0, 1)).all().all()
    assert set(result["unconditional"]) == {"a", "b", "c"}
    rescue = result["rescue"]
    assert {"none", "mean", "knn", "coherent", "multi"} <= set(rescue["fill"])
    assert set(rescue["seed"]) == {0, 1}
    assert "a+b+c" in set(rescue["removed"])  # all removed: only non-generative fills
    assert set(rescue[rescue["removed"] == "a+b+c"]["fill"]) == {"none", "mean"}
    assert "c_index" in result["rescue_survival"]
    assert {"significant", "q"} <= set(result["rescue_tests"].columns)
    assert set(result["prioritisation"]["method"]) == {"coherent", "product", "multi"}
    text = open(result["index"]).read()
    for heading in ("## Reconstruction", "## Fidelity and privacy", "## Performance rescue",
                    "## Counterfactual test prioritisation", "## Notes"):
        assert heading in text, heading
    payload = json.load(open(os.path.join(folder, "report.json")))
    assert payload["seed"] == 0 and payload["config"]["num_samples"] == 3
    assert all(os.path.isfile(os.path.join(folder, f)) for f in payload["files"])


def test_eval_config_refuses_unknown_or_empty_choices():
    with pytest.raises(ValueError, match="unknown method"):
        EvalConfig(methods=("coherent", "magic"))
    with pytest.raises(ValueError, match="at least one generative method"):
        EvalConfig(methods=())
    with pytest.raises(ValueError, match="num_seeds must be >= 1"):
        EvalConfig(num_seeds=0)
