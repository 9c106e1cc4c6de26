"""Latent space: autoencoder widths and early stopping, PCA / identity encoders, LatentSpace
fit on train only, encode/decode, save/restore, quality table, bad inputs."""

import dataclasses
import json

import jax
import numpy as np
import pandas as pd
import pytest

from coherent_jax import encoders

from coherent_jax.engine import checkpointing
from coherent_jax.data import Cohort, DataError
from coherent_jax.latent import (LatentConfig, LatentSpace, quality_table, reconstruction_scores,
                                 save_quality_table)
from coherent_jax import autoencoder as ae

K = 4  # latent width of the tiny spaces
# Small, fast autoencoder training for the tiny cohort.
TINY_AE = ae.AutoencoderConfig(latent_dim=K, num_layers=2, learning_rate=1e-2, batch_size=16,
                               patience=10, max_epochs=150, seed=0)
CONFIG = LatentConfig(latent_dim=K, kinds={"mirna": "pca"}, default_kind="autoencoder",
                      autoencoders={"rna": TINY_AE})


def _low_rank_cohort(seed=0, n=140, rank=3, poison=None):
    """rna [24] and mirna [12] of rank 3 (plus tiny noise), idf [K] (identity); 100 train (a few
    lacking rna), 20 val, 20 test. `poison` adds a huge value to every val/test cell."""
    rng = np.random.default_rng(seed)
    z = rng.standard_normal((n, rank))
    ids = [f"p{i:03d}" for i in range(n)]
    tables = {}
    for name, width in (("rna", 24), ("mirna", 12), ("idf", K)):
        values = z @ rng.standard_normal((rank, width)) + 0.01 * rng.standard_normal((n, width))
        if poison is not None:
            values[100:] += poison
        tables[name] = pd.DataFrame(values.astype(np.float32), index=ids,
                                    columns=[f"{name}_f{j}" for j in range(width)])
    tables["rna"] = tables["rna"].drop(index=ids[:5])  # train samples without rna
    splits = {s: "train" if i < 100 else "val" if i < 120 else "test" for i, s in enumerate(ids)}
    return Cohort.from_tables(tables, splits=splits, name="low-rank")


@pytest.fixture(scope="module")
def cohort():
    return _low_rank_cohort()


@pytest.fixture(scope="module")
def space(cohort):
    return LatentSpace.fit(cohort, CONFIG)


def test_hidden_widths_and_defaults():
    assert ae.hidden_widths(2284, 32, 3, 1.0) == (550, 132, 32)
    assert ae.hidden_widths(480, 32, 2, 1.0) == (123, 32)
    assert ae.hidden_widths(20000, 32, 2, 3.0) == (120, 32)  # s=3 shrinks fast early
    assert ae.hidden_widths(20000, 32, 2, 1.0) == (800, 32)
    assert ae.hidden_widths(20, 32, 2, 1.0) == (32, 32)  # never narrower than the latent
    layers = lambda m, d: (ae.default_config(m, d).num_layers, ae.default_config(m, d).shrink)
    assert layers("rna", 16000) == (3, 1.0) and layers("RPPA", 480) == (2, 1.0)
    assert layers("cnv", 20000) == (2, 3.0) and layers("meth", 2102) == (3, 1.0)
    assert layers("mirna", 472) == (2, 1.0)
    assert layers("atac", 5000) == (3, 1.0) and layers("atac", 300) == (2, 1.0)
    assert ae.default_config("rna", 100, latent_dim=8).latent_dim == 8
    model = ae.Autoencoder.from_config(2284, ae.default_config("rna", 2284))
    assert ae.describe(model) == (2284, 550, 132, 32, 32)
    assert encoders.default_kind("wsi", 768, 32) == "pca"
    assert encoders.default_kind("rna", 32, 32) == "identity"
    assert encoders.default_kind("rna", 900, 32) == "auto"
    assert encoders.default_kind("rna", 900, 32, "autoencoder") == "autoencoder"


def test_early_stopping_restores_the_best_epoch():
    # 12 rows of pure noise and a wide code: the autoencoder memorises them, so the MSE on
    # fresh noise falls, then rises; training stops `patience` epochs after the best one.
    rng = np.random.default_rng(0)
    train_x = rng.standard_normal((12, 16)).astype(np.float32)
    stop_x = rng.standard_normal((40, 16)).astype(np.float32)
    config = ae.AutoencoderConfig(latent_dim=8, num_layers=1, learning_rate=3e-2, batch_size=4,
                                  patience=3, max_epochs=200, seed=0)
    fit = ae.fit_autoencoder(train_x, stop_x, config)
    mses = [h["stop_mse"] for h in fit.history]
    assert fit.epochs < config.max_epochs  # it stopped early
    assert fit.best_epoch == int(np.argmin(mses)) + 1
    assert fit.epochs == fit.best_epoch + config.patience
    assert mses[-1] > fit.best_mse
    restored = float(ae.reconstruction_mse(fit.model, fit.variables, stop_x))
    assert restored == pytest.approx(fit.best_mse, rel=1e-6)
    compiled = ae.train_epoch._cache_size()
    again = ae.fit_autoencoder(train_x, stop_x, config)  # same seed, same result
    assert ae.train_epoch._cache_size() == compiled  # and no recompilation
    assert again.history == fit.history
    for a, b in zip(jax.tree.leaves(fit.variables), jax.tree.leaves(again.variables)):
        np.testing.assert_array_equal(np.asarray(a), np.asarray(b))
    with pytest.raises(FloatingPointError, match="lower learning_rate"):
        ae.fit_autoencoder(np.full_like(train_x, 1e30), stop_x, config)
    with pytest.raises(ValueError, match="NaN or inf"):
        ae.fit_autoencoder(np.full_like(train_x, np.nan), stop_x, config)


def test_shapes_names_and_missing_rows(cohort, space):
    assert space.kinds() == {"rna": "autoencoder", "mirna": "pca", "idf": "identity"}
    latent = space.encode(cohort)
    assert latent.sample_ids.equals(cohort.sample_ids)
    assert latent.widths() == {"rna": K, "mirna": K, "idf": K}
    assert list(latent.tables["rna"].columns) == [f"rna_z{j}" for j in range(K)]
    pd.testing.assert_frame_equal(latent.presence, cohort.presence)
    pd.testing.assert_series_equal(latent.splits, cohort.splits)
    pd.testing.assert_frame_equal(latent.labels, cohort.labels)
    for m in latent.modalities:  # centred, one scale: mean variance 1 on the train rows
        values, present = latent.split("train").matrix(m)
        np.testing.assert_allclose(values[present].mean(0), 0, atol=1e-4)
        np.testing.assert_allclose(np.mean(values[present].var(0)), 1, atol=1e-3)
    decoded = space.decode("rna", latent.tables["rna"].dropna())
    assert list(decoded.columns) == cohort.feature_names["rna"]
    assert decoded.index.equals(cohort.sample_ids[cohort.presence["rna"].to_numpy()])
    draws = latent.tables["mirna"].iloc[:3]
    draws.index = pd.MultiIndex.from_product([draws.index, [0]], names=["sample_id", "draw"])
    assert space.decode("mirna", draws).index.equals(draws.index)  # any index is kept
    assert space.decode("mirna", draws.to_numpy()).shape == (3, 12)


def test_global_scaling_keeps_the_pca_geometry_per_dimension_z_scores(cohort):
    config = LatentConfig(latent_dim=K, kinds={m: "pca" for m in cohort.modalities})
    spaces = {s: LatentSpace.fit(cohort, dataclasses.replace(config, scaling=s))
              for s in ("global", "per_dimension")}
    train = cohort.split("train")
    rows = train.tables["mirna"].dropna().to_numpy()
    z = {s: space.encode_values("mirna", rows) for s, space in spaces.items()}
    np.testing.assert_allclose(z["per_dimension"].std(0), 1, atol=1e-3)
    spread = z["global"].std(0)
    assert spread[0] > 2 * spread[-1]  # a weak component stays weak
    # distances between patients are those of their standardised features' projections, x c
    pca = spaces["global"].encoders["mirna"]
    projected = ((rows - pca.mean) / pca.scale) @ pca.components.T
    ratio = np.linalg.norm(z["global"][1:] - z["global"][0], axis=1) / np.linalg.norm(
        projected[1:] - projected[0], axis=1)
    np.testing.assert_allclose(ratio, ratio[0], rtol=1e-4)
    for space in spaces.values():  # decoding undoes either scaling
        np.testing.assert_allclose(space.decode("mirna", space.encode_values("mirna", rows)),
                                   spaces["global"].decode("mirna", z["global"]), atol=1e-4)
    with pytest.raises(ValueError, match="scaling must be one of"):
        LatentConfig(scaling="minmax")


def test_decode_encode_is_close_on_low_rank_data(cohort, space):
    table = quality_table(space, cohort)
    assert list(table[["modality", "split"]].itertuples(index=False, name=None)) == [
        (m, s) for m in ("rna", "mirna", "idf") for s in ("val", "test")]
    assert (table["samples"] == 20).all()
    by = table.set_index(["modality", "split"])
    assert by.loc[("mirna", "test"), "r2_overall"] > 0.999  # rank 3 < K: PCA is exact
    assert by.loc[("idf", "test"), "mse"] < 1e-10
    assert by.loc[("rna", "test"), "r2_overall"] > 0.9
    assert by.loc[("rna", "test"), "r2_q25"] > 0.8
    test = cohort.split("test")
    x = test.tables["rna"].to_numpy()
    x_hat = space.decode("rna", space.encode(test).tables["rna"]).to_numpy()
    assert np.mean((x - x_hat) ** 2) == pytest.approx(by.loc[("rna", "test"), "mse"], rel=1e-4)


def test_reconstruction_scores_definitions():
    x = np.array([[0.0, 1.0], [2.0, 1.0], [4.0, 1.0]])
    x_hat = np.array([[1.0, 1.0], [2.0, 1.0], [3.0, 2.0]])
    scores = reconstruction_scores(x, x_hat)
    assert scores["r2_features"][0] == pytest.approx(1 - 2 / 8)
    assert np.isnan(scores["r2_features"][1])  # constant feature: R2 undefined
    assert scores["r2_overall"] == pytest.approx(1 - 3 / 8)
    assert scores["mse"] == pytest.approx(3 / 6)


def test_quality_table_files(cohort, space, tmp_path):
    table = quality_table(space, cohort, splits=("test",))
    csv_path, json_path = save_quality_table(table, str(tmp_path))
    pd.testing.assert_frame_equal(pd.read_csv(csv_path), table, check_dtype=False)
    with open(json_path) as f:
        assert [r["modality"] for r in json.load(f)] == ["rna", "mirna", "idf"]


def test_save_restore_round_trip(cohort, space, tmp_path):
    space.save(str(tmp_path / "latent"))
    back = LatentSpace.restore(str(tmp_path / "latent"))
    assert back.config == space.config
    assert back.kinds() == space.kinds() and back.feature_names == space.feature_names
    a, b = space.encode(cohort), back.encode(cohort)
    for m in cohort.modalities:
        pd.testing.assert_frame_equal(a.tables[m], b.tables[m], check_exact=True)
        rows = a.tables[m].dropna()
        pd.testing.assert_frame_equal(space.decode(m, rows), back.decode(m, rows),
                                      check_exact=True)
    assert back.summary()["rna"]["best_epoch"] == space.summary()["rna"]["best_epoch"]
    for m in cohort.modalities:
        np.testing.assert_array_equal(back.residual_std[m], space.residual_std[m])


def test_fit_never_reads_val_or_test_rows(cohort, space):
    poisoned = _low_rank_cohort(poison=1e6)
    other = LatentSpace.fit(poisoned, CONFIG)
    for m in cohort.modalities:
        np.testing.assert_array_equal(space.z_mean[m], other.z_mean[m])
        np.testing.assert_array_equal(space.z_std[m], other.z_std[m])
    train = cohort.split("train")
    a, b = space.encode(train), other.encode(train)
    for m in cohort.modalities:
        pd.testing.assert_frame_equal(a.tables[m], b.tables[m], check_exact=True)
    # while moving train rows does move the fit
    noise = np.random.default_rng(5).standard_normal(cohort.tables["mirna"].shape)
    moved = cohort.replace(tables={**cohort.tables, "mirna": (cohort.tables["mirna"] + noise * (
        cohort.splits == "train").to_numpy()[:, None]).astype(np.float32)})
    pca_only = dataclasses.replace(CONFIG, kinds={"rna": "pca", "mirna": "pca"})
    assert not np.allclose(LatentSpace.fit(moved, pca_only).z_std["mirna"], space.z_std["mirna"])


def test_encoders_roundtrip_without_latent_space():
    rng = np.random.default_rng(1)
    x = (rng.standard_normal((50, 2)) @ rng.standard_normal((2, 6)) + 3).astype(np.float32)
    pca = encoders.PCAEncoder.fit(x, 2)
    np.testing.assert_allclose(pca.decode(pca.encode(x)), x, atol=1e-4)
    assert pca.explained_variance_ratio.sum() == pytest.approx(1.0, abs=1e-5)
    rebuilt = encoders.rebuild("pca", pca.spec(), pca.arrays())
    np.testing.assert_array_equal(rebuilt.encode(x), pca.encode(x))
    with pytest.raises(ValueError, match="needs more than 8 rows"):
        encoders.PCAEncoder.fit(x[:8], 8)


def test_bad_inputs(cohort, space):
    latent = space.encode(cohort).tables["rna"].dropna()
    with pytest.raises(KeyError, match="unknown modality 'rppa'"):
        space.decode("rppa", latent)
    with pytest.raises(ValueError, match=r"must be \[N, 4\], got shape \(3, 5\)"):
        space.decode("rna", np.zeros((3, K + 1)))
    nan_rows = latent.copy()
    nan_rows.iloc[1, 2] = np.nan
    with pytest.raises(ValueError, match="NaN or inf in 1 row.*dropna"):
        space.decode("rna", nan_rows)
    with pytest.raises(ValueError, match="latents of 'rna', not of 'mirna'"):
        space.decode("mirna", latent)
    narrow = cohort.replace(tables={**cohort.tables, "rna": cohort.tables["rna"].iloc[:, :-1]})
    with pytest.raises(DataError, match="23 features.*fitted on 24.*missing 'rna_f23'"):
        space.encode(narrow)
    extra = Cohort.from_tables({**cohort.tables, "rppa": cohort.tables["idf"]},
                               splits=cohort.splits)
    with pytest.raises(KeyError, match="unknown modality 'rppa'"):
        space.encode(extra)
    with pytest.raises(ValueError, match="identity encoder needs exactly its latent width 4"):
        LatentSpace.fit(cohort, LatentConfig(latent_dim=K, kinds={"rna": "identity"}))
    with pytest.raises(ValueError, match="encoder kind for 'rna' is 'vae'"):
        LatentConfig(kinds={"rna": "vae"})
    with pytest.raises(ValueError, match="latent_dim 4, the space gives 'rna' 32"):
        LatentConfig(autoencoders={"rna": TINY_AE})
    with pytest.raises(ValueError, match="latent width of 'rna' must be an integer >= 1"):
        LatentConfig(widths={"rna": 0})
    with pytest.raises(ValueError, match="latent width of 'rna' must be an integer >= 1, got 'a'"):
        LatentConfig(widths={"rna": "a"})
    with pytest.raises(KeyError, match=r"modalities \['rppa'\] the cohort lacks"):
        LatentSpace.fit(cohort, dataclasses.replace(CONFIG, widths={"rppa": 2}))
    with pytest.raises(DataError, match="paper_split"):
        LatentSpace.fit(Cohort.from_tables(cohort.tables), CONFIG)



def test_each_modality_gets_its_own_width(cohort, tmp_path):
    """LatentConfig.widths: mirna 2-d beside rna's 4 (the other modalities keep latent_dim);
    tables, decoding and a saved space follow each modality's width."""
    config = dataclasses.replace(CONFIG, widths={"mirna": 2})
    space = LatentSpace.fit(cohort, config)
    latents = space.encode(cohort)
    assert {m: latents.tables[m].shape[1] for m in cohort.modalities} == {
        "rna": K, "mirna": 2, "idf": K}
    assert (space.width("mirna"), space.width("rna")) == (2, K)
    rows = latents.tables["mirna"].dropna()
    assert space.decode("mirna", rows).shape == (len(rows), 12)
    with pytest.raises(ValueError, match=r"latents of 'mirna' must be \[N, 2\]"):
        space.decode("mirna", np.zeros((3, K)))
    space.save(str(tmp_path / "latent"))
    back = LatentSpace.restore(str(tmp_path / "latent"))
    assert back.config == config and back.width("mirna") == 2
    pd.testing.assert_frame_equal(back.encode(cohort).tables["mirna"], latents.tables["mirna"],
                                  check_exact=True)


def test_restore_rejects_other_trees(tmp_path):
    checkpointing.save_tree(str(tmp_path), {"a": np.zeros(2)}, {"format": "other"})
    with pytest.raises(ValueError, match="holds no LatentSpace"):
        LatentSpace.restore(str(tmp_path))


def test_residual_noise_matches_what_the_space_leaves_out_on_unseen_rows():
    # rank 6 data into a 3-d PCA space: the left-out variance is real and must come back
    rng = np.random.default_rng(3)
    n, width = 400, 20
    z = rng.standard_normal((n, 6))
    values = z @ rng.standard_normal((6, width))
    ids = [f"p{i:03d}" for i in range(n)]
    table = pd.DataFrame(values.astype(np.float32), index=ids,
                         columns=[f"g{j}" for j in range(width)])
    splits = {s: "train" if i < 300 else "test" for i, s in enumerate(ids)}
    cohort = Cohort.from_tables({"rna": table}, splits=splits)
    space = LatentSpace.fit(cohort, LatentConfig(latent_dim=3, kinds={"rna": "pca"}))
    test = table.iloc[300:]
    latents = space.encode_values("rna", test.to_numpy())
    expected = space.decode("rna", latents).to_numpy()
    held_rmse = np.sqrt(np.mean((test.to_numpy() - expected) ** 2, axis=0))
    np.testing.assert_allclose(space.residual_std["rna"], held_rmse, rtol=0.25)
    draws = space.decode("rna", latents, rng=np.random.default_rng(0)).to_numpy()
    noise_sd = np.std(draws - expected, axis=0)
    np.testing.assert_allclose(noise_sd, space.residual_std["rna"], rtol=0.2)
    # central 90% intervals of draws around the decoder output cover ~90% of unseen values
    sd = space.residual_std["rna"]
    covered = np.abs(test.to_numpy() - expected) <= 1.645 * sd
    assert 0.85 <= covered.mean() <= 0.95
    assert np.all(space.residual_std["rna"] > 0.1)


def test_identity_encoder_adds_no_noise(cohort, space):
    assert not space.residual_std["idf"].any()
    latents = space.encode(cohort).tables["idf"].dropna()
    plain = space.decode("idf", latents)
    noisy = space.decode("idf", latents, rng=np.random.default_rng(0))
    pd.testing.assert_frame_equal(plain, noisy)


def test_auto_kind_picks_what_reconstructs_held_out_rows_best(cohort):
    # 95 train rows with rna: below AUTO_MIN_ROWS the autoencoder is not tried, PCA is chosen
    space = LatentSpace.fit(cohort, LatentConfig(latent_dim=K, kinds={"idf": "identity"}))
    assert space.kinds()["rna"] == "pca" and space.selection["rna"]["chosen"] == "pca"
    assert space.selection["rna"]["held_out_r2"]["pca"] > 0.9  # rank-3 data, 4 components


def test_auto_kind_compares_both_with_enough_rows(monkeypatch):
    from coherent_jax import latent  # noqa: PLC0415

    monkeypatch.setattr(latent, "AUTO_MIN_ROWS", 50)
    cohort = _low_rank_cohort()
    space = LatentSpace.fit(cohort, LatentConfig(latent_dim=K, kinds={"idf": "identity"},
                                                 autoencoders={"rna": TINY_AE, "mirna": TINY_AE}))
    scores = space.selection["rna"]["held_out_r2"]
    assert set(scores) == {"pca", "autoencoder"}
    assert space.kinds()["rna"] == max(scores, key=scores.get)


def test_residual_noise_keeps_the_dependence_between_features():
    """Rank-6 data in a 3-d PCA space: what is left out lives in 3 shared directions, so the
    left-out parts of features move together. The draws' noise must have the spread of the
    unseen residuals along random projections too (independent noise per feature gets sums
    of features wrong)."""
    rng = np.random.default_rng(4)
    n, width = 600, 30
    values = rng.standard_normal((n, 6)) @ rng.standard_normal((6, width))
    values += 0.05 * rng.standard_normal((n, width))
    ids = [f"p{i:03d}" for i in range(n)]
    table = pd.DataFrame(values.astype(np.float32), index=ids,
                         columns=[f"g{j}" for j in range(width)])
    splits = {s: "train" if i < 400 else "test" for i, s in enumerate(ids)}
    space = LatentSpace.fit(Cohort.from_tables({"rna": table}, splits=splits),
                            LatentConfig(latent_dim=3, kinds={"rna": "pca"}))
    assert space.residual_loadings["rna"].shape[1] >= 2
    test = table.iloc[400:].to_numpy()
    expected = space.decode("rna", space.encode_values("rna", test)).to_numpy()
    residual = test - expected  # [200, D] unseen residuals
    noise = space.residual_noise("rna", 20_000, np.random.default_rng(0))
    directions = np.random.default_rng(1).standard_normal((width, 16))
    real_sd, noise_sd = (residual @ directions).std(0), (noise @ directions).std(0)
    np.testing.assert_allclose(noise_sd, real_sd, rtol=0.25)
    independent = np.random.default_rng(0).standard_normal((20_000, width)) * \
        space.residual_std["rna"]
    assert np.max(np.abs((independent @ directions).std(0) / real_sd - 1)) > 1.0
