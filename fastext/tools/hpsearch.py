"""Random-forest hyper-parameter search: EI from a forest's spread, importances, partial dependence.

The course's suggestion, made a tool: after a few random trials, fit a random forest to
(hyper-parameters -> validation loss); it tells which hyper-parameters matter (feature
importances), how the loss depends on each (partial dependence), and, from the disagreement
of its trees, where to look next (expected improvement over many random candidates).

Python::

    from fastext.tools.hpsearch import Choice, Int, LogUniform, Space, Uniform, search
    space = Space(lr=LogUniform(1e-5, 1), bs=Choice([32, 64, 128]), epochs=Int(1, 3))
    result = search(objective, space, n_trials=24, n_init=8, log="trials.json")
    result.best.params, result.importances()
    plot_partial_dependence(result, "pd.png")

Command line (the built-in objective is an MLP on MNIST, see
:mod:`fastext.tools.hp.mnist_objective`; rerunning the same command resumes from the log)::

    fastext hpsearch --trials 24 --out out/hpsearch
    fastext hpsearch --objective mypkg.tuning:objective --space space.json --log trials.json

>>> r = search(lambda p: (p["lr"] - 1e-2) ** 2, Space(lr=LogUniform(1e-4, 1)), n_trials=5,
...            n_init=3, progress=False)
>>> r.best.params["lr"] > 0, len(r.trials)
(True, 5)
"""

from __future__ import annotations

import argparse
import importlib
import json
import os
import sys
from pathlib import Path
from typing import Any

from .._argtypes import (
    UsageError,
    check_output_dir,
    check_output_file,
    import_object,
    int_at_least,
)
from ..data.files import DataError
from .hp.report import partial_dependences, plot_history, plot_partial_dependence
from .hp.search import METHODS, SearchResult, run_trial, search
from .hp.space import Choice, Int, LogUniform, Param, Space, Uniform
from .hp.surrogate import expected_improvement, fit_forest, forest_mean_std, propose
from .hp.trials import Trial, TrialLog

__all__ = [
    "METHODS", "Choice", "Int", "LogUniform", "Param", "SearchResult", "Space", "Trial",
    "TrialLog", "Uniform", "add_arguments", "cli_main", "expected_improvement", "fit_forest",
    "forest_mean_std", "load_objective", "load_space", "partial_dependences", "plot_history",
    "plot_partial_dependence", "propose", "run_trial", "search",
]

BUILTIN = "mnist-mlp"
#: The built-in objective's default numbers of training and held-out images.
N_TRAIN, N_VALID = 8000, 2000


def load_space(spec: str | os.PathLike[str] | dict[str, Any]) -> Space:
    """A :class:`Space` from a dict, an inline JSON object, or a JSON file holding one.

    >>> load_space('{"lr": {"type": "log", "low": 1e-4, "high": 1}}').names
    ['lr']
    """
    if isinstance(spec, dict):
        return Space.from_dict(spec)
    text = str(spec)
    if not text.lstrip().startswith("{"):
        path = Path(text)
        if not path.is_file():
            raise FileNotFoundError(f"no space file {path}")
        text = path.read_text()
    try:
        return Space.from_dict(json.loads(text))
    except json.JSONDecodeError as e:
        raise ValueError(f"the space is not valid JSON: {e}") from None


def load_objective(name: str, data: str | None = None, n_train: int = N_TRAIN,
                   n_valid: int = N_VALID) -> Any:
    """The built-in ``mnist-mlp`` objective, or ``package.module:callable``.

    Raises:
        ValueError: the name is neither; ImportError/AttributeError: it cannot be imported.
    """
    if name == BUILTIN:
        from .hp.mnist_objective import MnistMLPObjective

        return MnistMLPObjective(data, n_train=n_train, n_valid=n_valid)
    if ":" not in name:
        raise ValueError(f"objective must be {BUILTIN!r} or 'package.module:callable', "
                         f"got {name!r}")
    module, attr = name.split(":", 1)
    obj = getattr(importlib.import_module(module), attr)
    if not callable(obj):
        raise TypeError(f"{name} is not callable")
    return obj


def add_arguments(p: argparse.ArgumentParser) -> None:
    """The ``fastext hpsearch`` options; counts out of range are refused while parsing."""
    p.add_argument("--objective", default=BUILTIN,
                   help=f"{BUILTIN!r} (an MLP on MNIST, the default) or 'pkg.module:callable' "
                        "taking a dict of hyper-parameters and returning a loss")
    p.add_argument("--space", metavar="JSON",
                   help="search space: a JSON file or inline JSON object, e.g. "
                        "'{\"lr\": {\"type\": \"log\", \"low\": 1e-5, \"high\": 1}}' "
                        "(types log, uniform, int, choice); default the objective's own")
    p.add_argument("--trials", type=int_at_least(1), default=24, metavar="N",
                   help="total trials, at least 1 (default 24)")
    # the forest is fitted to the random trials: it needs two
    p.add_argument("--init", type=int_at_least(2), default=6, metavar="N",
                   help="random trials first, at least 2 (default 6)")
    p.add_argument("--method", choices=METHODS, default="rf",
                   help="rf: random-forest EI after the initial trials; random: random only")
    p.add_argument("--seed", type=int_at_least(0), default=0,
                   help="seed of the random trials and the forests (a non-negative integer)")
    p.add_argument("--candidates", type=int_at_least(1), default=5000, metavar="N",
                   help="candidates scored by EI per proposal, at least 1 (default 5000)")
    p.add_argument("--log", metavar="PATH",
                   help="trial log to resume from and update (default OUT/hpsearch_log.json)")
    p.add_argument("--out", metavar="DIR", default="out/hpsearch",
                   help="folder for the log, the summary and the figures")
    # None unless given, so that a custom objective can refuse them (it reads its own data)
    p.add_argument("--data", metavar="DIR", help="MNIST directory for the built-in objective")
    p.add_argument("--n-train", type=int_at_least(1), default=None, metavar="N",
                   help=f"training images for the built-in objective (default {N_TRAIN})")
    p.add_argument("--n-valid", type=int_at_least(1), default=None, metavar="N",
                   help=f"held-out training images it is scored on (default {N_VALID})")


def _cli_space(spec: str) -> Space:
    """``--space`` parsed; a missing or unreadable file, text that is not JSON or JSON that
    is not a space is a :class:`UsageError` naming it (only the parsing of the user's text
    is guarded, so a bug elsewhere keeps its traceback)."""
    try:
        return load_space(spec)
    except (OSError, ValueError, TypeError) as e:  # ValueError: also JSON and UnicodeDecode
        shown = spec if len(spec) <= 60 else spec[:57] + "..."
        raise UsageError(f"--space {shown}: {e}") from None


def _cli_objective(args: argparse.Namespace) -> Any:
    """``--objective`` loaded; a name that is neither the built-in one nor importable is a
    :class:`UsageError`, and so is asking the built-in one for more images than its data
    holds (its own check)."""
    given = [name for name, value in (("--data", args.data), ("--n-train", args.n_train),
                                      ("--n-valid", args.n_valid)) if value is not None]
    if args.objective != BUILTIN:
        if given:  # they would be silently ignored: the objective reads its own data
            raise UsageError(f"{', '.join(given)}: only for the built-in objective {BUILTIN!r}, "
                             f"not --objective {args.objective}")
        obj = import_object(args.objective, "--objective")
        if not callable(obj):
            raise UsageError(f"--objective {args.objective} is not callable")
        return obj
    n_train = N_TRAIN if args.n_train is None else args.n_train
    n_valid = N_VALID if args.n_valid is None else args.n_valid
    try:
        return load_objective(BUILTIN, args.data, n_train, n_valid)
    except DataError:  # a ValueError too, and already one line naming the file
        raise
    except ValueError as e:  # more images asked for than the training split holds
        raise UsageError(f"--n-train {n_train} + --n-valid {n_valid}: {e}") from None


def _open_log(log: Path, space: Space, args: argparse.Namespace) -> TrialLog:
    """The log, read once: an existing log of another search (or not a log) is refused
    before the objective runs; :meth:`TrialLog.open` documents ``ValueError`` for that, and
    only that call is guarded."""
    try:
        return TrialLog.open(log, space, args.method, args.seed)
    except ValueError as e:
        raise UsageError(f"--log {log}: {e}") from None


def cli_main(args: argparse.Namespace) -> int:
    """Runs the search, prints the best configuration and the importances, writes
    ``hpsearch_summary.json``, ``hpsearch_partial_dependence.png`` and ``hpsearch_history.png``
    under ``--out``.

    Raises:
        UsageError: a bad ``--space``, ``--objective``, ``--out`` or ``--log``, or more images
            than the data holds (``fastext hpsearch`` prints it in one line, exit code 2).
        FileNotFoundError, DataError: no MNIST data, or an unreadable file.
    """
    out = Path(args.out)
    log = Path(args.log) if args.log else out / "hpsearch_log.json"
    # the cheap checks first: the built-in objective loads MNIST
    check_output_dir(out, "--out")
    check_output_file(log, "--log")
    space = _cli_space(args.space) if args.space is not None else None
    objective = _cli_objective(args)
    if space is None:
        if not isinstance(getattr(objective, "space", None), Space):
            print(f"fastext hpsearch: --objective {args.objective} has no .space; pass --space",
                  file=sys.stderr)
            return 2
        space = objective.space
    book = _open_log(log, space, args)
    print(f"hpsearch: {args.method}, {args.trials} trials ({args.init} random first), "
          f"seed {args.seed}, log {log}\n  space {space}", flush=True)
    result = search(objective, space, n_trials=args.trials, n_init=args.init,
                    method=args.method, seed=args.seed, log=book, n_candidates=args.candidates)
    if not result.finished:
        print("hpsearch: no trial finished (all failed or diverged); see the log")
        return 1
    summary = result.summary()
    print(f"best value    {summary['best_value']:.4f} (trial {summary['best_trial']}) "
          f"{summary['best_info']}")
    print("best config   " + json.dumps(summary["best_params"]))
    if summary["importances"]:
        print("importances   " + ", ".join(f"{k} {v:.2f}"
                                           for k, v in summary["importances"].items()))
    figures = {}
    if len(result.finished) >= 2:
        figures["partial_dependence"] = str(plot_partial_dependence(
            result, out / "hpsearch_partial_dependence.png"))
    figures["history"] = str(plot_history([result], out / "hpsearch_history.png"))
    summary["figures"] = figures
    (out / "hpsearch_summary.json").write_text(json.dumps(summary, indent=2) + "\n")
    print("figures       " + ", ".join(figures.values()))
    return 0
