"""Vmapped ensemble training: batches per member, determinism, selection, and learning."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from coherent_jax.data.linear_gaussian import LinearGaussianModel
from coherent_jax.evaluate.reconstruction import energy_score
from coherent_jax.engine.denoiser import Condition, Denoiser, DenoiserApply
from coherent_jax.engine.sampling import SamplerConfig, sample
from coherent_jax.engine.schedules import linear_schedule
from coherent_jax.engine.train import (CRITERIA, EarlyStop, LoopConfig, LoopRuntime, TrainConfig,
                                       _augment_mask, _old_fit_call, create_train_state,
                                       draw_batch, evaluate_members, fair_energy_score, fit,
                                       make_member_data, row_energy_scores, scan_train_steps,
                                       train_step)

SCHEDULE = linear_schedule()
TINY = Denoiser(4, hidden_dim=32, num_layers=2, time_embed_dim=16, cond_embed_dim=8)


def _specialist_data(model, n, seed, missing_a=0.25):
    d = model.sample(n, seed=seed)
    has_a = np.arange(n) >= int(missing_a * n)
    conds = [Condition.of(jnp.asarray(d["a"], jnp.float32), mask=has_a[:, None]),
             Condition.of(jnp.asarray(d["b"], jnp.float32))]
    return d, make_member_data(d["x"], np.ones(n, bool), conds)


GAUSS = LinearGaussianModel.random({"x": 4, "a": 4, "b": 4}, num_factors=3, noise_std=0.3, seed=1)


def test_each_member_draws_only_its_rows():
    n = 40
    target = np.repeat(np.arange(n, dtype=np.float32)[:, None], 4, axis=1)  # value = row id
    has_a = np.arange(n) < 10
    conds = [Condition.of(jnp.zeros((n, 2)), mask=has_a[:, None]), Condition.of(jnp.zeros((n, 2)))]
    data = make_member_data(target, np.arange(n) != 39, conds)
    assert data.counts.tolist() == [10, 39]
    batch = draw_batch(data, jax.random.key(0), 256)
    rows0, rows1 = np.asarray(batch["x0"][0, :, 0]), np.asarray(batch["x0"][1, :, 0])
    assert set(rows0) <= set(range(10)) and len(set(rows0)) == 10
    assert 39 not in rows1 and rows1.max() > 10


def test_padding_the_row_tables_changes_no_training_number():
    d = GAUSS.sample(100, seed=0)
    conds = [Condition.of(jnp.asarray(d["a"], jnp.float32), mask=(np.arange(100) >= 30)[:, None]),
             Condition.of(jnp.asarray(d["b"], jnp.float32))]
    plain = make_member_data(d["x"], np.ones(100, bool), conds)
    padded = make_member_data(d["x"], np.ones(100, bool), conds, bucket=64)
    assert plain.rows.shape == (2, 100) and padded.rows.shape == (2, 128)
    params = []
    for data in (plain, padded):
        state = create_train_state(TINY, SCHEDULE, jax.random.key(0), cond_dims=[4],
                                   num_members=2, config=TrainConfig(batch_size=16))
        state, _ = scan_train_steps(state, data, jax.random.key(1), 5)
        params.append(jax.tree.leaves(state.params))
    for a, b in zip(*params):
        np.testing.assert_array_equal(a, b)


def test_train_step_updates_all_members_and_donates():
    state = create_train_state(TINY, SCHEDULE, jax.random.key(0), cond_dims=[4], num_members=3)
    _, data = _specialist_data(GAUSS, 64, 0)
    data = make_member_data(np.asarray(data.target), np.ones(64, bool), [
        Condition(values=(data.cond.values[0][0],), mask=data.cond.mask[0])] * 3)
    before = jax.tree.map(np.asarray, state.params)
    new, metrics = train_step(state, draw_batch(data, jax.random.key(1), 16), jax.random.key(2))
    assert metrics["loss"].shape == (3,) and int(new.step) == 1
    for k in range(3):
        moved = jax.tree.map(lambda a, b: np.abs(np.asarray(a[k]) - b[k]).max(), new.params, before)
        assert max(jax.tree.leaves(moved)) > 0


def test_moving_average_of_the_parameters_is_what_validation_and_selection_see():
    _, data = _specialist_data(GAUSS, 64, 0)
    batch = draw_batch(data, jax.random.key(1), 16)
    plain = create_train_state(TINY, SCHEDULE, jax.random.key(0), cond_dims=[4], num_members=2)
    averaged = create_train_state(TINY, SCHEDULE, jax.random.key(0), cond_dims=[4],
                                  num_members=2, config=TrainConfig(ema_decay=0.9))
    start = jax.tree.map(np.asarray, plain.params)
    plain, _ = train_step(plain, batch, jax.random.key(2))
    averaged, _ = train_step(averaged, batch, jax.random.key(2))
    for p, a in zip(jax.tree.leaves(plain.params), jax.tree.leaves(averaged.params)):
        np.testing.assert_array_equal(p, a)  # the same optimisation
    for v, p in zip(jax.tree.leaves(plain.variables["params"]), jax.tree.leaves(plain.params)):
        np.testing.assert_array_equal(v, p)  # no average: the parameters themselves
    expected = jax.tree.map(lambda s0, p: 0.9 * s0 + 0.1 * np.asarray(p), start, plain.params)
    for v, e in zip(jax.tree.leaves(averaged.variables["params"]), jax.tree.leaves(expected)):
        np.testing.assert_allclose(v, e, rtol=1e-5, atol=1e-7)
    with pytest.raises(ValueError, match="ema_decay"):
        TrainConfig(ema_decay=1.0)


def test_mask_augmentation_keeps_one_condition_and_drops_all_for_uncond():
    mask = jnp.asarray(np.random.default_rng(0).integers(0, 2, (200, 3)), jnp.float32)
    mask = mask.at[:, 0].set(1.0)
    kept = _augment_mask(mask, jax.random.key(0), TrainConfig(mask_drop_prob=0.9))
    assert bool(jnp.all(kept.sum(1) >= 1)) and bool(jnp.all(kept <= mask))
    assert float(kept.sum()) < 0.5 * float(mask.sum())
    dropped = _augment_mask(mask, jax.random.key(0), TrainConfig(uncond_prob=1.0))
    assert float(dropped.sum()) == 0.0


def _fit(seed, steps=20, lr=1e-3, early_stop=None):
    _, train = _specialist_data(GAUSS, 128, 0)
    _, val = _specialist_data(GAUSS, 32, 1)
    state = create_train_state(TINY, SCHEDULE, jax.random.key(seed), cond_dims=[4], num_members=2,
                               learning_rate=lr, config=TrainConfig(batch_size=32))
    return fit(state, train, val, jax.random.key(seed + 1),
               loop=LoopConfig(train_steps=steps, eval_every=10, log_every=5, val_sampler="ddim",
                               val_sample_steps=5, early_stop=early_stop))


def test_early_stopping_ends_where_every_best_is_stale_and_changes_nothing_before():
    # a learning rate too small to improve on the initial models: their scores stay (nearly)
    # where they were, so the best checkpoints go stale
    full = _fit(0, steps=80, lr=1e-9)
    stop = EarlyStop("energy_score", patience=2)
    early = _fit(0, steps=80, lr=1e-9, early_stop=stop)
    last = early.history[-1]
    assert last.get("stopped_early") and last["step"] < 80
    prefix = full.history[:len(early.history)]
    assert [h["step"] for h in early.history] == [h["step"] for h in prefix]
    assert ([h.get("energy_score") for h in early.history]
            == [h.get("energy_score") for h in prefix])  # the same run, cut short
    evals = [h for h in prefix if "energy_score" in h]
    for i, h in enumerate(evals):  # the first validation at which every member's best is stale
        scores = np.array([e["energy_score"] for e in evals[:i + 1]])  # [evals, K]
        best = np.array([e["step"] for e in evals[:i + 1]])[scores.argmin(0)]
        assert stop.stale(h["step"], {"energy_score": best}, 10) == (h is evals[-1])
    for crit in CRITERIA:
        np.testing.assert_array_equal(early.best_steps[crit] <= last["step"], True)
    with pytest.raises(ValueError, match="criterion"):
        EarlyStop("loss")
    with pytest.raises(ValueError, match="patience"):
        EarlyStop(patience=0)


@pytest.mark.slow  # trains models / samples long chains
def test_fit_is_reproducible_and_keeps_best_by_each_criterion():
    a, b, c = _fit(0), _fit(0), _fit(1)
    for x, y in zip(jax.tree.leaves(a.state.params), jax.tree.leaves(b.state.params)):
        np.testing.assert_array_equal(x, y)
    assert not np.allclose(a.state.params["out"]["kernel"], c.state.params["out"]["kernel"])
    evals = [h for h in a.history if "noise_mse" in h]
    assert [h["step"] for h in evals] == [0, 10, 20]  # the initial models are candidates
    for crit in CRITERIA:
        scores = np.array([h[crit] for h in evals])  # [evals, K]
        np.testing.assert_allclose(a.best_scores[crit], scores.min(0), rtol=1e-6)
        np.testing.assert_array_equal(a.best_steps[crit], np.array([0, 10, 20])[scores.argmin(0)])


def test_fit_takes_its_old_keywords_with_a_warning():
    log = []
    assert _old_fit_call(("state",), {"train_steps": 0, "eval_every": 10, "val_sampler": "ddim",
                                      "log_fn": log.append}) == (
        ("state",), {"loop": LoopConfig(0, 10, val_sampler="ddim"),
                     "runtime": LoopRuntime(log_fn=log.append)})
    assert _old_fit_call(("state",), {"loop": LoopConfig(5, 5)}) is None  # the new form
    _, data = _specialist_data(GAUSS, 32, 0)
    state = create_train_state(TINY, SCHEDULE, jax.random.key(0), cond_dims=[4], num_members=2,
                               config=TrainConfig(batch_size=32))
    with pytest.warns(DeprecationWarning, match=r"loop=LoopConfig\(train_steps="):
        result = fit(state, data, data, jax.random.key(1), train_steps=0, eval_every=10,
                     val_sampler="ddim", val_sample_steps=2, log_fn=log.append)
    assert [r["step"] for r in log] == [0] and result.history == log
    with pytest.raises(ValueError, match="eval_every and log_every >= 1"):
        LoopConfig(train_steps=10, eval_every=0)


def test_non_finite_loss_stops_with_clear_error():
    with pytest.raises(FloatingPointError, match="non-finite training loss"):
        _fit(0, steps=10, lr=1e12)


def test_bad_training_data_raises():
    conds = [Condition.of(jnp.zeros((4, 2)), mask=jnp.zeros((4, 1)))]
    with pytest.raises(ValueError, match="member 0 has no row"):
        make_member_data(np.zeros((4, 3)), np.ones(4, bool), conds)
    with pytest.raises(ValueError, match="NaN or inf"):
        make_member_data(np.full((4, 3), np.nan), np.ones(4, bool), [Condition.of(jnp.zeros((4, 2)))])
    with pytest.raises(ValueError, match="learning rates"):
        create_train_state(TINY, SCHEDULE, jax.random.key(0), cond_dims=[4], num_members=1,
                           learning_rate=-1.0)


@pytest.mark.slow  # trains models / samples long chains
def test_trained_specialist_matches_analytic_conditional_mean():
    # 1,500 steps of a small specialist (x | a) on 2,000 Gaussian patients.
    model = Denoiser(4, hidden_dim=128, num_layers=3, time_embed_dim=32, cond_embed_dim=16)
    _, train = _specialist_data(GAUSS, 2000, 0, missing_a=0.0)
    val_raw, val = _specialist_data(GAUSS, 200, 1, missing_a=0.0)
    state = create_train_state(model, SCHEDULE, jax.random.key(0), cond_dims=[4], num_members=2,
                               config=TrainConfig(batch_size=128))
    result = fit(state, train, val, jax.random.key(1),
                 loop=LoopConfig(train_steps=1500, eval_every=1500, log_every=500,
                                 val_sampler="ddim", val_sample_steps=20))
    variables = jax.tree.map(lambda a: a[0], result.best["noise_mse"])  # the x | a specialist
    cond = Condition.of(jnp.asarray(val_raw["a"], jnp.float32))
    draws = np.stack([sample(DenoiserApply(model), variables, cond, SCHEDULE, jax.random.key(i),
                             shape=(200, 4), config=SamplerConfig("ddim", 50))
                      for i in range(32)])
    true_mean, _ = GAUSS.conditional("x", {"a": val_raw["a"]})
    err = np.sqrt(np.mean((draws.mean(0) - true_mean) ** 2))
    baseline = np.sqrt(np.mean((GAUSS.marginal("x")[0] - true_mean) ** 2))  # ignore the condition
    assert err < 0.4 * baseline, (err, baseline)


def test_validation_energy_score_is_the_fair_energy_score():
    draws = np.random.default_rng(0).normal(size=(6, 5, 3))
    real = np.random.default_rng(1).normal(size=(5, 3))
    np.testing.assert_allclose(fair_energy_score(jnp.asarray(draws), jnp.asarray(real)),
                               energy_score(real, draws), rtol=1e-5)


def test_row_energy_scores_are_the_rows_of_the_validation_energy_score():
    _, data = _specialist_data(GAUSS, 24, seed=3)  # member 'a' lacks 6 rows: padded table
    state = create_train_state(TINY, SCHEDULE, jax.random.key(0), cond_dims=[4], num_members=2)
    key = jax.random.key(5)
    rows = np.asarray(row_energy_scores(TINY, SCHEDULE, state.variables, data,
                                        jax.random.split(key)[0], sampler="ddim",
                                        sample_steps=4))  # [K, R]
    counts = np.asarray(data.counts)
    assert rows.shape == data.rows.shape and counts.tolist() == [18, 24]
    assert np.isfinite(rows[0, :18]).all() and np.isnan(rows[0, 18:]).all()
    means = evaluate_members(state, data, key, sampler="ddim", sample_steps=4)["energy_score"]
    np.testing.assert_allclose(np.nanmean(rows, axis=1), means, rtol=1e-5)
