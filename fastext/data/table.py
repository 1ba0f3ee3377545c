"""Data from a table (a pandas DataFrame or a CSV file), for the text and image loaders'
``from_df`` and ``from_csv``: a column by name or position, the train/valid flags (a boolean
column, 0/1, or their text in a CSV read as strings) and split (those flags or a seeded
random share of the rows), and the CSV read.

>>> df = pd.DataFrame({"text": ["a", "b", "c", "d"], "is_valid": [False, True, False, False]})
>>> [i.tolist() for i in split_rows(df, "is_valid")]
[[0, 2, 3], [1]]
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import pandas as pd
import torch
from torch import Tensor

from .camvid import split_indices
from .files import reading

__all__ = ["column", "label_column", "read_table", "split_rows", "text_column", "valid_flags"]

Col = int | str


def column(df: pd.DataFrame, col: Col, what: str = "column") -> pd.Series:
    """Column ``col`` of ``df``: by name, or by position when an ``int`` that is not a
    name (as fastai's ``from_df``).

    Raises:
        TypeError: ``df`` is not a DataFrame. KeyError: no such column (naming those there
            are).
    """
    if not isinstance(df, pd.DataFrame):
        raise TypeError(f"expected a pandas DataFrame, got {type(df).__name__}")
    if col in df.columns:
        return df[col]
    if isinstance(col, int) and not isinstance(col, bool) and -df.shape[1] <= col < df.shape[1]:
        return df.iloc[:, col]
    raise KeyError(f"no {what} {col!r} in the table (it has {list(df.columns)})")


def _no_missing(values: pd.Series, what: str) -> None:
    if values.isna().any():
        raise ValueError(f"row {int(values.isna().to_numpy().argmax())} has no {what}")


def text_column(df: pd.DataFrame, col: Col) -> list[str]:
    """The texts of column ``col``, as strings.

    Raises:
        ValueError: a row without a text (naming the first).
    """
    texts = column(df, col, "text column")
    _no_missing(texts, f"text (column {col!r})")
    return texts.astype(str).tolist()


def label_column(df: pd.DataFrame, col: Col) -> list[object]:
    """The labels of column ``col`` (as plain Python values).

    Raises:
        ValueError: a row without a label (naming the first).
    """
    labels = column(df, col, "label column")
    _no_missing(labels, f"label (column {col!r})")
    return labels.tolist()


def split_rows(df: pd.DataFrame, valid_col: Col | None = None, valid_pct: float = 0.2,
               seed: int = 0) -> tuple[Tensor, Tensor]:
    """``(train_idx, valid_idx)`` row positions of ``df``: with ``valid_col``, the rows where
    that boolean column is ``False`` and ``True`` (in row order); without it a random
    ``valid_pct`` of the rows validates, drawn with ``seed``
    (:func:`fastext.data.camvid.split_indices`: the validation rows first in the draw's
    order, then the training rows).

    Raises:
        ValueError: ``valid_col`` is not boolean (or 0/1), or leaves a side empty; a bad
            ``valid_pct`` or fewer than two rows.
    """
    if valid_col is None:
        return split_indices(len(df), valid_pct, seed)
    valid = torch.tensor(valid_flags(df, valid_col))
    train_idx, valid_idx = (~valid).nonzero().flatten(), valid.nonzero().flatten()
    if len(train_idx) == 0 or len(valid_idx) == 0:
        raise ValueError(f"valid column {valid_col!r} leaves {len(train_idx)} training and "
                         f"{len(valid_idx)} validation rows: both need one")
    return train_idx, valid_idx


_TRUE, _FALSE = {"true", "1"}, {"false", "0"}


def valid_flags(df: pd.DataFrame, col: Col) -> list[bool]:
    """The boolean column ``col`` (True: a validation row) as a list: bools, 0/1, or those
    spelled as text (a CSV read with ``dtype=str``: ``"False"`` is not a true flag).

    >>> valid_flags(pd.DataFrame({"v": ["False", "True", "0", "1"]}), "v")
    [False, True, False, True]

    Raises:
        ValueError: any other value (naming the column and the value).
    """
    flags = column(df, col, "valid column")
    if pd.api.types.is_bool_dtype(flags):
        return [bool(v) for v in flags]
    out = []
    for v in flags.tolist():
        key = str(v).strip().lower()
        if key not in _TRUE | _FALSE:
            raise ValueError(f"valid column {col!r} must be True/False (or 1/0), got {v!r}")
        out.append(key in _TRUE)
    return out


def read_table(path: str | os.PathLike[str], csv_fname: str, **read_csv: Any) -> pd.DataFrame:
    """``path/csv_fname`` read by pandas (a header row expected; ``read_csv`` keywords go to
    ``pd.read_csv``, e.g. ``dtype=str`` to keep file names such as ``0001`` as written).

    Raises:
        FileNotFoundError: no such file. DataError (a ValueError naming the file): not
            readable CSV.
    """
    file = Path(path) / csv_fname
    if not file.is_file():
        raise FileNotFoundError(f"no table {file}")
    with reading(file, "not a readable CSV file"):
        return pd.read_csv(file, **read_csv)
