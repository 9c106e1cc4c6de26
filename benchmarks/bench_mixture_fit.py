"""How close a mixture anchor fitted on a few hundred rows gets to the exact conditional,
outside the pipeline: no latent space, no shape transform, no chain.

    .venv/bin/python benchmarks/bench_mixture_fit.py [--cohort bench|door|wide] [--rows 900]
        [--seeds 42,1,2] [--draws 200] [--test 300] [--out results.json]

For each seed a `data.mixture` model (identity link) gives `--rows` complete training patients
and `--test` new ones. As in the pipeline, each source becomes a condition through a ridge to
the target's z-scores (`anchor.fit_condition_map`: out-of-fold predictions for the training
rows, the full map for new patients) and `mixture_anchor.fit_mixture_anchors` fits the target
given the conditions (one Gaussian where BIC finds one component). Each new patient gets
`--draws` draws of the fitted conditional mixture given 'hide', 'reveal' and both, scored by
the fair energy score in the target's training z-scores against as many exact draws; printed:
the fitted draws' score above the exact one, per seed and on average.

Cohorts (`MixtureModel.random`, three or four subtypes that 'hide' cannot see):
- bench: `hidden_subtype_model` (16 features each, 'reveal' separation 3, as bench_mixture);
- door: hide 24 / reveal 12 / target 20 features, 'reveal' separation 2.5;
- wide: 30 features each, four subtypes, 'reveal' separation 2, six factors, noise 0.7
  spread 3.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time

import jax
import numpy as np

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from coherent_jax.anchor import apply_condition_map, fit_condition_map  # noqa: E402
from coherent_jax.anchor_draws import _mixture_draws  # noqa: E402
from coherent_jax.data.mixture import MixtureModel, hidden_subtype_model  # noqa: E402
from coherent_jax.evaluate.reconstruction import energy_score  # noqa: E402
from coherent_jax.metrics_io import versions  # noqa: E402
from coherent_jax.mixture_anchor import fit_mixture_anchors  # noqa: E402

GIVEN = (("hide",), ("reveal",), ("hide", "reveal"))


def cohort_model(name: str, seed: int) -> MixtureModel:
    """The named cohort's model (module docstring), drawn with `seed`."""
    if name == "bench":
        return hidden_subtype_model(16, seed=seed, target_link="identity")
    if name == "door":
        return MixtureModel.random({"hide": 24, "reveal": 12, "target": 20},
                                   {"hide": 0, "reveal": 2.5, "target": 3}, seed=seed)
    if name == "wide":
        return MixtureModel.random({"hide": 30, "reveal": 30, "target": 30},
                                   {"hide": 0, "reveal": 2.0, "target": 3}, num_subtypes=4,
                                   num_factors=6, noise_std=0.7, noise_spread=3.0, seed=seed)
    raise ValueError(f"unknown cohort {name!r}: use bench, door or wide.")


def excess(model: MixtureModel, rows: int, test: int, draws: int, seed: int) -> dict:
    """{given: fitted energy score / exact - 1} for one draw of training and new patients."""
    train, _ = model.sample(rows, seed=100 + seed)
    new, _ = model.sample(test, seed=200 + seed)
    mean, sd = train["target"].mean(0), train["target"].std(0)
    target = (train["target"] - mean) / sd
    truth = (new["target"] - mean) / sd
    out = {}
    for given in GIVEN:
        fitted, applied = [], []
        for source in given:
            centre, scale = train[source].mean(0), train[source].std(0)
            cmap, oof = fit_condition_map((train[source] - centre) / scale, target, seed=seed)
            fitted.append(oof)
            applied.append(apply_condition_map(cmap, (new[source] - centre) / scale))
        present = np.ones(rows, bool)
        conditions = [(c, present) for c in fitted]
        anchor = (fit_mixture_anchors(target, present, conditions, max_components=4, seed=0)
                  or fit_mixture_anchors(target, present, conditions, max_components=1,
                                         seed=0, components=1))
        inputs = np.tile(np.concatenate(applied, axis=1), (draws, 1))  # draw-major
        noise = np.random.default_rng(seed).standard_normal((len(inputs), target.shape[1]))
        subset = np.full(len(inputs), 2 ** len(given) - 1)
        mine = _mixture_draws(anchor, subset, inputs, noise, jax.random.PRNGKey(seed))
        exact = model.conditional_draws(["target"], {s: new[s] for s in given}, draws,
                                        seed=seed)["target"]
        score = energy_score(truth, mine.reshape(draws, test, -1)).mean()
        floor = energy_score(truth, (exact - mean) / sd).mean()
        out["+".join(given)] = float(score / floor - 1)
    return out


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--cohort", default="bench", choices=("bench", "door", "wide"))
    p.add_argument("--rows", type=int, default=900, help="complete training patients")
    p.add_argument("--seeds", default="42,1,2", help="model seeds, comma-separated")
    p.add_argument("--draws", type=int, default=200)
    p.add_argument("--test", type=int, default=300, help="new patients")
    p.add_argument("--out", default="", help="results.json path (default: none written)")
    args = p.parse_args()
    seeds = [int(s) for s in args.seeds.split(",")]
    start = time.time()
    per_seed = {s: excess(cohort_model(args.cohort, s), args.rows, args.test, args.draws, s)
                for s in seeds}
    print(f"cohort {args.cohort}, {args.rows} training rows, {args.test} new patients, "
          f"K = {args.draws}, {time.time() - start:.0f} s; fitted mixture above exact:")
    summary = {}
    for given in ("+".join(g) for g in GIVEN):
        values = [per_seed[s][given] for s in seeds]
        summary[given] = float(np.mean(values))
        print(f"  given {given}: {np.mean(values):+.2%} (seeds {seeds}: "
              f"{', '.join(f'{v:+.2%}' for v in values)})")
    if args.out:
        with open(args.out, "w") as f:
            json.dump({"config": vars(args), "seed": seeds, "versions": versions(),
                       "per_seed": {str(s): v for s, v in per_seed.items()},
                       "mean": summary}, f, indent=2)


if __name__ == "__main__":
    main()
