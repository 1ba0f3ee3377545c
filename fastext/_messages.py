"""Error messages as the command-line entry points print them."""

from __future__ import annotations

__all__ = ["one_line"]


def one_line(e: BaseException | str) -> str:
    """An error's message on one line (a finder's names the places searched, one per line).

    >>> one_line(FileNotFoundError("no data directory; searched:\\n  /a\\n  /b"))
    'no data directory; searched: /a /b'
    """
    return " ".join(str(e).split())
