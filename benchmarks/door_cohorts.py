"""Mixture cohorts through the user's door: CSV folders in, `impute.py` output scored.

    # 1. the cohort's files: train/ (1,500 complete patients), given_hide/, given_reveal/,
    #    given_both/, given_target/ (1,000 new patients each, without the modalities they lack)
    .venv/bin/python benchmarks/door_cohorts.py write --cohort door4 --dir /tmp/door4
    # 2. as a user would (any settings, any work directory)
    .venv/bin/python experiments/train_denoisers.py --config=experiments/configs/demo.py \
        --config.data.source=csv --config.data.path=/tmp/door4/train \
        --config.data.missing=none --workdir=/tmp/door4/w
    .venv/bin/python experiments/impute.py --workdir=/tmp/door4/w \
        --input=/tmp/door4/given_reveal --out=/tmp/door4/o_reveal --num_samples=100
    # 3. every imputed modality scored against the exact conditional and the closed form,
    #    optionally paired with another output of the same patients
    .venv/bin/python benchmarks/door_cohorts.py score --cohort door4 --dir /tmp/door4 \
        --given reveal --out /tmp/door4/o_reveal [--against /tmp/door4/o_reveal_before]

The four cohorts are `data.mixture.MixtureModel.random` draws (benchmarks/RESULTS.md):
'hide' is blind to the subtypes, 'reveal' and 'target' are shifted by them.

| cohort | widths hide / reveal / target | subtypes | factors | noise, spread | target link | seed |
|---|---|---|---|---|---|---|
| door | 24 / 12 / 20 | 3 | 4 | 0.5, 2.0 | sinh | 5 |
| door2 | 40 / 20 / 30 | 3 | 6 | 0.6, 2.5 | identity | 7 |
| door3 | 50 / 25 / 40 | 4 | 5 | 0.5, 2.0 | identity | 21 |
| door4 | 60 / 16 / 24 | 5 | 8 | 0.7, 3.0 | exp | 33 |
| door5 | 30 / 10 / 50 | 3 | 6 | 0.5, 2.0 | sinh | 77 |
| door6 | 20 / 30 / 16 | 4 | 3 | 0.8, 1.5 | identity | 91 |

Separations: 'hide' 0, 'reveal' 2.5 (door, door5), 3.0 (door6) or 2.0, 'target' 3. door5 and
door6 were added after every choice of the default was made (held-out cohorts). Training patients
`sample(1500, seed=11)`, new patients `sample(1000, seed=99)`.

Scores, per imputed modality, in its training z-scores (the raw files' mean and standard
deviation over the 1,500 training patients): the fair energy score of the output's draws per
patient, of --draws exact conditional draws (the floor) and of as many draws of a raw-feature
ridge with its full-covariance Gaussian residual (RidgeCV on the z-scores of the given
modalities, fitted on the training patients) and of the same Gaussian around the ridge on the
given features' leading principal directions (`anchor.distilled_ridge`, the closed form's own
ridge; 'cut'); '% above exact' and the share of either ridge's gap to exact closed, each with a
patient-bootstrap 95% interval; with --against, the paired per-patient difference (this
output minus the other). For a modality whose subtypes move its means, the modes too: the 1-d
Wasserstein distance to the exact draws along the (up to 2) directions that separate its
subtype centres (through its link, in the z-scores), of the output, of the ridge + Gaussian
and of a second set of exact draws (the floor the draws' number leaves), per patient and
direction, averaged; the output's over the ridge's, raw and each less the floor. Prints one
JSON object per modality and writes them, with the command, seed and versions, to --json when
given.
"""

from __future__ import annotations

import argparse
import json
import os
import sys

import numpy as np
import pandas as pd

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from coherent_jax.anchor import ALPHAS, distilled_ridge  # noqa: E402
from coherent_jax.data.mixture import LINKS, MixtureModel  # noqa: E402
from coherent_jax.evaluate.reconstruction import energy_score  # noqa: E402
from coherent_jax.metrics_io import versions  # noqa: E402

SPECS = {
    "door": (dict(hide=24, reveal=12, target=20), 2.5,
             dict(num_subtypes=3, num_factors=4, noise_std=0.5, noise_spread=2.0,
                  links={"target": "sinh"}, seed=5)),
    "door2": (dict(hide=40, reveal=20, target=30), 2.0,
              dict(num_subtypes=3, num_factors=6, noise_std=0.6, noise_spread=2.5, seed=7)),
    "door3": (dict(hide=50, reveal=25, target=40), 2.0,
              dict(num_subtypes=4, num_factors=5, noise_std=0.5, noise_spread=2.0, seed=21)),
    "door4": (dict(hide=60, reveal=16, target=24), 2.0,
              dict(num_subtypes=5, num_factors=8, noise_std=0.7, noise_spread=3.0,
                   links={"target": "exp"}, seed=33)),
    "door5": (dict(hide=30, reveal=10, target=50), 2.5,
              dict(num_subtypes=3, num_factors=6, noise_std=0.5, noise_spread=2.0,
                   links={"target": "sinh"}, seed=77)),
    "door6": (dict(hide=20, reveal=30, target=16), 3.0,
              dict(num_subtypes=4, num_factors=3, noise_std=0.8, noise_spread=1.5, seed=91)),
}
GIVEN = {"hide": ("hide",), "reveal": ("reveal",), "both": ("hide", "reveal"),
         "target": ("target",)}
TRAIN_SEED, TEST_SEED, TRAIN_ROWS, TEST_ROWS = 11, 99, 1500, 1000


def cohort_model(name: str) -> MixtureModel:
    """The named cohort's generator (module docstring)."""
    if name not in SPECS:
        raise SystemExit(f"unknown cohort {name!r}: use one of {sorted(SPECS)}.")
    widths, reveal, options = SPECS[name]
    return MixtureModel.random(widths, {"hide": 0.0, "reveal": reveal, "target": 3.0},
                               **options)


def _ids(prefix: str, n: int) -> pd.Index:
    return pd.Index([f"{prefix}-{i:05d}" for i in range(n)], name="sample_id")


def _write_folder(folder: str, values: dict, ids: pd.Index) -> None:
    os.makedirs(folder, exist_ok=True)
    for m, v in values.items():
        pd.DataFrame(v, index=ids, columns=[f"{m}_{j}" for j in range(v.shape[1])]).to_csv(
            os.path.join(folder, f"{m}.csv"))


def write(args: argparse.Namespace) -> None:
    """The training folder, one folder of new patients per given set, and their truth."""
    model = cohort_model(args.cohort)
    if os.path.exists(args.dir):
        raise SystemExit(f"{args.dir} exists: give a new folder.")
    train, _ = model.sample(TRAIN_ROWS, TRAIN_SEED)
    test, subtype = model.sample(TEST_ROWS, TEST_SEED)
    _write_folder(os.path.join(args.dir, "train"), train, _ids("TR", TRAIN_ROWS))
    for name, given in GIVEN.items():
        _write_folder(os.path.join(args.dir, f"given_{name}"), {m: test[m] for m in given},
                      _ids("NEW", TEST_ROWS))
    np.savez(os.path.join(args.dir, "truth.npz"), subtype=subtype, **test)
    print(f"wrote {args.dir}: train/ ({TRAIN_ROWS} patients), given_{{{','.join(GIVEN)}}}/ "
          f"({TEST_ROWS} new patients each), truth.npz")


def _output_draws(out: str, modality: str, ids: pd.Index) -> np.ndarray | None:
    """[K, N, D] the output's feature draws of `modality` in the patients' order."""
    path = os.path.join(out, f"{modality}_features_draws.csv.gz")
    if not os.path.exists(path):
        return None
    table = pd.read_csv(path, index_col=[0, 1])
    k = table.index.get_level_values(1).nunique()
    table = table.reindex(pd.MultiIndex.from_product([range(k), ids]).swaplevel())  # draw-major
    if table.isna().any().any():
        raise SystemExit(f"{path} lacks some of the {len(ids)} patients' {k} draws.")
    return table.to_numpy(np.float64).reshape(k, len(ids), -1)


def _ridge_draws(train: dict, test: dict, given, target: str, k: int, seed: int,
                 cut: bool = False):
    """[K, N, D_t] raw-unit draws of the ridge + full-covariance Gaussian residual (the ridge
    on the given features' leading principal directions with `cut`, `anchor.distilled_ridge`)."""
    from sklearn.linear_model import RidgeCV
    x = np.concatenate([train[m] for m in given], axis=1)
    mu, sd = x.mean(0), x.std(0)
    if cut:
        coef, bias = distilled_ridge((x - mu) / sd, train[target], ALPHAS, 0.0)
        predict = lambda v: v @ coef + bias  # noqa: E731
    else:
        predict = RidgeCV(alphas=np.logspace(-2, 4, 25)).fit((x - mu) / sd, train[target]).predict
    residual = train[target] - predict((x - mu) / sd)
    cov = np.cov(residual, rowvar=False)
    mean = predict((np.concatenate([test[m] for m in given], axis=1) - mu) / sd)
    rng = np.random.default_rng(seed)
    return mean[None] + rng.multivariate_normal(np.zeros(cov.shape[0]), cov, (k, len(mean)))


def _subtype_directions(model: MixtureModel, modality: str, z) -> np.ndarray | None:
    """[P, D] the (up to 2) directions that separate the modality's subtype centres (its
    means through its link, in the training z-scores `z`); None where they coincide (a
    modality that hides the subtype)."""
    link = LINKS[model.links.get(modality, "identity")][0]
    centres = z(link(model.means[modality]))  # [K, D]
    centred = centres - centres.mean(axis=0)
    if np.abs(centred).max() < 1e-9:
        return None
    _, values, vectors = np.linalg.svd(centred, full_matrices=False)
    return vectors[:min(2, int((values > 1e-9 * values[0]).sum()))]


def _wasserstein(a: np.ndarray, b: np.ndarray, grid: int = 1000) -> np.ndarray:
    """[N] the 1-d Wasserstein distance between the per-patient samples a [K1, N] and
    b [K2, N] (their quantiles on a grid of `grid` levels)."""
    levels = (np.arange(grid) + 0.5) / grid
    return np.abs(np.quantile(a, levels, axis=0, method="inverted_cdf")
                  - np.quantile(b, levels, axis=0, method="inverted_cdf")).mean(axis=0)


def _subtype_w1(arms: dict, exact: np.ndarray, directions: np.ndarray) -> dict:
    """{arm: mean over patients and directions of the 1-d Wasserstein distance of its draws
    [K, N, D] to the exact draws along each subtype direction}."""
    return {name: float(np.mean([_wasserstein(d @ v, exact @ v) for v in directions]))
            for name, d in arms.items()}


def _interval(values: np.ndarray, statistic, seed: int, num: int = 2000) -> list:
    """Patient-bootstrap 95% interval of statistic(rows)."""
    rng = np.random.default_rng(seed)
    stats = [statistic(rng.integers(0, len(values), len(values))) for _ in range(num)]
    return [float(np.percentile(stats, 2.5)), float(np.percentile(stats, 97.5))]


def score(args: argparse.Namespace) -> list[dict]:
    """Every imputed modality of --out scored (module docstring)."""
    model = cohort_model(args.cohort)
    given = GIVEN[args.given]
    truth = np.load(os.path.join(args.dir, "truth.npz"))
    train, _ = model.sample(TRAIN_ROWS, TRAIN_SEED)
    test = {m: truth[m] for m in model.names}
    ids = _ids("NEW", TEST_ROWS)
    exact = model.conditional_draws([m for m in model.names if m not in given],
                                    {m: test[m] for m in given}, args.draws, args.seed)
    results = []
    for target in (m for m in model.names if m not in given):
        draws = _output_draws(args.out, target, ids)
        if draws is None:
            continue
        mu, sd = train[target].mean(0), train[target].std(0)
        z = lambda a: (a - mu) / sd  # noqa: E731
        real = z(test[target])
        arms = {"output": draws, "exact": exact[target],
                "ridge_gaussian": _ridge_draws(train, test, given, target, args.draws,
                                               args.seed + 1),
                "cut_gaussian": _ridge_draws(train, test, given, target, args.draws,
                                             args.seed + 1, cut=True)}
        if args.against:
            arms["against"] = _output_draws(args.against, target, ids)
        es = {name: energy_score(real, z(d)) for name, d in arms.items()}  # [N] each
        out, ex, rg = es["output"], es["exact"], es["ridge_gaussian"]
        row = {"cohort": args.cohort, "given": args.given, "modality": target,
               "draws": int(draws.shape[0]), "patients": int(len(real)),
               **{f"energy_{k}": float(v.mean()) for k, v in es.items()},
               "above_exact": float(out.mean() / ex.mean() - 1),
               "above_exact_ci": _interval(out, lambda r: out[r].mean() / ex[r].mean() - 1,
                                           args.seed),
               "gap_closed": float((rg.mean() - out.mean()) / (rg.mean() - ex.mean())),
               "gap_closed_ci": _interval(out, lambda r: (rg[r].mean() - out[r].mean())
                                          / (rg[r].mean() - ex[r].mean()), args.seed)}
        cg = es["cut_gaussian"]  # the closed form on the sources' leading directions
        row["gap_closed_cut"] = float((cg.mean() - out.mean()) / (cg.mean() - ex.mean()))
        row["gap_closed_cut_ci"] = _interval(out, lambda r: (cg[r].mean() - out[r].mean())
                                             / (cg[r].mean() - ex[r].mean()), args.seed)
        directions = _subtype_directions(model, target, z)
        if directions is not None:  # the modes: where the subtypes put the modality
            redraw = model.conditional_draws([target], {m: test[m] for m in given}, args.draws,
                                             args.seed + 2)[target]
            w1 = _subtype_w1({"output": z(draws), "ridge_gaussian": z(arms["ridge_gaussian"]),
                              "exact_redraw": z(redraw)}, z(exact[target]), directions)
            row.update({f"w1_{k}": v for k, v in w1.items()})
            row["w1_over_ridge"] = w1["output"] / w1["ridge_gaussian"]
            floor = w1["exact_redraw"]  # both arms' distance less what their draws leave
            row["w1_excess_over_ridge"] = (w1["output"] - floor) / (w1["ridge_gaussian"] - floor)
        if args.against:
            diff = out - es["against"]
            row["minus_against"] = float(diff.mean())
            row["minus_against_ci"] = _interval(diff, lambda r: diff[r].mean(), args.seed)
            row["against"] = args.against
        results.append(row)
        print(json.dumps(row))
    if args.json:
        with open(args.json, "w") as f:
            json.dump({"command": " ".join(sys.argv), "out": args.out, "seed": args.seed,
                       "versions": versions(), "results": results}, f, indent=1)
    return results


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command", required=True)
    w = sub.add_parser("write", help="write the cohort's CSV folders and truth")
    s = sub.add_parser("score", help="score an impute.py output against exact draws")
    for p in (w, s):
        p.add_argument("--cohort", required=True, choices=sorted(SPECS))
        p.add_argument("--dir", required=True, help="the cohort's folder (from write)")
    s.add_argument("--given", required=True, choices=sorted(GIVEN))
    s.add_argument("--out", required=True, help="an impute.py output folder")
    s.add_argument("--against", help="another output of the same patients, paired")
    s.add_argument("--draws", type=int, default=100, help="exact and ridge draws per patient")
    s.add_argument("--seed", type=int, default=0)
    s.add_argument("--json", help="write the results here too")
    args = parser.parse_args()
    write(args) if args.command == "write" else score(args)


if __name__ == "__main__":
    main()
