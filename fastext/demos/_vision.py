"""What the vision demos share: MNIST as uint8 tensors, a seeded subset, the record."""

from __future__ import annotations

import os
from typing import Any

import torch
from torch import Tensor

from ..data.mnist import find_mnist, load_mnist
from ._common import write_json

__all__ = ["mnist_split", "subset", "write_record"]


def mnist_split(data: str | os.PathLike[str] | None) -> tuple[tuple[Tensor, Tensor],
                                                             tuple[Tensor, Tensor], str]:
    """((train images, labels), (test images, labels), which set) from ``data`` (a directory
    of idx files, or a data root holding ``mnist/`` or ``mnist-small/``) or the usual search
    (full MNIST, else the shipped subset): :func:`~fastext.data.mnist.find_mnist`."""
    path, kind = find_mnist(data)
    return load_mnist(path, "train"), load_mnist(path, "test"), kind


def subset(x: Tensor, y: Tensor, n: int | None, seed: int = 0) -> tuple[Tensor, Tensor]:
    """A seeded random ``n`` rows of (x, y) (all of them when ``n`` is None or too big)."""
    if n is None or n >= len(x):
        return x, y
    idx = torch.randperm(len(x), generator=torch.Generator().manual_seed(seed))[:n]
    return x[idx], y[idx]


def write_record(record: dict[str, Any], json_path: str | os.PathLike[str] | None) -> None:
    """Prints the figures and writes them as JSON when asked."""
    for k, v in record.items():
        if isinstance(v, float):
            print(f"{k:18s} {v:.4f}")
        elif not isinstance(v, (list, dict)):
            print(f"{k:18s} {v}")
    write_json(record, json_path)
