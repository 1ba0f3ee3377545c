"""argparse types and argument checks shared by the command-line entry points.

A value that is wrong by itself (``--epochs 0``) is refused by its argparse ``type`` while
the arguments are parsed; one that is wrong only given the filesystem or the other arguments
(``--json`` naming a folder, ``--space`` not being JSON) raises :class:`UsageError` before
any work starts, which ``fastext`` reports in one line with exit code 2.
"""

from __future__ import annotations

import argparse
import importlib
import math
import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

__all__ = ["UsageError", "check_output_dir", "check_output_file", "import_object",
           "int_at_least", "positive_float"]


class UsageError(ValueError):
    """A command-line argument refused once checked against the filesystem or the other
    arguments; the message names the option. ``fastext`` prints it in one line (exit code 2)
    instead of a traceback. A ``ValueError``, so library callers that catch those still do."""


def int_at_least(low: int) -> Callable[[str], int]:
    """An argparse ``type``: an integer of at least ``low``, refused while the arguments are
    parsed (before anything runs) otherwise.

    >>> int_at_least(1)("3")
    3
    >>> int_at_least(0)("-1")
    Traceback (most recent call last):
    ...
    argparse.ArgumentTypeError: must be >= 0, got -1
    """
    def parse(text: str) -> int:
        try:
            n = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"not an integer: {text!r}") from None
        if n < low:
            raise argparse.ArgumentTypeError(f"must be >= {low}, got {n}")
        return n

    return parse


def positive_float(text: str) -> float:
    """An argparse ``type``: a finite number above 0 (``nan`` and ``inf`` refused too).

    >>> positive_float("3e-2")
    0.03
    >>> positive_float("0")
    Traceback (most recent call last):
    ...
    argparse.ArgumentTypeError: must be a finite number > 0, got 0.0
    """
    try:
        x = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a number: {text!r}") from None
    if not (math.isfinite(x) and x > 0):
        raise argparse.ArgumentTypeError(f"must be a finite number > 0, got {x}")
    return x


def _nearest_existing(path: Path) -> Path:
    """``path`` or its closest ancestor that exists (``.`` at worst for a relative path)."""
    while not path.exists() and path.parent != path:
        path = path.parent
    return path


def _folder_problem(path: Path) -> str | None:
    """Why ``path`` cannot be (made) a writable folder, or None."""
    base = _nearest_existing(path)
    if not base.is_dir():
        return "is not a folder" if base == path else f"cannot be created: {base} is a file"
    if not os.access(base, os.W_OK | os.X_OK):
        return f"cannot be written: {base} is not writable"
    return None


def check_output_dir(path: str | os.PathLike[str], option: str) -> None:
    """Raises :class:`UsageError` when ``path`` cannot be a folder to write into: it exists
    but is not a folder, or creating it would need a folder where a file is or inside a
    folder that cannot be written. Creates nothing (a refused run leaves nothing behind).

    >>> check_output_dir(__file__, "--out")  # doctest: +ELLIPSIS
    Traceback (most recent call last):
    ...
    fastext._argtypes.UsageError: --out .../_argtypes.py is not a folder
    """
    problem = _folder_problem(Path(path))
    if problem:
        raise UsageError(f"{option} {path} {problem}")


def check_output_file(path: str | os.PathLike[str], option: str) -> None:
    """Raises :class:`UsageError` when ``path`` cannot be a file to write: it is a folder,
    an existing file that cannot be written, or its folder cannot be (:func:`check_output_dir`).
    Creates nothing.

    >>> check_output_file(".", "--json")
    Traceback (most recent call last):
    ...
    fastext._argtypes.UsageError: --json . is a folder; give a file path
    """
    p = Path(path)
    if p.is_dir():
        raise UsageError(f"{option} {path} is a folder; give a file path")
    if p.exists() and not os.access(p, os.W_OK):
        raise UsageError(f"{option} {path} is not writable")
    problem = _folder_problem(p.parent)
    if problem:
        raise UsageError(f"{option} {path}: its folder {p.parent} {problem}")


def import_object(spec: str, option: str) -> Any:
    """``package.module:name`` imported. A module or name that is not there is a
    :class:`UsageError` naming ``option``; an ``ImportError`` raised while the module itself
    runs (a package it needs is missing) passes unchanged: that is the module's problem.

    >>> import_object("math:sqrt", "--objective")(9.0)
    3.0
    >>> import_object("math:nope", "--objective")
    Traceback (most recent call last):
    ...
    fastext._argtypes.UsageError: --objective math:nope: module math has no 'nope'
    """
    module, sep, attr = spec.partition(":")
    if not (sep and module and attr):
        raise UsageError(f"{option} {spec!r}: expected 'package.module:name'")
    try:
        mod = importlib.import_module(module)
    except ModuleNotFoundError as e:
        missing = e.name or ""
        if not (missing and (module == missing or module.startswith(missing + "."))):
            raise
        raise UsageError(f"{option} {spec}: no module named {missing!r}") from None
    if not hasattr(mod, attr):
        raise UsageError(f"{option} {spec}: module {module} has no {attr!r}")
    return getattr(mod, attr)
