"""Where :mod:`fastext.data`'s data sets are found, and how their loaders report a file
they cannot read: :func:`find_data_dir` (a data set's folder: ``--data``,
``$FASTEXT_DATA``, the shipped ``data/``, ``../shared/data``), :func:`reading` /
:class:`DataError` (the failed read re-raised naming the file) and :func:`load_torch_file`
(weights and checkpoints, read the same way), and :func:`save_torch_file`, its writing
twin (never a half-written checkpoint).
"""

from __future__ import annotations

import os
import pickle
import zlib
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

__all__ = ["DataError", "REPO_ROOT", "find_data_dir", "first_dir_holding", "load_torch_file",
           "reading", "save_torch_file", "search_places"]

#: The parent of the ``fastext`` package directory (the git checkout for an editable install).
REPO_ROOT = Path(__file__).resolve().parents[2]

class DataError(ValueError):
    """A data file that cannot be read or is not in its expected format; the message starts
    with the file's path. ``fastext run`` reports it in one line instead of a traceback."""


@contextmanager
def reading(path: str | os.PathLike[str], what: str = "not readable") -> Iterator[None]:
    """Re-raises a failed read of ``path`` inside the block as :class:`DataError`
    ``"<path>: <what> (<error>)"``: decoders name the problem (``image file is truncated``,
    ``No columns to parse from file``) but not the file.

    Caught: ``OSError`` (PIL's truncated or unidentified images, I/O errors), ``EOFError``
    and ``zlib.error`` (truncated gzip), and ``ValueError``, which covers
    ``UnicodeDecodeError`` and pandas' ``EmptyDataError`` / ``ParserError``. A missing file
    (``FileNotFoundError``) and a ``DataError`` already naming its file pass unchanged.

    >>> with reading("x.csv", "not a CSV file"):
    ...     raise UnicodeDecodeError("utf-8", b"\\xff", 0, 1, "invalid start byte")
    Traceback (most recent call last):
    ...
    fastext.data.files.DataError: x.csv: not a CSV file ('utf-8' codec can't decode byte ...
    """
    try:
        yield
    except (FileNotFoundError, DataError):
        raise
    except (OSError, EOFError, zlib.error, ValueError) as e:
        raise DataError(f"{path}: {what} ({str(e).strip()})") from e


def load_torch_file(path: str | os.PathLike[str]) -> Any:
    """``torch.load(path, map_location="cpu", weights_only=True)``, a file it cannot read
    re-raised as :class:`DataError` ``"<path>: not a file torch.load reads with
    weights_only=True (<first line of torch's message>)"`` (torch's own message runs to
    paragraphs; it stays chained). Caught: not a zip or pickle (``RuntimeError``,
    ``UnpicklingError``), cut short (``EOFError``), unreadable (``OSError``), objects beyond
    tensors and plain values (``UnpicklingError``). A missing file raises
    ``FileNotFoundError`` unchanged: callers say what should have been there.

    >>> import tempfile
    >>> with tempfile.NamedTemporaryFile(suffix=".pth") as f:
    ...     _ = f.write(b"not a checkpoint"); f.flush()
    ...     load_torch_file(f.name)  # doctest: +ELLIPSIS
    Traceback (most recent call last):
    ...
    fastext.data.files.DataError: /...pth: not a file torch.load reads with weights_only=True (...)
    """
    import torch

    from .._messages import first_line

    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except FileNotFoundError:
        raise
    except (pickle.UnpicklingError, RuntimeError, OSError, EOFError, ValueError) as e:
        raise DataError(f"{path}: not a file torch.load reads with weights_only=True "
                        f"({first_line(e)})") from e


def save_torch_file(obj: Any, path: str | os.PathLike[str]) -> Path:
    """``torch.save(obj, path)`` through a temporary file beside it, renamed over ``path``
    once written: a failed or interrupted save leaves the previous file as it was. Makes the
    parent folder; returns ``path``.

    >>> import tempfile
    >>> with tempfile.TemporaryDirectory() as d:
    ...     file = save_torch_file({"step": 3}, Path(d) / "ckpt" / "a.pth")
    ...     load_torch_file(file), sorted(p.name for p in file.parent.iterdir())
    ({'step': 3}, ['a.pth'])
    """
    import torch

    file = Path(path)
    file.parent.mkdir(parents=True, exist_ok=True)
    tmp = file.with_name(file.name + ".tmp")
    try:
        torch.save(obj, tmp)
        tmp.replace(file)
    finally:
        tmp.unlink(missing_ok=True)
    return file


def search_places(name: str, root: str | os.PathLike[str] | None) -> list[Path]:
    """The places :func:`find_data_dir` searches, in order."""
    if root is not None:
        # An explicit directory is the only place looked at (it may also be a parent holding
        # ``<name>/``): silently falling back to another copy would hide a typo in ``--data``.
        return [Path(root).expanduser(), Path(root).expanduser() / name]
    places = []
    env = os.environ.get("FASTEXT_DATA")
    if env:
        places.append(Path(env).expanduser() / name)
    places.append(REPO_ROOT / "data" / name)
    places.append(REPO_ROOT.parent / "shared" / "data" / name)
    return places


def first_dir_holding(places: list[Path], what: str, required: tuple[str, ...],
               root: str | os.PathLike[str] | None) -> Path:
    """The first of ``places`` that is a directory holding every file in ``required``."""
    for place in places:
        if place.is_dir() and all((place / f).is_file() for f in required):
            return place
    wanted = f" holding {', '.join(required)}" if required else ""
    searched = "\n  ".join(str(p) for p in places)
    hint = ("Check --data DIR: the data set's folder, or a folder holding it" if root is not None
            else "Pass a directory (--data DIR) or set $FASTEXT_DATA")
    raise FileNotFoundError(f"no data directory {what}{wanted}; searched:\n  {searched}\n"
                            f"{hint}.")


def find_data_dir(name: str, root: str | os.PathLike[str] | None = None,
                  required: tuple[str, ...] = ()) -> Path:
    """Find the directory of data set ``name``.

    Search order: ``root`` if given (only it, or ``root/<name>``); otherwise
    ``$FASTEXT_DATA/<name>``, the shipped copy ``<repo>/data/<name>``, then
    ``<repo>/../shared/data/<name>``. A directory counts only if it exists and holds every
    file in ``required``.

    Raises:
        FileNotFoundError: nothing found; the message lists every place searched.

    >>> find_data_dir("mnist-small", required=("t10k-labels-idx1-ubyte.gz",)).name
    'mnist-small'
    """
    return first_dir_holding(search_places(name, root), repr(name), required, root)
