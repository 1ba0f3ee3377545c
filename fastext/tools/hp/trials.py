"""Trials and the JSON log that makes a search resumable.

The log holds what defines the search (space, method, seed) and every trial run so far; it is
rewritten (atomically) after each trial, so an interrupted search loses at most the trial in
progress and restarts from the log.

>>> import tempfile, pathlib
>>> from fastext.tools.hp.space import Space, Uniform
>>> path = pathlib.Path(tempfile.mkdtemp()) / "log.json"
>>> log = TrialLog.open(path, Space(x=Uniform(0, 1)), method="rf", seed=0)
>>> log.append(Trial(number=0, params={"x": 0.5}, value=1.0))
>>> [t.value for t in TrialLog.open(path, Space(x=Uniform(0, 1)), "rf", 0).trials]
[1.0]
"""

from __future__ import annotations

import json
import math
import os
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from .space import Space, to_json_value

__all__ = ["STATUSES", "Trial", "TrialLog", "to_json_value"]

#: ok: finished with a finite value; diverged: finished with NaN/inf; failed: raised.
STATUSES = ("ok", "diverged", "failed")
_FORMAT = "fastext-hpsearch-1"


@dataclass
class Trial:
    """One evaluated configuration. ``value`` is None unless ``status == "ok"``; ``info``
    holds whatever else the objective reported (e.g. accuracy), converted to plain JSON data
    by :func:`to_json_value` (a 0-d tensor or numpy scalar becomes a Python number)."""

    number: int
    params: dict[str, Any]
    value: float | None
    status: str = "ok"
    seconds: float = 0.0
    proposer: str = "random"
    error: str | None = None
    info: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if self.status not in STATUSES:
            raise ValueError(f"status must be one of {STATUSES}, got {self.status!r}")
        if self.status == "ok" and (self.value is None or not math.isfinite(self.value)):
            raise ValueError(f"an ok trial needs a finite value, got {self.value!r}")
        self.info = to_json_value(dict(self.info), "info")

    @property
    def ok(self) -> bool:
        return self.status == "ok"

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        # the same conversion as info: tuples as lists, numpy scalars as numbers
        d["params"] = to_json_value(self.params, "params")
        return d

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> Trial:
        known = {k: d[k] for k in cls.__dataclass_fields__ if k in d}
        return cls(**known)


def _check_loggable(space: Space, path: str | os.PathLike[str]) -> None:
    """Fails before any trial runs when ``space`` cannot go into the JSON log (e.g. a
    ``Choice`` of functions), rather than after the first objective call."""
    try:
        json.dumps(space.to_dict())
    except (TypeError, ValueError) as e:
        raise TypeError(f"{path}: the search space cannot be written to a JSON log ({e}); "
                        "use options JSON can hold, or log=None") from None


def _why(e: Exception) -> str:
    """``e`` in a few words: its type and first argument (a KeyError's key unquoted)."""
    return f"{type(e).__name__}: {e.args[0] if e.args else e}"


class TrialLog:
    """The trials of one search, kept in a JSON file (``path`` None: in memory only)."""

    def __init__(self, path: str | os.PathLike[str] | None, space: Space, method: str,
                 seed: int, trials: list[Trial] | None = None) -> None:
        self.path = None if path is None else Path(path)
        self.space, self.method, self.seed = space, method, seed
        self.trials: list[Trial] = list(trials or [])

    @classmethod
    def open(cls, path: str | os.PathLike[str] | None, space: Space, method: str,
             seed: int) -> TrialLog:
        """The log at ``path`` if it exists (it must describe the same search), else a new
        empty one.

        Raises:
            ValueError: the file is not a search log or a damaged one (a key missing, a
                trial incomplete or outside the space), or was written for another space,
                method or seed (resuming it would mix two searches).
        """
        if path is None or not Path(path).exists():
            if path is not None:
                _check_loggable(space, path)
            return cls(path, space, method, seed)
        try:
            doc = json.loads(Path(path).read_text())
        except json.JSONDecodeError as e:
            raise ValueError(f"{path}: not a JSON search log ({e})") from None
        if not isinstance(doc, dict) or doc.get("format") != _FORMAT:
            raise ValueError(f"{path}: not a fastext hpsearch log (no format {_FORMAT!r})")
        # A log with the right marker may still be damaged (a key missing, a trial cut
        # short or edited out of the space): refused here, before any trial runs, not as a
        # KeyError now or a ValueError from the surrogate mid-search.
        try:
            stored, stored_method, stored_seed = (Space.from_dict(doc["space"]), doc["method"],
                                                  doc["seed"])
            trials = [Trial.from_dict(t) for t in doc["trials"]]
        except (KeyError, TypeError, AttributeError, ValueError) as e:
            raise ValueError(f"{path}: a damaged hpsearch log ({_why(e)})") from e
        clashes = [what for what, a, b in (("space", stored, space),
                                           ("method", stored_method, method),
                                           ("seed", stored_seed, seed)) if a != b]
        if clashes:
            raise ValueError(f"{path} was written by a search with a different "
                             f"{', '.join(clashes)}; give a new log path to start afresh")
        try:
            for t in trials:  # JSON gave lists for tuple options: back to the space's options
                t.params = space.restore(t.params)
            space.encode([t.params for t in trials])  # every value inside the space
        except (KeyError, TypeError, ValueError) as e:
            raise ValueError(f"{path}: a damaged hpsearch log ({_why(e)})") from e
        if [t.number for t in trials] != list(range(len(trials))):
            raise ValueError(f"{path}: trial numbers are not 0..{len(trials) - 1}")
        return cls(path, space, method, seed, trials)

    def append(self, trial: Trial) -> None:
        """Adds a trial and rewrites the file."""
        if trial.number != len(self.trials):
            raise ValueError(f"expected trial number {len(self.trials)}, got {trial.number}")
        self.trials.append(trial)
        self.save()

    def to_dict(self) -> dict[str, Any]:
        return {"format": _FORMAT, "space": self.space.to_dict(), "method": self.method,
                "seed": self.seed, "trials": [t.to_dict() for t in self.trials]}

    def save(self) -> None:
        if self.path is None:
            return
        self.path.parent.mkdir(parents=True, exist_ok=True)
        tmp = self.path.with_name(self.path.name + ".tmp")
        # allow_nan: a diverged trial's info may hold NaN; Python's json reads it back
        tmp.write_text(json.dumps(self.to_dict(), indent=1) + "\n")
        tmp.replace(self.path)  # never leave a half-written log behind
