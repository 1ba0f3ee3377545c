"""Benchmarks: fastext against its stock-PyTorch counterparts, timed in one process.

Usage::

    python -m fastext.bench [SUITE ...] [--device cpu|cuda] [--json PATH] [--plot PATH]
                            [--reps N] [--quick]

Each suite is a module registered in :data:`SUITES` that exposes ``NAME`` and
``run(device, reps, quick, progress) -> rows`` (and optionally ``available(device) -> bool``).
Implementations of one case are timed alternating (see :mod:`fastext.bench.timing`) and
reported next to a memory bandwidth measured in the same run. On the CPU, glibc is told to
reuse freed blocks (``malloc`` in the JSON; see :func:`fastext.bench.timing.reuse_freed_memory`).

``--json`` writes one object per suite::

    {"suite": "optim", "device": "cpu", "torch": "...", "stream_gbs": 12.3,
     "machine": {...}, "build": fastext.build_info(), "malloc": "glibc: ...",
     "date": "2025-01-01T12:00:00+00:00",
     "rows": [{"case": "AdamW/resnet50", "impl": "fastext", "ms": 1.2, "gbs": 600.0}, ...]}

When a single suite runs the file holds that object; when several run it holds
``{"suites": [object, ...]}``.
"""

from __future__ import annotations

import argparse
import importlib
import json
import sys
from datetime import datetime
from types import ModuleType

import torch

import fastext

from .report import Progress, format_table, machine_info, write_plot
from .timing import measure_bandwidth, reuse_freed_memory

#: Suite name -> module implementing it. Imported lazily so that a suite's heavy
#: dependencies (torchvision, datasets) are only loaded when it runs.
SUITES: dict[str, str] = {
    "optim": "fastext.bench.optim",
    "amp": "fastext.bench.amp",
    "train": "fastext.bench.train",
    "bn_relu": "fastext.bench.bn_relu",
    "feature_loss": "fastext.bench.feature_loss",
    "tabular": "fastext.bench.tabular",
}

DEFAULT_REPS = {"cpu": 10, "cuda": 50}  # CUDA steps are short, so more reps cost little
QUICK_REPS = 3


def load_suite(name: str) -> ModuleType:
    """Import the module of suite ``name`` (a key of :data:`SUITES`)."""
    return importlib.import_module(SUITES[name])


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m fastext.bench", description=__doc__.split("\n")[0])
    p.add_argument("suites", nargs="*", metavar="SUITE",
                   help=f"suites to run (default: all available): {', '.join(SUITES)}")
    p.add_argument("--device", choices=("cpu", "cuda"), default="cpu")
    p.add_argument("--json", metavar="PATH", help="write the results as JSON")
    p.add_argument("--plot", metavar="PATH", help="write a PNG bar chart of fastext's speed-ups")
    p.add_argument("--reps", type=int, default=None,
                   help=f"timed repetitions per implementation (default {DEFAULT_REPS})")
    p.add_argument("--quick", action="store_true",
                   help="1/50 sizes and few reps: a smoke test, not a measurement")
    return p


def run_suite(name: str, device: torch.device, reps: int, quick: bool,
              stream_gbs: float, malloc: str | None = None) -> dict:
    """Run one suite and return its result object (the JSON shape documented above)."""
    progress = Progress(name)
    try:
        rows = load_suite(name).run(device=device, reps=reps, quick=quick, progress=progress,
                                    warmup=1 if quick else 3)
    finally:
        progress.close()
    return {
        "suite": name,
        "device": device.type,
        "torch": torch.__version__,
        "stream_gbs": stream_gbs,
        "machine": machine_info(device),
        "build": fastext.build_info(),
        "malloc": malloc,
        "date": datetime.now().astimezone().isoformat(timespec="seconds"),
        "rows": rows,
    }


def main(argv: list[str] | None = None) -> int:
    """Command-line entry point; returns the process exit status."""
    parser = _parser()
    args = parser.parse_args(argv)
    unknown = [s for s in args.suites if s not in SUITES]
    if unknown:
        parser.error(f"unknown suite(s) {', '.join(unknown)}; known: {', '.join(SUITES)}")
    if args.device == "cuda" and not torch.cuda.is_available():
        print("fastext.bench: --device cuda but CUDA is not available", file=sys.stderr)
        return 2
    if args.reps is not None and args.reps < 1:
        parser.error("--reps must be >= 1")
    device = torch.device(args.device)

    names = args.suites
    if not names:  # all suites that can run on this device
        names = [s for s in SUITES
                 if getattr(load_suite(s), "available", lambda d: True)(device)]

    # CPU tensors come from glibc: keep its freed blocks for reuse (see reuse_freed_memory).
    malloc = reuse_freed_memory() if device.type == "cpu" else None

    # One bandwidth for all suites of the run; quick mode uses small arrays (cache-resident,
    # so the number is only a placeholder).
    stream_gbs = measure_bandwidth(device, numel=2**20 if args.quick else None)

    results = []
    for name in names:
        # A suite may set its own DEFAULT_REPS (whole training runs need fewer).
        reps = args.reps or getattr(load_suite(name), "DEFAULT_REPS", DEFAULT_REPS)[device.type]
        if args.quick:
            reps = min(reps, QUICK_REPS)
        result = run_suite(name, device, reps, args.quick, stream_gbs, malloc)
        print(format_table(result), end="\n\n", flush=True)
        results.append(result)

    if args.json:
        doc = results[0] if len(results) == 1 else {"suites": results}
        with open(args.json, "w") as f:
            json.dump(doc, f, indent=2)
            f.write("\n")
    if args.plot:
        write_plot(results, args.plot)
    return 0
