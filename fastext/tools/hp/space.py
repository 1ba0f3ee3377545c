"""Search spaces: named hyper-parameters that can be sampled, and encoded as numbers for a
surrogate model.

Each parameter maps a value to one float column: log-uniform values to ``log10(value)``,
uniform and integer values to themselves, a choice to the index of the option (so list the
options in a meaningful order, e.g. batch sizes ascending: the forest then splits on "bs <= 128").

>>> import numpy as np
>>> space = Space(lr=LogUniform(1e-4, 1e-1), bs=Choice([32, 64, 128]), epochs=Int(1, 3))
>>> params = space.sample(np.random.default_rng(0), 2)
>>> len(params), sorted(params[0])
(2, ['bs', 'epochs', 'lr'])
>>> space.encode([{"lr": 1e-3, "bs": 64, "epochs": 2}]).tolist()
[[-3.0, 1.0, 2.0]]
>>> space.decode(np.array([[-2.0, 2.0, 3.0]]))
[{'lr': 0.01, 'bs': 128, 'epochs': 3}]
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from ..._values import plain

__all__ = ["Choice", "Int", "LogUniform", "Param", "Space", "Uniform"]


def to_json_value(v: Any, where: str = "value") -> Any:
    """``v`` as plain JSON data: tensors, numpy arrays and numpy scalars through ``.tolist()``
    (a 0-d tensor or a numpy scalar becomes a Python number), tuples as lists, mapping keys as
    strings; numbers, strings, booleans and None as they are.

    >>> import numpy as np, torch
    >>> to_json_value({"acc": torch.tensor(0.5), "n": np.int64(3), "f1": [np.float64(0.25)]})
    {'acc': 0.5, 'n': 3, 'f1': [0.25]}

    Raises:
        TypeError: something else (``where`` says which entry), which the log could not hold.
    """
    tolist = getattr(v, "tolist", None)
    if callable(tolist):  # torch.Tensor, numpy arrays and scalars
        return to_json_value(tolist(), where)
    if v is None or isinstance(v, (bool, int, float, str)):
        return v
    if isinstance(v, Mapping):
        return {str(k): to_json_value(x, f"{where}[{k!r}]") for k, x in v.items()}
    if isinstance(v, (list, tuple)):
        return [to_json_value(x, f"{where}[{i}]") for i, x in enumerate(v)]
    raise TypeError(f"{where} ({type(v).__name__}) cannot go into the JSON log; report "
                    "numbers, strings, booleans, None, or lists and dicts of them")


def _json_or_raw(o: Any) -> Any:
    """``o`` as the log writes it (:func:`to_json_value`: tuples become lists), or ``o``
    itself when JSON cannot hold it (an in-memory search may use any options)."""
    try:
        return to_json_value(o, "option")
    except TypeError:
        return o


def _option_key(o: Any) -> str:
    """What tells options apart once written to JSON and read back: ``(64,)`` and ``[64]``
    are one option, ``1`` and ``True`` two (``"1"`` vs ``"true"``)."""
    try:
        return json.dumps(to_json_value(o, "option"), sort_keys=True)
    except (TypeError, ValueError):
        return "repr:" + repr(o)


def _finite(x: Any, what: str) -> float:
    try:
        v = float(x)
    except (TypeError, ValueError):
        raise TypeError(f"{what} must be a number, got {x!r}") from None
    if not math.isfinite(v):
        raise ValueError(f"{what} must be finite, got {x!r}")
    return v


class Param:
    """One hyper-parameter: ``sample`` draws values, ``encode``/``decode`` map values to and
    from one float (the surrogate's feature); ``bounds`` is the encoded range."""

    kind: str = ""

    def sample(self, rng: np.random.Generator, n: int) -> list[Any]:
        raise NotImplementedError

    def encode(self, value: Any) -> float:
        raise NotImplementedError

    def decode(self, x: float) -> Any:
        raise NotImplementedError

    @property
    def bounds(self) -> tuple[float, float]:
        raise NotImplementedError

    def to_dict(self) -> dict[str, Any]:
        raise NotImplementedError

    def restore(self, value: Any) -> Any:
        """The value a trial ran with, from what the JSON log read back for it (the same,
        except for :class:`Choice`)."""
        return value

    def label(self, name: str) -> str:
        """How the encoded axis is named in plots."""
        return name

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Param) and self.to_dict() == other.to_dict()

    def __repr__(self) -> str:
        args = ", ".join(f"{k}={v!r}" for k, v in self.to_dict().items() if k != "type")
        return f"{type(self).__name__}({args})"


class Uniform(Param):
    """A float drawn uniformly from ``[low, high]``.

    >>> Uniform(0.0, 0.5).encode(0.25)
    0.25
    """

    kind = "uniform"

    def __init__(self, low: float, high: float) -> None:
        self.low, self.high = _finite(low, "low"), _finite(high, "high")
        if not self.low < self.high:
            raise ValueError(f"need low < high, got [{low}, {high}]")

    def sample(self, rng: np.random.Generator, n: int) -> list[Any]:
        return [float(v) for v in rng.uniform(self.low, self.high, n)]

    def _check(self, value: Any) -> float:
        v = _finite(value, "value")
        # a little slack: decoded values are clipped floats and may round past a bound
        tol = 1e-9 * (self.high - self.low)
        if not self.low - tol <= v <= self.high + tol:
            raise ValueError(f"{v} is outside [{self.low}, {self.high}]")
        return v

    def encode(self, value: Any) -> float:
        return self._check(value)

    def decode(self, x: float) -> Any:
        return float(np.clip(x, self.low, self.high))

    @property
    def bounds(self) -> tuple[float, float]:
        return self.low, self.high

    def to_dict(self) -> dict[str, Any]:
        return {"type": self.kind, "low": self.low, "high": self.high}


class LogUniform(Uniform):
    """A positive float whose logarithm is uniform on ``[log low, log high]`` (learning
    rates, weight decay); encoded as ``log10(value)``.

    >>> LogUniform(1e-5, 1.0).encode(1e-2)
    -2.0
    >>> LogUniform(1e-5, 1.0).label("lr")
    'log10(lr)'
    """

    kind = "log"

    def __init__(self, low: float, high: float) -> None:
        super().__init__(low, high)
        if self.low <= 0:
            raise ValueError(f"a log-uniform range needs low > 0, got {low}")

    def sample(self, rng: np.random.Generator, n: int) -> list[Any]:
        lo, hi = self.bounds
        return [float(10.0 ** v) for v in rng.uniform(lo, hi, n)]

    def encode(self, value: Any) -> float:
        return math.log10(self._check(value))

    def decode(self, x: float) -> Any:
        return float(np.clip(10.0 ** float(x), self.low, self.high))

    @property
    def bounds(self) -> tuple[float, float]:
        return math.log10(self.low), math.log10(self.high)

    def label(self, name: str) -> str:
        return f"log10({name})"


class Int(Param):
    """An integer drawn uniformly from ``low..high`` (both included).

    >>> Int(1, 3).decode(2.6)
    3
    """

    kind = "int"

    def __init__(self, low: int, high: int) -> None:
        if isinstance(low, bool) or isinstance(high, bool) or \
                int(low) != low or int(high) != high:
            raise TypeError(f"Int needs integer bounds, got {low!r}, {high!r}")
        self.low, self.high = int(low), int(high)
        if not self.low < self.high:
            raise ValueError(f"need low < high, got [{low}, {high}]")

    def sample(self, rng: np.random.Generator, n: int) -> list[Any]:
        return [int(v) for v in rng.integers(self.low, self.high + 1, n)]

    def encode(self, value: Any) -> float:
        v = _finite(value, "value")
        if v != int(v) or not self.low <= v <= self.high:
            raise ValueError(f"{value!r} is not an integer in {self.low}..{self.high}")
        return v

    def decode(self, x: float) -> Any:
        return int(np.clip(round(float(x)), self.low, self.high))

    @property
    def bounds(self) -> tuple[float, float]:
        return float(self.low), float(self.high)

    def to_dict(self) -> dict[str, Any]:
        return {"type": self.kind, "low": self.low, "high": self.high}


class Choice(Param):
    """One of a list of options (numbers, strings, booleans, tuples or lists of them;
    anything JSON can hold), encoded as its index in the list.

    The objective gets the options as given, except NumPy scalars, which become Python
    numbers. The log holds their JSON form (a tuple as a list); a resumed search maps it
    back to the option (:meth:`restore`), so ``(128, 64)`` stays a tuple.

    >>> Choice(["relu", "tanh"]).encode("tanh")
    1.0
    >>> c = Choice([(64,), (128, 64)])
    >>> c.to_dict()["options"], c.restore([128, 64])
    ([[64], [128, 64]], (128, 64))
    """

    kind = "choice"

    def __init__(self, options: Sequence[Any]) -> None:
        if isinstance(options, (str, bytes)) or not isinstance(options, Sequence):
            raise TypeError(f"Choice needs a list of options, got {options!r}")
        self.options = [plain(o) for o in options]
        if not self.options:
            raise ValueError("Choice needs at least one option")
        # distinct as the log will hold them: (64,) and [64] are both [64] there
        self._keys = [_option_key(o) for o in self.options]
        if len(set(self._keys)) != len(self.options):
            raise ValueError(f"Choice options must be distinct, got {self.options}")

    def sample(self, rng: np.random.Generator, n: int) -> list[Any]:
        return [self.options[i] for i in rng.integers(0, len(self.options), n)]

    def encode(self, value: Any) -> float:
        for i, o in enumerate(self.options):
            # 64 == 64.0 but True must not match 1: compare types as well as values
            if type(o) is type(value) and o == value:
                return float(i)
        for i, o in enumerate(self.options):
            if o == value and not isinstance(value, bool) and not isinstance(o, bool):
                return float(i)  # an int read back from JSON as an int-valued float
        key = _option_key(value)
        if key in self._keys:  # the JSON form of an option, e.g. a tuple read back as a list
            return float(self._keys.index(key))
        raise ValueError(f"{value!r} is not one of {self.options}")

    def restore(self, value: Any) -> Any:
        """The option ``value`` (read back from the JSON log) stands for: ``[128, 64]`` ->
        ``(128, 64)`` for a tuple option; ``value`` itself when it matches none."""
        try:
            return self.options[int(self.encode(value))]
        except (TypeError, ValueError):
            return value

    def decode(self, x: float) -> Any:
        return self.options[int(np.clip(round(float(x)), 0, len(self.options) - 1))]

    @property
    def bounds(self) -> tuple[float, float]:
        return 0.0, float(len(self.options) - 1)

    def __repr__(self) -> str:
        return f"Choice(options={self.options!r})"  # as given, not the JSON form

    def to_dict(self) -> dict[str, Any]:
        # the JSON form, so a space equals itself read back from the log (tuples as lists)
        return {"type": self.kind, "options": [_json_or_raw(o) for o in self.options]}


_KINDS: dict[str, type[Param]] = {"uniform": Uniform, "log": LogUniform, "int": Int,
                                  "choice": Choice}


class Space:
    """Named hyper-parameters, in the order given (the surrogate's feature order).

    >>> Space.from_dict({"lr": {"type": "log", "low": 1e-4, "high": 1}}).names
    ['lr']
    """

    def __init__(self, params: Mapping[str, Param] | None = None, **kwargs: Param) -> None:
        merged = {**(params or {}), **kwargs}
        if not merged:
            raise ValueError("a search space needs at least one parameter")
        for name, p in merged.items():
            if not isinstance(name, str) or not name:
                raise ValueError(f"parameter names must be non-empty strings, got {name!r}")
            if not isinstance(p, Param):
                raise TypeError(f"{name}: expected a Param (LogUniform, Uniform, Int, Choice), "
                                f"got {type(p).__name__}")
        self.params: dict[str, Param] = dict(merged)

    @property
    def names(self) -> list[str]:
        return list(self.params)

    def __len__(self) -> int:
        return len(self.params)

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Space) and self.to_dict() == other.to_dict()

    def __repr__(self) -> str:
        return "Space(" + ", ".join(f"{k}={v!r}" for k, v in self.params.items()) + ")"

    def sample(self, rng: np.random.Generator, n: int = 1) -> list[dict[str, Any]]:
        """``n`` independent configurations, each a dict name -> value."""
        if n < 0:
            raise ValueError(f"n must be >= 0, got {n}")
        cols = {name: p.sample(rng, n) for name, p in self.params.items()}
        return [{name: cols[name][i] for name in self.params} for i in range(n)]

    def encode(self, configs: Sequence[Mapping[str, Any]]) -> np.ndarray:
        """``(len(configs), len(space))`` float array, one column per parameter."""
        out = np.empty((len(configs), len(self)), dtype=np.float64)
        for i, config in enumerate(configs):
            missing = [n for n in self.params if n not in config]
            if missing:
                raise KeyError(f"configuration {dict(config)} lacks {missing}")
            for j, (name, p) in enumerate(self.params.items()):
                try:
                    out[i, j] = p.encode(config[name])
                except (TypeError, ValueError) as e:
                    raise type(e)(f"{name}: {e}") from None
        return out

    def decode(self, x: np.ndarray) -> list[dict[str, Any]]:
        """The configurations nearest to encoded rows (values clipped to the bounds, integers
        and choice indices rounded)."""
        x = np.atleast_2d(np.asarray(x, dtype=np.float64))
        if x.shape[1] != len(self):
            raise ValueError(f"expected {len(self)} columns, got {x.shape[1]}")
        return [{name: p.decode(row[j]) for j, (name, p) in enumerate(self.params.items())}
                for row in x]

    @property
    def bounds(self) -> np.ndarray:
        """``(len(space), 2)`` array of encoded (low, high)."""
        return np.array([p.bounds for p in self.params.values()], dtype=np.float64)

    def labels(self) -> list[str]:
        """Axis names of the encoded features (``log10(lr)`` for a log-uniform ``lr``)."""
        return [p.label(n) for n, p in self.params.items()]

    def to_dict(self) -> dict[str, dict[str, Any]]:
        """The JSON form read back by :meth:`from_dict`."""
        return {name: p.to_dict() for name, p in self.params.items()}

    def restore(self, config: Mapping[str, Any]) -> dict[str, Any]:
        """``config`` as read back from the JSON log, with each value mapped back to what
        the trial ran with (:meth:`Param.restore`; names not in the space kept as read)."""
        return {name: self.params[name].restore(v) if name in self.params else v
                for name, v in config.items()}

    @classmethod
    def from_dict(cls, spec: Mapping[str, Mapping[str, Any]]) -> Space:
        """From ``{"lr": {"type": "log", "low": 1e-5, "high": 1}, "bs": {"type": "choice",
        "options": [32, 64]}, ...}`` (types: log, uniform, int, choice)."""
        if not isinstance(spec, Mapping):
            raise TypeError(f"a space spec is a mapping name -> parameter, got {spec!r}")
        params: dict[str, Param] = {}
        for name, p in spec.items():
            if not isinstance(p, Mapping) or "type" not in p:
                raise ValueError(f"{name}: expected {{'type': ..., ...}}, got {p!r}")
            kind = p["type"]
            if kind not in _KINDS:
                raise ValueError(f"{name}: unknown type {kind!r}; one of {sorted(_KINDS)}")
            args = {k: v for k, v in p.items() if k != "type"}
            try:
                params[name] = _KINDS[kind](**args)
            except TypeError as e:
                raise ValueError(f"{name}: {e}") from None
        return cls(params)
