"""A real multi-label image set built from MNIST: each image is a 2x2 mosaic holding 1-4
digits in random cells (empty cells black); its labels are the set of digits present.

Built deterministically from a seed, so the train / validation images are the same on every
machine. Labels are multi-hot over the ten digits.

>>> digits = torch.zeros(20, 28, 28, dtype=torch.uint8)
>>> labels = torch.arange(20) % 10
>>> x, y = mnist_mosaics(digits, labels, n=5, seed=0)
>>> x.shape, x.dtype, y.shape
(torch.Size([5, 1, 56, 56]), torch.uint8, torch.Size([5, 10]))
>>> bool(((y.sum(1) >= 1) & (y.sum(1) <= 4)).all())
True
"""

from __future__ import annotations

import torch
from torch import Tensor

__all__ = ["DIGITS", "mnist_mosaics"]

DIGITS = [str(d) for d in range(10)]


def mnist_mosaics(images: Tensor, labels: Tensor, n: int, seed: int = 0,
                  max_digits: int = 4) -> tuple[Tensor, Tensor]:
    """``n`` mosaics (uint8, (n, 1, 56, 56)) and their multi-hot labels (float, (n, 10))
    from MNIST ``images`` (uint8, (N, 28, 28)) and ``labels`` (N,).

    Each mosaic draws k ~ U{1..max_digits} distinct cells and a random digit image for each;
    a digit appearing twice counts once in the labels.
    """
    if images.dim() != 3 or images.shape[1:] != (28, 28):
        raise ValueError(f"images must be (N, 28, 28), got {tuple(images.shape)}")
    if not 1 <= max_digits <= 4:
        raise ValueError(f"max_digits must be in 1..4, got {max_digits}")
    g = torch.Generator().manual_seed(seed)
    k = torch.randint(1, max_digits + 1, (n,), generator=g)
    cells = torch.rand(n, 4, generator=g).argsort(1)  # a random order of the 4 cells
    picks = torch.randint(0, len(images), (n, 4), generator=g)
    out = torch.zeros(n, 1, 56, 56, dtype=torch.uint8)
    y = torch.zeros(n, 10)
    for slot in range(4):
        used = k > slot  # mosaics that fill a slot-th cell
        idx = used.nonzero().squeeze(1)
        if len(idx) == 0:
            continue
        cell = cells[idx, slot]
        img = images[picks[idx, slot]]
        for c in range(4):
            sel = cell == c
            r, col = divmod(c, 2)
            out[idx[sel], 0, 28 * r:28 * r + 28, 28 * col:28 * col + 28] = img[sel]
        y[idx, labels[picks[idx, slot]].long()] = 1.0
    return out, y
