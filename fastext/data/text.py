"""The two shipped text corpora: tiny Shakespeare and fastai's IMDB sample.

``tinyshakespeare/input.txt`` is one 1.1 MB text of speeches ("First Citizen:\\nBefore we
proceed...") separated by blank lines; :func:`shakespeare_speeches` cuts it into those
speeches, the documents of a language model. ``imdb_sample/texts.csv`` holds 1,000 movie
reviews with columns ``label`` (``negative``/``positive``), ``text`` and ``is_valid`` (800
training, 200 validation reviews); :func:`load_imdb_sample` reads and checks it.

>>> speeches = shakespeare_speeches(load_shakespeare())  # doctest: +SKIP
>>> len(speeches), speeches[0]  # doctest: +SKIP
(7222, 'First Citizen:\\nBefore we proceed any further, hear me speak.')
"""

from __future__ import annotations

import os
import re
from pathlib import Path

import pandas as pd

from .files import DataError, find_data_dir, reading

__all__ = ["IMDB_COLUMNS", "find_imdb_sample", "find_shakespeare", "load_imdb_sample",
           "load_shakespeare", "shakespeare_speeches"]

#: The columns of ``imdb_sample/texts.csv``.
IMDB_COLUMNS: tuple[str, ...] = ("label", "text", "is_valid")


def find_shakespeare(root: str | os.PathLike[str] | None = None) -> Path:
    """The directory holding tiny Shakespeare's ``input.txt`` (search order: see
    :func:`fastext.data.files.find_data_dir`)."""
    return find_data_dir("tinyshakespeare", root, required=("input.txt",))


def load_shakespeare(root: str | os.PathLike[str] | None = None) -> str:
    """The whole tiny Shakespeare text.

    Raises:
        FileNotFoundError: ``input.txt`` not found. DataError (a ValueError naming the
        file): the file is not UTF-8 text, or empty.
    """
    path = find_shakespeare(root) / "input.txt"
    with reading(path, "not UTF-8 text"):
        text = path.read_text(encoding="utf-8")
    if not text.strip():
        raise DataError(f"{path} is empty")
    return text


def shakespeare_speeches(text: str) -> list[str]:
    """The speeches of ``text``: the blocks between blank lines, in order, stripped.

    >>> shakespeare_speeches("A:\\nHi.\\n\\n\\nB:\\nHo.\\n")
    ['A:\\nHi.', 'B:\\nHo.']
    """
    return [b.strip() for b in re.split(r"\n\s*\n", text) if b.strip()]


def find_imdb_sample(root: str | os.PathLike[str] | None = None) -> Path:
    """The directory holding the IMDB sample's ``texts.csv``."""
    return find_data_dir("imdb_sample", root, required=("texts.csv",))


def load_imdb_sample(root: str | os.PathLike[str] | None = None) -> pd.DataFrame:
    """``texts.csv`` as a DataFrame with columns ``label`` (str), ``text`` (str) and
    ``is_valid`` (bool), in file order.

    Raises:
        FileNotFoundError: not found. DataError (a ValueError naming the file): not readable
        CSV, a column is missing, a text or label is missing, or ``is_valid`` is not boolean.
    """
    path = find_imdb_sample(root) / "texts.csv"
    with reading(path, "not a readable CSV file"):
        df = pd.read_csv(path)
    missing = [c for c in IMDB_COLUMNS if c not in df.columns]
    if missing:
        raise DataError(f"{path}: column(s) {missing} missing (it has {list(df.columns)})")
    if df.empty:
        raise DataError(f"{path}: no rows")
    for col in ("label", "text"):
        if df[col].isna().any():
            raise DataError(f"{path}: row {int(df[col].isna().to_numpy().argmax())} has no "
                             f"{col}")
    if not pd.api.types.is_bool_dtype(df["is_valid"]):
        raise DataError(f"{path}: is_valid must be True/False, got {df['is_valid'].dtype}")
    return df.assign(label=df["label"].astype(str), text=df["text"].astype(str))
