"""Error messages as the command-line entry points print them."""

from __future__ import annotations

__all__ = ["first_line", "one_line"]


def one_line(e: BaseException | str) -> str:
    """An error's message on one line (a finder's names the places searched, one per line).

    >>> one_line(FileNotFoundError("no data directory; searched:\\n  /a\\n  /b"))
    'no data directory; searched: /a /b'
    """
    return " ".join(str(e).split())


def first_line(e: BaseException) -> str:
    """The first line of an error's message (torch's load and state-dict errors run to many
    lines; the first says what happened), or its type's name when it has none.

    >>> first_line(RuntimeError("Error(s) in loading state_dict:\\n\\tMissing key(s): w"))
    'Error(s) in loading state_dict:'
    """
    return (str(e).strip().splitlines() or [type(e).__name__])[0]
