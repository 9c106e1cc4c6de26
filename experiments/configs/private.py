r"""The demo with condition maps distilled against membership inference (README, "Privacy").

    python experiments/run_pipeline.py --config=experiments/configs/private.py --workdir=runs/private

As `demo.py`, with two changes: every condition map is fitted to its ridge's leave-one-out
predictions (`ModelSetConfig.distill_conditions`), so that training patients are imputed no
better than new ones, and 64-d latents, which give back part of the accuracy distillation
costs (KIPAN seed 0: 32-d with distillation 0.592 / 0.373 / 0.531 feature R^2, 64-d 0.599 /
0.376 / 0.532). Expected: about 5 minutes on 2 CPU cores.
"""

from configs import demo  # experiments/, the scripts' folder, is on sys.path


def get_config():
    c = demo.get_config()
    c.denoisers.distill_conditions = True
    c.latent.latent_dim = 64
    return c
