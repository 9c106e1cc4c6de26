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
    knn        the mean target of the k = 5 nearest training rows that have the target, by
               NaN-aware Euclidean distance over the available columns (what sklearn's
               KNNImputer(k=5) computes, without its loop over target columns: one distance
               matrix serves every column, so thousands of raw feature columns cost little).
    iterative  sklearn IterativeImputer (BayesianRidge, MICE-style chained equations) over the
               available and target columns, run for all max_iter rounds (tol=0): with the
               whole target block missing at test time the chained equations converge slowly
               when target columns are correlated, and sklearn's fit-time stopping would cut
               the test-time rounds short. Slow on wide feature spaces (use latents, or pass
               n_nearest_features). Weak when a whole modality is missing: each target column
               was fitted mostly on the other (then observed) target columns, which start at
               the mean and move slowly (KIPAN RNA | miRNA+meth latents: R^2 0.03 after 30
               rounds, where ridge reaches 0.78).
    ridge      RidgeCV per (available set -> target), one alpha for all target columns chosen
               by exact leave-one-out error (sklearn's GCV). With more input or target
               columns than training rows (raw feature tables: thousands of genes, a few
               hundred patients) the same leave-one-out is solved here in the n x n Gram form
               and the coefficients are formed once, for the chosen alpha (sklearn forms them
               for every alpha): same alpha and predictions, 3-5x faster on KIPAN
               (`ridge_loo`).
    mlp        sklearn MLPRegressor, two hidden layers, early stopping.
    mofa       MOFA+ (mofapy2): linear factors with missing views, fitted on training and test
               rows together (the test target held out); prediction = factors @ target weights.
"""

from __future__ import annotations

import contextlib
import dataclasses
import io
import warnings
from typing import Mapping, Sequence

import numpy as np
import pandas as pd
from sklearn.exceptions import ConvergenceWarning
from sklearn.experimental import enable_iterative_imputer  # noqa: F401 - registers the class
from sklearn.impute import IterativeImputer
from sklearn.linear_model import RidgeCV
from sklearn.metrics.pairwise import nan_euclidean_distances
from sklearn.neural_network import MLPRegressor
from sklearn.preprocessing import StandardScaler
from threadpoolctl import threadpool_limits

BASELINES = ("mean", "knn", "iterative", "ridge", "mlp", "mofa")
RIDGE_ALPHAS = tuple(np.logspace(-3, 3, 13))


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
        **options: per method: knn n_neighbors (5); ridge alphas (logspace(-3, 3, 13));
            iterative max_iter (30),
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
    x_train = _block(train, available, train_ids)  # [N_tr, D_avail]
    y_train = _block(train, [target], train_ids)  # [N_tr, D_target]
    x_test = _block(test, available, test_ids)  # [N_te, D_avail]
    x_scale = StandardScaler().fit(x_train)
    y_scale = StandardScaler().fit(y_train[has_target])
    data = _Standardised(x_scale.transform(x_train), y_scale.transform(y_train),
                         x_scale.transform(x_test), has_target)
    if method in ("ridge", "mlp"):
        pred = _supervised(method, data, seed, options, available, target)
    else:
        pred = _unsupervised(method, data, seed, options, [train[m].shape[1] for m in available])
    return pd.DataFrame(y_scale.inverse_transform(pred), index=test_ids,
                        columns=train[target].columns)


@dataclasses.dataclass(frozen=True)
class _Standardised:
    """A baseline's inputs, standardised with training statistics.

    Attributes:
        x_train: [N_tr, D_avail] available columns of the training rows (NaN where absent).
        y_train: [N_tr, D_target] target columns of the training rows (NaN where absent).
        x_test: [N_te, D_avail] available columns of the test patients.
        has_target: [N_tr] bool, the training row has the target.
    """

    x_train: np.ndarray
    y_train: np.ndarray
    x_test: np.ndarray
    has_target: np.ndarray


def _unsupervised(method: str, data: _Standardised, seed: int, options: dict,
                  widths: list[int]) -> np.ndarray:
    """[N_te, D_target] standardised prediction of 'mean', 'knn', 'iterative' or 'mofa', which
    use the training rows as they are (holes included); widths: the available modalities'."""
    if method == "mean":
        return np.zeros((len(data.x_test), data.y_train.shape[1]))
    if method == "knn":
        return _knn(data.x_train, data.y_train, data.x_test, data.has_target,
                    options.get("n_neighbors", 5))
    if method == "iterative":
        return _impute(data.x_train, data.y_train, data.x_test, data.has_target, seed, options)
    return _mofa(data.x_train, data.y_train, data.x_test, widths, seed, options)


def _supervised(method: str, data: _Standardised, seed: int, options: dict,
                available: tuple, target: str) -> np.ndarray:
    """[N_te, D_target] standardised prediction of 'ridge' or 'mlp', fitted on the training rows
    that have every `available` modality and the target."""
    complete = data.has_target & ~np.isnan(data.x_train).any(axis=1)
    if complete.sum() < 2:
        raise ValueError(f"{method} needs training rows with all of {list(available)} and "
                         f"{target!r}; found {int(complete.sum())}.")
    if method == "ridge":
        return ridge_loo(data.x_train[complete], data.y_train[complete], data.x_test,
                         options.get("alphas", RIDGE_ALPHAS))[0]
    model = MLPRegressor(hidden_layer_sizes=tuple(options.get("hidden", (256, 256))),
                         early_stopping=True, max_iter=options.get("max_iter", 300),
                         random_state=seed)
    model.fit(data.x_train[complete], data.y_train[complete])
    return model.predict(data.x_test).reshape(len(data.x_test), data.y_train.shape[1])


def ridge_loo(x: np.ndarray, y: np.ndarray, x_test: np.ndarray,
              alphas: Sequence[float] = RIDGE_ALPHAS) -> tuple[np.ndarray, float]:
    """Ridge with intercept, one alpha for all columns of y chosen by leave-one-out MSE.

    Exactly sklearn's RidgeCV(alphas) (efficient LOO, alpha_per_target=False). With more input
    or target columns than rows, the LOO residuals of every alpha come from one
    eigendecomposition of the centred Gram matrix K = Xc Xc^T = Q diag(w) Q^T:
    c = Q diag(1/(w+a)) Q^T Yc, loo = c / diag(G^-1) with the intercept's share removed from
    the diagonal (with more target columns than rows, the row norms of c come from
    Q^T Yc Yc^T Q in O(N^3) per alpha); the prediction (x_test - mean) Xc^T c + mean(y) is
    formed once, for the chosen alpha (sklearn forms the [D, T] coefficients for every alpha:
    seconds per fit on omics tables). With no more input and target columns than rows
    (latents), sklearn's RidgeCV is called.

    Args:
        x: [N, D] training inputs, y: [N, T] training targets (no NaN); x_test: [M, D].
        alphas: the penalties tried (ties: the first).

    Returns:
        (predictions [M, T], chosen alpha).
    """
    alphas = [float(a) for a in np.atleast_1d(alphas)]
    if x.shape[1] <= x.shape[0] and y.shape[1] <= x.shape[0]:  # narrow: sklearn's own form
        model = RidgeCV(alphas=alphas).fit(x, y)
        return model.predict(x_test).reshape(len(x_test), -1), float(model.alpha_)
    x_mean, y_mean = x.mean(axis=0), y.mean(axis=0)
    xc, yc = x - x_mean, y - y_mean
    gram = xc @ xc.T  # [N, N]
    with threadpool_limits(1, user_api="blas"):  # multithreaded OpenBLAS eigh of a few
        w, q = np.linalg.eigh(gram)  # hundred rows: 0.02 s alone, seconds on a busy CPU
    qt_y = q.T @ yc  # [N, T]
    qt_one = q.sum(axis=0)  # Q^T 1
    n, t = y.shape
    gram_y = qt_y @ qt_y.T if t > n else None  # [N, N]: row norms of c in O(N^3) per alpha
    best = (np.inf, None)
    for alpha in alphas:
        inv = 1.0 / (w + alpha)
        diag = (q**2) @ inv - (q @ (inv * qt_one)) / n  # diag(G^-1), intercept removed
        if gram_y is None:
            squared = np.sum((q @ (inv[:, None] * qt_y)) ** 2, axis=1)  # |G^-1 Yc|^2 per row
        else:
            scaled = q * inv  # Q diag(inv)
            squared = np.sum((scaled @ gram_y) * scaled, axis=1)
        loo_mse = float(np.sum(squared / diag**2) / (n * t))
        if loo_mse < best[0]:
            best = (loo_mse, alpha)
    alpha = best[1]
    c = q @ (qt_y / (w + alpha)[:, None])  # G^-1 Yc [N, T]
    return ((x_test - x_mean) @ xc.T) @ c + y_mean, alpha  # never forms the [D, T] coefs


def _knn(xs_train, ys_train, xs_test, has_target, k: int) -> np.ndarray:
    """Mean target of the k nearest donors (training rows with the target and some available
    value) by NaN-aware Euclidean distance: KNNImputer(k, uniform weights) on the target block
    appended to the available block, whose donors and distances are the same for every target
    column (the test rows have every available value)."""
    donors = has_target & ~np.isnan(xs_train).all(axis=1)
    if not donors.any():
        raise ValueError("knn: no training row has the target and an available modality.")
    distances = nan_euclidean_distances(xs_test, xs_train[donors])  # [N_te, N_donors]
    k = min(k, int(donors.sum()))
    nearest = np.argpartition(distances, k - 1, axis=1)[:, :k]  # [N_te, k]
    return np.nanmean(ys_train[donors][nearest], axis=1)


def _impute(xs_train, ys_train, xs_test, has_target, seed, options) -> np.ndarray:
    """Iterative imputation of the target block appended to the available block."""
    width = ys_train.shape[1]
    any_available = ~np.isnan(xs_train).all(axis=1)
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
