"""Baselines that predict a target modality from an available set, on the same inputs as the
generative methods, so both sit side by side in one table.

Every baseline gets the same data: training tables (holes as all-NaN or absent rows) and test
patients for whom every modality of `available` is present. Columns are standardised with
training statistics first (NaN-aware), so no modality dominates a distance by its scale, and
predictions are returned on the original scale.

    pred = predict_missing("knn", train, test, available=("rna", "cna"), target="rppa")
    reconstruction_metrics(test["rppa"], pred)  # joined by sample ID

Methods:
    mean       the training mean of the target.
    knn        sklearn KNNImputer(k=5), donors = training rows with the target.
    iterative  sklearn IterativeImputer (BayesianRidge, MICE-style chained equations) over the
               available and target columns, run for all max_iter rounds (tol=0): with the
               whole target block missing at test time the chained equations converge slowly
               when target columns are correlated, and sklearn's fit-time stopping would cut
               the test-time rounds short. Slow on wide feature spaces (use latents, or pass
               n_nearest_features). Weak when a whole modality is missing: each target column
               was fitted mostly on the other (then observed) target columns, which start at
               the mean and move slowly (KIPAN RNA | miRNA+meth latents: R^2 0.03 after 30
               rounds, where ridge reaches 0.78).
    ridge      RidgeCV per (available set -> target), alpha chosen by leave-one-out.
    mlp        sklearn MLPRegressor, two hidden layers, early stopping.
    mofa       MOFA+ (mofapy2): linear factors with missing views, fitted on training and test
               rows together (the test target held out); prediction = factors @ target weights.
"""

from __future__ import annotations

import contextlib
import io
import warnings
from typing import Mapping, Sequence

import numpy as np
import pandas as pd
from sklearn.exceptions import ConvergenceWarning
from sklearn.experimental import enable_iterative_imputer  # noqa: F401 - registers the class
from sklearn.impute import IterativeImputer, KNNImputer
from sklearn.linear_model import RidgeCV
from sklearn.neural_network import MLPRegressor
from sklearn.preprocessing import StandardScaler

BASELINES = ("mean", "knn", "iterative", "ridge", "mlp", "mofa")


def _block(tables: Mapping[str, pd.DataFrame], modalities: Sequence[str],
           ids: pd.Index) -> np.ndarray:
    """[N, sum D_m] float64 of `modalities` side by side for `ids`, NaN where absent."""
    return np.concatenate([tables[m].reindex(ids).to_numpy(np.float64) for m in modalities],
                          axis=1)


def _present(tables: Mapping[str, pd.DataFrame], m: str, ids: pd.Index) -> np.ndarray:
    """[N] bool: the sample has modality m (a row with any value)."""
    return ~np.isnan(tables[m].reindex(ids).to_numpy(np.float64)).all(axis=1)


def _check(train, test, available, target) -> None:
    if not available:
        raise ValueError("available is empty: a baseline needs at least one available modality.")
    if target in available:
        raise ValueError(f"target {target!r} is also in available {list(available)}.")
    for name, tables, need in (("train", train, [*available, target]),
                               ("test", test, list(available))):
        lacking = [m for m in need if m not in tables]
        if lacking:
            raise ValueError(f"{name} tables lack modalities {lacking}; have {sorted(tables)}.")
    ids = next(iter(test[m] for m in available)).index
    for m in available:
        absent = ~_present(test, m, ids)
        if absent.any():
            raise ValueError(f"{int(absent.sum())} test sample(s) lack available modality {m!r}, "
                             f"e.g. {list(ids[absent][:3])}; evaluate each available set on the "
                             "patients who have it.")


def predict_missing(method: str, train: Mapping[str, pd.DataFrame],
                    test: Mapping[str, pd.DataFrame], available: Sequence[str], target: str,
                    *, seed: int = 0, **options) -> pd.DataFrame:
    """Predicts `target` for the test patients from their `available` modalities.

    Args:
        method: one of BASELINES.
        train: modality -> DataFrame indexed by sample ID; holes as all-NaN or absent rows.
        test: modality -> DataFrame indexed by sample ID; every test sample (the index of the
            first available table) must have every available modality.
        available: the modalities the test patients are given.
        target: the modality to predict.
        seed: random_state of the stochastic baselines (iterative, mlp, mofa).
        **options: per method: knn n_neighbors (5); iterative max_iter (30),
            n_nearest_features (None); mlp hidden (256, 256), max_iter (300);
            mofa factors (10), iterations (1000).

    Returns:
        [N_test, D_target] DataFrame indexed by the test sample IDs, the target's columns.

    Raises:
        ValueError: unknown method, missing modalities, no usable training rows.
        ImportError: 'mofa' without mofapy2 installed.
    """
    if method not in BASELINES:
        raise ValueError(f"unknown baseline {method!r}; choose one of {BASELINES}.")
    available = tuple(available)
    _check(train, test, available, target)
    test_ids = test[available[0]].index
    train_ids = pd.Index(sorted(set().union(*(train[m].index for m in (*available, target)))))
    has_target = _present(train, target, train_ids)
    if not has_target.any():
        raise ValueError(f"no training sample has the target {target!r}.")
    width = train[target].shape[1]
    x_train = _block(train, available, train_ids)  # [N_tr, D_avail]
    y_train = _block(train, [target], train_ids)  # [N_tr, D_target]
    x_test = _block(test, available, test_ids)  # [N_te, D_avail]
    x_scale = StandardScaler().fit(x_train)
    y_scale = StandardScaler().fit(y_train[has_target])
    xs_train, xs_test = x_scale.transform(x_train), x_scale.transform(x_test)
    ys_train = y_scale.transform(y_train)
    if method == "mean":
        pred = np.zeros((len(test_ids), width))
    elif method in ("knn", "iterative"):
        pred = _impute(method, xs_train, ys_train, xs_test, has_target, seed, options)
    elif method == "mofa":
        pred = _mofa(xs_train, ys_train, xs_test, [train[m].shape[1] for m in available], seed,
                     options)
    else:
        complete = has_target & ~np.isnan(xs_train).any(axis=1)
        if complete.sum() < 2:
            raise ValueError(f"{method} needs training rows with all of {list(available)} and "
                             f"{target!r}; found {int(complete.sum())}.")
        model = (RidgeCV(alphas=np.logspace(-3, 3, 13)) if method == "ridge" else
                 MLPRegressor(hidden_layer_sizes=tuple(options.get("hidden", (256, 256))),
                              early_stopping=True, max_iter=options.get("max_iter", 300),
                              random_state=seed))
        model.fit(xs_train[complete], ys_train[complete])
        pred = model.predict(xs_test).reshape(len(test_ids), width)
    return pd.DataFrame(y_scale.inverse_transform(pred), index=test_ids,
                        columns=train[target].columns)


def _impute(method, xs_train, ys_train, xs_test, has_target, seed, options) -> np.ndarray:
    """KNN / iterative imputation of the target block appended to the available block."""
    width = ys_train.shape[1]
    any_available = ~np.isnan(xs_train).all(axis=1)
    if method == "knn":  # donors must carry the target and share some available value
        rows = has_target & any_available
        imputer = KNNImputer(n_neighbors=options.get("n_neighbors", 5), keep_empty_features=True)
    else:
        rows = has_target | any_available
        imputer = IterativeImputer(max_iter=options.get("max_iter", 30), tol=0.0,
                                   random_state=seed,
                                   n_nearest_features=options.get("n_nearest_features"),
                                   keep_empty_features=True)
    with warnings.catch_warnings():  # tol=0 never "converges": the warning says nothing here
        warnings.simplefilter("ignore", ConvergenceWarning)
        imputer.fit(np.concatenate([xs_train, ys_train], axis=1)[rows])
    holed = np.concatenate([xs_test, np.full((xs_test.shape[0], width), np.nan)], axis=1)
    return imputer.transform(holed)[:, -width:]


def _mofa(xs_train, ys_train, xs_test, widths, seed, options) -> np.ndarray:
    """MOFA+ factors fitted on train and test rows (test target missing); Z_test @ W_target^T."""
    try:
        from mofapy2.run.entry_point import entry_point  # noqa: PLC0415 - optional dependency
    except ImportError as err:
        raise ImportError("the 'mofa' baseline needs mofapy2: pip install mofapy2") from err
    n_test = xs_test.shape[0]
    x_all = np.concatenate([xs_train, xs_test])  # [N_tr + N_te, D_avail]
    y_all = np.concatenate([ys_train, np.full((n_test, ys_train.shape[1]), np.nan)])
    bounds = np.cumsum([0, *widths])
    views = [[x_all[:, a:b]] for a, b in zip(bounds[:-1], bounds[1:])] + [[y_all]]
    with contextlib.redirect_stdout(io.StringIO()):
        ent = entry_point()
        ent.set_data_options(scale_views=False, center_groups=True)
        ent.set_data_matrix(views)
        ent.set_model_options(factors=options.get("factors", 10))
        ent.set_train_options(iter=options.get("iterations", 1000), convergence_mode="fast",
                              seed=seed, verbose=False, quiet=True)
        ent.build()
        ent.run()
    factors = ent.model.nodes["Z"].getExpectation()[-n_test:]  # [N_te, F]
    weights = ent.model.nodes["W"].getExpectation()[-1]  # [D_target, F]
    offset = np.nanmean(ys_train, axis=0)  # ~0 after standardising; MOFA centred the view on it
    return factors @ weights.T + offset
