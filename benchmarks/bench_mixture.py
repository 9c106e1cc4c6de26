"""Draws where the conditional is known exactly and is not Gaussian (a hidden subtype): the
closed form, the default (anchors alone), trained corrections and the exact conditional.

    .venv/bin/python benchmarks/bench_mixture.py [--workdir /tmp/bench_mixture] \
        [--train_steps 0,3000] [--num_samples 2000] [--draws 50] [--seed 0] \
        [--candidates 4] [--reject_quantile 0.9] [--ema_decay 0] [--sample_steps 20] \
        [--learning_rates 1e-3,3e-4] [--conditions latents] [--norm layer] \
        [--hidden_dim 128] [--anchor_components 4] [--target_link identity] \
        [--score_link sinh]

Cohort: `data.mixture.hidden_subtype_model` (16 features per modality: 'hide' is blind to the
three subtypes, 'reveal' and 'target' are shifted by them, 'target' is observed through a sinh
link; subtype-dependent noise), `num_samples` patients, the paper split, 20% of each training
modality holed. For each value of --train_steps the pipeline trains one work directory with
the demo's settings (experiments/configs/demo.py, 16-d latents). The complete test patients
are then imputed from each available set of sources ('hide', 'reveal', both), K = --draws
draws per method, and scored in the preprocessing's z-scores of the target:

- fair energy score per patient (mean and patient-bootstrap 95% interval), the exact
  conditional's draws scored the same way (the floor);
- share of the gap between the closed form ('gaussian') and the exact conditional closed
  (1 = as good as exact, 0 = as the closed form, < 0 worse);
- 90% per-feature interval coverage;
- the 1-d Wasserstein distance to the exact draws along the directions that separate the
  subtypes' target means (in z-scores), averaged over patients;
- the wrong-mode share: draws whose nearest subtype centre (along those directions) has an
  exact posterior probability below 5% given the sources.

'exact_redraw' is a second, independent set of K exact draws scored the same way: the floor
of every number at this K (its W1 to the first set is Monte Carlo error alone, e.g. ~0.35 given
'hide' at K = 50, where the subtypes' modes lie far apart; its gap closed ~1 within the noise).

Rejection, the case it exists for: given 'hide' and 'reveal', the 'hide' specialist's draws
spread over every subtype and the 'reveal' specialist's sit in one. 'coherent+rejection'
draws --candidates candidates per draw and keeps the first whose specialists agreed (per-step
disagreement under a threshold calibrated on the validation patients at --reject_quantile),
against 'coherent' (one candidate): do the rejected draws sit in the wrong mode?

--score_link maps the target through a link before scoring (every arm, the exact draws and
the patients alike). The identity cohort is exactly arcsinh of the sinh cohort (same seed), so
`--target_link identity --score_link sinh` scores, in the sinh cohort's units, draws made with
the true link as the shape transform: the floor of what a fitted shape can reach.

Writes results.json (config, seed, versions, every number) to --workdir.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import sys
import time
from typing import Any

import numpy as np
import pandas as pd

sys.path.insert(0, os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))),
                                "experiments"))

import _common  # noqa: E402
from _machine import describe_machine  # noqa: E402
from coherent_jax.data.config import load_cohort, load_raw_cohort  # noqa: E402
from coherent_jax.data.marginal import MARGINALS  # noqa: E402
from coherent_jax.data.mixture import LINKS, hidden_subtype_model  # noqa: E402
from coherent_jax.calibrate import rejection_thresholds  # noqa: E402
from coherent_jax.evaluate import stats  # noqa: E402
from coherent_jax.evaluate.reconstruction import energy_score  # noqa: E402
from coherent_jax.impute import SamplerCalls, impute  # noqa: E402
from coherent_jax.metrics_io import versions  # noqa: E402
from coherent_jax.pipeline import as_jsonable  # noqa: E402
from configs import demo  # noqa: E402

TARGET = "target"
SOURCES = (("hide",), ("reveal",), ("hide", "reveal"))
METHODS = ("gaussian", "auto", "coherent", "multi")


def wasserstein_1d(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """[N] 1-d Wasserstein distance between the columns' samples a [K, N] and b [K, N]
    (equal K: the mean gap between the sorted samples)."""
    return np.abs(np.sort(a, axis=0) - np.sort(b, axis=0)).mean(axis=0)


def config_for(steps: int, num_samples: int, seed: int, ema_decay: float | None = None):
    """The demo's settings on the mixture cohort, training `steps` per model (and the
    demo's moving average of the parameters unless `ema_decay` is given)."""
    c = demo.get_config()
    if ema_decay is not None:
        c.denoisers.ema_decay = ema_decay
    c.data.source, c.data.num_samples, c.data.missing = "mixture", num_samples, "0.2"
    c.latent.latent_dim = 16
    c.denoisers.train_steps = steps
    c.denoisers.eval_every = max(steps // 6, 1)
    c.seed = seed
    return c


@dataclasses.dataclass(frozen=True)
class TrainedRun:
    """What `score` reads of one trained work directory.

    Attributes:
        config: the ConfigDict it was trained with.
        raw: the cohort in its own units (the model's scale).
        prep: the fitted Preprocessor.
        test: the complete test patients, preprocessed.
        space: the latent space.
        models: the trained model set (thresholds of 'coherent+rejection' calibrated).
    """

    config: Any
    raw: Any
    prep: Any
    test: Any
    space: Any
    models: Any


@dataclasses.dataclass(frozen=True)
class DrawSettings:
    """`draws` per patient and method, their `seed`, and the `candidates` per draw of
    'coherent+rejection' (given every source)."""

    draws: int
    seed: int
    candidates: int
    score_link: str = "identity"


@dataclasses.dataclass(frozen=True)
class SubtypeModes:
    """The 2 directions [2, D] that separate the subtypes' target means (in z-scores), and
    those means projected onto them [K, 2]."""

    directions: np.ndarray
    centres: np.ndarray

    @classmethod
    def of(cls, model, zscore) -> "SubtypeModes":
        link = LINKS[model.links[TARGET]][0]
        centres = zscore(link(model.means[TARGET]))  # [K, D] subtype centres
        directions = np.linalg.svd(centres - centres.mean(axis=0), full_matrices=False)[2][:2]
        return cls(directions=directions, centres=centres @ directions.T)

    def nearest(self, draws: np.ndarray) -> np.ndarray:
        """[K draws, N] the subtype whose centre is nearest each draw [K, N, D] along the
        directions."""
        return np.argmin(np.square((draws @ self.directions.T)[:, :, None, :]
                                   - self.centres).sum(-1), axis=-1)


def score(model, run: TrainedRun, how: DrawSettings) -> dict:
    """{method or 'exact'} -> {source set -> numbers} on the complete test patients."""
    ids = run.test.sample_ids
    transform = run.prep.transforms[TARGET]
    if list(transform.features) != list(run.raw.tables[TARGET].columns):
        raise ValueError("the preprocessing dropped target features; the exact draws cannot "
                         "be compared feature by feature.")
    zscore = _raw_zscores(run, how.score_link)
    raw = {m: run.raw.tables[m].loc[ids].to_numpy(np.float64) for m in run.raw.modalities}
    real = zscore(raw[TARGET])  # [N, D]
    modes = SubtypeModes.of(model, zscore)
    indices = stats.bootstrap_indices(len(ids), 1000, how.seed)
    out = {}
    for sources in SOURCES:
        key = "+".join(sources)
        exact = zscore(model.conditional_draws([TARGET], {m: raw[m] for m in sources},
                                               how.draws, how.seed)[TARGET])  # [K, N, D]
        drawn, acceptance = _imputed_draws(run, how, sources)
        redraw = zscore(model.conditional_draws([TARGET], {m: raw[m] for m in sources},
                                                how.draws, how.seed + 1)[TARGET])
        drawn = {"exact": exact, "exact_redraw": redraw, **drawn}
        posterior = model.subtype_posterior({m: raw[m] for m in sources})  # [N, K]
        for name, d in drawn.items():
            numbers, es = _draw_numbers(d, real, exact, modes, posterior, indices)
            out.setdefault(name, {})[key] = {**numbers, "acceptance": acceptance.get(name),
                                             "per_patient": es.tolist()}
        floor, closed = out["exact"][key]["energy_score"], out["gaussian"][key]["energy_score"]
        for name in drawn:
            out[name][key]["gap_closed"] = float(
                (closed - out[name][key]["energy_score"]) / max(closed - floor, 1e-12))
    return out


def _raw_zscores(run: TrainedRun, link: str = "identity"):
    """x [..., D] in the target's units -> `link` (`LINKS`) of them z-scored by the training
    rows' mean and standard deviation in those units (the preprocessing's z-scores unless a
    shape transform, `DataConfig.marginal`, changed its units: every arm is scored in the
    same space)."""
    forward = LINKS[link][0]
    train = forward(run.raw.split("train").tables[TARGET].to_numpy(np.float64))
    mean, std = np.nanmean(train, axis=0), np.nanstd(train, axis=0)
    return lambda x: (forward(x) - mean) / std


def _imputed_draws(run: TrainedRun, how: DrawSettings, sources) -> tuple[dict, dict]:
    """({method: [K, N, D] draws in the target's units, z-scored by `_raw_zscores`},
    {method: acceptance rate}) of the test patients given only `sources`."""
    zscore = _raw_zscores(run, how.score_link)
    step = run.prep.transforms[TARGET]
    ids = run.test.sample_ids
    hidden = run.test.replace(tables={m: v if m in sources else v * np.nan
                                      for m, v in run.test.tables.items()})
    latent = run.space.encode(hidden)
    drawn, acceptance = {}, {}
    runs = [(m, m, 1) for m in METHODS]
    if len(sources) > 1 and how.candidates > 1:
        runs.append(("coherent+rejection", "coherent", how.candidates))
    for name, method, tries in runs:
        result = impute(latent, run.models, _common.impute_config(run.config), method=method,
                        num_samples=how.draws, seed=how.seed, latent_space=run.space,
                        feature_cohort=hidden, num_candidates=tries,
                        calls=SamplerCalls(order=(TARGET,) + tuple(
                            m for m in run.models.targets if m != TARGET)))
        table = step.inverse(result.features[TARGET])  # the target's units
        acceptance[name] = float(np.nanmean(result.acceptance[TARGET].loc[ids]))
        drawn[name] = zscore(np.stack([table.xs(j, level="draw").loc[ids].to_numpy(np.float64)
                                       for j in range(how.draws)]))
    return drawn, acceptance


def _draw_numbers(d, real, exact, modes: SubtypeModes, posterior, indices
                  ) -> tuple[dict, np.ndarray]:
    """({energy score (mean, bootstrap interval), 90% coverage, W1 along the subtype
    directions, wrong-mode share}, [N] energy score per patient) of draws d [K, N, D] of the
    patients real [N, D]; exact [K, N, D]: the exact conditional's draws, posterior [N, K]:
    the subtypes' exact posterior, indices [B, N]: the bootstrap resamples."""
    es = energy_score(real, d)
    low, high = stats.percentile_interval(stats.resample(np.mean, indices, es))
    lo, hi = np.quantile(d, [0.05, 0.95], axis=0)
    w1 = np.mean([wasserstein_1d(d @ v, exact @ v) for v in modes.directions])
    wrong = np.take_along_axis(posterior, modes.nearest(d).T, axis=1) < 0.05  # [N, K]
    return {"energy_score": float(es.mean()), "interval": [float(low), float(high)],
            "coverage90": float(((real >= lo) & (real <= hi)).mean()),
            "wasserstein_subtype_directions": float(w1),
            "wrong_mode_share": float(wrong.mean())}, es


def _parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--workdir", default="/tmp/bench_mixture")
    parser.add_argument("--train_steps", default="0,3000")
    parser.add_argument("--num_samples", type=int, default=2000)
    parser.add_argument("--draws", type=int, default=50)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--candidates", type=int, default=4)
    parser.add_argument("--reject_quantile", type=float, default=0.9)
    parser.add_argument("--learning_rates", default="",
                        help="comma-separated rates trained as one population, each model's "
                             "best chosen on validation (default: the demo's)")
    parser.add_argument("--sample_steps", type=int, default=None,
                        help="reverse steps of imputation's sampler (default: the demo's 20)")
    parser.add_argument("--ema_decay", type=float, default=None,
                        help="the denoisers' moving average of parameters (default: the demo's)")
    parser.add_argument("--conditions", choices=("features", "latents"), default="features",
                        help="what the networks and anchors condition on: ridge predictions "
                             "from the sources' features (the demo's) or the sources' latents")
    parser.add_argument("--norm", choices=("batch", "layer"), default=None,
                        help="the denoisers' normalisation (default: the demo's)")
    parser.add_argument("--hidden_dim", type=int, default=None,
                        help="the denoisers' hidden width (default: the demo's 256)")
    parser.add_argument("--target_link", choices=tuple(LINKS), default="sinh",
                        help="the target's observation link ('identity': a Gaussian mixture "
                             "throughout)")
    parser.add_argument("--score_link", choices=tuple(LINKS), default="identity",
                        help="score the target through this link (module docstring)")
    parser.add_argument("--marginal", choices=MARGINALS, default=None,
                        help="the preprocessing's per-feature shape transform "
                             "(`DataConfig.marginal`; default: the demo's)")
    parser.add_argument("--anchor_components", type=int, default=None,
                        help="the most mixture components of the anchors, chosen by BIC "
                             "(1: linear-Gaussian anchors; default: the demo's)")
    args = parser.parse_args()
    if args.score_link != "identity" and args.target_link != "identity":
        parser.error(f"--score_link {args.score_link} maps the identity cohort's draws into "
                     f"another link's units; it needs --target_link identity, not "
                     f"{args.target_link}.")
    return args


def _config(args: argparse.Namespace, steps: int):
    """The demo's settings on the mixture cohort with the flags' overrides."""
    c = config_for(steps, args.num_samples, args.seed, args.ema_decay)
    if args.learning_rates:
        c.denoisers.learning_rates = tuple(float(r) for r in args.learning_rates.split(","))
    c.denoisers.feature_conditions = args.conditions == "features"
    if args.norm is not None:
        c.denoisers.norm = args.norm
    if args.hidden_dim is not None:
        c.denoisers.hidden_dim = args.hidden_dim
    c.data.mixture_link = args.target_link
    if args.marginal is not None:
        c.data.marginal = args.marginal
    if args.anchor_components is not None:
        c.denoisers.anchor_components = args.anchor_components
    if args.sample_steps is not None:  # imputation only: the trained models are reused
        c.impute.sample_steps = c.evaluate.imputation.sample_steps = args.sample_steps
    return c


def _train_and_score(args: argparse.Namespace, steps: int, model) -> dict:
    """Trains (or reuses) the work directory of `steps`, scores it, prints and returns its
    report entry."""
    c = _config(args, steps)
    workdir = os.path.join(args.workdir, f"steps{steps}")
    start = time.perf_counter()
    cohort, space, _, models = _common.trained(c, workdir)
    raw = load_raw_cohort(_common.data_config(c))
    prep = load_cohort(_common.data_config(c))[1]
    seconds = time.perf_counter() - start
    test = cohort.split("test")
    test = test.subset(test.sample_ids[test.complete])
    test = test.replace(splits=pd.Series(pd.NA, index=test.sample_ids, dtype="string"))
    imp = _common.impute_config(c)
    found = rejection_thresholds(
        space.encode(cohort.split("val")), models, sampler=imp.sampler,
        sample_steps=imp.sample_steps, quantile=args.reject_quantile, seed=args.seed,
        feature_cohort=cohort.split("val"))
    models.store_thresholds(found)
    thresholds = found.by_target
    results = score(model, TrainedRun(config=c, raw=raw, prep=prep, test=test, space=space,
                                      models=models),
                    DrawSettings(draws=args.draws, seed=args.seed, candidates=args.candidates,
                                 score_link=args.score_link))
    _print_results(steps, seconds, int(test.num_samples), args.draws, results)
    return {"config": as_jsonable(c), "train_seconds": seconds, "thresholds": thresholds,
            "patients": int(test.num_samples), "results": results}


def _print_results(steps: int, seconds: float, patients: int, draws: int, results: dict):
    print(f"\ntrain_steps={steps} ({seconds:.0f} s), {patients} complete test "
          f"patients, K={draws}; energy score [95% CI] / gap closed / cov90 / W1 / "
          "wrong-mode share:")
    for name, cells in results.items():
        print(f"  {name:9s} " + "  ".join(
            f"{k}: {v['energy_score']:.3f} [{v['interval'][0]:.3f}, {v['interval'][1]:.3f}]"
            f" / {v['gap_closed']:+.2f} / {v['coverage90']:.2f} / "
            f"{v['wasserstein_subtype_directions']:.3f} / {v['wrong_mode_share']:.3f}"
            for k, v in cells.items()))


def main() -> None:
    args = _parse_args()
    print(describe_machine())
    model = hidden_subtype_model(seed=42, target_link=args.target_link)  # data.split_seed
    report = {"command": " ".join(sys.argv), "machine": describe_machine(), "runs": {}}
    for steps in (int(s) for s in args.train_steps.split(",")):
        report["runs"][steps] = _train_and_score(args, steps, model)
    report["versions"] = versions()
    os.makedirs(args.workdir, exist_ok=True)
    with open(os.path.join(args.workdir, "results.json"), "w") as f:
        json.dump(report, f, indent=1)


if __name__ == "__main__":
    main()
