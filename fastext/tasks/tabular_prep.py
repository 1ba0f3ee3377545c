"""The course's frame helpers for Rossmann-style data (lesson 6): :func:`add_datepart` turns a
date column into the parts a model can use, :func:`cont_cat_split` sorts columns into
continuous and categorical by fastai's rule. Both are re-exported by
:mod:`fastext.tasks.tabular`.

>>> df = pd.DataFrame({"Date": ["2015-07-31", "2015-08-01"], "Store": [1, 2],
...                    "Sales": [5263.0, 6064.0]})
>>> df = add_datepart(df, "Date")
>>> df[["Year", "Week", "Dayofweek", "Is_month_end"]].values.tolist()
[[2015, 31, 4, True], [2015, 31, 5, False]]
>>> cont, cat = cont_cat_split(df, dep_var="Sales")
>>> cont, cat[:4]
(['Elapsed'], ['Store', 'Year', 'Month', 'Week'])
"""

from __future__ import annotations

import re
from collections.abc import Hashable, Sequence

import pandas as pd

__all__ = ["DATEPART_ATTRS", "DATEPART_TIME_ATTRS", "add_datepart", "cont_cat_split",
           "make_date"]

#: The columns :func:`add_datepart` adds (after its prefix), before ``Elapsed``.
DATEPART_ATTRS = ("Year", "Month", "Week", "Day", "Dayofweek", "Dayofyear", "Is_month_end",
                  "Is_month_start", "Is_quarter_end", "Is_quarter_start", "Is_year_end",
                  "Is_year_start")
#: Added with ``time=True``.
DATEPART_TIME_ATTRS = ("Hour", "Minute", "Second")
# pandas' accessor for a part, where it is not the part's name in lower case
_ACCESSORS = {"Dayofweek": "day_of_week", "Dayofyear": "day_of_year"}


def make_date(df: pd.DataFrame, field_name: Hashable) -> pd.DataFrame:
    """Converts ``df[field_name]`` to a datetime column in place (a datetime column, time zone
    or not, is left as it is) and returns ``df``. Strings, ``datetime``/``date`` objects,
    ``pd.Timestamp`` and missing values may be mixed; strings all in ISO 8601 but of varying
    precision are accepted too.

    >>> df = make_date(pd.DataFrame({"d": ["2019-12-04", None]}), "d")
    >>> str(df["d"].dtype).startswith("datetime64"), df["d"].isna().tolist()
    (True, [False, True])
    """
    if field_name not in df.columns:
        raise KeyError(f"no column {field_name!r} in the frame (it has {list(df.columns)[:20]})")
    s = df[field_name]
    if not pd.api.types.is_datetime64_any_dtype(s):
        df[field_name] = _to_datetime(s, field_name)
    return df


def _to_datetime(s: pd.Series, name: Hashable) -> pd.Series:
    try:
        return pd.to_datetime(s)
    except (ValueError, TypeError) as first:
        try:  # pandas infers one format from the first string: "05:00" then "05:00:00.5" fail
            return pd.to_datetime(s, format="ISO8601")
        except (ValueError, TypeError):
            raise ValueError(f"column {name!r} does not parse as dates ({first}); convert it "
                             "with pd.to_datetime(..., format=...) first") from first


def _elapsed(field: pd.Series) -> pd.Series:
    """Whole seconds since 1970-01-01 (UTC for a zoned column), floored; ``NaN`` for ``NaT``.
    Done with timedeltas, not ``int64 // 10**9``: pandas keeps datetimes in s, ms, us or ns."""
    epoch = pd.Timestamp(0, tz="UTC" if field.dt.tz is not None else None)
    return ((field - epoch) // pd.Timedelta(seconds=1)).astype("float64")


def add_datepart(df: pd.DataFrame, field_name: str, prefix: str | None = None,
                 drop: bool = True, time: bool = False) -> pd.DataFrame:
    """Adds to ``df`` (in place, and returns it, as fastai's) the parts of the date column
    ``field_name``: ``Year, Month, Week`` (ISO week), ``Day, Dayofweek`` (Monday 0),
    ``Dayofyear``, ``Is_month_end, Is_month_start, Is_quarter_end, Is_quarter_start,
    Is_year_end, Is_year_start``, with ``time`` also ``Hour, Minute, Second``, then
    ``Elapsed`` (seconds since 1970-01-01, float). Each name gets ``prefix``, by default the
    column's name less a trailing ``Date``/``date`` (``"Date"`` -> ``""``,
    ``"saledate"`` -> ``"sale"``). ``drop`` removes the date column. Existing columns of
    those names are overwritten (running it twice is harmless).

    The column may hold strings or date objects (converted by :func:`make_date`). For a
    missing date (``NaT``) the numeric parts and ``Elapsed`` are ``NaN`` (those columns are
    then float, as pandas' accessors give them) and the ``Is_*`` flags ``False``.

    >>> df = pd.DataFrame({"saledate": ["2019-12-31 13:45:10", None]})
    >>> df = add_datepart(df, "saledate", time=True)
    >>> df[["saleYear", "saleWeek", "saleIs_year_end", "saleHour"]].values.tolist()
    [[2019.0, 1.0, True, 13.0], [nan, nan, False, nan]]
    >>> df["saleElapsed"].tolist()
    [1577799910.0, nan]
    """
    make_date(df, field_name)
    field = df[field_name]
    prefix = re.sub("[Dd]ate$", "", field_name) if prefix is None else prefix
    attrs = DATEPART_ATTRS + (DATEPART_TIME_ATTRS if time else ())
    for attr in attrs:
        df[prefix + attr] = _part(field, attr)
    df[prefix + "Elapsed"] = _elapsed(field)
    if drop:
        del df[field_name]  # in place, as fastai's drop(inplace=True)
    return df


def _part(field: pd.Series, attr: str) -> pd.Series:
    """One date part by pandas' accessor (``dt.dayofweek`` is deprecated for
    ``dt.day_of_week``, ``dt.week`` gone for ``isocalendar().week``, a nullable UInt32 that
    takes the dtype of the other parts)."""
    if attr == "Week":
        return field.dt.isocalendar().week.astype(field.dt.day.dtype)
    return getattr(field.dt, _ACCESSORS.get(attr, attr.lower()))


def cont_cat_split(df: pd.DataFrame, max_card: int = 20,
                   dep_var: Hashable | Sequence[Hashable] | None = None,
                   ) -> tuple[list[Hashable], list[Hashable]]:
    """``(cont_names, cat_names)`` by fastai's rule: float columns, and integer columns with
    more than ``max_card`` distinct values, are continuous; everything else (integers of
    low cardinality, booleans, text, dates, category dtype, mixed objects) is categorical.
    The target ``dep_var`` (a name or a list of names) is left out of both. Columns keep
    the frame's order.

    >>> df = pd.DataFrame({"store": range(30), "dow": [1, 2, 3] * 10, "dist": 1.5,
    ...                    "state": "HE", "sales": range(30)})
    >>> cont_cat_split(df, dep_var="sales")
    (['store', 'dist'], ['dow', 'state'])
    >>> cont_cat_split(df, max_card=30, dep_var=["sales"])
    (['dist'], ['store', 'dow', 'state'])
    """
    skip = _names(dep_var)
    cont_names: list[Hashable] = []
    cat_names: list[Hashable] = []
    for name in df.columns:
        if name in skip:
            continue
        s = df[name]
        many_ints = (pd.api.types.is_integer_dtype(s.dtype)
                     and s.nunique(dropna=False) > max_card)
        (cont_names if many_ints or pd.api.types.is_float_dtype(s.dtype)
         else cat_names).append(name)
    return cont_names, cat_names


def _names(dep_var: Hashable | Sequence[Hashable] | None) -> list[Hashable]:
    if dep_var is None:
        return []
    if isinstance(dep_var, (list, tuple, pd.Index)):
        return list(dep_var)
    return [dep_var]
