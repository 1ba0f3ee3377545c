"""Plain Python values from NumPy ones, for what is saved and read back: checkpoints and
exports load with ``torch.load(weights_only=True)``, which refuses NumPy scalars, and JSON
logs cannot hold them."""

from __future__ import annotations

from typing import Any

import numpy as np

__all__ = ["plain"]


def plain(v: Any) -> Any:
    """``v`` with NumPy scalars (and 0-d arrays) as Python numbers and ``str`` subclasses
    (``numpy.str_``) as ``str``, also inside tuples, lists and dicts, which keep their type
    (a namedtuple is left as it is); anything else (a tensor, ``None``) unchanged.

    >>> plain((np.float64(0.5), [np.int64(3)], {"a": np.str_("b")}, None))
    (0.5, [3], {'a': 'b'}, None)
    """
    if isinstance(v, np.generic) or (isinstance(v, np.ndarray) and v.ndim == 0):
        return v.item()
    if isinstance(v, str):
        return str(v)
    if isinstance(v, tuple) and not hasattr(v, "_fields"):
        return tuple(plain(x) for x in v)
    if isinstance(v, list):
        return [plain(x) for x in v]
    if isinstance(v, dict):
        return {k: plain(x) for k, x in v.items()}
    return v
