"""The whole evaluation on a tiny labelled Gaussian cohort: pattern copies, every part of the
report, baselines ordered as theory says."""

import json
import os

import numpy as np
import pandas as pd
import pytest

from coherent_jax.data import linear_gaussian_cohort
from coherent_jax.evaluate import r2
from coherent_jax.evaluate.generation import generate
from coherent_jax.evaluate.patterns import HeldOut, pattern_copies, source_subsets
from coherent_jax.evaluate.scoring import BaselineTraining, reconstruction
from coherent_jax.evaluate.suite import EvalConfig, TrainedRun, evaluate_suite
from coherent_jax.impute import ImputeConfig, impute
from coherent_jax.latent import LatentConfig, LatentSpace
from tiny import GAUSS, labelled_cohort

pytestmark = pytest.mark.slow  # trains models or runs scripts end to end

pytest.importorskip("matplotlib")
pytest.importorskip("sksurv")

EVAL = EvalConfig(baselines=("mean", "knn", "ridge", "ridge_features", "knn_features"),
                  imputation=ImputeConfig(num_samples=3, sampler="ddim", sample_steps=6,
                                          num_candidates=1),
                  num_seeds=2, n_estimators=10, num_unconditional=50,
                  num_bootstrap=200, membership_samples=3)


@pytest.fixture(scope="module")
def run(tiny_run, tmp_path_factory):
    folder = str(tmp_path_factory.mktemp("report"))
    trained = TrainedRun(tiny_run.cohort, tiny_run.latents, tiny_run.space, tiny_run.models)
    return tiny_run.cohort, evaluate_suite(trained, EVAL, seed=0, folder=folder,
                                           log=lambda line: None), folder


def test_pattern_copies_cover_every_subset_and_map_back():
    cohort = labelled_cohort(60).split("test")
    copies = pattern_copies(cohort)
    assert copies.subsets == tuple(source_subsets(cohort.modalities))
    assert len(copies.subsets) == 6
    assert copies.cohort.num_samples == 6 * int(cohort.complete.sum())
    presence = copies.cohort.presence
    for copy_id, (sid, subset) in copies.origin.iterrows():
        assert presence.loc[copy_id].to_dict() == {m: m in subset.split("+") for m in "abc"}
    # each copy keeps its patient's labels (a known covariate of the models among them)
    np.testing.assert_array_equal(copies.cohort.labels["cancer_type"].to_numpy(),
                                  cohort.labels["cancer_type"].loc[copies.origin["sample_id"]])
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
    scores = result.scores
    assert set(scores["method"]) == {"coherent", "product", "multi", "gaussian", "mean", "knn",
                                     "ridge", "ridge_features", "knn_features"}
    assert set(scores["space"]) == {"latent", "features"}
    fitted = scores.groupby("method")["fitted_in"].unique().map(tuple).to_dict()
    assert fitted == {"coherent": ("latent",), "product": ("latent",), "multi": ("latent",),
                      "gaussian": ("latent",),
                      "knn": ("latent",), "ridge": ("latent",), "mean": ("both",),
                      "ridge_features": ("features",), "knn_features": ("features",)}
    # 3 targets x 2 available sets each that exclude the target... plus the pair: 9 pairs
    pairs = scores[["target", "source"]].drop_duplicates()
    assert len(pairs) == 9
    # draws scored as distributions, beside the closed form
    table = result.distributions
    assert set(table.index.get_level_values("method")) == {"coherent", "product", "multi",
                                                             "gaussian"}
    assert {"energy (latent)", "energy (features)", "projection coverage (features)",
            "energy (features) - gaussian"} <= set(table.columns)
    assert os.path.exists(os.path.join(folder, "tables", "distributions.csv"))
    assert {"T1", "T2", "all"} <= set(scores["group"])
    headline = result.headline
    assert list(headline.columns) == ["a", "b", "c"]
    assert list(headline.index) == [
        "coherent: mean of 3 draws", "coherent: single draw", "product: mean of 3 draws",
        "product: single draw", "multi: mean of 3 draws", "multi: single draw",
        "gaussian: mean of 3 draws", "gaussian: single draw", "training mean", "knn (latent)", "ridge (latent)", "ridge (features)", "knn (features)"]
    assert headline.notna().all().all()
    # the ridge regressor of the exact linear-Gaussian model beats the training mean
    assert (headline.loc["ridge (latent)"] > headline.loc["training mean"] + 0.2).all()
    test = cohort.split("test")
    ids = test.sample_ids[np.asarray(test.complete)]
    train = cohort.split("train")
    for target in "abc":
        real = test.tables[target].loc[ids].to_numpy()
        # raw-feature ridge within 0.03 of the exact posterior mean's R^2 (measured: 0.723 /
        # 0.707 / 0.705 vs 0.727 / 0.717 / 0.707 on these 53 patients)
        exact, _ = GAUSS.conditional(target, {m: test.tables[m].loc[ids].to_numpy()
                                              for m in "abc" if m != target})
        assert headline.loc["ridge (features)", target] >= r2(real, exact)[0] - 0.03, target
        assert headline.loc["ridge (features)", target] > headline.loc["knn (features)", target]
        # the feature-space mean row is the training rows' feature mean: R^2 just below 0
        mean = train.tables[target].dropna().mean().to_numpy()
        expected = r2(real, np.tile(mean, (len(ids), 1)))[0]
        assert headline.loc["training mean", target] == pytest.approx(expected, abs=1e-6)
        assert -0.05 < expected <= 0
    latent = pd.read_csv(os.path.join(folder, "tables", "reconstruction_latent.csv"),
                         index_col=0)
    assert list(latent.index) == list(headline.index) and latent.notna().all().all()
    fidelity = result.fidelity
    assert set(fidelity["method"]) == {"coherent", "product", "multi", "gaussian",
                                       "random training records"}
    assert fidelity["precision"].str.fullmatch(r"\d\.\d{3} \[\d\.\d{3}, \d\.\d{3}\]").all()
    assert set(result.unconditional) == {"a", "b", "c"}
    membership = result.membership
    assert set(membership["method"]) == {"coherent", "product", "multi", "gaussian",
                                         "ridge (features)"}
    assert len(membership) == 15 and membership["auc"].between(0, 1).all()
    assert (membership["low"] <= membership["auc"]).all()
    assert (membership["n_non_members"] == len(ids)).all()  # the test split: never selected on
    assert (membership["n_members"] > 2 * len(ids)).all()
    copies = result.copies
    assert len(copies) == 12 and copies["near_copy_share"].between(0, 1).all()
    assert (copies["draw_train_nn_median"] > 0).all()
    calibration = result.calibration
    assert calibration.shape == (12, 3) and "ideal with K = 3" in calibration.columns
    headline_tests = result.headline_tests
    assert len(headline_tests) == 12 and set(headline_tests["against"]) == {"ridge (features)"}
    cells = result.headline_cells
    assert "coherent - ridge (features)" in cells.index and cells.notna().all().all()
    rescue = result.downstream.rescue.scores
    assert {"none", "mean", "knn", "retrained", "coherent", "multi"} <= set(rescue["fill"])
    assert set(rescue["draws"]) == {"point", "mean of 3", "single"}
    assert "a+b+c" in set(rescue["removed"])  # all removed: only non-generative fills
    assert set(rescue[rescue["removed"] == "a+b+c"]["fill"]) == {"none"}
    survival = result.downstream.rescue_survival.scores
    assert "c_index" in survival
    # everything removed: the survival forest still sees the cancer type
    assert set(survival[survival["removed"] == "a+b+c"]["fill"]) == {"none", "retrained"}
    assert {"significant", "q", "low", "high"} <= set(result.downstream.rescue_tests.columns)
    assert set(result.downstream.rescue_tests["against"]) == {"retrained"}
    assert len(result.downstream.rescue_intervals) == len(rescue)
    assert set(result.downstream.prioritisation["method"]) == {"coherent", "product", "multi",
                                                                "gaussian"}
    text = open(result.index).read()
    assert repr(result).startswith(
        "EvalResults(methods=['coherent', 'product', 'multi', 'gaussian']")
    assert len(repr(result)) < 1000
    for heading in ("## Reconstruction", "## Draws as distributions",
                    "## Privacy: conditional membership inference",
                    "## Fidelity: PRDC", "## Calibration", "## Performance rescue",
                    "## Rescue vs the retrained forest",
                    "## Counterfactual test prioritisation", "## Notes"):
        assert heading in text, heading
    assert "What varies: the patients." in text and "'test', never trained on" in text
    assert "| ridge (features) |" in text and "| coherent: single draw |" in text
    assert ("Rows that share our latent space (fitted on our latents; their feature-space "
            "scores are decoded through our decoders") in text
    assert "knn (latent), ridge (latent)" in text
    assert "Rows fitted on the raw preprocessed features" in text
    assert "ridge (features), knn (features)" in text
    payload = json.load(open(os.path.join(folder, "report.json")))
    assert payload["seed"] == 0 and payload["config"]["imputation"]["num_samples"] == 3
    assert all(os.path.isfile(os.path.join(folder, f)) for f in payload["files"])


class _BiasedDecoder:
    """A latent space whose decoder is off by +1 in every feature (as a trained decoder's bias
    can be): the feature-space rows of latent predictors carry it, raw-feature ones must not."""

    def __init__(self, space):
        self.space = space
        self.feature_names = space.feature_names

    def decode(self, modality, latents):
        return self.space.decode(modality, latents) + 1.0

    def encode_values(self, modality, values):
        return self.space.encode_values(modality, values)


def test_feature_rows_do_not_go_through_the_decoder():
    cohort = labelled_cohort(200)
    space = LatentSpace.fit(cohort, LatentConfig(latent_dim=4))
    latents = space.encode(cohort)
    held_out = HeldOut.of(latents.split("test"), cohort.split("test"))
    config = EvalConfig(baselines=("mean", "ridge", "ridge_features"))
    training = BaselineTraining(latents.split("train"), cohort.split("train"),
                                _BiasedDecoder(space))
    scores, errors = reconstruction(held_out, {}, training, config, 0)
    assert set(errors) == {(m, t, s) for m in ("mean", "ridge", "ridge_features")
                           for t in "abc" for s in ("latent", "features")}
    best = scores[(scores["source"].str.count(r"\+") == 1) & (scores["group"] == "all")]
    r2s = best.pivot_table(index="method", columns=["space", "target"], values="r2_mean")
    assert r2s.loc["mean", "features"].between(-0.05, 0).all()  # not the decoded mean latent
    assert (r2s.loc["ridge_features", "features"] > 0.6).all()  # fitted and scored on features
    assert (r2s.loc["ridge", "features"]  # decoded: carries the bias
            < r2s.loc["ridge_features", "features"] - 0.5).all()
    np.testing.assert_allclose(r2s.loc["ridge_features", "latent"], r2s.loc["ridge", "latent"],
                               atol=0.02)  # identity encoders: the same regression
    with pytest.raises(ValueError, match="need the training split"):
        reconstruction(held_out, {}, BaselineTraining(latents.split("train"), None, space),
                       config, 0)


def test_report_draws_are_those_of_impute_for_the_same_patients(tiny_run):
    """Each available set is imputed as a user would impute it (those patients, only those
    modalities, their own IDs): the evaluation's draws equal impute's, draw for draw."""
    latents, cohort = tiny_run.latents.split("test"), tiny_run.cohort.split("test")
    copies = pattern_copies(latents)
    feature_copies = pattern_copies(cohort, copies.subsets)
    found = generate(copies, tiny_run.models, tiny_run.space, EVAL, 0, lambda line: None,
                     feature_copies)["coherent"]
    for subset in copies.subsets:
        ids = copies.sample_ids
        unsplit = pd.Series(pd.NA, index=ids, dtype="string", name="split")
        alone = {m: (t.loc[ids] if m in subset else t.loc[ids] * np.nan) for m, t in
                 latents.tables.items()}
        direct = impute(latents.subset(ids).replace(tables=alone, splits=unsplit),
                        tiny_run.models,
                        EVAL.imputation, method="coherent", seed=0, latent_space=tiny_run.space,
                        feature_cohort=cohort.subset(ids).replace(splits=unsplit, tables={
                            m: (t.loc[ids] if m in subset else t.loc[ids] * np.nan)
                            for m, t in cohort.tables.items()}))
        for target in (m for m in latents.modalities if m not in subset):
            for field in ("draws", "features"):
                report = copies.draws_of(getattr(found, field), target, subset)
                np.testing.assert_array_equal(
                    report.to_numpy(), getattr(direct, field)[target].to_numpy())
                assert report.index.equals(getattr(direct, field)[target].index)
            np.testing.assert_array_equal(
                copies.draws_of(found.feature_means, target, subset).to_numpy(),
                direct.feature_means[target].to_numpy())


def test_eval_config_refuses_unknown_or_empty_choices():
    with pytest.raises(ValueError, match="unknown method"):
        EvalConfig(methods=("coherent", "magic"))
    with pytest.raises(ValueError, match="unknown method.*'ridge_features'"):
        EvalConfig(baselines=("ridge_feature",))
    assert {"ridge_features", "knn_features", "mean"} <= set(EvalConfig().baselines)
    with pytest.raises(ValueError, match="at least one generative method"):
        EvalConfig(methods=())
    with pytest.raises(ValueError, match="num_seeds must be >= 1"):
        EvalConfig(num_seeds=0)
    with pytest.raises(ValueError, match="never trained on"):
        EvalConfig(holdout_split="train")
