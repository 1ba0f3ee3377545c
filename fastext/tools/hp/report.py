"""Figures of a search: partial dependence of the surrogate on each hyper-parameter
(``sklearn.inspection``), and the objective per trial with the best so far.

>>> import tempfile, pathlib
>>> from fastext.tools.hp.space import Space, Uniform
>>> from fastext.tools.hp.search import search
>>> r = search(lambda p: p["x"] ** 2 + p["y"], Space(x=Uniform(-1, 1), y=Uniform(0, 1)),
...            n_trials=6, n_init=3, progress=False)
>>> d = pathlib.Path(tempfile.mkdtemp())
>>> plot_partial_dependence(r, d / "pd.png").is_file(), plot_history([r], d / "h.png").is_file()
(True, True)
"""

from __future__ import annotations

import math
import os
from collections.abc import Sequence
from pathlib import Path

import matplotlib

matplotlib.use("Agg")  # files only, never a window (before pyplot is imported)
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
from sklearn.inspection import partial_dependence  # noqa: E402

from ...learner.figures import save_figure as _save  # noqa: E402
from .search import SearchResult  # noqa: E402
from .space import Choice  # noqa: E402

__all__ = ["partial_dependences", "plot_history", "plot_partial_dependence"]


def partial_dependences(result: SearchResult, grid_resolution: int = 30,
                        ) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """For each parameter, ``(encoded grid, mean predicted objective)``: the surrogate's
    prediction averaged over the other parameters' values in the trials (sklearn's
    ``partial_dependence``, ``method="brute"``: the mean prediction over the trials' rows
    with this parameter set to each grid value)."""
    forest = result.forest()
    x, _ = result.xy()
    out = {}
    for j, name in enumerate(result.space.names):
        pd = partial_dependence(forest, x, [j], kind="average", method="brute",
                                grid_resolution=grid_resolution)
        out[name] = (np.asarray(pd["grid_values"][0]), np.asarray(pd["average"][0]))
    return out


def plot_partial_dependence(result: SearchResult, path: str | os.PathLike[str],
                            title: str | None = None) -> Path:
    """One panel per hyper-parameter: partial dependence of the predicted objective (line)
    over the trials (dots; failed ones at the top edge), importance in each title; a log
    scale for a positive objective."""
    space = result.space
    pds = partial_dependences(result)
    imps = result.importances()
    x, y = result.xy()
    cols = min(3, len(space))
    rows = math.ceil(len(space) / cols)
    fig, axes = plt.subplots(rows, cols, figsize=(4 * cols, 3.2 * rows), squeeze=False)
    ok = np.isfinite(y)
    top = np.nanmax(y) if ok.any() else 1.0
    for j, (name, param) in enumerate(space.params.items()):
        ax = axes.flat[j]
        grid, avg = pds[name]
        ax.plot(grid, avg, color="C0", label="partial dependence")
        ax.scatter(x[ok, j], y[ok], s=12, color="C1", alpha=0.7, label="trials")
        if (~ok).any():
            ax.scatter(x[~ok, j], np.full((~ok).sum(), top), marker="x", color="C3",
                       label="failed / diverged")
        if ok.any() and np.nanmin(y) > 0:
            ax.set_yscale("log")  # losses span decades; the good region is at the bottom
        ax.set_xlabel(param.label(name))
        ax.set_title(f"{name} (importance {imps.get(name, 0):.2f})", fontsize=10)
        if isinstance(param, Choice):
            ax.set_xticks(range(len(param.options)), [str(o) for o in param.options])
    for ax in list(axes.flat)[len(space):]:
        ax.axis("off")
    axes.flat[0].set_ylabel("objective")
    axes.flat[0].legend(fontsize=7)
    fig.suptitle(title or f"{result.method} search: surrogate's partial dependence")
    fig.tight_layout()
    return _save(fig, path)


def plot_history(results: Sequence[SearchResult], path: str | os.PathLike[str],
                 labels: Sequence[str] | None = None, title: str = "best value so far") -> Path:
    """Best value so far against the trial number, one line per search."""
    fig, ax = plt.subplots(figsize=(6, 4))
    for k, r in enumerate(results):
        label = labels[k] if labels else f"{r.method} (seed {r.seed})"
        color = "C0" if r.method == "rf" else "C1"
        ax.plot(range(1, len(r.trials) + 1), r.best_so_far(), color=color, alpha=0.8,
                label=label)
    values = np.array([v for r in results for v in r.best_so_far()], dtype=float)
    if np.isfinite(values).any() and np.nanmin(values) > 0:
        ax.set_yscale("log")
    ax.set_xlabel("trial")
    ax.set_ylabel("best objective so far")
    ax.set_title(title)
    handles, names = ax.get_legend_handles_labels()
    unique = dict(zip(names, handles, strict=True))  # one legend entry per label
    ax.legend(unique.values(), unique.keys(), fontsize=8)
    fig.tight_layout()
    return _save(fig, path)

