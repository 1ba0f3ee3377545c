"""UCI Adult with a tabular model: train on ``adult.data``, report the accuracy on
``adult.test``.

``fastext run adult`` fits the preprocessing (FillMissing, Categorify, Normalize) on the
32,561 training rows, trains :func:`fastext.tasks.tabular.tabular_learner` (embeddings for
the 8 categorical columns, BatchNorm on the 6 continuous ones, layers [200, 100]) with 1cycle
and the fused AdamW (wd 0.1), evaluates on the 16,281 test rows, exports the model with its
preprocessing, reloads it and checks that the reloaded model predicts the raw test rows as
the trained one does (a ``RuntimeError`` if not). Figures: the LR finder and the loss curves.
Record: ``accuracy`` (on adult.test), ``baseline_accuracy`` (always the majority training
class), ``epoch_seconds``.

Runs on one torch thread by default: the batches are small (a 256 x 112 matrix), and on a
loaded 2-core machine a second OpenMP thread waiting for a busy core made epochs up to 15x
slower here.

>>> import tempfile
>>> r = run(quick=True, bench=False, progress=False, out_dir=tempfile.mkdtemp())
... # doctest: +SKIP
"""

from __future__ import annotations

import os
import time
from pathlib import Path
from typing import Any

import torch

from ..data.adult import ADULT_CAT_NAMES, ADULT_CONT_NAMES, find_adult, load_adult
from ..tasks.tabular import TabularDataLoaders, load_tabular, tabular_learner
from ._common import epochs_or, run_bench, torch_threads, write_json

__all__ = ["run"]

#: The recipe (fastai's defaults for tabular data plus the course's weight decay), fixed
#: beforehand on a 20% hold-out of adult.data, never on adult.test.
EPOCHS, LR, BATCH_SIZE, WD, LAYERS = 5, 1e-2, 256, 0.1, (200, 100)
#: --quick: rows kept (a few batches) from each split.
QUICK_TRAIN, QUICK_TEST = 4 * BATCH_SIZE, 500


def run(data: str | os.PathLike[str] | None = None, epochs: int | None = None,
        quick: bool = False, json_path: str | os.PathLike[str] | None = None,
        bench: bool = True, progress: bool = True, seed: int = 0,
        out_dir: str | os.PathLike[str] = "out", threads: int | None = 1) -> dict[str, Any]:
    """Train on adult.data, evaluate on adult.test, write figures and the exported model
    under ``out_dir``, optionally JSON to ``json_path``; returns the record.
    ``threads`` sets torch's intra-op threads for the run (``None``: leave as is)."""
    epochs = epochs_or(epochs, EPOCHS)
    with torch_threads(threads):
        return _run(data, epochs, quick, json_path, bench, progress, seed, Path(out_dir))


def _run(data: Any, epochs: int, quick: bool, json_path: Any, bench: bool, progress: bool,
         seed: int, out: Path) -> dict[str, Any]:
    wall_start = time.perf_counter()
    path = find_adult(data)
    train, test = load_adult(path, "train"), load_adult(path, "test")
    if quick:
        train, test = train.iloc[:QUICK_TRAIN], test.iloc[:QUICK_TEST]
    torch.manual_seed(seed)
    dls = TabularDataLoaders.from_df(train, list(ADULT_CAT_NAMES), list(ADULT_CONT_NAMES),
                                     "salary", valid_df=test, bs=BATCH_SIZE, seed=seed,
                                     device="cpu")
    print(f"adult: {len(train)} train rows (adult.data), {len(test)} test rows (adult.test) "
          f"from {path}; {epochs} epoch(s), batch {BATCH_SIZE}, torch threads "
          f"{torch.get_num_threads()}", flush=True)
    emb = dict(zip(dls.proc.cat_names, dls.proc.emb_szs(), strict=True))
    print("embeddings    " + ", ".join(f"{k} {n}->{d}" for k, (n, d) in emb.items()))
    learn = tabular_learner(dls, layers=LAYERS, wd=WD, path=out, quiet=not progress)
    out.mkdir(parents=True, exist_ok=True)
    figures = [out / "adult_lr_find.png", out / "adult_loss.png"]
    suggested = learn.lr_find(num_it=20 if quick else 100, plot=figures[0])
    print(f"lr_find       valley suggestion {suggested.valley:.2e} (fitting at lr_max {LR:.0e})")

    start = time.perf_counter()
    learn.fit_one_cycle(epochs, LR)
    train_seconds = time.perf_counter() - start
    loss, accuracy = learn.validate()
    learn.recorder.plot_loss(figures[1])
    majority = dls.proc.y_classes[int(torch.bincount(dls.train.dataset[2]).argmax())]
    baseline = float((test["salary"] == majority).mean())

    # The exported file carries the preprocessing: raw rows in, the same predictions out.
    export = learn.export(out / "adult_model.pth")
    raw = test.drop(columns="salary")
    labels, probs = load_tabular(export).predict(raw)
    same_labels, same_probs = learn.predict(raw)
    if not ((labels == same_labels).all() and torch.allclose(probs, same_probs, atol=1e-6)):
        raise RuntimeError(f"{export}: the reloaded model predicts the raw test rows "
                           "differently from the trained one")
    reloaded_acc = float((labels == test["salary"].to_numpy()).mean())
    row_label, row_probs = learn.predict(test.iloc[0])
    wall_seconds = time.perf_counter() - wall_start

    print(f"test accuracy {accuracy:.4f}  (test loss {loss:.4f}; always '{majority}': "
          f"{baseline:.4f})")
    print(f"reloaded      {export}: accuracy {reloaded_acc:.4f} on the raw test rows; "
          f"first row -> {row_label} (p={float(row_probs.max()):.3f}), "
          f"true {test['salary'].iloc[0]}")
    print(f"train time    {train_seconds:.1f} s, {train_seconds / epochs:.2f} s per epoch "
          f"(wall {wall_seconds:.1f} s with loading, lr_find, evaluation and export)")
    print("figures       " + ", ".join(str(f) for f in figures), flush=True)
    result = {"demo": "adult", "accuracy": accuracy, "baseline_accuracy": baseline,
              "reloaded_accuracy": reloaded_acc, "test_loss": loss, "epochs": epochs,
              "train_seconds": train_seconds, "epoch_seconds": train_seconds / epochs,
              "n_train": len(train), "n_test": len(test), "quick": quick}
    write_json(result, json_path)
    if bench:
        run_bench("tabular", quick, path)  # the files the demo read
    return result


def cli_main(args: Any) -> dict[str, Any]:
    """``fastext run adult``: :func:`run` with the command line's arguments."""
    return run(data=args.data, epochs=args.epochs, quick=args.quick, json_path=args.json,
               bench=not args.bench_off, out_dir=args.out)
