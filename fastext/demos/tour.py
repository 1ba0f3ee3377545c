"""The main job (``make demo``): the course end to end at demo size, then the benchmarks.

1. ``mnist``: the LR range test (plot) and ``fit_one_cycle`` with the fused AdamW on the full
   MNIST training set, test accuracy (:mod:`fastext.demos.mnist`).
2. A tour of the course's tasks on the shipped real data, each shortened to a few epochs
   (:data:`TOUR`; their own figures, at full length, come from ``fastext run NAME``):
   multi-label MNIST mosaics, Grad-CAM heat maps, CamVid U-Net segmentation, Adult tabular,
   MovieLens collaborative filtering, a Shakespeare language model, super-resolution with the
   fused feature loss, and the universal approximation tool.
3. The benchmark suites against stock PyTorch (:data:`BENCH`), their tables printed.

Every figure written is listed at the end, with each step's time. ``--quick`` runs each step
on a few batches (for the tests). ``--data DIR`` (a data root holding each data set's folder)
goes to every step, ``--weights FILE`` to the steps that take it (superres); ``fastext run``
refuses ``--epochs`` for the tour, since each step has its own count in :data:`TOUR`.
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path
from typing import Any

from . import REGISTRY, TAKE_WEIGHTS, load
from ._common import write_json

__all__ = ["BENCH", "TOUR", "cli_main", "figures_of", "run"]

#: (demo, epochs) of the tour, in order; ``None`` keeps the demo's own (short) default.
TOUR: list[tuple[str, int | None]] = [
    ("mnist", 1),
    ("multilabel", 1),
    ("gradcam", 1),
    ("segment", 4),
    ("adult", 2),
    ("movielens", 2),
    ("shakespeare-lm", 1),
    ("superres", 4),
    ("uat", 20),
]

#: Benchmark suites run after the tour, and their repetitions.
BENCH: list[str] = ["optim", "amp", "bn_relu", "feature_loss"]
BENCH_REPS = 5

_FIGURE_SUFFIXES = (".png", ".csv")


def _files(folder: Path) -> dict[str, float]:
    return {str(f): f.stat().st_mtime for f in folder.rglob("*")
            if f.is_file() and f.suffix in _FIGURE_SUFFIXES} if folder.exists() else {}


def figures_of(record: Any) -> list[str]:
    """Every path to a figure (PNG / CSV) found anywhere in a demo's record."""
    found: list[str] = []
    if isinstance(record, dict):
        for v in record.values():
            found += figures_of(v)
    elif isinstance(record, list | tuple):
        for v in record:
            found += figures_of(v)
    elif isinstance(record, str | Path) and str(record).endswith(_FIGURE_SUFFIXES):
        found.append(str(record))
    return found


def run(data: Any = None, quick: bool = False, out_dir: Any = "out", json_path: Any = None,
        bench: bool = True, weights: Any = None) -> dict[str, Any]:
    """Runs the tour and the benchmarks; returns ``{"steps": [...], "figures": [...]}``.
    ``data`` (a data root) goes to every step, ``weights`` to those in
    :data:`~fastext.demos.TAKE_WEIGHTS`."""
    wall = time.perf_counter()
    out = Path(out_dir)
    steps: list[dict[str, Any]] = []
    for name, epochs in TOUR:
        if name not in REGISTRY:
            continue
        print(f"\n==== tour: {name} " + "=" * max(0, 60 - len(name)), flush=True)
        args = argparse.Namespace(data=data, epochs=epochs, quick=quick,
                                  json=str(out / "tour" / f"{name}.json"), out=str(out),
                                  bench_off=True,
                                  weights=weights if name in TAKE_WEIGHTS else None)
        t0, before = time.perf_counter(), _files(out)
        record = load(name)(args) or {}
        # the paths in its record, and whatever else it wrote under out_dir
        written = [f for f, m in _files(out).items() if before.get(f) != m]
        figs = list(dict.fromkeys(figures_of(record) + sorted(written)))
        steps.append({"demo": name, "epochs": epochs, "seconds": round(time.perf_counter() - t0, 1),
                      "figures": figs, "record": record})
    if bench:
        from .. import bench as bench_mod

        for suite in BENCH:
            print(f"\n==== benchmark: {suite} " + "=" * max(0, 55 - len(suite)), flush=True)
            t0 = time.perf_counter()
            argv = [suite, "--quick"] if quick else [suite, "--reps", str(BENCH_REPS)]
            rc = bench_mod.main(argv + ["--json", str(out / "tour" / f"bench-{suite}.json")])
            steps.append({"bench": suite, "rc": rc,
                          "seconds": round(time.perf_counter() - t0, 1), "figures": []})
    figures = [f for s in steps for f in s["figures"]]
    total = time.perf_counter() - wall
    print("\n==== main job done " + "=" * 45)
    for s in steps:
        print(f"  {s.get('demo') or 'bench ' + s['bench']:<22} {s['seconds']:7.1f} s")
    print(f"  {'total':<22} {total:7.1f} s")
    print("figures written:")
    for f in figures:
        print(f"  {f}")
    result = {"steps": [{k: v for k, v in s.items() if k != "record"} for s in steps],
              "figures": figures, "seconds": round(total, 1)}
    write_json(result, json_path)
    return result


def cli_main(args: Any) -> dict[str, Any]:
    """``fastext run tour``: the main job (``args.epochs`` is refused by the command line,
    see :data:`~fastext.demos.FIXED_EPOCHS`)."""
    return run(data=args.data, quick=args.quick, out_dir=args.out, json_path=args.json,
               bench=not args.bench_off, weights=getattr(args, "weights", None))
