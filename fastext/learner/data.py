"""DataLoaders: a train and a valid loader that deliver batches on the model's device.

Tensors are batched by slicing whole index batches out of pre-built tensors (no per-row
Python collation, the usual bottleneck of small-sample training on CPU).
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Sequence
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor
from torch.utils.data import DataLoader, Dataset

__all__ = ["DataLoaders", "DeviceLoader", "TensorLoader", "drops_last_batch"]


def drops_last_batch(n: int, bs: int, drop_last: bool = True) -> bool:
    """Whether a training loader of ``n`` items leaves out its last partial batch: when
    ``drop_last`` (fastai's default for training: a batch of one breaks BatchNorm) and there
    is more than one batch, so that a set of at most ``bs`` items keeps its one batch.

    >>> drops_last_batch(81, 64), drops_last_batch(40, 64), drops_last_batch(81, 64, False)
    (True, False, False)
    """
    return drop_last and n > bs


class TensorLoader:
    """Batches of rows of equal-length tensors: ``(x[idx], y[idx])`` for each index batch.

    Shuffling draws a fresh permutation each epoch from ``seed + epoch``, so a run resumed
    at epoch k sees the same batches as an uninterrupted one.

    >>> dl = TensorLoader((torch.arange(10.), torch.arange(10)), bs=4)
    >>> [len(b[0]) for b in dl]
    [4, 4, 2]
    """

    def __init__(self, tensors: Sequence[Tensor], bs: int = 64, shuffle: bool = False,
                 drop_last: bool = False, seed: int = 0) -> None:
        if not tensors or any(len(t) != len(tensors[0]) for t in tensors):
            raise ValueError("TensorLoader needs tensors of equal length")
        if bs < 1:
            raise ValueError(f"batch size must be positive, got {bs}")
        self.tensors, self.bs, self.shuffle, self.drop_last = tuple(tensors), bs, shuffle, drop_last
        self.seed, self.epoch = seed, 0

    def __len__(self) -> int:
        n = len(self.tensors[0])
        return n // self.bs if self.drop_last else -(-n // self.bs)

    def __iter__(self) -> Iterator[tuple[Tensor, ...]]:
        n = len(self.tensors[0])
        if self.shuffle:
            g = torch.Generator().manual_seed(self.seed + self.epoch)
            order = torch.randperm(n, generator=g)
        else:
            order = None
        self.epoch += 1
        for i in range(len(self)):
            idx = slice(i * self.bs, min(n, (i + 1) * self.bs))
            if order is None:
                yield tuple(t[idx] for t in self.tensors)
            else:
                yield tuple(t[order[idx]] for t in self.tensors)

    @property
    def dataset(self) -> tuple[Tensor, ...]:
        return self.tensors


def resize_batch(x: Tensor, size: int | None) -> Tensor:
    """An image batch (N, C, H, W) resized to ``size`` x ``size`` (bilinear, antialiased, in
    its own dtype) for progressive resizing; as it is when ``size`` is None or already met.

    >>> resize_batch(torch.zeros(2, 3, 8, 8), 4).shape
    torch.Size([2, 3, 4, 4])
    """
    if size is None or x.shape[-2:] == (size, size):
        return x
    return F.interpolate(x.float(), size=(size, size), mode="bilinear", align_corners=False,
                         antialias=True).to(x.dtype)


class DeviceLoader:
    """Wraps a loader: moves every tensor of a batch to ``device`` (non-blocking), and with
    ``size`` set resizes 4-D image batches to ``size`` x ``size`` (progressive resizing)."""

    def __init__(self, loader: Iterable, device: torch.device) -> None:
        self.loader, self.device, self.size = loader, device, None

    def __len__(self) -> int:
        return len(self.loader)

    def __iter__(self) -> Iterator[tuple]:
        for batch in self.loader:
            batch = batch if isinstance(batch, (tuple, list)) else (batch,)
            out = tuple(b.to(self.device, non_blocking=True) if isinstance(b, Tensor) else b
                        for b in batch)
            if self.size is not None and out[0].dim() == 4:
                out = (resize_batch(out[0], self.size), *out[1:])
            yield out

    @property
    def dataset(self) -> Any:
        return getattr(self.loader, "dataset", None)

    def set_epoch(self, epoch: int) -> None:
        """Tells a seeded loader (or a distributed sampler) which epoch comes next."""
        if hasattr(self.loader, "epoch"):
            self.loader.epoch = epoch
        sampler = getattr(self.loader, "sampler", None)
        if hasattr(sampler, "set_epoch"):
            sampler.set_epoch(epoch)


class DataLoaders:
    """A train and a valid loader on one device.

    >>> x, y = torch.randn(100, 3), torch.randint(0, 2, (100,))
    >>> dls = DataLoaders.from_tensors(x[:80], y[:80], x[80:], y[80:], bs=16)
    >>> len(dls.train), len(dls.valid), dls.device.type  # valid batches are twice as big
    (5, 1, 'cpu')
    """

    def __init__(self, train: Iterable, valid: Iterable, device: str | torch.device | None = None):
        self.device = torch.device(device) if device is not None else (
            torch.device("cuda") if torch.cuda.is_available() else torch.device("cpu"))
        self.train = DeviceLoader(train, self.device)
        self.valid = DeviceLoader(valid, self.device)

    def set_size(self, size: int | None) -> None:
        """Image size of the batches from now on (``None``: as stored)."""
        self.train.size = self.valid.size = size

    @classmethod
    def from_tensors(cls, x_train: Tensor, y_train: Tensor, x_valid: Tensor, y_valid: Tensor,
                     bs: int = 64, valid_bs: int | None = None, shuffle: bool = True,
                     drop_last: bool = True, seed: int = 0,
                     device: str | torch.device | None = None) -> DataLoaders:
        """Loaders over in-memory tensors (inputs first, targets last). With ``drop_last``
        (fastai's default) a last partial training batch is left out when there are more
        than ``bs`` samples (a batch of one breaks BatchNorm); validation keeps every one."""
        drop = drops_last_batch(len(x_train), bs, drop_last)
        return cls(TensorLoader((x_train, y_train), bs, shuffle, drop, seed),
                   TensorLoader((x_valid, y_valid), valid_bs or 2 * bs), device)

    @classmethod
    def from_dsets(cls, train_ds: Dataset, valid_ds: Dataset, bs: int = 64,
                   valid_bs: int | None = None, num_workers: int = 0,
                   device: str | torch.device | None = None, drop_last: bool = True,
                   **kwargs: Any) -> DataLoaders:
        """Loaders over map-style datasets (``torch.utils.data.DataLoader`` underneath);
        ``drop_last`` as in :meth:`from_tensors`."""
        drop = drops_last_batch(len(train_ds), bs, drop_last)  # type: ignore[arg-type]
        return cls(DataLoader(train_ds, bs, shuffle=True, num_workers=num_workers,
                              drop_last=drop, **kwargs),
                   DataLoader(valid_ds, valid_bs or 2 * bs, num_workers=num_workers, **kwargs),
                   device)

    @classmethod
    def from_folder(cls, path: str | Path, train: str = "train", valid: str = "valid",
                    transform: Any = None, bs: int = 64, size: int | None = None,
                    **kwargs: Any) -> DataLoaders:
        """Image folders ``path/train/<class>/*`` and ``path/valid/<class>/*``
        (torchvision's ImageFolder). ``transform`` defaults to ``ToTensor``, after a resize of
        the shorter side to ``size`` and a central ``size`` x ``size`` crop when ``size`` is
        given (needed when the images differ in size: a batch stacks them). The course's
        pipeline (augmentation on the device, normalisation, labels from names or a CSV) is
        :class:`fastext.tasks.vision.data.ImageDataLoaders`."""
        from torchvision import datasets, transforms

        path = Path(path)
        for sub in (train, valid):
            if not (path / sub).is_dir():
                raise FileNotFoundError(f"no folder {path / sub}")
        if transform is not None and size is not None:
            raise TypeError("give transform or size, not both (put the resize in transform)")
        tfm = transform or transforms.Compose(
            ([transforms.Resize(size), transforms.CenterCrop(size)] if size else [])
            + [transforms.ToTensor()])
        return cls.from_dsets(datasets.ImageFolder(path / train, tfm),
                              datasets.ImageFolder(path / valid, tfm), bs=bs, **kwargs)
