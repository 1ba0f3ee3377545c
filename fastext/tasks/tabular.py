"""Tabular data with embeddings: preprocessing fitted on the training rows, a model with one
embedding per categorical column, loaders that slice whole batches out of pre-built tensors,
``tabular_learner``, ``predict`` on a row or frame, and ``export`` / :func:`load_tabular`
(the model travels with its preprocessing); the course's Rossmann helpers
:func:`add_datepart` and :func:`cont_cat_split` (from :mod:`fastext.tasks.tabular_prep`).

The preprocessing (:class:`TabularProcessor`) runs :class:`FillMissing` (median fill plus a
``<col>_na`` indicator, itself categorical), :class:`Categorify` (class 0 is ``#na#``: missing
and unseen values) and :class:`Normalize` (training mean and standard deviation), each fitted
on the training frame only and applied unchanged to validation, test and inference rows.

>>> import pandas as pd
>>> df = pd.DataFrame({"color": ["red", "blue", "red", None], "size": [1.0, None, 3.0, 5.0],
...                    "label": ["a", "b", "a", "b"]})
>>> proc = TabularProcessor(["color"], ["size"], "label").fit(df)
>>> proc.cat_names, proc.classes["color"]
(['color', 'size_na'], ['#na#', 'blue', 'red'])
>>> t = proc.transform(pd.DataFrame({"color": ["green"], "size": [None]}))
>>> t.cat.tolist(), t.y is None   # unseen "green" -> #na#, missing size flagged
([[0, 2]], True)
"""

from __future__ import annotations

import datetime
import math
import numbers
import sys
import warnings
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any, NamedTuple

import numpy as np
import pandas as pd
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from .._values import plain
from ..data.camvid import split_indices
from ..data.files import save_torch_file
from ..learner import DataLoaders, DeviceLoader, Learner, TensorLoader, accuracy
from ..learner.data import drops_last_batch
from ..learner.learner import float32_cpu
from ..nn.modes import eval_mode
from .tabular_prep import add_datepart, cont_cat_split, make_date

__all__ = [
    "NA", "Categorify", "ColumnEmbeddings", "FillMissing", "Normalize", "SlicedTensorLoader",
    "TabularDataLoaders", "TabularLearner", "TabularModel", "TabularPredictor",
    "TabularProcessor", "TabularTensors", "add_datepart", "auto_y_kind", "cont_cat_split",
    "emb_sz_rule", "load_tabular", "make_date", "tabular_learner",
]

#: The class every categorical column reserves at index 0: missing and unseen values.
NA = "#na#"
#: Format tag of :meth:`TabularLearner.export` files.
EXPORT_FORMAT = "fastext.tabular/1"


def emb_sz_rule(n_cat: int) -> int:
    """Embedding width for a column of ``n_cat`` classes (``#na#`` included):
    ``min(600, round(1.6 * n_cat**0.56))``, the course's rule of thumb.

    >>> [emb_sz_rule(n) for n in (2, 3, 17, 10_000)]
    [2, 3, 8, 278]
    """
    return min(600, round(1.6 * n_cat**0.56))


# -- column checks and conversions ------------------------------------------------------------
def _require(df: pd.DataFrame, names: Sequence[str], role: str) -> None:
    if not isinstance(df, pd.DataFrame):
        raise TypeError(f"expected a pandas DataFrame, got {type(df).__name__}")
    missing = [n for n in names if n not in df.columns]
    if missing:
        raise KeyError(f"{role} column(s) {missing} not in the frame "
                       f"(it has {list(df.columns)[:20]})")


def _numeric(s: pd.Series, name: str) -> pd.Series:
    """``s`` as float64; a clear error for text, dates or infinities in a continuous column."""
    if pd.api.types.is_datetime64_any_dtype(s) or pd.api.types.is_timedelta64_dtype(s):
        raise TypeError(f"continuous column {name!r} holds dates/durations ({s.dtype}); "
                        "convert them to numbers first")
    if pd.api.types.is_bool_dtype(s) or pd.api.types.is_numeric_dtype(s):
        out = s.astype("float64")
    else:  # object/string columns: numbers stored as objects (e.g. a row turned into a frame)
        try:
            out = pd.to_numeric(s, errors="raise").astype("float64")
        except (ValueError, TypeError):
            bad = next((v for v in s if not _is_number(v)), None)
            raise TypeError(f"continuous column {name!r} holds non-numeric values (e.g. "
                            f"{bad!r}); list it in cat_names instead") from None
    if np.isinf(out.to_numpy()).any():
        raise ValueError(f"continuous column {name!r} holds infinite values")
    return out


def _is_number(v: Any) -> bool:
    try:
        float(v)
    except (TypeError, ValueError):
        return False
    return True


def _key(v: Any) -> str | None:
    """The class name of one categorical value: ``None`` for missing; numbers written so that
    ``3``, ``3.0`` and ``np.int64(3)`` are the same class (a column read as int in training
    may come back as float or object at inference); dates and durations (``np.datetime64``
    of any unit, ``pd.Timestamp``, ``datetime``; ``np.timedelta64``, ``pd.Timedelta``,
    ``timedelta``) in ISO 8601, so that a row turned into a frame (``pd.Timestamp`` objects)
    or a column of another unit keeps its classes.

    >>> _key(np.datetime64("2020-01-01", "s")), _key(pd.Timestamp("2020-01-01"))
    ('2020-01-01T00:00:00', '2020-01-01T00:00:00')
    >>> _key(np.timedelta64(1, "D")), _key(pd.Timedelta(hours=24))
    ('P1DT0H0M0S', 'P1DT0H0M0S')
    """
    if v is None or (not isinstance(v, str) and pd.isna(v)):
        return None
    if isinstance(v, (bool, np.bool_)):
        return str(bool(v))
    # before the integers: np.timedelta64 is an np.integer (and np.datetime64 a generic)
    if isinstance(v, (np.datetime64, datetime.date)):
        return pd.Timestamp(v).isoformat()
    if isinstance(v, (np.timedelta64, datetime.timedelta)):
        return pd.Timedelta(v).isoformat()
    if isinstance(v, (int, np.integer)):
        return str(int(v))
    if isinstance(v, (np.float16, np.float32)):
        # float(np.float32(0.1)) is 0.10000000149011612: take the shortest decimal that is
        # this value in its own precision, so that it meets the float64 0.1 of a re-read CSV
        v = float(np.format_float_scientific(v, unique=True))
    if isinstance(v, (float, np.floating)):
        f = float(v)
        return str(int(f)) if f.is_integer() else repr(f)
    return str(v)


def _bools(s: pd.Series) -> np.ndarray | None:
    """Where an object column holds booleans beside other values, the mask of the booleans;
    else ``None``. ``True == 1`` and both hash alike, so ``pd.unique`` or a dict would fold
    them into one class named after whichever row came first: they are keyed apart."""
    if s.dtype != object or pd.api.types.infer_dtype(s, skipna=True) not in ("mixed",
                                                                            "mixed-integer"):
        return None  # text, numbers only, booleans only...: nothing to fold
    mask = np.fromiter((isinstance(v, (bool, np.bool_)) for v in s.to_numpy()), bool, len(s))
    return mask if mask.any() else None


def _unique(s: pd.Series) -> list[tuple[Any, str]]:
    """``(value, class name)`` for each distinct non-missing value, in order of appearance."""
    mask = _bools(s)
    if mask is not None:
        return _unique(s[~mask]) + _unique(s[mask].map(bool).astype(bool))
    return [(u, k) for u in pd.unique(s) if (k := _key(u)) is not None]


def _keys(s: pd.Series) -> np.ndarray:
    """Object array of class names (``None`` = missing), converting each distinct value once."""
    mask = _bools(s)
    if mask is not None:
        out = np.empty(len(s), dtype=object)
        out[mask] = _keys(s[mask].map(bool).astype(bool))
        out[~mask] = _keys(s[~mask])
        return out
    if s.dtype == np.float16:  # pandas has no float16 index to map through: one by one
        return np.array([_key(v) for v in s.to_numpy()], dtype=object)
    table = dict(_unique(s))
    out = s.map(table).astype(object).to_numpy(copy=True)
    out[pd.isna(out)] = None
    return out


def _order(v: Any) -> tuple[str, Any] | None:
    """What a class sorts on: its value within its kind (numbers, durations, dates)."""
    if isinstance(v, (np.timedelta64, datetime.timedelta)):  # an np.integer: test it first
        return "duration", pd.Timedelta(v)
    if isinstance(v, (np.datetime64, datetime.date)):
        return "date", pd.Timestamp(v)
    if isinstance(v, (bool, np.bool_)):  # a kind of its own: 0 and False don't interleave
        return "bool", bool(v)
    if isinstance(v, numbers.Real):
        return "number", v
    return None


def _classes(s: pd.Series) -> list[str]:
    """The distinct class names of ``s`` in fastai's ``CategoryMap`` order: a category dtype's
    categories (all of them) in their order; numbers, durations or dates by value (integer
    ``10`` after ``2``: class index follows label); anything else (text, mixed kinds) sorted as
    text. Names stay strings.

    >>> _classes(pd.Series([10, 2, 1])), _classes(pd.Series(["b", 10, 2]))
    (['1', '2', '10'], ['10', '2', 'b'])
    >>> _classes(pd.Series(pd.Categorical(["hi", "lo"], categories=["lo", "mid", "hi"])))
    ['lo', 'mid', 'hi']
    """
    if isinstance(s.dtype, pd.CategoricalDtype):
        return list(dict.fromkeys(k for _, k in _unique(pd.Series(s.cat.categories))))
    first: dict[str, Any] = {}
    for v, k in _unique(s):
        first.setdefault(k, v)
    orders = [_order(v) for v in first.values()]
    if orders and all(o is not None for o in orders) and len({o[0] for o in orders}) == 1:
        try:  # ties (2 and 2.0 in an object column) broken by name: the rows' order is moot
            return [k for _, k in sorted(zip((o[1] for o in orders), first, strict=True))]
        except TypeError:  # e.g. dates with and without a time zone
            pass
    return sorted(first)


def _codes(s: pd.Series, classes: Sequence[str]) -> np.ndarray:
    """Index of each value in ``classes`` (whose entry 0 is ``#na#``); missing or unseen -> 0."""
    return pd.Index(list(classes[1:]), dtype=object).get_indexer(_keys(s)).astype(np.int64) + 1


def _preview(names: Sequence[str], k: int = 10) -> str:
    """At most ``k`` names and how many there are: error messages stay one line when a
    target holds thousands of values.

    >>> _preview(["a", "b"]), _preview([str(i) for i in range(25)], 3)
    ("['a', 'b']", "['0', '1', '2', ...] (25 in all)")
    """
    names = list(names)
    if len(names) <= k:
        return repr(names)
    return f"{repr(names[:k])[:-1]}, ...] ({len(names)} in all)"


def auto_y_kind(y: pd.Series) -> str:
    """The target kind ``y_kind="auto"`` picks, by fastai's rule for ``TabularDataLoaders``
    without a ``y_block``: a numeric column (integers or floats, nullable ones included) is
    ``"regression"``; anything else (text, booleans, a category dtype, dates) is
    ``"category"``. So integer class labels (0/1, digits) need ``y_kind="category"``.

    >>> auto_y_kind(pd.Series([5263, 6064])), auto_y_kind(pd.Series([0.5]))
    ('regression', 'regression')
    >>> auto_y_kind(pd.Series(["<50k", ">=50k"])), auto_y_kind(pd.Series([True, False]))
    ('category', 'category')
    """
    numeric = pd.api.types.is_integer_dtype(y.dtype) or pd.api.types.is_float_dtype(y.dtype)
    return "regression" if numeric else "category"


def _warn_if_labels(y: pd.Series, name: str) -> None:
    """One line when ``auto`` made a 0/1-style integer target (two values or fewer)
    regression: almost always meant as classes, and the model would get MSE, not accuracy.
    Wider integer targets (counts, sales, ratings) stay quiet."""
    if pd.api.types.is_integer_dtype(y.dtype) and y.nunique() <= 2:
        warnings.warn(f"target {name!r} holds integers with {y.nunique()} distinct value(s): "
                      "y_kind='auto' treats it as regression (fastai's rule); pass "
                      "y_kind='category' for classes or 'regression' to silence this",
                      UserWarning, stacklevel=_outside_stacklevel())


def _outside_stacklevel() -> int:
    """The ``stacklevel`` that points a warning at the first caller outside this module
    (the user's ``from_df`` or ``fit`` line, not ours)."""
    frame, level = sys._getframe(1), 1
    while frame is not None and frame.f_globals.get("__name__") == __name__:
        frame, level = frame.f_back, level + 1
    return level


# -- the three preprocessing steps -----------------------------------------------------------
class FillMissing:
    """Fills missing values of continuous columns with the training median, and adds a
    boolean column ``<name>_na`` for each column that had missing values in training.

    Medians are kept for every column, so a column complete in training but not at inference
    is still filled (without an indicator: the model's inputs are fixed by training).

    >>> df = pd.DataFrame({"x": [1.0, None, 5.0], "y": [1, 2, 3]})
    >>> fm = FillMissing().fit(df, ["x", "y"])
    >>> out = fm.transform(df)
    >>> out["x"].tolist(), out["x_na"].tolist(), fm.na_names
    ([1.0, 3.0, 5.0], [False, True, False], ['x_na'])
    """

    def __init__(self, add_col: bool = True) -> None:
        self.add_col = add_col
        self.medians: dict[str, float] = {}
        self.with_na: list[str] = []

    def fit(self, df: pd.DataFrame, cont_names: Sequence[str]) -> FillMissing:
        _require(df, cont_names, "continuous")
        self.medians, self.with_na = {}, []
        for name in cont_names:
            v = _numeric(df[name], name)
            if v.isna().all():
                raise ValueError(f"continuous column {name!r} has no values in the training "
                                 "frame: nothing to fill with")
            self.medians[name] = float(v.median())
            if self.add_col and v.isna().any():
                if f"{name}_na" in df.columns:
                    raise ValueError(f"column {name}_na exists already; FillMissing would "
                                     "overwrite it")
                self.with_na.append(name)
        return self

    @property
    def na_names(self) -> list[str]:
        """The indicator columns this step adds (categorical)."""
        return [f"{n}_na" for n in self.with_na]

    def transform(self, df: pd.DataFrame) -> pd.DataFrame:
        _require(df, list(self.medians), "continuous")
        out = df.copy()
        for name, median in self.medians.items():
            v = _numeric(df[name], name)
            if name in self.with_na:
                out[f"{name}_na"] = v.isna().to_numpy()
            out[name] = v.fillna(median)
        return out

    def state_dict(self) -> dict[str, Any]:
        return {"add_col": self.add_col, "medians": dict(self.medians),
                "with_na": list(self.with_na)}

    def load_state_dict(self, state: Mapping[str, Any]) -> FillMissing:
        self.add_col, self.medians = state["add_col"], dict(state["medians"])
        self.with_na = list(state["with_na"])
        return self


class Categorify:
    """Maps each categorical column to integer codes: 0 is ``#na#`` (missing, or a value
    never seen in training), then the training classes in order: a category dtype's own
    order, numbers (dates, durations) by value, else sorted as text (as fastai's
    ``CategoryMap``). Values are classes by type and value: ``True`` is not ``1``.

    >>> df = pd.DataFrame({"c": ["b", "a", None, "b"]})
    >>> cat = Categorify().fit(df, ["c"])
    >>> cat.classes["c"], cat.transform(pd.DataFrame({"c": ["a", "z", None]}))["c"].tolist()
    (['#na#', 'a', 'b'], [1, 0, 0])
    """

    def __init__(self) -> None:
        self.classes: dict[str, list[str]] = {}

    def fit(self, df: pd.DataFrame, cat_names: Sequence[str]) -> Categorify:
        _require(df, cat_names, "categorical")
        self.classes = {}
        for name in cat_names:
            self.classes[name] = [NA, *(k for k in _classes(df[name]) if k != NA)]
        return self

    def transform(self, df: pd.DataFrame) -> pd.DataFrame:
        _require(df, list(self.classes), "categorical")
        out = df.copy()
        for name, classes in self.classes.items():
            out[name] = _codes(df[name], classes)
        return out

    def state_dict(self) -> dict[str, Any]:
        return {"classes": {k: list(v) for k, v in self.classes.items()}}

    def load_state_dict(self, state: Mapping[str, Any]) -> Categorify:
        self.classes = {k: list(v) for k, v in state["classes"].items()}
        return self


def _is_constant(n: int, mean: float, var: float) -> bool:
    """Whether ``n`` values of this mean and variance are constant up to rounding: 0.1
    repeated gets a variance of about 1e-34, not 0, and dividing by its std would blow 0.2
    up to 7e15. The bound is sklearn's ``StandardScaler`` one (the rounding error of a
    two-pass variance).

    >>> _is_constant(3, 0.1, float(pd.Series([0.1] * 3).var(ddof=0))), _is_constant(2, 1.0, 1.0)
    (True, False)
    """
    eps = float(np.finfo(np.float64).eps)
    return var <= n * eps * var + (n * mean * eps) ** 2


class Normalize:
    """Standardises continuous columns with the training mean and (population) standard
    deviation; a constant column keeps its scale (std taken as 1, as sklearn's
    ``StandardScaler`` does, a column equal up to rounding included).

    >>> df = pd.DataFrame({"x": [1.0, 3.0]})
    >>> Normalize().fit(df, ["x"]).transform(pd.DataFrame({"x": [2.0, 5.0]}))["x"].tolist()
    [0.0, 3.0]
    """

    def __init__(self) -> None:
        self.means: dict[str, float] = {}
        self.stds: dict[str, float] = {}

    def fit(self, df: pd.DataFrame, cont_names: Sequence[str]) -> Normalize:
        _require(df, cont_names, "continuous")
        self.means, self.stds = {}, {}
        for name in cont_names:
            v = _numeric(df[name], name)
            if v.isna().any():
                raise ValueError(f"continuous column {name!r} has missing values: fill them "
                                 "first (FillMissing)")
            lo, hi = float(v.min()), float(v.max())
            # all equal: the value itself (a computed mean of 0.1 x 3 is off by an ulp)
            mean, var = (lo, 0.0) if lo == hi else (float(v.mean()), float(v.var(ddof=0)))
            self.means[name] = mean
            self.stds[name] = 1.0 if _is_constant(len(v), mean, var) else math.sqrt(var)
        return self

    def transform(self, df: pd.DataFrame) -> pd.DataFrame:
        _require(df, list(self.means), "continuous")
        out = df.copy()
        for name in self.means:
            out[name] = (_numeric(df[name], name) - self.means[name]) / self.stds[name]
        return out

    def state_dict(self) -> dict[str, Any]:
        return {"means": dict(self.means), "stds": dict(self.stds)}

    def load_state_dict(self, state: Mapping[str, Any]) -> Normalize:
        self.means, self.stds = dict(state["means"]), dict(state["stds"])
        return self


class TabularTensors(NamedTuple):
    """A processed frame: codes ``cat`` int64 ``(N, n_cat)``, ``cont`` float32
    ``(N, n_cont)``, and the target ``y``: int64 class indices ``(N,)`` (cross-entropy's
    shape) or float32 values ``(N, 1)`` (the model's output shape, as fastai's regression
    targets: a loss or metric written for the model's output then sees matching shapes), or
    ``None`` when the frame has no target column."""

    cat: Tensor
    cont: Tensor
    y: Tensor | None


class TabularProcessor:
    """FillMissing -> Categorify -> Normalize, fitted on a training frame and applied the same
    way to any other, plus the target's encoding.

    Args:
        cat_names: categorical columns (any dtype; values become class names).
        cont_names: continuous columns (numbers or booleans).
        y_name: the target column (or a one-element list of it, as fastai's ``y_names``),
            or ``None`` (inference only).
        y_kind: ``"category"`` (classes, cross-entropy), ``"regression"`` (values, MSE) or
            ``"auto"``: fastai's rule (:func:`auto_y_kind`), regression for an integer or
            float target (Rossmann's ``Sales``), classes for anything else (Adult's
            ``salary`` text). Integer class labels need ``y_kind="category"``; ``auto``
            warns when an integer target has two values or fewer.
        fill_missing: run :class:`FillMissing` (else missing continuous values are an error).
        normalize: run :class:`Normalize`.

    ``cat_names`` after fitting includes the ``<col>_na`` indicators; ``classes`` maps each
    categorical column to its class names, ``y_classes`` lists the target classes.
    """

    def __init__(self, cat_names: Sequence[str], cont_names: Sequence[str],
                 y_name: str | Sequence[str] | None = None, y_kind: str = "auto",
                 fill_missing: bool = True, normalize: bool = True) -> None:
        for names, role in ((cat_names, "cat_names"), (cont_names, "cont_names")):
            if isinstance(names, str) or not all(isinstance(n, str) for n in names):
                raise TypeError(f"{role} must be a list of column names, got {names!r}")
        # plain str: names go into the export, and torch.load(weights_only=True) refuses
        # str subclasses such as numpy.str_ (from list(np.array([...])) or df.columns.values)
        cat_names, cont_names = [str(n) for n in cat_names], [str(n) for n in cont_names]
        if isinstance(y_name, (list, tuple, np.ndarray, pd.Index)):  # fastai's y_names=[...]
            if len(y_name) != 1:
                raise ValueError(f"one target column is supported, got {list(y_name)!r} (a "
                                 "multi-target model needs its own loss and model head)")
            y_name = y_name[0]
        y_name = plain(y_name)
        both = sorted(set(cat_names) & set(cont_names))
        if both:
            raise ValueError(f"column(s) {both} are listed as both categorical and continuous")
        if y_name is not None and y_name in cat_names + cont_names:
            raise ValueError(f"the target {y_name!r} is also listed as an input column")
        if len(set(cat_names)) != len(cat_names) or len(set(cont_names)) != len(cont_names):
            raise ValueError("a column is listed twice")
        if y_kind not in ("auto", "category", "regression"):
            raise ValueError(f"y_kind must be 'auto', 'category' or 'regression', got {y_kind!r}")
        self.base_cat_names, self.cont_names = cat_names, cont_names
        self.y_name, self.y_kind = y_name, str(y_kind)
        self.fill = FillMissing() if fill_missing else None
        self.categorify = Categorify()
        self.norm = Normalize() if normalize else None
        self.y_classes: list[str] | None = None
        self.fitted = False

    @property
    def cat_names(self) -> list[str]:
        """The categorical inputs of the model: the given ones, then the ``_na`` indicators."""
        return self.base_cat_names + (self.fill.na_names if self.fill else [])

    @property
    def classes(self) -> dict[str, list[str]]:
        return self.categorify.classes

    @property
    def n_out(self) -> int:
        """Model outputs: the number of target classes, or 1 for regression."""
        self._check_fitted()
        return len(self.y_classes) if self.y_kind == "category" else 1

    def emb_szs(self, overrides: Mapping[str, int] | None = None) -> list[tuple[int, int]]:
        """``(n_classes, width)`` per categorical input, widths by :func:`emb_sz_rule`
        unless ``overrides`` names the column."""
        self._check_fitted()
        overrides = dict(overrides or {})
        unknown = sorted(set(overrides) - set(self.cat_names))
        if unknown:
            raise KeyError(f"emb_szs given for unknown categorical column(s) {unknown}")
        return [(len(self.classes[n]), int(overrides.get(n, emb_sz_rule(len(self.classes[n])))))
                for n in self.cat_names]

    def fit(self, df: pd.DataFrame) -> TabularProcessor:
        """Learns classes, medians, means and standard deviations from ``df`` (the training
        rows) and the target encoding; returns ``self``."""
        _require(df, self.base_cat_names + self.cont_names, "input")
        if len(df) == 0:
            raise ValueError("cannot fit the preprocessing on an empty frame")
        if self.y_name is not None:
            _require(df, [self.y_name], "target")
            y = df[self.y_name]
            if y.isna().any():
                raise ValueError(f"target column {self.y_name!r} has missing values")
            if self.y_kind == "auto":
                self.y_kind = auto_y_kind(y)
                if self.y_kind == "regression":
                    _warn_if_labels(y, self.y_name)
            if self.y_kind == "category":
                self.y_classes = _classes(y)
            else:
                _numeric(y, self.y_name)
        if self.fill is not None:
            df = self.fill.fit(df, self.cont_names).transform(df)
        self.categorify.fit(df, self.cat_names)
        if self.norm is not None:
            self.norm.fit(df, self.cont_names)
        self.fitted = True
        return self

    def _check_fitted(self) -> None:
        if not self.fitted:
            raise RuntimeError("TabularProcessor is not fitted: call fit(train_df) first")

    def transform(self, df: pd.DataFrame, with_y: bool | None = None) -> TabularTensors:
        """``df`` processed as the training frame was. The target is encoded when the frame
        has the target column (or ``with_y=True``, which then requires it)."""
        self._check_fitted()
        _require(df, self.base_cat_names + self.cont_names, "input")
        if with_y is None:
            with_y = self.y_name is not None and self.y_name in df.columns
        if self.fill is not None:
            df = self.fill.transform(df)
        df = self.categorify.transform(df)
        if self.norm is not None:
            df = self.norm.transform(df)
        conts = [_numeric(df[n], n) for n in self.cont_names]
        if any(c.isna().any() for c in conts):
            bad = [n for n, c in zip(self.cont_names, conts, strict=True) if c.isna().any()]
            raise ValueError(f"continuous column(s) {bad} have missing values and FillMissing "
                             "is off")
        cat = torch.from_numpy(np.stack([df[n].to_numpy(np.int64) for n in self.cat_names], 1)
                               if self.cat_names else np.zeros((len(df), 0), np.int64))
        cont = torch.from_numpy(np.stack([c.to_numpy(np.float32) for c in conts], 1)
                                if conts else np.zeros((len(df), 0), np.float32))
        return TabularTensors(cat, cont, self._encode_y(df) if with_y else None)

    def _encode_y(self, df: pd.DataFrame) -> Tensor:
        if self.y_name is None:
            raise ValueError("this processor has no target column")
        _require(df, [self.y_name], "target")
        y = df[self.y_name]
        if y.isna().any():
            raise ValueError(f"target column {self.y_name!r} has missing values")
        if self.y_kind == "regression":  # (N, 1) as the model's output: no (N, N) broadcast
            return torch.from_numpy(_numeric(y, self.y_name).to_numpy(np.float32).reshape(-1, 1))
        keys = _keys(y)
        codes = pd.Index(self.y_classes, dtype=object).get_indexer(keys)
        if (codes < 0).any():
            raise ValueError(self._unseen_message(y, codes < 0))
        return torch.from_numpy(codes.astype(np.int64))

    def _unseen_message(self, y: pd.Series, unseen: np.ndarray) -> str:
        """One line: a few unseen labels (``unseen``: their mask) in class order, a few
        classes, their counts, and for a numeric target the hint that it may be a
        regression."""
        # the values themselves (an object column, not a category dtype's full list):
        # numbers come out by value, 2334 before 10000
        unseen_names = _classes(pd.Series(np.asarray(y, dtype=object)[unseen], dtype=object))
        msg = (f"target {self.y_name!r} has label(s) {_preview(unseen_names)} not seen in "
               f"training (classes {_preview(self.y_classes)})")
        if auto_y_kind(y) == "regression":
            msg += "; numbers to predict? use y_kind='regression'"
        return msg

    def decode_y(self, idx: Tensor | np.ndarray) -> np.ndarray:
        """Class names of class indices (an object array)."""
        self._check_fitted()
        if self.y_kind != "category":
            raise ValueError("decode_y needs a categorical target")
        return np.asarray(self.y_classes, dtype=object)[np.asarray(idx, dtype=np.int64)]

    def state_dict(self) -> dict[str, Any]:
        """Everything fitted, as plain lists/dicts/numbers (``torch.load(weights_only=True)``
        reads it back)."""
        self._check_fitted()
        return {"cat_names": self.base_cat_names, "cont_names": self.cont_names,
                "y_name": self.y_name, "y_kind": self.y_kind, "y_classes": self.y_classes,
                "fill": None if self.fill is None else self.fill.state_dict(),
                "categorify": self.categorify.state_dict(),
                "norm": None if self.norm is None else self.norm.state_dict()}

    @classmethod
    def from_state_dict(cls, state: Mapping[str, Any]) -> TabularProcessor:
        proc = cls(state["cat_names"], state["cont_names"], state["y_name"], state["y_kind"],
                   fill_missing=state["fill"] is not None, normalize=state["norm"] is not None)
        if proc.fill is not None:
            proc.fill.load_state_dict(state["fill"])
        proc.categorify.load_state_dict(state["categorify"])
        if proc.norm is not None:
            proc.norm.load_state_dict(state["norm"])
        proc.y_classes = state["y_classes"]
        proc.fitted = True
        return proc


# -- the model -----------------------------------------------------------------------------
class ColumnEmbeddings(nn.Module):
    """One embedding table per categorical column, stored back to back in one parameter:
    a batch's lookups are one gather and their gradient one scatter-add, instead of an
    embedding op (and its backward) per column; for Adult's 8 columns that cuts the time
    spent in embeddings per training step about 8x on this CPU. The math is that of separate
    ``nn.Embedding`` tables (AdamW and weight decay act element by element).

    >>> emb = ColumnEmbeddings([(3, 2), (4, 1)])
    >>> x = torch.tensor([[2, 3], [0, 1]])
    >>> torch.equal(emb(x), torch.cat([emb.table(0)[x[:, 0]], emb.table(1)[x[:, 1]]], 1))
    True
    """

    def __init__(self, emb_szs: Sequence[tuple[int, int]]) -> None:
        super().__init__()
        self.emb_szs = [(int(n), int(d)) for n, d in emb_szs]
        sizes = [n * d for n, d in self.emb_szs]
        self.offsets = [0, *np.cumsum(sizes).tolist()]
        self.weight = nn.Parameter(torch.empty(self.offsets[-1]))
        # Small initial embeddings, as the course's models use.
        nn.init.trunc_normal_(self.weight, std=0.01, a=-0.02, b=0.02)
        widths = torch.tensor([d for _, d in self.emb_szs])
        col = torch.repeat_interleave(torch.arange(len(widths)), widths)
        within = torch.cat([torch.arange(d) for _, d in self.emb_szs])
        # Output column j reads weight[base[j] + code[col[j]] * stride[j]]; not saved in
        # the state dict (they follow from emb_szs).
        self.register_buffer("col", col, persistent=False)
        self.register_buffer("stride", widths[col], persistent=False)
        self.register_buffer("base", torch.tensor(self.offsets[:-1])[col] + within,
                             persistent=False)
        self.register_buffer("n_classes", torch.tensor([n for n, _ in self.emb_szs]),
                             persistent=False)

    def __len__(self) -> int:
        return len(self.emb_szs)

    @property
    def width(self) -> int:
        """Total width of the concatenated embeddings."""
        return int(self.stride.numel())

    def table(self, i: int) -> Tensor:
        """Column ``i``'s table, ``(n_classes, width)`` (a view of :attr:`weight`)."""
        n, d = self.emb_szs[i]
        return self.weight[self.offsets[i]:self.offsets[i + 1]].view(n, d)

    def forward(self, x_cat: Tensor) -> Tensor:
        # A code outside its table would silently read the next column's table: check
        # (asynchronously on CUDA, where an eager check would stall the stream; a bad code
        # there is a device-side assert, as an out-of-range index is for nn.Embedding).
        torch._assert_async(((x_cat >= 0) & (x_cat < self.n_classes)).all(),
                            "categorical code out of range for its embedding table")
        return self.weight.take(x_cat.index_select(1, self.col) * self.stride + self.base)


class TabularModel(nn.Module):
    """One model, two inputs: an embedding per categorical column (with embedding dropout)
    and the continuous columns through BatchNorm, concatenated, then
    ``Linear -> ReLU -> BatchNorm -> Dropout`` blocks and a final ``Linear``.

    Args:
        emb_szs: ``(n_classes, width)`` per categorical column.
        n_cont: number of continuous columns. out_sz: outputs (classes, or 1).
        layers: hidden widths. ps: dropout after each block (one value or one per block).
        embed_p: dropout on the concatenated embeddings. y_range: ``(lo, hi)`` squashes the
            output with ``lo + (hi - lo) * sigmoid(x)``. use_bn: BatchNorm in the blocks
            (their Linear layers then have no bias: the BatchNorm shift replaces it).
            bn_final: BatchNorm on the output. bn_cont: BatchNorm on the continuous input.

    >>> m = TabularModel([(10, 6), (3, 3)], n_cont=4, out_sz=2)
    >>> m(torch.zeros(5, 2, dtype=torch.long), torch.zeros(5, 4)).shape
    torch.Size([5, 2])
    """

    def __init__(self, emb_szs: Sequence[tuple[int, int]], n_cont: int, out_sz: int,
                 layers: Sequence[int] = (200, 100), ps: float | Sequence[float] = 0.0,
                 embed_p: float = 0.0, y_range: tuple[float, float] | None = None,
                 use_bn: bool = True, bn_final: bool = False, bn_cont: bool = True) -> None:
        super().__init__()
        emb_szs = [(int(n), int(d)) for n, d in emb_szs]
        layers = [int(n) for n in layers]
        ps = [float(ps)] * len(layers) if np.ndim(ps) == 0 else [float(p) for p in ps]
        if len(ps) != len(layers):
            raise ValueError(f"{len(ps)} dropout values for {len(layers)} layers")
        if n_cont < 0 or out_sz < 1 or any(n < 1 or d < 1 for n, d in emb_szs):
            raise ValueError("sizes must be positive (n_cont >= 0)")
        if not emb_szs and n_cont == 0:
            raise ValueError("a TabularModel needs at least one categorical or continuous input")
        if y_range is not None and not y_range[0] < y_range[1]:
            raise ValueError(f"y_range must be (lo, hi) with lo < hi, got {y_range}")
        self.config = {"emb_szs": emb_szs, "n_cont": int(n_cont), "out_sz": int(out_sz),
                       "layers": layers, "ps": ps, "embed_p": float(embed_p),
                       "y_range": None if y_range is None else tuple(map(float, y_range)),
                       "use_bn": bool(use_bn), "bn_final": bool(bn_final),
                       "bn_cont": bool(bn_cont)}  # plain types: the config is exported
        self.embeds = ColumnEmbeddings(emb_szs) if emb_szs else None
        self.n_cat = len(emb_szs)
        self.emb_drop = nn.Dropout(embed_p) if embed_p > 0 else nn.Identity()
        self.bn_cont = nn.BatchNorm1d(n_cont) if bn_cont and n_cont else nn.Identity()
        self.n_emb, self.n_cont = sum(d for _, d in emb_szs), int(n_cont)
        blocks: list[nn.Module] = []
        sizes = [self.n_emb + self.n_cont, *layers]
        for n_in, n_out, p in zip(sizes[:-1], sizes[1:], ps, strict=True):
            blocks += [nn.Linear(n_in, n_out, bias=not use_bn), nn.ReLU(inplace=True)]
            if use_bn:
                blocks.append(nn.BatchNorm1d(n_out))
            if p > 0:
                blocks.append(nn.Dropout(p))
        blocks.append(nn.Linear(sizes[-1], out_sz))
        if bn_final:
            blocks.append(nn.BatchNorm1d(out_sz))
        self.layers = nn.Sequential(*blocks)
        self.y_range = self.config["y_range"]

    @property
    def input_dtype(self) -> torch.dtype:
        """The dtype the continuous input should have: that of the first Linear's weight
        (float16 after :func:`fastext.amp.to_fp16`, which keeps BatchNorm in float32)."""
        return next(m for m in self.layers if isinstance(m, nn.Linear)).weight.dtype

    def forward(self, x_cat: Tensor, x_cont: Tensor) -> Tensor:
        if x_cat.dim() != 2 or x_cat.shape[1] != self.n_cat:
            raise ValueError(f"x_cat must be (batch, {self.n_cat}), got {tuple(x_cat.shape)}")
        if x_cont.dim() != 2 or x_cont.shape[1] != self.n_cont:
            raise ValueError(f"x_cont must be (batch, {self.n_cont}), got {tuple(x_cont.shape)}")
        if self.n_cat and (x_cat.dtype.is_floating_point or x_cat.dtype == torch.bool):
            raise TypeError(f"x_cat must hold integer class indices, got {x_cat.dtype}")
        parts = []
        if self.embeds is not None:
            parts.append(self.emb_drop(self.embeds(x_cat)))
        if self.n_cont:
            parts.append(self.bn_cont(x_cont))
        x = self.layers(parts[0] if len(parts) == 1 else torch.cat(parts, 1))
        if self.y_range is not None:
            lo, hi = self.y_range
            x = torch.sigmoid(x) * (hi - lo) + lo
        return x


# -- data ---------------------------------------------------------------------------------
class SlicedTensorLoader(TensorLoader):
    """:class:`fastext.learner.TensorLoader`'s batches (the same seeded permutation per
    epoch, the same order), with the shuffle done once per epoch: each tensor is permuted
    whole with one ``index_select``, then every batch is a contiguous slice (a view, no
    copy) instead of a gather per tensor per batch. Costs one extra copy of the data while
    an epoch runs; for Adult at batch 64 it saves about 5% of an epoch.

    >>> x = torch.arange(10)
    >>> a = [b[0].tolist() for b in SlicedTensorLoader((x,), bs=4, shuffle=True, seed=3)]
    >>> a == [b[0].tolist() for b in TensorLoader((x,), bs=4, shuffle=True, seed=3)]
    True
    """

    def __iter__(self) -> Iterator[tuple[Tensor, ...]]:
        if not self.shuffle:
            yield from super().__iter__()
            return
        n = len(self.tensors[0])
        g = torch.Generator().manual_seed(self.seed + self.epoch)
        order = torch.randperm(n, generator=g).to(self.tensors[0].device)
        self.epoch += 1
        shuffled = [t.index_select(0, order) for t in self.tensors]
        for i in range(len(self)):
            yield tuple(t[i * self.bs:min(n, (i + 1) * self.bs)] for t in shuffled)


class TabularDataLoaders(DataLoaders):
    """Train and valid loaders over processed tensors, plus the fitted :attr:`proc`.

    Each batch is ``(cat, cont, y)`` sliced from the whole pre-built tensors
    (:class:`SlicedTensorLoader`): no per-row Python, no collation. The training
    loader drops a last partial batch (a batch of one breaks BatchNorm).
    """

    def __init__(self, train: Any, valid: Any, proc: TabularProcessor,
                 device: str | torch.device | None = None) -> None:
        super().__init__(train, valid, device)
        self.proc = proc

    @classmethod
    def from_df(cls, df: pd.DataFrame, cat_names: Sequence[str], cont_names: Sequence[str],
                y_name: str | Sequence[str], valid_df: pd.DataFrame | None = None,
                valid_pct: float = 0.2, seed: int = 0, bs: int = 64, valid_bs: int | None = None,
                y_kind: str = "auto", fill_missing: bool = True, normalize: bool = True,
                drop_last: bool = True,
                device: str | torch.device | None = None) -> TabularDataLoaders:
        """Fits the preprocessing on the training rows (``df``, less a random ``valid_pct``
        of it when ``valid_df`` is not given) and builds the loaders.

        ``y_kind`` as :class:`TabularProcessor`'s: ``"auto"`` makes a numeric target a
        regression, so integer class labels (here 0/1) are passed as ``"category"``.

        >>> df = pd.DataFrame({"a": list("xyxy") * 8, "b": range(32), "t": [0, 1] * 16})
        >>> dls = TabularDataLoaders.from_df(df, ["a"], ["b"], "t", bs=8, device="cpu",
        ...                                  y_kind="category")
        >>> cat, cont, y = next(iter(dls.train))
        >>> cat.shape, cont.shape, y.shape, len(dls.valid.dataset[0])
        (torch.Size([8, 1]), torch.Size([8, 1]), torch.Size([8]), 6)
        """
        if valid_df is None:
            train_idx, valid_idx = split_indices(len(df), valid_pct, seed)
            df, valid_df = df.iloc[train_idx.numpy()], df.iloc[valid_idx.numpy()]
        proc = TabularProcessor(cat_names, cont_names, y_name, y_kind, fill_missing,
                                normalize).fit(df)
        train, valid = proc.transform(df, with_y=True), proc.transform(valid_df, with_y=True)
        return cls(SlicedTensorLoader(train, bs, shuffle=True,
                                      drop_last=drops_last_batch(len(df), bs, drop_last),
                                      seed=seed),
                   TensorLoader(valid, valid_bs or 2 * bs), proc, device)

    def test_dl(self, df: pd.DataFrame, bs: int | None = None) -> DeviceLoader:
        """A loader over ``df`` processed as the training rows were (with its targets when
        ``df`` has the target column), for ``learn.validate(dl=...)`` or inference."""
        t = self.proc.transform(df)
        tensors = (t.cat, t.cont) if t.y is None else (t.cat, t.cont, t.y)
        return DeviceLoader(TensorLoader(tensors, bs or 2 * self.train.loader.bs), self.device)


# -- learner, prediction, export ------------------------------------------------------------
def _one_group(model: nn.Module) -> list[list[nn.Parameter]]:
    return [list(model.parameters())]


def _mse_flat(pred: Tensor, targ: Tensor) -> Tensor:
    return F.mse_loss(pred.reshape(-1), targ.reshape(-1).to(pred.dtype))


class TabularPredictor:
    """A trained :class:`TabularModel` with its :class:`TabularProcessor`: predicts raw
    pandas rows. Made by :meth:`TabularLearner.predictor` or :func:`load_tabular`."""

    def __init__(self, model: TabularModel, proc: TabularProcessor) -> None:
        self.model, self.proc = model, proc

    @torch.no_grad()
    def predict(self, rows: pd.DataFrame | pd.Series,
                bs: int = 4096) -> tuple[Any, Tensor]:
        """Predictions for a frame (or one row as a Series).

        Classification: ``(labels, probs)``, the predicted class names (strings, as the
        target's values were written: an object array, or one name for a row) and the
        class probabilities ``(N, n_classes)`` (or ``(n_classes,)``). Regression:
        ``(values, values)``, the model's ``(N, 1)`` outputs flattened to ``(N,)``, as a
        numpy array and a tensor (a float and a 0-d tensor for a row).
        """
        single = isinstance(rows, pd.Series)
        df = rows.to_frame().T if single else rows
        t = self.proc.transform(df, with_y=False)
        device, dtype = next(self.model.parameters()).device, self.model.input_dtype
        with eval_mode(self.model):
            outs = [self.model(c.to(device), x.to(device, dtype)).float().cpu()
                    for c, x in zip(t.cat.split(bs), t.cont.split(bs), strict=True)]
        out = torch.cat(outs) if outs else torch.zeros(0, self.proc.n_out)
        if self.proc.y_kind == "category":
            probs = out.softmax(-1)
            labels = self.proc.decode_y(probs.argmax(-1))
            return (labels[0], probs[0]) if single else (labels, probs)
        values = out.reshape(-1)
        return (float(values[0]), values[0]) if single else (values.numpy(), values)

    def export(self, path: str | Path, state_dict: dict[str, Tensor] | None = None) -> Path:
        """Writes model config, weights (float32, CPU: ``state_dict``, default the model's)
        and preprocessing to one file (readable with ``torch.load(weights_only=True)``);
        :func:`load_tabular` reads it back."""
        state = {"format": EXPORT_FORMAT, "config": self.model.config,
                 "model": float32_cpu(state_dict or self.model.state_dict()),
                 "proc": self.proc.state_dict()}
        return save_torch_file(state, path)


def load_tabular(path: str | Path, device: str | torch.device = "cpu") -> TabularPredictor:
    """Reads what :meth:`TabularLearner.export` wrote: a ready :class:`TabularPredictor`
    (model in eval mode) that processes new rows exactly as the training rows were.

    Raises:
        FileNotFoundError: no such file. ValueError: not a fastext tabular export.
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"no exported tabular model at {path}")
    state = torch.load(path, map_location=device, weights_only=True)
    if not isinstance(state, dict) or state.get("format") != EXPORT_FORMAT:
        raise ValueError(f"{path} is not a fastext tabular export ({EXPORT_FORMAT})")
    model = TabularModel(**state["config"])
    model.load_state_dict(state["model"])
    proc = TabularProcessor.from_state_dict(state["proc"])
    return TabularPredictor(model.to(device).eval(), proc)


class TabularLearner(Learner):
    """A :class:`fastext.learner.Learner` over :class:`TabularDataLoaders` that can also
    :meth:`predict` raw rows and :meth:`export` itself with its preprocessing (the training
    loop is the Learner's, unchanged)."""

    dls: TabularDataLoaders

    def predictor(self) -> TabularPredictor:
        return TabularPredictor(self.model, self.dls.proc)

    def predict(self, rows: pd.DataFrame | pd.Series, bs: int = 4096) -> tuple[Any, Tensor]:
        """See :meth:`TabularPredictor.predict`."""
        return self.predictor().predict(rows, bs)

    def export(self, path: str | Path) -> Path:
        """See :meth:`TabularPredictor.export`. After fp16 training the weights written
        are the fp32 master weights (:meth:`~fastext.learner.Learner.fp32_state_dict`)."""
        return self.predictor().export(path, self.fp32_state_dict())


def tabular_learner(dls: TabularDataLoaders, layers: Sequence[int] = (200, 100),
                    emb_szs: Mapping[str, int] | None = None,
                    ps: float | Sequence[float] = 0.0, embed_p: float = 0.0,
                    y_range: tuple[float, float] | None = None, use_bn: bool = True,
                    bn_final: bool = False, bn_cont: bool = True,
                    metrics: Sequence[Any] | None = None, loss_func: Any = None,
                    **kwargs: Any) -> TabularLearner:
    """A :class:`TabularLearner` with a :class:`TabularModel` sized from ``dls.proc``:
    embedding widths by :func:`emb_sz_rule` (``emb_szs`` overrides some by column name),
    cross-entropy and accuracy for a categorical target, MSE for regression (the model's
    output and the target are then both ``(batch, 1)``, so ``loss_func``/``metrics`` written
    for fastai, ``F.l1_loss`` or the course's ``exp_rmspe``, see matching shapes). Other keyword
    arguments go to :class:`fastext.learner.Learner` (``lr``, ``wd``, ``cbs``, ``path``...).

    >>> df = pd.DataFrame({"a": list("xyzx") * 16, "b": np.arange(64.0),
    ...                    "t": ["no", "yes"] * 32})
    >>> dls = TabularDataLoaders.from_df(df, ["a"], ["b"], "t", bs=16, device="cpu")
    >>> learn = tabular_learner(dls, layers=[8], quiet=True)
    >>> learn.fit_one_cycle(1, 1e-2)
    >>> learn.predict(df.iloc[0])[0] in ("no", "yes")
    True
    """
    proc = dls.proc
    model = TabularModel(proc.emb_szs(emb_szs), len(proc.cont_names), proc.n_out, layers, ps,
                         embed_p, y_range, use_bn, bn_final, bn_cont)
    if proc.y_kind == "category":
        loss_func = loss_func or F.cross_entropy
        metrics = [accuracy] if metrics is None else metrics
    else:
        loss_func = loss_func or _mse_flat
        metrics = [] if metrics is None else metrics
    kwargs.setdefault("splitter", _one_group)
    return TabularLearner(dls, model, loss_func, metrics=metrics, **kwargs)

