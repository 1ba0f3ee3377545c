"""What every demo shares: the JSON record, the epochs argument, the benchmark that may
follow, thread count."""

from __future__ import annotations

import json
import math
import os
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import torch

__all__ = ["epochs_or", "run_bench", "torch_threads", "write_json"]


def epochs_or(epochs: int | None, default: int) -> int:
    """``epochs``, or ``default`` when it is ``None``.

    Raises:
        ValueError: ``epochs`` is below 1 (``epochs or default`` would take 0 for the
            default, and a negative count would train nothing).

    >>> epochs_or(None, 5), epochs_or(2, 5)
    (5, 2)
    """
    epochs = default if epochs is None else epochs
    if epochs < 1:
        raise ValueError(f"epochs must be >= 1, got {epochs}")
    return epochs


def _json_safe(value: Any) -> Any:
    """``value`` with every NaN or infinite float, at any depth, replaced by ``None``."""
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, dict):
        return {k: _json_safe(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_json_safe(v) for v in value]
    return value


def write_json(record: dict[str, Any], json_path: str | os.PathLike[str] | None) -> None:
    """Writes ``record`` to ``json_path`` (parents created) when a path is given. NaN and
    infinite floats (e.g. a loss for an epoch without batches) are written as ``null``:
    ``NaN`` is not JSON, and strict parsers reject the file."""
    if json_path is not None:
        Path(json_path).parent.mkdir(parents=True, exist_ok=True)
        text = json.dumps(_json_safe(record), indent=2, allow_nan=False)
        Path(json_path).write_text(text + "\n")


def run_bench(suite: str, quick: bool = False,
              data: str | os.PathLike[str] | None = None) -> None:
    """Runs ``python -m fastext.bench SUITE`` in this process (with ``--data data`` when
    given, for a suite that reads a data set); raises if it fails."""
    from .. import bench  # imported only when used

    argv = [suite] + (["--quick"] if quick else []) + ([] if data is None else ["--data",
                                                                               str(data)])
    rc = bench.main(argv)
    if rc:
        raise RuntimeError(f"fastext.bench {suite} exited with {rc}")


@contextmanager
def torch_threads(n: int | None) -> Iterator[None]:
    """torch's intra-op threads set to ``n`` inside the block (``None``: unchanged)."""
    old = torch.get_num_threads()
    if n is not None:
        torch.set_num_threads(n)
    try:
        yield
    finally:
        torch.set_num_threads(old)
