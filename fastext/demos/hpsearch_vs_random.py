"""Random-forest search against random search, on a fixed budget of trials, over five seeds.

The objective is :class:`fastext.tools.hp.mnist_objective.MnistMLPObjective`: an MLP trained
with the Learner (``fit_one_cycle``) on 5,000 MNIST training images, scored by the
cross-entropy on 2,000 other training images (lower is better), searched over lr, weight
decay, pct_start, batch size, dropout and epochs. For each seed both searches get 24 trials
and share their first 6 (random) ones; the random-forest search then proposes each next trial
by expected improvement, random search keeps drawing at random.

``fastext run hpsearch-vs-random [--json PATH]`` records::

    {"demo": "hpsearch-vs-random", "trials": 24, "n_init": 6,
     "rows": [{"seed": 0, "rf_best": ..., "random_best": ..., ...}, ...],
     "rf_wins": <seeds where rf_best <= random_best>, "importances": {...}, "figures": [...]}

``rows`` holds one entry per seed. Trial logs go to
``OUT/hpsearch_vs_random/<mode>-<data>-<n_train>-<n_valid>/`` (e.g. ``full-mnist-5000-2000``),
so an interrupted run resumes where it stopped (delete the folder to start afresh), and a run
on other data or sizes starts its own logs instead of resuming trials scored on another
objective. ``--quick`` runs two seeds of 5 trials on the shipped subset; ``--epochs`` is
refused (epochs are searched).
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

from ..data.files import find_data_dir
from ..data.mnist import find_mnist
from ..tools.hp.mnist_objective import MnistMLPObjective
from ..tools.hp.report import plot_history, plot_partial_dependence
from ..tools.hp.search import SearchResult, search
from ._common import write_json

__all__ = ["cli_main", "run"]

FULL = {"seeds": 5, "trials": 24, "n_init": 6, "n_train": 5000, "n_valid": 2000}
QUICK = {"seeds": 2, "trials": 5, "n_init": 3, "n_train": 300, "n_valid": 200}


def run(data: str | None = None, quick: bool = False, out_dir: str | Path = "out",
        json_path: str | Path | None = None, progress: bool = True) -> dict[str, Any]:
    """Runs both searches for each seed, prints the table, writes the figures and returns
    (and optionally writes) the record described in the module docstring."""
    cfg = QUICK if quick else FULL
    wall = time.perf_counter()
    if quick and data is None:
        data = str(find_data_dir("mnist-small"))
    path, kind = find_mnist(data)
    n_train, n_valid = cfg["n_train"], cfg["n_valid"]
    if kind == "mnist-small" and not quick:
        n_train, n_valid = 1500, 500  # the shipped subset holds 2,000 training images
    objective = MnistMLPObjective(path, n_train=n_train, n_valid=n_valid)
    space = objective.space
    out = Path(out_dir)
    # The logs store only the space, method and seed: the folder names the objective, so
    # that trials scored on other data or sizes are never resumed (and then recorded as these).
    mode = "quick" if quick else "full"
    logs = out / "hpsearch_vs_random" / f"{mode}-{kind}-{n_train}-{n_valid}"
    print(f"hpsearch-vs-random: {kind} ({n_train} train / {n_valid} held-out images), "
          f"{cfg['trials']} trials per search ({cfg['n_init']} shared random first), "
          f"{cfg['seeds']} seeds; logs in {logs}", flush=True)
    rows, results = [], []
    for seed in range(cfg["seeds"]):
        row: dict[str, Any] = {"seed": seed}
        for method in ("rf", "random"):
            if progress:
                print(f"-- seed {seed}, {method} search", flush=True)
            start = time.perf_counter()
            r = search(objective, space, n_trials=cfg["trials"], n_init=cfg["n_init"],
                       method=method, seed=seed, log=logs / f"{method}-seed{seed}.json",
                       progress=progress)
            row[f"{method}_seconds"] = round(time.perf_counter() - start, 1)
            best = r.best
            row[f"{method}_best"] = best.value
            row[f"{method}_best_accuracy"] = best.info.get("accuracy")
            row[f"{method}_best_params"] = best.params
            row[f"{method}_failed"] = sum(not t.ok for t in r.trials)
            results.append(r)
        rows.append(row)
    wins = sum(r["rf_best"] <= r["random_best"] for r in rows)

    # One forest over every trial of every search: the most data for importances and PD.
    pooled = SearchResult(space, [t for r in results for t in r.trials], "rf", 0)
    importances = pooled.importances()
    figures = [
        str(plot_history(results, out / "hpsearch_vs_random_history.png",
                         labels=[f"{r.method}" for r in results],
                         title="best held-out loss so far (each line one seed)")),
        str(plot_partial_dependence(pooled, out / "hpsearch_vs_random_pd.png",
                                    title=f"partial dependence, forest on all "
                                          f"{len(pooled.trials)} trials")),
    ]
    print(f"\n{'seed':>4}  {'rf best':>9}  {'random best':>11}  rf <= random")
    for r in rows:
        print(f"{r['seed']:>4}  {r['rf_best']:9.4f}  {r['random_best']:11.4f}  "
              f"{'yes' if r['rf_best'] <= r['random_best'] else 'no'}")
    print(f"random forest at least as good in {wins} of {len(rows)} seeds")
    print("importances  " + ", ".join(f"{k} {v:.2f}" for k, v in importances.items()))
    wall_seconds = time.perf_counter() - wall
    print(f"wall time    {wall_seconds:.0f} s")
    print("figures      " + ", ".join(figures), flush=True)
    record = {"demo": "hpsearch-vs-random", "data": kind, "trials": cfg["trials"],
              "n_init": cfg["n_init"], "n_train": n_train, "n_valid": n_valid, "rows": rows,
              "rf_wins": wins, "importances": importances, "figures": figures,
              "wall_seconds": wall_seconds}
    write_json(record, json_path)
    return record


def cli_main(args: Any) -> dict[str, Any]:
    """``fastext run hpsearch-vs-random``: :func:`run` with the command line's arguments."""
    return run(data=args.data, quick=args.quick, out_dir=args.out, json_path=args.json)
