"""Hyper-parameter schedules (fastai v2's definitions) and the callback that applies them.

A schedule maps the position in the fit, ``pos`` in [0, 1], to a value; values may be numpy
arrays, one per layer group (discriminative learning rates).

>>> f = combined_cos(0.25, 1.0, 10.0, 0.0)
>>> [round(float(f(p)), 3) for p in (0.0, 0.125, 0.25, 0.625, 1.0)]
[1.0, 5.5, 10.0, 5.0, 0.0]
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np

from .callback import Callback

__all__ = ["ParamScheduler", "combine_scheds", "combined_cos", "sched_cos", "sched_exp",
           "sched_lin", "sched_no"]

Sched = Callable[[float], Any]


def sched_lin(start: Any, end: Any) -> Sched:
    """Linear from ``start`` to ``end``.

    >>> [sched_lin(1.0, 3.0)(p) for p in (0.0, 0.25, 1.0)]
    [1.0, 1.5, 3.0]
    """
    return lambda pos: start + pos * (end - start)


def sched_cos(start: Any, end: Any) -> Sched:
    """Cosine annealing from ``start`` to ``end``: flat at both ends, halfway at 0.5.

    >>> [round(sched_cos(1.0, 0.0)(p), 4) for p in (0.0, 0.25, 0.5, 1.0)]
    [1.0, 0.8536, 0.5, 0.0]
    """
    return lambda pos: start + (1 + math.cos(math.pi * (1 - pos))) * (end - start) / 2


def sched_no(start: Any, end: Any) -> Sched:
    """Constant ``start``."""
    return lambda pos: start


def sched_exp(start: Any, end: Any) -> Sched:
    """Exponential from ``start`` to ``end``."""
    return lambda pos: start * (end / start) ** pos


def combine_scheds(pcts: Sequence[float], scheds: Sequence[Sched]) -> Sched:
    """Runs ``scheds[i]`` over the fraction ``pcts[i]`` of the fit, one after the other,
    each seeing its own part as positions 0 to 1.

    >>> s = combine_scheds([0.25, 0.75], [sched_lin(0.0, 1.0), sched_lin(1.0, 0.0)])
    >>> [round(float(s(p)), 4) for p in (0.0, 0.125, 0.25, 0.625, 1.0)]
    [0.0, 0.5, 1.0, 0.5, 0.0]

    Raises:
        ValueError: ``pcts`` negative, not summing to 1, or not one per schedule.
    """
    if len(pcts) != len(scheds) or abs(sum(pcts) - 1.0) > 1e-6 or min(pcts) < 0:
        raise ValueError("pcts must be non-negative, sum to 1 and match scheds")
    bounds = np.concatenate([[0.0], np.cumsum(pcts)])

    def sched(pos: float) -> Any:
        if pos >= 1.0:
            return scheds[-1](1.0)
        i = int(np.nonzero(pos >= bounds[:-1])[0].max())
        while i > 0 and pcts[i] == 0:
            i -= 1
        width = bounds[i + 1] - bounds[i]
        return scheds[i]((pos - bounds[i]) / width if width > 0 else 1.0)

    return sched


def combined_cos(pct: float, start: Any, middle: Any, end: Any) -> Sched:
    """Cosine from ``start`` to ``middle`` over ``pct`` of the fit, then to ``end``: the
    one-cycle learning rate (``combined_cos(0.25, lr / 25, lr, lr / 1e5)``).

    >>> s = combined_cos(0.25, 0.1, 1.0, 0.0)
    >>> [round(float(s(p)), 4) for p in (0.0, 0.25, 0.625, 1.0)]
    [0.1, 1.0, 0.5, 0.0]
    """
    return combine_scheds([pct, 1 - pct], [sched_cos(start, middle), sched_cos(middle, end)])


class ParamScheduler(Callback):
    """Sets hyper-parameters before every training batch from schedules of the fit position.

    ``scheds`` maps ``"lr"`` and/or ``"mom"`` to a schedule (values scalar or one per layer
    group), applied through ``learn.set_hypers``.
    """

    order = 60

    def __init__(self, scheds: dict[str, Sched]) -> None:
        unknown = set(scheds) - {"lr", "mom"}
        if unknown:
            raise ValueError(f"unknown hyper-parameters {sorted(unknown)}")
        self.scheds = scheds

    def before_batch(self) -> None:
        if self.learn.training:
            pos = self.learn.pct_train
            self.learn.set_hypers(**{k: f(pos) for k, f in self.scheds.items()})
