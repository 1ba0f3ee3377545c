"""MovieLens latest-small (GroupLens, 2018) from its shipped CSV files.

``ratings.csv`` holds ``userId, movieId, rating, timestamp`` (100,836 ratings of 9,724 movies
by 610 users, ratings 0.5..5 in half stars); ``movies.csv`` maps ``movieId`` to ``title`` and
``genres``.

>>> ratings = load_ratings(titles=True)  # doctest: +SKIP
>>> list(ratings.columns)  # doctest: +SKIP
['userId', 'movieId', 'rating', 'timestamp', 'title']
"""

from __future__ import annotations

import os
from pathlib import Path

import pandas as pd

from .files import DataError, find_data_dir, reading

__all__ = ["MOVIELENS_FILES", "find_movielens", "load_movies", "load_ratings"]

#: file -> the columns it must have.
MOVIELENS_FILES: dict[str, tuple[str, ...]] = {
    "ratings.csv": ("userId", "movieId", "rating", "timestamp"),
    "movies.csv": ("movieId", "title", "genres"),
}


def find_movielens(root: str | os.PathLike[str] | None = None) -> Path:
    """The ``ml-latest-small`` directory (see :func:`fastext.data.files.find_data_dir`).

    Raises:
        FileNotFoundError: not found; the message lists every place searched.
    """
    return find_data_dir("ml-latest-small", root, required=tuple(MOVIELENS_FILES))


def _read(path: Path) -> pd.DataFrame:
    with reading(path, "not a readable CSV file"):
        df = pd.read_csv(path)
    missing = [c for c in MOVIELENS_FILES[path.name] if c not in df.columns]
    if missing:
        raise DataError(f"{path}: missing column(s) {missing}; has {list(df.columns)}")
    if df.empty:
        raise DataError(f"{path}: no rows")
    return df


def load_movies(root: str | os.PathLike[str] | None = None) -> pd.DataFrame:
    """``movies.csv``: ``movieId, title, genres`` (one row per movie)."""
    return _read(find_movielens(root) / "movies.csv")


def load_ratings(root: str | os.PathLike[str] | None = None,
                 titles: bool = False) -> pd.DataFrame:
    """``ratings.csv`` as a DataFrame; with ``titles`` a ``title`` column joined from
    ``movies.csv`` (a movie missing there gets its id as title).

    Raises:
        FileNotFoundError: the files are not found. DataError (a ValueError naming the
        file): a file is not readable CSV, a column is missing, a rating is missing or
        outside 0..5.
    """
    path = find_movielens(root) / "ratings.csv"
    df = _read(path)
    r = df["rating"]
    if not pd.api.types.is_numeric_dtype(r) or r.isna().any() or not r.between(0, 5).all():
        raise DataError(f"{path}: ratings must be numbers in 0..5 with none missing")
    if titles:
        movies = load_movies(root).set_index("movieId")["title"]
        df["title"] = df["movieId"].map(movies).fillna(df["movieId"].astype(str))
    return df
