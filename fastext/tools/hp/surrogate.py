"""The random-forest surrogate: a forest fitted to the trials so far predicts each candidate's
objective; the spread of its trees' predictions says how unsure it is; expected improvement
(EI) weighs the two, and the candidate with the largest EI is tried next (SMAC's recipe:
Hutter et al., 2011).

Everything here minimises (a loss or an error rate).

>>> import numpy as np
>>> x = np.linspace(0, 1, 20)[:, None]
>>> forest = fit_forest(x, (x[:, 0] - 0.3) ** 2, seed=0)
>>> mu, sigma = forest_mean_std(forest, np.array([[0.3], [1.0]]))
>>> bool(mu[0] < mu[1])
True
"""

from __future__ import annotations

import math

import numpy as np
from sklearn.ensemble import RandomForestRegressor

from .space import Space

__all__ = ["expected_improvement", "fill_failures", "fit_forest", "forest_mean_std", "propose"]

_SQRT2 = math.sqrt(2.0)
_erf = np.vectorize(math.erf, otypes=[np.float64])


def fit_forest(x: np.ndarray, y: np.ndarray, seed: int = 0,
               n_estimators: int = 100) -> RandomForestRegressor:
    """A ``RandomForestRegressor`` on encoded configurations ``x`` and objective ``y``.

    Leaves of one sample and bootstrap rows let the trees disagree away from the data, which
    is the uncertainty EI needs; ``max_features=1.0`` keeps every parameter in every split
    (there are few).
    """
    x, y = np.asarray(x, dtype=np.float64), np.asarray(y, dtype=np.float64)
    if x.ndim != 2 or y.ndim != 1 or len(x) != len(y):
        raise ValueError(f"expected x (n, d) and y (n,), got {x.shape} and {y.shape}")
    if len(y) < 2:
        raise ValueError(f"a surrogate needs at least 2 finished trials, got {len(y)}")
    if not np.isfinite(y).all():
        raise ValueError("y holds NaN or inf: fill failed trials first (fill_failures)")
    forest = RandomForestRegressor(n_estimators=n_estimators, min_samples_leaf=1,
                                   max_features=1.0, bootstrap=True, random_state=seed)
    return forest.fit(x, y)


def forest_mean_std(forest: RandomForestRegressor, x: np.ndarray,
                    ) -> tuple[np.ndarray, np.ndarray]:
    """Mean and standard deviation over the trees of their predictions at rows ``x``."""
    x = np.asarray(x, dtype=np.float64)
    per_tree = np.stack([tree.predict(x) for tree in forest.estimators_])
    return per_tree.mean(axis=0), per_tree.std(axis=0)


def expected_improvement(mu: np.ndarray, sigma: np.ndarray, best: float,
                         xi: float = 0.0) -> np.ndarray:
    """EI of a Gaussian belief ``N(mu, sigma^2)`` over beating ``best - xi`` (minimising):
    ``E[max(best - xi - Y, 0)] = (best - xi - mu) Phi(z) + sigma phi(z)`` with
    ``z = (best - xi - mu) / sigma``; where ``sigma == 0`` it is ``max(best - xi - mu, 0)``.

    >>> expected_improvement(np.array([1.0]), np.array([0.0]), best=1.5).tolist()
    [0.5]
    """
    mu, sigma = np.asarray(mu, dtype=np.float64), np.asarray(sigma, dtype=np.float64)
    if (sigma < 0).any():
        raise ValueError("sigma must be >= 0")
    gain = best - xi - mu
    ei = np.maximum(gain, 0.0)
    pos = sigma > 0
    if pos.any():
        z = gain[pos] / sigma[pos]
        cdf = 0.5 * (1.0 + _erf(z / _SQRT2))
        pdf = np.exp(-0.5 * z * z) / math.sqrt(2.0 * math.pi)
        ei[pos] = gain[pos] * cdf + sigma[pos] * pdf
    return np.maximum(ei, 0.0)  # rounding can leave -1e-17 where the gain is very negative


def fill_failures(y: np.ndarray) -> np.ndarray:
    """Failed or diverged trials (NaN/inf) get a value worse than every finished one, by
    the finished values' spread (by ``max(|worst|, 1)`` when they are all equal): the
    forest learns to avoid their region without its scale being wrecked by an infinity.
    Tied with the worst (as it was), a failure the finished trials equal taught nothing:
    an objective finishing at one value where it does not fail gave a flat forest, zero
    importances, and proposals back into the failing region.

    >>> fill_failures(np.array([0.5, np.nan, 2.0])).tolist()
    [0.5, 3.5, 2.0]
    >>> fill_failures(np.array([1.0, np.inf])).tolist()
    [1.0, 2.0]
    """
    y = np.asarray(y, dtype=np.float64).copy()
    ok = np.isfinite(y)
    if not ok.any():
        raise ValueError("no finished trial to learn from")
    worst, spread = y[ok].max(), np.ptp(y[ok])
    y[~ok] = worst + (spread if spread > 0 else max(abs(worst), 1.0))
    return y


def _local_candidates(space: Space, x_best: np.ndarray, rng: np.random.Generator,
                      n: int, scale: float) -> np.ndarray:
    """Gaussian steps around the best configurations, ``scale`` x each parameter's range."""
    bounds = space.bounds
    width = bounds[:, 1] - bounds[:, 0]
    centres = x_best[rng.integers(0, len(x_best), n)]
    steps = rng.normal(0.0, 1.0, centres.shape) * scale * width
    # move only some coordinates of each step, so one-parameter refinements are tried too
    keep = rng.random(centres.shape) < 0.5
    keep[np.arange(n), rng.integers(0, len(space), n)] = True
    return np.clip(centres + steps * keep, bounds[:, 0], bounds[:, 1])


def propose(space: Space, x: np.ndarray, y: np.ndarray, rng: np.random.Generator, *,
            n_candidates: int = 5000, local_fraction: float = 0.0, n_best: int = 3,
            xi: float = 0.0, log_y: bool = True, seed: int = 0,
            ) -> tuple[dict, dict[str, float]]:
    """The next configuration to try: the candidate of largest EI among ``n_candidates``
    (random draws from the space, and a ``local_fraction`` of them Gaussian steps around the
    ``n_best`` best trials so far; none by default: on budgets of a few dozen trials, steps
    around the incumbents over-exploit). ``y`` may hold NaN for failed trials. ``log_y``: model
    ``log(y)`` when every value is positive (EI, ``mu`` and ``sigma`` are then in log units).

    Returns ``(config, info)`` where info holds the winner's ``ei``, ``mu``, ``sigma`` (in
    the units modelled) and ``predicted`` (the forest's mean prediction in ``y``'s units).
    """
    if n_candidates < 1:
        raise ValueError(f"n_candidates must be >= 1, got {n_candidates}")
    if not 0.0 <= local_fraction <= 1.0:
        raise ValueError(f"local_fraction must be in [0, 1], got {local_fraction}")
    y = fill_failures(y)
    log_y = log_y and bool((y > 0).all())
    if log_y:
        # losses span decades (chance level 2.3 vs a good 0.2): on a log scale the forest
        # resolves the differences among good trials instead of spending its splits on the bad
        y = np.log(y)
    forest = fit_forest(x, y, seed=seed)
    n_local = int(round(local_fraction * n_candidates))
    order = np.argsort(y, kind="stable")[:n_best]
    # decode-encode snaps integers and choices to real values, so EI scores what will be run
    cands = [*space.sample(rng, n_candidates - n_local),
             *space.decode(_local_candidates(space, x[order], rng, n_local, 0.1))]
    xc = space.encode(cands)
    mu, sigma = forest_mean_std(forest, xc)
    ei = expected_improvement(mu, sigma, float(y.min()), xi)
    i = int(np.argmax(ei))
    predicted = math.exp(mu[i]) if log_y else mu[i]
    return cands[i], {"ei": float(ei[i]), "mu": float(mu[i]), "sigma": float(sigma[i]),
                      "predicted": float(predicted)}
