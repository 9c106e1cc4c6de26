"""Fields shared by every config; paper.py, demo.py and test.py change what they need."""

import ml_collections


def base_config() -> ml_collections.ConfigDict:
    c = ml_collections.ConfigDict()
    c.seed = 0
    # coherent_jax.pipeline.DataConfig
    c.data = ml_collections.ConfigDict(dict(
        source="tcga", name="KIPAN", path="", num_samples=2000, synthetic_scale=0.01,
        split_seed=42, missing="tcga_like", missing_seed=0, fill="",
        distinct_ids=False))
    # coherent_jax.latent.LatentConfig (+ epochs/patience for every autoencoder)
    c.latent = ml_collections.ConfigDict(dict(
        latent_dim=32, kinds={}, default_kind="auto", stop_on="holdout", holdout_fraction=0.1,
        seed=0,
        max_epochs=500, patience=10))
    # coherent_jax.model_set.ModelSetConfig (+ targets: comma-separated, '' = all)
    c.denoisers = ml_collections.ConfigDict(dict(
        hidden_dim=512, num_layers=4, time_embed_dim=128, cond_embed_dim=32, norm="batch",
        schedule="linear", num_train_steps=1000, batch_size=128, num_steps=20_000,
        eval_every=2_000, log_every=200, val_sampler="ddpm", val_num_steps=0, seeds=(0,),
        learning_rates=(1e-3,), uncond_prob=0.1, mask_drop_prob=0.3, criterion="sample_mse",
        specialists=True, multi=True, anchored=True, feature_conditions=True,
        sharpness_grid=(0.0, 0.25, 0.5, 0.75, 1.0), calibration_draws=20, targets=""))
    # coherent_jax.pipeline.ImputeConfig
    c.impute = ml_collections.ConfigDict(dict(
        method="coherent", num_samples=10, sampler="ddpm", num_steps=0, cascade=True,
        num_candidates=4, max_bad_fraction=0.1, calibrate_quantile=0.0, corrector_steps=0,
        allow_unconditional=False, split="test"))
    # coherent_jax.evaluate.suite.EvalConfig
    c.evaluate = ml_collections.ConfigDict(dict(
        methods=("coherent", "product", "multi"),
        baselines=("mean", "knn", "iterative", "ridge", "mlp", "mofa", "ridge_features",
                   "knn_features"), num_samples=10,
        sampler="ddim", num_steps=100, num_candidates=2, max_bad_fraction=0.1,
        corrector_steps=0, cascade=True, split="test", holdout_split="test",
        label="cancer_type", survival=True, num_seeds=3, n_estimators=100, prioritise=(),
        num_unconditional=500))
    c.parallel = ml_collections.ConfigDict(dict(num_devices=0, distributed=False))
    return c
