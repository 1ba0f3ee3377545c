"""Paired (degraded, clean) images for restoration: the pairs and their loaders.

>>> import torch
>>> clean = torch.randint(0, 256, (6, 3, 24, 32), dtype=torch.uint8)
>>> crappy = crappy_pairs(clean, seed=0)
>>> dls = PairDataLoaders.from_tensors(crappy, clean, valid_pct=0.5, bs=2)
>>> xb, yb = next(iter(dls.train))
>>> xb.shape, xb.dtype, float(yb.max()) <= 1.0
(torch.Size([2, 3, 24, 32]), torch.float32, True)
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import numpy as np
import torch
from PIL import Image
from torch import Tensor

from ...data.camvid import split_indices
from ...learner.data import DataLoaders, TensorLoader
from .crappify import crappify

__all__ = ["PairDataLoaders", "crappy_pairs"]


def crappy_pairs(images: Tensor, seed: int, **crappify_kw: Any) -> Tensor:
    """Crappified copies of uint8 images (N, C, H, W), C = 1 or 3; image ``i`` uses
    ``seed + i``."""
    if images.dtype != torch.uint8 or images.dim() != 4 or images.shape[1] not in (1, 3):
        raise TypeError(f"images must be uint8 (N, 1 or 3, H, W), got {images.dtype} "
                        f"{tuple(images.shape)}")
    out = torch.empty_like(images)
    for i, img in enumerate(images):
        arr = img.permute(1, 2, 0).numpy()
        pil = Image.fromarray(arr[..., 0] if arr.shape[-1] == 1 else arr)
        res = np.asarray(crappify(pil, seed + i, **crappify_kw))
        out[i] = torch.from_numpy(res.reshape(arr.shape).copy()).permute(2, 0, 1)
    return out


class _PairLoader(TensorLoader):
    """Batches of (input, target) float images in [0, 1] from uint8 pairs; in training,
    shuffled per epoch (TensorLoader's seeded order) and each pair flipped horizontally (both
    alike) with p = 0.5, the flips drawn from ``seed + epoch`` too."""

    def __init__(self, x: Tensor, y: Tensor, bs: int, train: bool, flip: bool,
                 seed: int) -> None:
        super().__init__((x, y), bs=bs, shuffle=train, seed=seed)
        self.flip = flip and train

    @property
    def x(self) -> Tensor:
        return self.tensors[0]

    @property
    def y(self) -> Tensor:
        return self.tensors[1]

    def __iter__(self) -> Iterator[tuple[Tensor, Tensor]]:
        g = torch.Generator().manual_seed(self.seed + self.epoch)  # before the epoch advances
        for xb, yb in super().__iter__():
            xb, yb = xb.float().div_(255), yb.float().div_(255)
            if self.flip:
                f = (torch.rand(len(xb), generator=g) < 0.5).view(-1, 1, 1, 1)
                xb, yb = torch.where(f, xb.flip(-1), xb), torch.where(f, yb.flip(-1), yb)
            yield xb, yb


class PairDataLoaders(DataLoaders):
    """Train / valid loaders of (degraded, clean) image pairs, floats in [0, 1]."""

    @classmethod
    def from_indices(cls, x_in: Tensor, x_target: Tensor, train_idx: Tensor, valid_idx: Tensor,
                     bs: int = 8, seed: int = 0, flip: bool = True,
                     device: str | torch.device | None = "cpu") -> PairDataLoaders:
        """Loaders over the rows ``train_idx`` / ``valid_idx`` of uint8 (N, C, H, W) pairs."""
        if x_in.shape != x_target.shape or x_in.dtype != torch.uint8 or x_in.dim() != 4:
            raise TypeError(f"inputs and targets must be uint8 (N, C, H, W) of one shape, got "
                            f"{x_in.dtype} {tuple(x_in.shape)} and {tuple(x_target.shape)}")
        if set(train_idx.tolist()) & set(valid_idx.tolist()):
            raise ValueError("train and valid indices overlap")
        train = _PairLoader(x_in[train_idx], x_target[train_idx], bs, True, flip, seed)
        valid = _PairLoader(x_in[valid_idx], x_target[valid_idx], 2 * bs, False, False, seed)
        return cls(train, valid, device)

    @classmethod
    def from_tensors(cls, x_in: Tensor, x_target: Tensor, valid_pct: float = 0.2, bs: int = 8,
                     seed: int = 0, flip: bool = True,
                     device: str | torch.device | None = "cpu") -> PairDataLoaders:
        """A random split (``valid_pct`` validate; fixed by ``seed``)."""
        train_idx, valid_idx = split_indices(len(x_in), valid_pct, seed)
        return cls.from_indices(x_in, x_target, train_idx, valid_idx, bs, seed, flip, device)
