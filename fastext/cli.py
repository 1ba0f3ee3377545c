"""The ``fastext`` command line: ``fastext info``, ``fastext bench ...``, ``fastext run NAME``.

Installed as the ``fastext`` console script and runnable as ``python -m fastext``.

>>> import tempfile
>>> from fastext.cli import main
>>> main(["run", "mnist", "--quick", "--no-bench", "--out", tempfile.mkdtemp()])
... # doctest: +SKIP
mnist: ...
0
"""

from __future__ import annotations

import argparse
import importlib
import importlib.util
import json
import sys
from collections.abc import Callable
from typing import Any

from ._argtypes import int_at_least

__all__ = ["TOOLS", "main"]


#: Tool name -> module exposing ``add_arguments(parser)`` and ``cli_main(args) -> int``
#: (``fastext hpsearch ...``); tools missing from this build are not offered, and a tool whose
#: optional dependencies are not installed is offered as a stub that names them.
TOOLS: dict[str, str] = {
    "hpsearch": "fastext.tools.hpsearch",
    "landscape": "fastext.tools.landscape",
    "uat": "fastext.tools.uat",
}

#: The extra that installs the tools' dependencies (pyproject.toml), and the pip names of the
#: modules they import where those differ.
TOOLS_EXTRA = "tools"
_PIP_NAMES = {"sklearn": "scikit-learn"}


def _demos() -> list[str]:
    from .demos import available

    return available()


def _tools() -> dict[str, str]:
    return {name: mod for name, mod in TOOLS.items() if _module_exists(mod)}


def _module_exists(mod: str) -> bool:
    try:
        return importlib.util.find_spec(mod) is not None
    except ModuleNotFoundError:  # its parent package is missing
        return False


def _info(args: argparse.Namespace) -> int:
    import fastext

    print(json.dumps(fastext.build_info(), indent=2, sort_keys=True))
    return 0


def _bench(rest: list[str]) -> int:
    try:
        from . import bench
    except ImportError as e:
        print(f"fastext bench is not available in this build: {e}", file=sys.stderr)
        return 1
    return int(bench.main(rest) or 0)


def _one_line_errors(prefix: str, work: Callable[[], int | None]) -> int:
    """``work()``'s exit code; its refusals (:class:`~fastext._argtypes.UsageError`), missing
    data and unreadable data files are one line on stderr (``PREFIX: ...``) and exit code 2.
    Nothing broader is caught: any other exception is a bug and keeps its traceback."""
    from ._argtypes import UsageError
    from ._messages import one_line
    from .data import DataError

    try:
        return int(work() or 0)
    except (FileNotFoundError, DataError, UsageError) as e:
        print(f"{prefix}: {one_line(e)}", file=sys.stderr)
        return 2


def _run(args: argparse.Namespace) -> int:
    """Runs the demo; an argument it does not take, an output path it could not write, missing
    data or an unreadable data file is one line on stderr (``fastext run NAME: ...``) and
    exit code 2, not a traceback."""
    return _one_line_errors(f"fastext run {args.name}", lambda: _run_demo(args))


def _run_demo(args: argparse.Namespace) -> None:
    from ._argtypes import UsageError, check_output_dir, check_output_file
    from .demos import FIXED_EPOCHS, NO_DATA, TAKE_WEIGHTS, load

    if args.weights is not None and args.name not in TAKE_WEIGHTS:
        raise UsageError(f"--weights is used only by {', '.join(sorted(TAKE_WEIGHTS))}")
    if args.epochs is not None and args.name in FIXED_EPOCHS:
        raise UsageError(f"--epochs is not taken: {FIXED_EPOCHS[args.name]}")
    if args.data is not None and args.name in NO_DATA:
        raise UsageError(f"--data is not taken: {NO_DATA[args.name]}")
    # every demo writes its figures under --out and the record to --json at the very end: a
    # path it cannot write would otherwise surface only after the whole run
    check_output_dir(args.out, "--out")
    if args.json is not None:
        check_output_file(args.json, "--json")
    load(args.name)(args)


def _tool(name: str, mod: str) -> Callable[[argparse.Namespace], int]:
    """``fastext NAME``: the tool's ``cli_main``, its errors reported as ``fastext run``
    reports them (:func:`_one_line_errors`)."""
    return lambda args: _one_line_errors(f"fastext {name}",
                                         lambda: importlib.import_module(mod).cli_main(args))


def _unavailable(why: str) -> Callable[[argparse.Namespace], int]:
    def run(args: argparse.Namespace) -> int:
        print(why, file=sys.stderr)
        return 1

    return run


def _add_tool(sub: Any, name: str, mod: str) -> None:
    """Subcommand ``name`` from its module; if the module cannot be imported because a
    third-party package is missing, a stub that names the package when invoked (whatever
    its arguments), so that the other commands still work."""
    try:
        module = importlib.import_module(mod)
    except ImportError as e:
        package = (e.name or "").split(".")[0]
        if package == "fastext":
            raise  # not a missing dependency: a bug in fastext itself
        pip = _PIP_NAMES.get(package, package)
        extra = f"the fastext[{TOOLS_EXTRA}] extra installs the tools' dependencies"
        why = (f"fastext {name} needs {pip}, which is not installed ({e}): pip install {pip}; "
               f"{extra}" if pip else f"fastext {name} is not available ({e}); {extra}")
        tool = sub.add_parser(name, help=f"(unavailable: needs {pip or 'a missing package'})",
                              add_help=False)
        tool.set_defaults(func=_unavailable(why), unavailable=True)
        return
    tool = sub.add_parser(name, help=(module.__doc__ or name).strip().splitlines()[0])
    module.add_arguments(tool)
    tool.set_defaults(func=_tool(name, mod))


def _parser() -> argparse.ArgumentParser:
    from .demos import WITH_BENCH

    p = argparse.ArgumentParser(prog="fastext", description=__doc__.splitlines()[0])
    sub = p.add_subparsers(dest="command", required=True, metavar="COMMAND")

    info = sub.add_parser("info", help="print fastext.build_info() as JSON")
    info.set_defaults(func=_info)

    bench = sub.add_parser("bench", help="benchmarks (python -m fastext.bench); "
                           "arguments go to it unchanged", add_help=False)
    bench.add_argument("rest", nargs=argparse.REMAINDER)
    bench.set_defaults(func=lambda args: _bench(list(args.rest)))

    run = sub.add_parser("run", help="run a demo end to end")
    run.add_argument("name", choices=_demos(), help="which demo")
    run.add_argument("--json", metavar="PATH", help="write the result record here")
    run.add_argument("--out", metavar="DIR", default="out",
                     help="folder for the figures and checkpoints (default: out)")
    run.add_argument("--data", metavar="DIR",
                     help="data directory (default: $FASTEXT_DATA, data/, ../shared/data)")
    run.add_argument("--epochs", type=int_at_least(1), metavar="N",
                     help="training epochs, at least 1 (demo default)")
    run.add_argument("--quick", action="store_true",
                     help="a few batches on the shipped small subset (for tests)")
    run.add_argument("--no-bench", dest="bench_off", action="store_true",
                     help="skip the benchmark that follows the demo ("
                     f"{', '.join(sorted(WITH_BENCH))}; the others run none)")
    run.add_argument("--weights", metavar="FILE",
                     help="local pretrained weights (torchvision format) for demos that "
                     "take them (superres, gan, and tour's superres step: vgg16_bn); "
                     "nothing is downloaded")
    run.set_defaults(func=_run)

    for name, mod in _tools().items():
        _add_tool(sub, name, mod)
    return p


def main(argv: list[str] | None = None) -> int:
    """Parse ``argv`` (default ``sys.argv[1:]``), run the subcommand, return its exit code.

    >>> main(["info"])  # doctest: +ELLIPSIS
    {
    ...
    0
    """
    argv = sys.argv[1:] if argv is None else list(argv)
    if argv[:1] == ["bench"]:
        # Hand everything to the bench's own parser: argparse's REMAINDER would reject
        # options that come first (`fastext bench --help`).
        return _bench(argv[1:])
    parser = _parser()
    args, unknown = parser.parse_known_args(argv)
    if unknown and not getattr(args, "unavailable", False):  # a stub takes any arguments
        parser.error(f"unrecognized arguments: {' '.join(unknown)}")
    return args.func(args)


if __name__ == "__main__":
    sys.exit(main())
