"""What every demo shares: the JSON record, the benchmark that may follow, thread count."""

from __future__ import annotations

import json
import os
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import torch

__all__ = ["run_bench", "torch_threads", "write_json"]


def write_json(record: dict[str, Any], json_path: str | os.PathLike[str] | None) -> None:
    """Writes ``record`` to ``json_path`` (parents created) when a path is given."""
    if json_path is not None:
        Path(json_path).parent.mkdir(parents=True, exist_ok=True)
        Path(json_path).write_text(json.dumps(record, indent=2) + "\n")


def run_bench(suite: str, quick: bool = False) -> None:
    """Runs ``python -m fastext.bench SUITE`` in this process; raises if it fails."""
    from .. import bench  # imported only when used

    rc = bench.main([suite, "--quick"] if quick else [suite])
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
