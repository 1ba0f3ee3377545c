"""Test helpers shared by the Learner's test modules."""

from __future__ import annotations

from fastext.learner.metrics import Metric


class Scripted(Metric):
    """A metric whose value at validation ``k`` is ``values[k]``."""

    def __init__(self, values: list[float], name: str = "scripted") -> None:
        self.values, self.calls, self.name = values, 0, name

    def reset(self) -> None:
        pass

    def accumulate(self, learn) -> None:
        pass

    @property
    def value(self) -> float:
        v = self.values[self.calls]
        self.calls += 1
        return v
