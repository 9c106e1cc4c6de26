"""Where the draws of mixture anchors lose to the exact conditional on a mixture cohort: the
pipeline's draws decomposed into the fitted mixture, the sampler, the latent space and the fit.

    .venv/bin/python benchmarks/bench_mixture.py --target_link identity --train_steps 0 \
        --workdir /tmp/diag_id                      # trains (reused below), ~4 min
    .venv/bin/python benchmarks/diag_mixture.py --workdir /tmp/diag_id/steps0 \
        [--target_link identity] [--draws 50] [--seed 0] [--samplers dpmpp_3m_sde:100,ddpm:0]

Reads a work directory that `bench_mixture.py` trained (untrained models: `--train_steps 0`)
and scores, like bench_mixture, the target's draws of the complete test patients given 'hide',
'reveal' and both, for:

- exact, gaussian, coherent, multi: bench_mixture's methods (the pipeline's draws);
- (a) spec exact: the specialist's fitted conditional mixture drawn exactly (component by its
  weight given the condition, then its Gaussian; no chain). Since 2026-12-06 the pipeline
  itself draws one available untrained mixture specialist so (`anchor_draws.fused_draws`), and
  'coherent' given one source is this row (RESULTS.md's table kept it as measured before);
- (b) coherent through other samplers / step counts (`--samplers`, 'name:steps', 0 = all T);
- (c) exact -> latent -> decoded: the exact draws through the latent space and back;
- (d) mixtures fitted here on the training rows the pipeline's anchors were fitted on
  (the specialist's condition, or both for 'hide+reveal'), drawn exactly: the pipeline's BIC
  fit refitted (a check of (a)), BIC among per-component covariances only, three components
  with per-component covariances, the oracle (one component per true subtype, its mean and
  full covariance estimated from its rows), and the oracle on the sources' latents instead of
  the ridge predictions (what the conditions lose).

'exact_redraw' (a second set of K exact draws) is the floor of every number at this K.
"""

from __future__ import annotations

import argparse
import dataclasses
import os
import sys
from typing import Any, Callable

import jax
import numpy as np
import pandas as pd
from sklearn.metrics import adjusted_rand_score
from sklearn.mixture import GaussianMixture

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import bench_mixture as bm  # noqa: E402
from bench_mixture import TARGET, SOURCES, SubtypeModes  # noqa: E402
import _common  # noqa: E402  (experiments/, on the path through bench_mixture)
from coherent_jax import anchor_draws  # noqa: E402
from coherent_jax.anchor import apply_condition_map  # noqa: E402
from coherent_jax.data.config import load_cohort, load_raw_cohort  # noqa: E402
from coherent_jax.data.mixture import LINKS, hidden_subtype_model  # noqa: E402
from coherent_jax.evaluate import stats  # noqa: E402
from coherent_jax.impute import SamplerCalls, impute  # noqa: E402
from coherent_jax.latent import cross_fitted_latents  # noqa: E402
from coherent_jax.mixture_anchor import REG_COVAR, conditional_mixtures  # noqa: E402
from coherent_jax.model_set import _target_inputs  # noqa: E402


def _args() -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--workdir", required=True, help="a bench_mixture work directory (stepsN)")
    p.add_argument("--target_link", choices=tuple(LINKS), default="identity")
    p.add_argument("--num_samples", type=int, default=2000)
    p.add_argument("--draws", type=int, default=50)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--samplers", default="dpmpp_3m_sde:100,ddim:100,ddpm:0")
    return p.parse_args()


def _config(args):
    bench = argparse.Namespace(num_samples=args.num_samples, seed=args.seed, ema_decay=None,
                               learning_rates="", conditions="features", norm=None,
                               hidden_dim=None, target_link=args.target_link,
                               anchor_components=None, sample_steps=None,
                               marginal=None)
    return bm._config(bench, 0)


def _pipeline(run, sources, method, draws, seed, **impute_overrides) -> np.ndarray:
    """[K, N, D] z-score draws of the target given `sources` (bench_mixture's call)."""
    ids = run.test.sample_ids
    hidden = run.test.replace(tables={m: v if m in sources else v * np.nan
                                      for m, v in run.test.tables.items()})
    config = dataclasses.replace(_common.impute_config(run.config), **impute_overrides)
    result = impute(run.space.encode(hidden), run.models, config, method=method,
                    num_samples=draws, seed=seed, latent_space=run.space, feature_cohort=hidden,
                    calls=SamplerCalls(order=(TARGET,) + tuple(
                        m for m in run.models.targets if m != TARGET)))
    table = result.features[TARGET]
    return np.stack([table.xs(j, level="draw").loc[ids].to_numpy(np.float64)
                     for j in range(draws)])


def _anchors_of_gm(weights, means, covs, centre, scale, dim, widths) -> dict:
    """A fitted mixture on standardised joint rows -> the anchor dict (`conditional_mixtures`)."""
    means = centre + means * scale
    covs = covs * np.outer(scale, scale)
    return {k: np.asarray(v, np.float64) for k, v in conditional_mixtures(
        weights, means, covs, dim, widths).items()}


def _fits(x, conds, subtype, seed) -> dict:
    """{name: anchor dict (float64)} of the mixtures fitted here on the rows where the target
    and every condition are present; prints BIC per (count, kind) and the ARI of each fit."""
    rows = x[1] & np.all([p for _, p in conds], axis=0)
    joint = np.concatenate([x[0][rows]] + [c[rows] for c, _ in conds], axis=1).astype(np.float64)
    centre, scale = joint.mean(axis=0), joint.std(axis=0)
    z = (joint - centre) / scale
    dim, widths = x[0].shape[1], [c.shape[1] for c, _ in conds]
    truth = subtype[rows]
    table, fitted = [], {}
    for m in range(1, 5):
        for kind in ("tied", "full"):
            gm = GaussianMixture(m, covariance_type=kind, reg_covar=REG_COVAR, n_init=3,
                                 max_iter=300, random_state=seed).fit(z)
            table.append((m, kind, gm.bic(z), adjusted_rand_score(truth, gm.predict(z))))
            fitted[(m, kind)] = gm
    print(f"    rows {rows.sum()}, joint width {z.shape[1]}; BIC / ARI vs subtypes: " + ", ".join(
        f"{m}{kind[0]} {b:.0f}/{a:.2f}" for m, kind, b, a in table))
    out = {}
    for name, pick in (("(d) BIC tied+full", lambda r: True),
                       ("(d) BIC full only", lambda r: r[1] == "full" or r[0] == 1),
                       ("(d) 3 full", lambda r: r[:2] == (3, "full"))):
        m, kind, _, _ = min((r for r in table if pick(r)), key=lambda r: r[2])
        gm = fitted[(m, kind)]
        covs = np.broadcast_to(gm.covariances_, (m,) + gm.means_.shape[1:] * 2)
        out[f"{name} [{m}{kind[0]}]"] = _anchors_of_gm(gm.weights_, gm.means_, covs, centre,
                                                       scale, dim, widths)
    labels = np.unique(truth)
    means = np.stack([z[truth == k].mean(axis=0) for k in labels])
    covs = np.stack([np.cov(z[truth == k].T) + REG_COVAR * np.eye(z.shape[1]) for k in labels])
    out["(d) oracle subtypes"] = _anchors_of_gm(np.array([np.mean(truth == k) for k in labels]),
                                                means, covs, centre, scale, dim, widths)
    return out


def _draw_anchor(anchor: dict, inputs: np.ndarray, draws: int, seed: int) -> np.ndarray:
    """[K, N, D] exact latent draws of the anchor's full subset for condition rows [N, W]."""
    n = inputs.shape[0]
    index = np.full(draws * n, anchor["bias"].shape[0] - 1)
    key = jax.random.key(seed)
    noise = np.asarray(jax.random.normal(key, (draws * n, anchor["bias"].shape[-1])), np.float64)
    out = anchor_draws._mixture_draws(anchor, index, np.tile(inputs, (draws, 1)), noise,
                                      jax.random.fold_in(key, 1))
    return out.reshape(draws, n, -1)


@dataclasses.dataclass(frozen=True)
class _Setup:
    """What every source set's decomposition reads: the run, the exact model and scales, the
    training rows the anchors were fitted on and the test patients' conditions."""

    args: Any
    run: Any
    space: Any
    model: Any
    zscore: Callable
    real: np.ndarray
    raw_t: dict
    modes: Any
    indices: np.ndarray
    tm: Any
    inputs: Any
    train_subtype: np.ndarray
    source_latents: list
    test_latents: dict
    test_conds: dict


def _setup(args) -> _Setup:
    c = _config(args)
    cohort, space, latents, models = _common.trained(c, args.workdir)
    raw = load_raw_cohort(_common.data_config(c))
    prep = load_cohort(_common.data_config(c))[1]
    test = cohort.split("test")
    test = test.subset(test.sample_ids[test.complete])
    test = test.replace(splits=pd.Series(pd.NA, index=test.sample_ids, dtype="string"))
    run = bm.TrainedRun(config=c, raw=raw, prep=prep, test=test, space=space, models=models)
    model = hidden_subtype_model(seed=42, target_link=args.target_link)
    ids = test.sample_ids
    transform = prep.transforms[TARGET]
    zscore = lambda v: (v - transform.mean) / transform.std
    tm = models.targets[TARGET]
    print("latent kinds:", space.kinds(), " residual sd of the target (max):",
          float(np.max(space.residual_std[TARGET])))
    print("stored specialists' anchor components:",
          tm.specialists["params"]["anchor_gate_const"].shape
          if anchor_draws.is_mixture(tm.specialists) else 1,
          " multi:", tm.multi["params"]["anchor_gate_const"].shape
          if anchor_draws.is_mixture(tm.multi) else 1)
    return _Setup(
        args=args, run=run, space=space, model=model, zscore=zscore,
        real=test.tables[TARGET].loc[ids].to_numpy(np.float64),
        raw_t={m: raw.tables[m].loc[ids].to_numpy(np.float64) for m in raw.modalities},
        modes=SubtypeModes.of(model, zscore),
        indices=stats.bootstrap_indices(len(ids), 1000, args.seed), tm=tm,
        inputs=_target_inputs(latents, TARGET, _common.model_config(c).conditioning, cohort,
                              cross_fitted_latents(space, cohort)),
        train_subtype=cohort.split("train").labels["cancer_type"].str[1:].astype(int).to_numpy(),
        source_latents=[latents.split("train").matrix(s) for s in tm.sources],
        test_latents={s: space.encode_values(s, test.tables[s].loc[ids].to_numpy(np.float32))
                      for s in tm.sources},
        test_conds={s: apply_condition_map(tm.condition_maps[s],
                                           test.tables[s].loc[ids].to_numpy(np.float32))
                    for s in tm.sources})


def _pipeline_draws(st: _Setup, sources, exact: np.ndarray) -> dict:
    """(b)-(c): the pipeline's methods (given one source, 'coherent' is (a)), other samplers,
    and the exact draws' round trip through the latent space."""
    args, drawn = st.args, {}
    for method in ("gaussian", "coherent", "multi"):
        drawn[method] = _pipeline(st.run, sources, method, args.draws, args.seed)
    for spec in filter(None, args.samplers.split(",")):
        name, steps = spec.split(":")
        drawn[f"(b) coherent {name}:{steps}"] = _pipeline(
            st.run, sources, "coherent", args.draws, args.seed, sampler=name,
            sample_steps=int(steps) or None)
    flat = exact.reshape(-1, exact.shape[-1]).astype(np.float32)
    drawn["(c) exact->latent->decoded"] = st.space.decode(
        TARGET, st.space.encode_values(TARGET, flat)).to_numpy(np.float64).reshape(exact.shape)
    return drawn


def _refit_draws(st: _Setup, sources, shape) -> dict:
    """(d): mixtures refitted on the training rows (BIC, fixed kinds, oracle subtypes), on the
    ridge conditions and on the sources' latents, drawn exactly."""
    args, drawn = st.args, {}
    members = [st.tm.sources.index(s) for s in sources]
    x = (st.inputs.spread if st.inputs.spread is not None else st.inputs.x[0], st.inputs.x[1])
    print(f"  given {'+'.join(sources)}:")
    fits = _fits(x, [st.inputs.conds[j] for j in members], st.train_subtype, args.seed)
    cond_inputs = np.concatenate([st.test_conds[s] for s in sources], axis=1)
    lat_fits = _fits(x, [st.source_latents[j] for j in members], st.train_subtype, args.seed)
    lat_inputs = np.concatenate([st.test_latents[s] for s in sources], axis=1)
    for name, anchor in fits.items():
        z = _draw_anchor(anchor, cond_inputs, args.draws, args.seed)
        drawn[name] = st.space.decode(TARGET, z.reshape(-1, z.shape[-1])).to_numpy(
            np.float64).reshape(shape)
    for name in ("(d) BIC tied+full", "(d) oracle subtypes"):
        found = next(k for k in lat_fits if k.startswith(name))
        z = _draw_anchor(lat_fits[found], lat_inputs, args.draws, args.seed)
        drawn[found.replace("(d)", "(d) on latents:")] = st.space.decode(
            TARGET, z.reshape(-1, z.shape[-1])).to_numpy(np.float64).reshape(shape)
    return drawn


def _print_table(rows: list) -> None:
    print("\n| given | draws | energy score | gap closed | vs exact | cov90 | W1 |")
    print("|---|---|---|---|---|---|---|")
    for key, name, es, cov, w1 in rows:
        floor = next(r[2] for r in rows if r[0] == key and r[1] == "exact")
        closed = next(r[2] for r in rows if r[0] == key and r[1] == "gaussian")
        print(f"| {key} | {name} | {es:.3f} | {(closed - es) / (closed - floor):+.2f} | "
              f"{100 * (es / floor - 1):+.1f}% | {cov:.2f} | {w1:.3f} |")


def main() -> None:
    args = _args()
    st = _setup(args)
    rows = []
    for sources in SOURCES:
        given = {m: st.raw_t[m] for m in sources}
        exact = st.zscore(st.model.conditional_draws([TARGET], given, args.draws,
                                                     args.seed)[TARGET])
        posterior = st.model.subtype_posterior(given)
        drawn = {"exact": exact, "exact_redraw": st.zscore(st.model.conditional_draws(
            [TARGET], given, args.draws, args.seed + 1)[TARGET])}
        drawn.update(_pipeline_draws(st, sources, exact))
        drawn.update(_refit_draws(st, sources, exact.shape))
        for name, d in drawn.items():
            numbers, _ = bm._draw_numbers(d, st.real, exact, st.modes, posterior, st.indices)
            rows.append(("+".join(sources), name, numbers["energy_score"],
                         numbers["coverage90"], numbers["wasserstein_subtype_directions"]))
    _print_table(rows)


if __name__ == "__main__":
    main()
