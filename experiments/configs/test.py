r"""Tiny end-to-end config for tests.

    python experiments/run_pipeline.py --config=experiments/configs/test.py --workdir=/tmp/t

Expected: ~1 minute on a 2-core CPU; a linear-Gaussian cohort of 300 patients with 8-dim
modalities (identity encoders), 40 training steps per anchored model, imputation of the test
split and an evaluation report (no labels: the downstream analyses are skipped and say so).
The generative rows land near the exact posterior mean's R^2 (tests/test_experiments.py).
"""

from configs import base  # experiments/, the scripts' folder, is on sys.path


def get_config():
    c = base.base_config()
    c.data.source = "gaussian"
    c.data.num_samples = 300
    c.data.missing = "0.3"
    c.latent.latent_dim = 8
    c.denoisers.update(dict(hidden_dim=32, num_layers=2, time_embed_dim=16, cond_embed_dim=8,
                            batch_size=32, train_steps=40, eval_every=20, log_every=20,
                            val_sampler="ddim", val_sample_steps=5, seeds=(0, 1),
                            # every trained correction kept: the scripts' tests run the chain
                            correction_test_z=-1e9))
    c.impute.update(dict(num_samples=2, sampler="ddim", sample_steps=5, num_candidates=2))
    c.evaluate.update(dict(baselines=("mean", "knn", "ridge", "ridge_features", "knn_features",
                                      "gaussian_features"),
                           num_seeds=1, n_estimators=20, num_unconditional=50))
    c.evaluate.imputation.update(dict(num_samples=8, sampler="ddim", sample_steps=5))
    return c
