"""The search loop: random trials first, then (``method="rf"``) each next trial proposed by the
random-forest surrogate's expected improvement; every trial goes to the log as it finishes.

Trial ``i`` draws its random numbers from ``numpy.random.default_rng([seed, i])``, so a search
resumed from its log proposes exactly what the uninterrupted search would have, and a random
search and an RF search with the same seed share their first ``n_init`` trials.

>>> from fastext.tools.hp.space import Space, Uniform
>>> result = search(lambda p: (p["x"] - 0.3) ** 2, Space(x=Uniform(0, 1)), n_trials=8,
...                 n_init=4, progress=False)
>>> len(result.trials), result.best.value < 0.01
(8, True)
"""

from __future__ import annotations

import math
import numbers
import os
import time
import traceback
from collections.abc import Callable, Mapping
from typing import Any

import numpy as np

from .space import Space
from .surrogate import fill_failures, fit_forest, propose
from .trials import Trial, TrialLog

__all__ = ["METHODS", "SearchResult", "run_trial", "search"]

METHODS = ("rf", "random")
Objective = Callable[[dict[str, Any]], Any]


def run_trial(objective: Objective, params: dict[str, Any], number: int,
              proposer: str = "random") -> Trial:
    """Evaluates one configuration. The objective returns a number, or a mapping with a
    ``"value"`` key and anything else to keep (e.g. ``{"value": loss, "accuracy": acc}``;
    tensors and numpy scalars are kept as Python numbers, see
    :func:`~fastext.tools.hp.trials.to_json_value`).
    A NaN/inf value is recorded as ``diverged``; an exception as ``failed`` with its message
    (as is an extra entry that JSON cannot hold). ``KeyboardInterrupt`` is not caught:
    stopping a search is not a failed trial.

    >>> run_trial(lambda p: 1 / p["x"], {"x": 0}, 0).status
    'failed'
    """
    start = time.perf_counter()
    try:
        out = objective(dict(params))
        info: dict[str, Any] = {}
        if isinstance(out, Mapping):
            if "value" not in out:
                raise KeyError(f"the objective returned a mapping without 'value': {dict(out)}")
            info = {k: v for k, v in out.items() if k != "value"}
            out = out["value"]
        value = float(out)
        seconds = time.perf_counter() - start
        if not math.isfinite(value):
            return Trial(number, dict(params), None, "diverged", seconds, proposer,
                         f"objective returned {value}", info)
        return Trial(number, dict(params), value, "ok", seconds, proposer, None, info)
    except Exception as e:  # a bad configuration must not end the search
        last = traceback.extract_tb(e.__traceback__)[-1]
        return Trial(number, dict(params), None, "failed", time.perf_counter() - start,
                     proposer, f"{type(e).__name__}: {e} ({last.filename}:{last.lineno})")


class SearchResult:
    """The trials of a search, with the surrogate's view of them."""

    def __init__(self, space: Space, trials: list[Trial], method: str, seed: int) -> None:
        self.space, self.trials, self.method, self.seed = space, list(trials), method, seed

    @property
    def finished(self) -> list[Trial]:
        return [t for t in self.trials if t.ok]

    @property
    def best(self) -> Trial:
        """The trial with the lowest value (the first one on a tie)."""
        done = self.finished
        if not done:
            raise ValueError("no trial finished: every one failed or diverged")
        return min(done, key=lambda t: t.value)

    def best_so_far(self) -> list[float]:
        """Lowest value among trials ``0..i`` for each ``i`` (NaN until one finishes)."""
        out, best = [], math.inf
        for t in self.trials:
            if t.ok:
                best = min(best, t.value)
            out.append(best if math.isfinite(best) else math.nan)
        return out

    def xy(self) -> tuple[np.ndarray, np.ndarray]:
        """Encoded configurations and values (NaN for failed or diverged trials)."""
        x = self.space.encode([t.params for t in self.trials])
        y = np.array([t.value if t.ok else np.nan for t in self.trials], dtype=np.float64)
        return x, y

    def forest(self, seed: int | None = None) -> Any:
        """The surrogate fitted to all trials (failures at the worst value)."""
        x, y = self.xy()
        return fit_forest(x, fill_failures(y),
                          seed=_sklearn_seed(self.seed) if seed is None else seed)

    def importances(self) -> dict[str, float]:
        """The forest's impurity-based feature importances, by parameter (sum 1; all 0
        when every trial gave the same value): which hyper-parameters move the objective.
        Sorted, largest first."""
        imp = self.forest().feature_importances_
        pairs = sorted(zip(self.space.names, imp, strict=True), key=lambda p: -p[1])
        return {name: float(v) for name, v in pairs}

    def summary(self) -> dict[str, Any]:
        """A JSON-able record: best configuration and value, importances, counts."""
        counts = {s: sum(t.status == s for t in self.trials) for s in ("ok", "diverged",
                                                                          "failed")}
        best = self.best
        return {"method": self.method, "seed": self.seed, "n_trials": len(self.trials),
                "counts": counts, "best_value": best.value, "best_params": best.params,
                "best_trial": best.number, "best_info": best.info,
                "importances": self.importances() if len(self.finished) >= 2 else {}}


def search(objective: Objective, space: Space, n_trials: int = 24, n_init: int = 6,
           method: str = "rf", seed: int = 0,
           log: str | os.PathLike[str] | TrialLog | None = None,
           n_candidates: int = 5000, local_fraction: float = 0.0, xi: float = 0.0,
           progress: bool = True) -> SearchResult:
    """Minimise ``objective(params) -> float`` over ``space`` in ``n_trials`` trials.

    ``method="rf"``: ``n_init`` random trials, then each next one the candidate of highest
    expected improvement under a random forest fitted to all trials so far (see
    :func:`fastext.tools.hp.surrogate.propose`). ``method="random"``: random trials only.
    ``log``: a JSON file to resume from and write after every trial, or that file already
    opened with :meth:`TrialLog.open` for this space, method and seed.
    """
    if method not in METHODS:
        raise ValueError(f"method must be one of {METHODS}, got {method!r}")
    if n_trials < 1:
        raise ValueError(f"n_trials must be >= 1, got {n_trials}")
    if n_init < 2 and method == "rf":
        raise ValueError(f"the forest needs n_init >= 2 random trials, got {n_init}")
    if isinstance(seed, bool) or not isinstance(seed, numbers.Integral) or seed < 0:
        raise ValueError(f"seed must be a non-negative integer, got {seed!r}")
    seed = int(seed)  # a numpy integer would not go into the JSON log
    if isinstance(log, TrialLog):
        if (log.space, log.method, log.seed) != (space, method, seed):
            raise ValueError("log was opened for another space, method or seed")
        book = log
    else:
        book = TrialLog.open(log, space, method, seed)
    if book.trials and progress:
        print(f"hpsearch: resuming from {book.path} ({len(book.trials)} trials done)",
              flush=True)
    while len(book.trials) < n_trials:
        i = len(book.trials)
        rng = np.random.default_rng([seed, i])
        result = SearchResult(space, book.trials, method, seed)
        x, y = result.xy()
        if method == "random" or i < n_init or not np.isfinite(y).any():
            params, proposer, note = space.sample(rng, 1)[0], "random", ""
        else:
            params, ei = propose(space, x, y, rng, n_candidates=n_candidates,
                                 local_fraction=local_fraction, xi=xi,
                                 seed=_sklearn_seed(seed * 10_007 + i))
            proposer = "rf"
            note = f"  (EI {ei['ei']:.3g}, predicted {ei['predicted']:.4g})"
        trial = run_trial(objective, params, i, proposer)
        book.append(trial)
        if progress:
            _print_trial(trial, result.best_so_far()[-1] if i else math.nan, note)
    # A log may hold more trials than asked for: the first n_trials are this search's (the
    # same trials a fresh search of n_trials would run).
    return SearchResult(space, book.trials[:n_trials], method, seed)


def _sklearn_seed(n: int) -> int:
    """``n`` folded into the ``random_state`` range sklearn accepts, ``[0, 2**32 - 1]``
    (unchanged below 2**32, so the forests of existing searches stay the same)."""
    return int(n) % 2**32


def _fmt(v: Any) -> str:
    return f"{v:.3g}" if isinstance(v, float) else str(v)


def _print_trial(t: Trial, best_before: float, note: str) -> None:
    params = " ".join(f"{k}={_fmt(v)}" for k, v in t.params.items())
    if t.ok:
        star = " *" if not best_before <= t.value else ""  # NaN best_before: first finisher
        what = f"{t.value:.4f}{star}"
    else:
        what = f"{t.status} ({t.error})"
    print(f"trial {t.number:3d} [{t.proposer:6s}] {what}  {params}  {t.seconds:.1f}s{note}",
          flush=True)
