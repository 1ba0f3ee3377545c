"""Collaborative filtering on MovieLens latest-small: user and movie embeddings.

``fastext run movielens`` splits the 100,836 ratings 80/20 at random (seed 42), trains an
:class:`~fastext.tasks.collab.EmbeddingDotBias` model (50 factors, ratings squashed into
(0, 5.5)) with the course's recipe (1cycle, 5 epochs, lr 5e-3, batch 64) twice, with weight
decay 0.1 and without, then an :class:`~fastext.tasks.collab.EmbeddingNN` for comparison,
and reads the wd=0.1 model: the movies with the highest and lowest learned bias among the
1000 most-rated, and a PCA of their factors (``movielens_pca.png``).

Record: ``rmse`` (validation RMSE, wd 0.1), ``rmse_wd0`` (wd 0), ``rmse_nn``,
``baseline_rmse`` (predicting the training mean), the top and bottom movies.

Runs on one torch thread by default (batches of 64 pairs; see :mod:`fastext.demos.adult`).

>>> import tempfile
>>> r = run(quick=True, progress=False, out_dir=tempfile.mkdtemp())  # doctest: +SKIP
"""

from __future__ import annotations

import math
import os
import time
from pathlib import Path
from typing import Any

import torch

from ..data.movielens import find_movielens, load_ratings
from ..tasks.collab import CollabDataLoaders, collab_learner
from ._common import epochs_or, torch_threads, write_json

__all__ = ["run"]

#: The course's recipe (lesson 4/5), not tuned on the validation split.
EPOCHS, LR, BATCH_SIZE, N_FACTORS, WD = 5, 5e-3, 64, 50, 0.1
SPLIT_SEED, VALID_PCT = 42, 0.2
#: --quick: ratings kept.
QUICK_ROWS = 5000


def run(data: str | os.PathLike[str] | None = None, epochs: int | None = None,
        quick: bool = False, json_path: str | os.PathLike[str] | None = None,
        progress: bool = True, seed: int = 0, out_dir: str | os.PathLike[str] = "out",
        threads: int | None = 1, use_nn: bool = True) -> dict[str, Any]:
    """Train and compare the models, write the PCA plot under ``out_dir`` and optionally
    JSON to ``json_path``; returns the record. ``threads``: torch's intra-op threads for
    the run (``None``: leave as is)."""
    epochs = epochs_or(epochs, EPOCHS)
    with torch_threads(threads):
        return _run(data, epochs, quick, json_path, progress, seed, Path(out_dir), use_nn)


def _fit(dls: CollabDataLoaders, epochs: int, wd: float, seed: int, progress: bool,
         **kwargs: Any) -> tuple[Any, float, float]:
    torch.manual_seed(seed)  # the same initial weights for every wd
    learn = collab_learner(dls, wd=wd, quiet=not progress, **kwargs)
    start = time.perf_counter()
    learn.fit_one_cycle(epochs, LR)
    seconds = time.perf_counter() - start
    return learn, learn.validate()[1], seconds


def _run(data: Any, epochs: int, quick: bool, json_path: Any, progress: bool, seed: int,
         out: Path, use_nn: bool) -> dict[str, Any]:
    wall_start = time.perf_counter()
    path = find_movielens(data)
    ratings = load_ratings(path, titles=True)
    if quick:
        ratings = ratings.iloc[:QUICK_ROWS]
    titles = dict(zip(ratings["movieId"], ratings["title"], strict=True))
    dls = CollabDataLoaders.from_df(ratings[["userId", "movieId", "rating"]],
                                    valid_pct=VALID_PCT, seed=SPLIT_SEED, bs=BATCH_SIZE,
                                    device="cpu")
    n_users, n_items = (len(dls.classes[n]) - 1 for n in ("userId", "movieId"))
    n_train, n_valid = len(dls.train.dataset[1]), len(dls.valid.dataset[1])
    print(f"movielens: {len(ratings)} ratings ({n_train} train / {n_valid} valid, random "
          f"80/20, seed {SPLIT_SEED}) of {n_items} movies by {n_users} users from {path}; "
          f"{epochs} epoch(s), batch {BATCH_SIZE}, torch threads {torch.get_num_threads()}",
          flush=True)
    train_mean = float(dls.train.dataset[1].mean())
    baseline = math.sqrt(float((dls.valid.dataset[1] - train_mean).square().mean()))

    print(f"EmbeddingDotBias, {N_FACTORS} factors, wd {WD}")
    learn, rmse, seconds = _fit(dls, epochs, WD, seed, progress, n_factors=N_FACTORS)
    print("EmbeddingDotBias, wd 0")
    _, rmse_wd0, seconds_wd0 = _fit(dls, epochs, 0.0, seed, progress, n_factors=N_FACTORS)
    rmse_nn = None
    if use_nn:
        print(f"EmbeddingNN, layers (100, 50), wd {WD}")
        _, rmse_nn, _ = _fit(dls, epochs, WD, seed, progress, use_nn=True)

    most_rated = 1000
    top, bottom = learn.item_biases(10, most_rated=most_rated, labels=titles)
    out.mkdir(parents=True, exist_ok=True)
    figure = out / "movielens_pca.png"
    learn.item_pca(figure, most_rated=most_rated, n_labels=40, labels=titles)
    example_user, example_item = ratings["userId"].iloc[0], ratings["movieId"].iloc[0]
    example = float(learn.predict(example_user, example_item))
    wall_seconds = time.perf_counter() - wall_start

    print(f"highest item bias (of the {most_rated} most-rated): "
          + "; ".join(f"{t} {b:+.2f}" for t, b in zip(top["item"], top["bias"], strict=True)))
    print("lowest item bias: "
          + "; ".join(f"{t} {b:+.2f}" for t, b in zip(bottom["item"], bottom["bias"],
                                                        strict=True)))
    print(f"predict       user {example_user}, {titles[example_item]}: {example:.2f} "
          f"(rated {ratings['rating'].iloc[0]})")
    print(f"valid RMSE    EmbeddingDotBias wd {WD}: {rmse:.4f}; wd 0: {rmse_wd0:.4f} "
          f"(wd 0 - wd {WD} = {rmse_wd0 - rmse:+.4f})"
          + ("" if rmse_nn is None else f"; EmbeddingNN: {rmse_nn:.4f}")
          + f"; training mean: {baseline:.4f}")
    print(f"train time    {seconds:.1f} s (wd {WD}), {seconds_wd0:.1f} s (wd 0); wall "
          f"{wall_seconds:.1f} s")
    print(f"figures       {figure}", flush=True)
    result = {"demo": "movielens", "rmse": rmse, "rmse_wd0": rmse_wd0, "rmse_nn": rmse_nn,
              "baseline_rmse": baseline, "wd": WD, "epochs": epochs,
              "train_seconds": seconds, "n_train": n_train, "n_valid": n_valid,
              "top_bias": top["item"].tolist(), "bottom_bias": bottom["item"].tolist(),
              "quick": quick}
    write_json(result, json_path)
    return result


def cli_main(args: Any) -> dict[str, Any]:
    """``fastext run movielens``: :func:`run` with the command line's arguments
    (``--no-bench`` has nothing to skip: this demo runs no benchmark)."""
    return run(data=args.data, epochs=args.epochs, quick=args.quick, json_path=args.json,
               out_dir=args.out)
