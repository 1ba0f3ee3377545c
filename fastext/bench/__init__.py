"""Benchmarks: fastext against its stock-PyTorch counterparts, timed in one process.

Usage::

    python -m fastext.bench [SUITE ...] [--device cpu|cuda] [--json PATH] [--plot PATH]
                            [--reps N] [--quick] [--data DIR]

Each suite is a module registered in :data:`SUITES` that exposes ``NAME`` and
``run(device, reps, quick, progress, warmup) -> rows`` (called with keywords; ``warmup`` is
the number of untimed rounds), and optionally:

* ``DEFAULT_REPS``: ``{"cpu": N, "cuda": N}``, its repetitions when ``--reps`` is not given;
* ``missing(device, quick) -> str | None``: what it lacks to run here (a package, a data
  set), or ``None``. A suite named on the command line that lacks something is refused with
  that message before anything runs; a run naming no suite skips it (with a note);
* ``skip_by_default(device) -> str | None``: why a run naming no suite leaves it out although
  it could run (``tabular`` without fastai), or ``None``;
* ``DATA``: the data set it reads (``train``: MNIST, ``tabular``: UCI Adult). Such a suite
  takes ``data`` (``--data DIR``, or ``None`` for the usual search) in ``run`` and
  ``missing``.

Implementations of one case are timed alternating (see :mod:`fastext.bench.timing`) and
reported next to a memory bandwidth measured in the same run. On the CPU, glibc is told to
reuse freed blocks (``malloc`` in the JSON; see :func:`fastext.bench.timing.reuse_freed_memory`).

``--json`` writes one object per suite::

    {"suite": "optim", "device": "cpu", "torch": "...", "stream_gbs": 12.3,
     "machine": {...}, "build": fastext.build_info(), "malloc": "glibc: ...",
     "date": "2025-01-01T12:00:00+00:00", "reps": 10, "warmup": 3, "quick": false,
     "rows": [{"case": "AdamW/resnet50", "impl": "fastext", "ms": 1.2, "gbs": 600.0}, ...]}

``reps`` and ``warmup`` are what the suite was called with (a suite may time parts of a case
with fewer); ``quick: true`` marks a smoke test at 1/50 sizes, not a measurement. Results
written before these three keys existed lack them.

When a single suite runs the file holds that object; when several run it holds
``{"suites": [object, ...]}``.
"""

from __future__ import annotations

import argparse
import importlib
import importlib.util
import json
import sys
from datetime import datetime
from pathlib import Path
from types import ModuleType

import torch

import fastext

from .._argtypes import UsageError, check_output_file, int_at_least
from .._messages import one_line  # noqa: F401  (the suites' missing() use bench.one_line)
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
QUICK_REPS = 3  # --quick caps a suite's default reps at this (an explicit --reps is kept)


def load_suite(name: str) -> ModuleType:
    """Import the module of suite ``name`` (a key of :data:`SUITES`)."""
    return importlib.import_module(SUITES[name])


def importable(name: str) -> bool:
    """Whether package ``name`` can be imported, without importing it."""
    try:
        return importlib.util.find_spec(name) is not None
    except (ImportError, ValueError):  # ValueError: sys.modules[name] is None (blocked)
        return False


def reads_data(name: str) -> bool:
    """Whether suite ``name`` reads a data set (declares ``DATA``), so takes ``--data``
    (``False`` where its module cannot be imported: :func:`cannot_run` says why)."""
    try:
        return hasattr(load_suite(name), "DATA")
    except ImportError:
        return False


def _data_kwargs(name: str, data: str | None) -> dict:
    return {"data": data} if data is not None and reads_data(name) else {}


def cannot_run(name: str, device: torch.device, quick: bool,
               data: str | None = None) -> str | None:
    """Why suite ``name`` cannot run here (its ``missing()``; an import error of its module
    counts too), or ``None``. ``data`` (``--data``) goes to a suite that reads a data set."""
    try:
        suite = load_suite(name)
    except ImportError as e:
        return f"cannot import {SUITES[name]}: {e}"
    if hasattr(suite, "missing"):
        return suite.missing(device, quick, **_data_kwargs(name, data))
    return None


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m fastext.bench", description=__doc__.split("\n")[0])
    p.add_argument("suites", nargs="*", metavar="SUITE",
                   help=f"suites to run (default: all available): {', '.join(SUITES)}")
    p.add_argument("--device", choices=("cpu", "cuda"), default="cpu")
    p.add_argument("--json", metavar="PATH", help="write the results as JSON")
    p.add_argument("--plot", metavar="PATH", help="write a PNG bar chart of fastext's speed-ups")
    p.add_argument("--reps", type=int_at_least(1), default=None,
                   help="timed repetitions per implementation (default: the suite's own: "
                        f"train 1, tabular 5, the others cpu {DEFAULT_REPS['cpu']} / cuda "
                        f"{DEFAULT_REPS['cuda']}; --quick caps the default at {QUICK_REPS})")
    p.add_argument("--quick", action="store_true",
                   help="1/50 sizes and few reps: a smoke test, not a measurement")
    p.add_argument("--data", metavar="DIR",
                   help="where the suites that read a data set find it (train: MNIST, "
                        "tabular: UCI Adult): the data set's folder, or a folder holding "
                        "mnist/ and adult/ (default: $FASTEXT_DATA, data/, ../shared/data)")
    return p


def run_suite(name: str, device: torch.device, reps: int, quick: bool,
              stream_gbs: float, malloc: str | None = None, data: str | None = None) -> dict:
    """Run one suite and return its result object (the JSON shape documented above);
    ``data`` (``--data``) goes to a suite that reads a data set."""
    progress = Progress(name)
    warmup = 1 if quick else 3
    try:
        rows = load_suite(name).run(device=device, reps=reps, quick=quick, progress=progress,
                                    warmup=warmup, **_data_kwargs(name, data))
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
        "reps": reps,
        "warmup": warmup,
        "quick": quick,
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
    device = torch.device(args.device)
    # What would fail only after every suite ran (and lose the run) is checked first.
    if args.plot:
        try:
            import matplotlib  # noqa: F401
        except ImportError as e:
            parser.error(f"--plot needs matplotlib ({e})")
    for option, path in (("--json", args.json), ("--plot", args.plot)):
        if path:
            try:
                check_output_file(path, option)
            except UsageError as e:
                parser.error(str(e))

    names = list(args.suites)
    if args.data is not None and names and not any(reads_data(n) for n in names):
        parser.error(f"--data: no suite named reads a data set (those that do: "
                     f"{', '.join(n for n in SUITES if reads_data(n))})")
    for name in names:
        why = cannot_run(name, device, args.quick, args.data)
        if why:
            parser.error(f"suite {name} cannot run here: {why}")
    if not names:  # all suites that can run on this device
        for name in SUITES:
            why = cannot_run(name, device, args.quick, args.data) or getattr(
                load_suite(name), "skip_by_default", lambda d: None)(device)
            if why:
                print(f"fastext.bench: skipping {name}: {why}", file=sys.stderr)
            else:
                names.append(name)

    # CPU tensors come from glibc: keep its freed blocks for reuse (see reuse_freed_memory).
    malloc = reuse_freed_memory() if device.type == "cpu" else None

    # One bandwidth for all suites of the run; quick mode uses small arrays (cache-resident,
    # so the number is only a placeholder).
    stream_gbs = measure_bandwidth(device, numel=2**20 if args.quick else None)

    results = []
    for name in names:
        # A suite may set its own DEFAULT_REPS (whole training runs need fewer).
        reps = args.reps or getattr(load_suite(name), "DEFAULT_REPS", DEFAULT_REPS)[device.type]
        if args.quick and args.reps is None:  # cap the default, not what the user asked for
            reps = min(reps, QUICK_REPS)
        result = run_suite(name, device, reps, args.quick, stream_gbs, malloc, args.data)
        print(format_table(result), end="\n\n", flush=True)
        results.append(result)

    if args.json:
        doc = results[0] if len(results) == 1 else {"suites": results}
        Path(args.json).parent.mkdir(parents=True, exist_ok=True)
        with open(args.json, "w") as f:
            json.dump(doc, f, indent=2)
            f.write("\n")
    if args.plot:
        try:
            write_plot(results, args.plot)
        except ValueError as e:  # e.g. tabular without fastai: fastext alone, no ratio
            print(f"fastext.bench: --plot: {e}; no plot written", file=sys.stderr)
    return 0
