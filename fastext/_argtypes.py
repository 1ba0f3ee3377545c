"""argparse types shared by the command-line entry points."""

from __future__ import annotations

import argparse
from collections.abc import Callable

__all__ = ["int_at_least"]


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
