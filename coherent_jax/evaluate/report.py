"""The evaluation report: what an `EvalResults` shows, laid out by `render.write_page`.

    write_report("runs/demo/report", results, config=run_config, seed=0)

The headline reconstruction table with patient intervals and the paired differences to the
raw-feature ridge first; then the inline summaries (reconstruction by available set,
calibration, privacy, fidelity, downstream forests, timings), the figures (reconstruction,
rescue, prioritisation, disagreement, PCA of real vs generated), every table as CSV, and notes
saying what ran, what varies and which split plays which role.
"""

from __future__ import annotations

import pandas as pd

from coherent_jax.evaluate import joint as joint_lib
from coherent_jax.evaluate import privacy, stats
from coherent_jax.evaluate.render import Page, write_page
from coherent_jax.evaluate.results import Downstream, EvalResults
from coherent_jax.evaluate.scoring import FEATURE_BASELINES, baseline_label


def write_report(folder: str, results: EvalResults, config: dict, seed: int, *,
                 overwrite: bool = True) -> str:
    """Writes the report folder of an evaluation and returns the path of its index.md.

    Args:
        folder: the report folder (index.md, tables/, figures/, results/), written beside and
            renamed into place (`render.write_page`).
        results: what `evaluate_suite` found.
        config: the run's configuration (JSON-serialisable), recorded with the seed and the
            library versions; seed: the run's seed.
        overwrite: replace an earlier report of ours in `folder` (False: refuse).
    """
    k = results.config.imputation.num_samples
    rescue = results.downstream.rescue
    page = Page(
        tables=results.tables(),
        results={"privacy_unconditional": results.unconditional, "timings": results.timings},
        disagreement=results.disagreement if len(results.disagreement.columns) else None,
        pca=results.pca, reconstruction=results.headline,
        reconstruction_cells=results.headline_cells,
        reconstruction_metric=f"R^2 (feature space, all other modalities given; generative "
        f"methods as the mean of K = {k} draws and as a single draw, baselines as their point"
        "  prediction; 95% patient-bootstrap intervals; '<method> - ridge "
        "(features)': paired bootstrap difference, q: BH over those rows)",
        rescue=None if rescue is None else rescue.scores[rescue.scores["draws"] != "single"],
        prioritisation=results.downstream.prioritisation_curves or None,
        summaries=_summaries(results), notes=_notes(results) + _condition_notes(config))
    return write_page(folder, page, config=config, seed=seed, overwrite=overwrite)


def _summaries(results: EvalResults) -> dict[str, pd.DataFrame]:
    """The small tables shown inline in index.md, titled by what they show."""
    return {**_reconstruction_summaries(results), **_privacy_summaries(results),
            **_downstream_summaries(results.downstream),
            "Seconds per part": pd.DataFrame({"seconds": results.timings}).rename_axis("part")}


def _reconstruction_summaries(results: EvalResults) -> dict[str, pd.DataFrame]:
    """Reconstruction by available set, calibration, the draws as distributions and several
    modalities missing together."""
    scores = results.scores
    features = scores[(scores["space"] == "features") & (scores["group"] == "all")]
    out = {"Reconstruction R^2 by available set (feature space; generative methods: mean of "
           "K draws, baselines: point prediction; *_features: fitted on raw features)":
           features.pivot_table(index=["target", "source"], columns="method",
                                values="r2_mean", sort=False)}
    out["Calibration: coverage of the central 90% interval of the K draws (95% patient "
        "interval), beside a perfectly calibrated sampler's"] = results.calibration
    out["Draws as distributions (every other modality given): mean fair energy score of the "
        "target vector (lower is better) and coverage of 64 random projections of it by the "
        "central 90% of the K draws (joint calibration), 95% patient intervals; the last "
        "columns: paired differences to the closed form ('gaussian') and to the closed form "
        "on raw features ('gaussian (features)')"] = results.distributions
    if not results.joint.empty:
        out["Several modalities missing (patients given one): the missing modalities together, "
            "fair energy score of their feature z-scores side by side (paired difference to "
            "the joint closed form 'gaussian') and projection coverage, 95% patient "
            "intervals; the residuals' cross-modality dependence over the leading "
            f"{joint_lib.LEADING_DIMS} latent dimensions of each: mean |correlation| real and "
            "drawn, and the RMS difference of the two matrices"] = results.joint
    return out


def _privacy_summaries(results: EvalResults) -> dict[str, pd.DataFrame]:
    """Membership inference and near-copies, fidelity, and the fully masked draws."""
    config, out = results.config, {}
    out[f"Privacy: conditional membership inference (train vs {config.holdout_split!r} "
        f"patients, every other modality given, K = {config.membership_samples}) and "
        "near-copies of the full training set (flagged: AUC outside "
        f"{list(privacy.MEMBERSHIP_AUC_BAND)} or near-copy share > {privacy.MAX_NEAR_COPY_SHARE})"
        ] = _privacy_cells(results.membership, results.copies)
    out["Fidelity: PRDC of draw 0 vs the real test latents (95% patient intervals, k-NN balls "
        "fixed); 'random training records' is the floor"] = results.fidelity.set_index(
        ["target", "method"]).sort_index(level=0, sort_remaining=False)
    if results.unconditional:
        out["Fully masked multi-condition draws vs training records (nn_ratio ~1 or above is "
            "healthy)"] = pd.DataFrame(results.unconditional).T.rename_axis("target")
    return out


def _downstream_summaries(down: Downstream) -> dict[str, pd.DataFrame]:
    """Train on real / test on synthetic, performance rescue and test prioritisation."""
    out = {}
    if down.trts is not None:
        out["Train on real, test on synthetic (balanced accuracy; generated: mean over the K "
            "draws' scores)"] = down.trts.pivot_table(index=["target", "data"],
                                                         values="balanced_accuracy")
    for name, metric, title in (("rescue", "balanced_accuracy", "classification"),
                                ("rescue_survival", "c_index", "survival")):
        intervals, tests = (getattr(down, f"{name}_intervals"),
                            getattr(down, f"{name}_tests"))
        if intervals is not None:
            out[f"Performance rescue, {title} ({metric} [95% patient interval]; '' = nothing "
                "removed; retrained = a forest trained on the remaining modalities"
                f"{' and the cancer type' if name == 'rescue_survival' else ''})"] = (
                _rescue_cells(intervals))
        if tests is not None and len(tests):
            out[f"Rescue vs the retrained forest, {title}: paired bootstrap difference "
                "(draw-averaged fills; * BH q <= 0.05 over the table)"] = _test_cells(
                tests, "removed", "fill")
    if down.prioritisation is not None:
        table = down.prioritisation.set_index(["modality", "method"])
        out["Counterfactual test prioritisation (area under the curve; ties broken at random; "
            "gain interval over tie-breaks and random orders)"] = pd.DataFrame({
                "auc_prioritised": table["auc_prioritised"],
                "auc_random_mean": table["auc_random_mean"],
                "auc_gain": [stats.cell(g, lo, hi, signed=True) for g, lo, hi in zip(
                    table["auc_gain"], table["auc_gain_low"], table["auc_gain_high"])],
                "tied_share": table["tied_share"]})
    return out


def _privacy_cells(membership: pd.DataFrame, copies: pd.DataFrame) -> pd.DataFrame:
    """One row per (method, target): conditional membership AUC and near-copy share."""
    table = membership.set_index(["method", "target"])
    out = pd.DataFrame({
        "membership AUC": [stats.cell(a, lo, hi) for a, lo, hi in
                           zip(table["auc"], table["low"], table["high"])],
        "q (AUC > 0.5)": table["q"].map(lambda q: f"{q:.3g}"),
        "error median (train / holdout)": [
            f"{a:.3f} / {b:.3f}" for a, b in
            zip(table["member_error_median"], table["non_member_error_median"])]},
        index=table.index)
    near = copies.set_index(["method", "target"])
    out["near-copy share"] = pd.Series(
        [stats.cell(s, lo, hi) for s, lo, hi in
         zip(near["near_copy_share"], near["low"], near["high"])], index=near.index)
    out["NN distance median (draws / holdout)"] = pd.Series(
        [f"{a:.2f} / {b:.2f}" for a, b in
         zip(near["draw_train_nn_median"], near["holdout_train_nn_median"])], index=near.index)
    flagged = table["flagged"] | near["flagged"].reindex(table.index).fillna(False).astype(bool)
    out["flagged"] = flagged.map({True: "FLAGGED", False: "pass"})
    return out.fillna("")


def _rescue_cells(intervals: pd.DataFrame) -> pd.DataFrame:
    """Rescue intervals as removed x fill cells 'score [low, high]'."""
    cells = intervals.assign(
        column=[f if d == "point" else f"{f} ({d})" for f, d in
                zip(intervals["fill"], intervals["draws"])],
        cell=[stats.cell(p, lo, hi) for p, lo, hi in
              zip(intervals["point"], intervals["low"], intervals["high"])])
    return cells.pivot(index="removed", columns="column", values="cell").reindex(
        index=pd.unique(cells["removed"]), columns=pd.unique(cells["column"])).fillna("")


def _test_cells(tests: pd.DataFrame, by: str, column: str) -> pd.DataFrame:
    """Paired tests as `by` x `column` cells 'difference [low, high]', '*' where BH q <= 0.05."""
    cells = tests.assign(cell=[
        f"{stats.cell(d, lo, hi, signed=True)}{'*' if sig else ''}" for d, lo, hi, sig in
        zip(tests["difference"], tests["low"], tests["high"], tests["significant"])])
    return cells.pivot(index=by, columns=column, values="cell").reindex(
        index=pd.unique(cells[by]), columns=pd.unique(cells[column])).fillna("")


def _notes(results: EvalResults) -> list[str]:
    """The report's notes: what was run, what varies, which split plays which role."""
    config, down = results.config, results.downstream
    draws = config.imputation
    notes = [f"{results.patients} complete {config.split} patients, each imputed once per "
             f"available set ({results.available_sets} sets), K = {draws.num_samples} draws, "
             f"{draws.sampler} {draws.sample_steps or 'all'} steps, cascade={draws.cascade}.",
             "What varies: the patients. Every interval is the central 95% of "
             f"{config.num_bootstrap} bootstrap resamples of the evaluated patients (the same "
             "resamples for every method, so differences are paired; p: two-sided paired "
             "bootstrap; q: Benjamini-Hochberg over each table's family). What is fixed: the "
             "split, the training seed, the trained models, the draws and the forests' seeds "
             f"(each forest is {config.num_seeds} x {config.n_estimators} trees).",
             "Split roles: training fits every model; validation selects checkpoints and "
             "calibrates thresholds only; the privacy holdout (non-members of the conditional "
             f"membership inference, real holdout-to-train distances) is {config.holdout_split!r}"
             ", never trained on nor used for selection.",
             "Reconstruction tables: each generative method is scored twice, on the mean of its "
             f"K = {draws.num_samples} draws and on single draws (the mean over the K draws "
             "of each draw's score); each baseline on its one point prediction.",
             *_baseline_notes(config.baselines),
             "Rescue: fills given as K draws are scored on the forest's outputs averaged over "
             "the draws ('mean of K') and draw by draw ('single'); 'retrained' is a forest "
             "trained on the remaining modalities only (survival: and the cancer type, so with "
             "everything removed it is the cancer-label-only forest). Single-draw C-indices "
             "carry no interval (K x resamples scikit-survival calls).",
             "Fidelity intervals resample the patients with the k-NN balls of the full sample "
             "held fixed; the prioritisation gain's interval varies tie-breaks and random "
             "orders, not patients.",
             "Downstream forests use the latents, as in the paper."]
    skipped = [m for m in config.methods if m not in results.methods]
    if skipped:
        notes.append(f"Methods skipped (the model set lacks what they need): {skipped}.")
    if down.trts is None:
        notes.append(f"Classification analyses skipped: label {config.label!r} is unknown for "
                     "the evaluated patients.")
    if config.survival and down.rescue_survival is None:
        notes.append("Survival rescue skipped: fewer than 10 evaluated patients with os_time.")
    return notes


def _condition_notes(config: dict) -> list[str]:
    """How the evaluated models' condition maps were fitted (the run's 'denoisers' settings),
    which the conditional membership inference reads."""
    denoisers = (config or {}).get("denoisers") or {}
    if not denoisers.get("feature_conditions", False):
        return []
    if denoisers.get("distill_conditions", False):
        return ["Condition maps: ridges from the sources' features refitted to their own "
                "leave-one-out predictions (distill_conditions=True), so that training patients "
                "are imputed no better than new ones."]
    return ["Condition maps: ridges from the sources' features (distill_conditions=False); "
            "with more features than training patients they fit those patients better than "
            "new ones, which the conditional membership inference reads "
            "(distill_conditions=True trades some accuracy for it: README, 'Privacy')."]


def _baseline_notes(baselines) -> list[str]:
    """Which reconstruction rows share our latent space and which are fitted on raw features."""
    latent = [baseline_label(b) for b in baselines if b != "mean" and b not in FEATURE_BASELINES]
    raw = [baseline_label(b) for b in baselines if b in FEATURE_BASELINES]
    notes = ["Every baseline sees the same training rows, held-out patients and available sets "
             "as the generative methods.",
             "Rows that share our latent space (fitted on our latents; their feature-space scores "
             "are decoded through our decoders, so the autoencoders' own reconstruction bounds "
             f"them): {', '.join(['the generative methods', *latent])}."]
    if raw:
        notes.append(f"Rows fitted on the raw preprocessed features of the training rows, scored "
                     f"in feature space directly (their predictions are encoded with our "
                     f"encoders for the latent-space tables): {', '.join(raw)}. RidgeCV's alpha "
                     f"is chosen by leave-one-out on the training rows; KNN averages the 5 "
                     f"nearest training patients.")
    if "mean" in baselines:
        notes.append("'training mean': the training rows' mean in each space (of the features "
                     "in feature space, of the latents in latent space), not a decoded latent.")
    if "mofa" in baselines:
        notes.append("mofa (latent) is transductive: MOFA+ factors are fitted on the training "
                     "and the held-out patients' available latents together (their targets "
                     "hidden).")
    return notes
