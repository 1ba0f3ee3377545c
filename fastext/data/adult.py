"""UCI Adult (census income) from its two shipped files, ``adult.data`` and ``adult.test``.

The files have no header row; ``adult.test`` starts with a ``|1x3 Cross validator`` comment
line and its labels end with a period (``<=50K.``). :func:`load_adult` hides both quirks:
every split comes back with the same 15 named columns, ``"?"`` read as missing, and the
label ``salary`` in ``{"<=50K", ">50K"}``.

>>> train = load_adult(split="train")  # doctest: +SKIP
>>> train.shape, train["salary"].value_counts().to_dict()  # doctest: +SKIP
((32561, 15), {'<=50K': 24720, '>50K': 7841})
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Literal

import pandas as pd

from .files import DataError, find_data_dir, reading

__all__ = ["ADULT_CAT_NAMES", "ADULT_COLUMNS", "ADULT_CONT_NAMES", "ADULT_FILES", "ADULT_LABELS",
           "find_adult", "load_adult"]

#: split -> file name, as UCI ships them.
ADULT_FILES: dict[str, str] = {"train": "adult.data", "test": "adult.test"}

#: Column names in file order (from ``adult.names``); the last one is the label.
ADULT_COLUMNS: tuple[str, ...] = (
    "age", "workclass", "fnlwgt", "education", "education-num", "marital-status",
    "occupation", "relationship", "race", "sex", "capital-gain", "capital-loss",
    "hours-per-week", "native-country", "salary")

#: The categorical and continuous columns (``education-num`` restates ``education`` as a
#: number and is kept continuous, as in the course).
ADULT_CAT_NAMES: tuple[str, ...] = ("workclass", "education", "marital-status", "occupation",
                                    "relationship", "race", "sex", "native-country")
ADULT_CONT_NAMES: tuple[str, ...] = ("age", "fnlwgt", "education-num", "capital-gain",
                                     "capital-loss", "hours-per-week")

#: The two classes of ``salary``.
ADULT_LABELS: tuple[str, str] = ("<=50K", ">50K")


def find_adult(root: str | os.PathLike[str] | None = None) -> Path:
    """The directory holding ``adult.data`` and ``adult.test`` (see
    :func:`fastext.data.files.find_data_dir` for the search order).

    Raises:
        FileNotFoundError: no such directory; the message lists every place searched.
    """
    return find_data_dir("adult", root, required=tuple(ADULT_FILES.values()))


def load_adult(root: str | os.PathLike[str] | None = None,
               split: Literal["train", "test"] = "train") -> pd.DataFrame:
    """One split of UCI Adult as a DataFrame with the 15 columns of :data:`ADULT_COLUMNS`.

    Integers stay ``int64``, categorical columns are strings with missing values (``"?"``
    in the files) as NaN, and ``salary`` is ``"<=50K"`` or ``">50K"`` in both splits (the
    test file's trailing period is dropped).

    Raises:
        ValueError: unknown split. DataError (a ValueError naming the file): the file cannot
            be read as CSV, a row with fewer or more than 15 fields, an unknown label, a
            non-numeric continuous column.
        FileNotFoundError: the files are not found (the message lists where it looked).
    """
    if split not in ADULT_FILES:
        raise ValueError(f"split must be one of {sorted(ADULT_FILES)}, got {split!r}")
    path = find_adult(root) / ADULT_FILES[split]
    n = len(ADULT_COLUMNS)
    with reading(path, "not in the UCI Adult format"):
        # No names: given 15 names, pandas would take a first row of 16 fields as an index
        # column plus 15, and misreport it. Without them the table is as wide as the first
        # row, and a later row wider than that is a ParserError.
        # comment="|": adult.test's first line; no data field contains a "|".
        df = pd.read_csv(path, header=None, skipinitialspace=True, na_values="?", comment="|",
                         skip_blank_lines=True)
    if df.empty:
        raise DataError(f"{path}: no rows")
    df = df.reindex(columns=range(max(n, df.shape[1])))  # a narrow file: its missing fields NaN
    for rows, what in ((df.iloc[:, n:].notna().any(axis=1), "more"),
                       (df[n - 1].isna(), "fewer")):
        if rows.any():
            raise DataError(f"{path}: row {int(rows.to_numpy().argmax()) + 1} has {what} than "
                            f"{n} fields")
    df = df.iloc[:, :n].set_axis(list(ADULT_COLUMNS), axis=1)
    df["salary"] = df["salary"].astype(str).str.rstrip(".")
    bad = sorted(set(df["salary"]) - set(ADULT_LABELS))
    if bad:
        raise DataError(f"{path}: unknown salary label(s) {bad[:5]}; expected {ADULT_LABELS}")
    for name in ADULT_CONT_NAMES:
        if not pd.api.types.is_numeric_dtype(df[name]):
            raise DataError(f"{path}: column {name!r} is not numeric")
    return df
