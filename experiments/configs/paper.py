r"""The paper's hyperparameters (Marchesi et al. 2025, METHOD.md sections 2-4).

    python experiments/run_pipeline.py --config=experiments/configs/paper.py --workdir=/tmp/paper
    # on the paper's released data:
    #   --config.data.source=paper --config.data.path=/path/to/datasets_TCGA

32-d autoencoder latents (PCA for slide embeddings); plain denoisers (no anchor, conditioned
on the sources' latents) hidden 512 x 4 layers, time embedding 128, condition embedding 32,
BatchNorm, linear DDPM T=1000; the search grid's learning rates {1e-4, 1e-3} x 2 seeds in one
vmapped population per target (widths/depths: run again with other --config.denoisers.*);
validation by full DDPM sampling; selection by sample MSE; DDPM 1000-step imputation with 10
draws and rejection among 4 candidates. The paper trained 20,000 epochs (~1.3M steps at batch
128 on 8,305 patients); 200,000 steps here. Evaluation as the paper's: DDPM 1000 steps,
10 draws, 10 forest seeds. Expected: hours on a GPU; not for this CPU.
"""

from configs import base  # experiments/, the scripts' folder, is on sys.path


def get_config():
    c = base.base_config()
    # the paper's plain norm_mlp (no linear-Gaussian anchor), its autoencoder latents and its
    # checkpoint criterion (single-draw MSE)
    c.denoisers.update(dict(criterion="sample_mse", train_steps=200_000, eval_every=10_000,
                            log_every=1_000, seeds=(0, 1), learning_rates=(1e-4, 1e-3), anchored=False,
                            feature_conditions=False, sharpness_grid=(0.0,)))
    c.latent.default_kind = "autoencoder"
    c.latent.scaling = "per_dimension"  # every latent dimension z-scored, as the paper
    c.impute.update(dict(sampler="ddpm", sample_steps=0))  # DDPM, all T = 1000 steps
    # The paper's evaluation: DDPM 1000 steps, 10 draws, 10 forest seeds, 100 trees.
    c.evaluate.imputation.update(dict(sampler="ddpm", sample_steps=0, num_candidates=4))  # 0: all T
    c.evaluate.num_seeds = 10
    return c
