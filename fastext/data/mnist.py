"""MNIST from the four standard idx ``.gz`` files, read with numpy (no download).

The files are looked up by :func:`find_mnist`: the full set lives in ``../shared/data/mnist``
when present, and the repository ships ``data/mnist-small`` (first 2,000 train and 500 test
images, same file names and format) so tests and demos run anywhere.

Its folder is found as every data set's is (:mod:`fastext.data.files`).
"""

from __future__ import annotations

import gzip
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Literal

import numpy as np
import torch
from torch import Tensor
from torch.utils.data import DataLoader, Sampler, TensorDataset

from . import files
from .files import DataError, reading

__all__ = [
    "BatchIndexSampler",
    "MNIST_FILES",
    "MNIST_MEAN",
    "MNIST_STD",
    "find_mnist",
    "load_mnist",
    "mnist_loaders",
    "normalize",
    "read_idx",
]

#: split -> (images file, labels file), the canonical names from LeCun's site.
MNIST_FILES: dict[str, tuple[str, str]] = {
    "train": ("train-images-idx3-ubyte.gz", "train-labels-idx1-ubyte.gz"),
    "test": ("t10k-images-idx3-ubyte.gz", "t10k-labels-idx1-ubyte.gz"),
}

#: Pixel mean and std of the 60k training images, scaled to [0, 1].
MNIST_MEAN, MNIST_STD = 0.1307, 0.3081

# idx magic numbers: 0x00000801 = unsigned byte, 1 dim; 0x00000803 = unsigned byte, 3 dims.
_IDX_LABELS, _IDX_IMAGES = 2049, 2051


def find_mnist(root: str | os.PathLike[str] | None = None) -> tuple[Path, str]:
    """Where MNIST lives: ``(directory, kind)`` with kind ``"mnist"`` (the full set: 60,000
    training images) or ``"mnist-small"`` (a subset, such as the shipped one).

    The places of :func:`find_data_dir` for ``mnist`` come first, then those for
    ``mnist-small``, so the full set is preferred: with ``root`` given, ``root``,
    ``root/mnist``, ``root/mnist-small``; otherwise ``$FASTEXT_DATA/mnist``, ... then
    ``$FASTEXT_DATA/mnist-small``, ... The kind is read from the training labels' header.

    >>> path, kind = find_mnist()
    >>> kind in ("mnist", "mnist-small")
    True
    """
    required = MNIST_FILES["train"] + MNIST_FILES["test"]
    places = list(dict.fromkeys(files.search_places("mnist", root)
                                + files.search_places("mnist-small", root)))
    path = files.first_dir_holding(places, "'mnist' or 'mnist-small'", required, root)
    n = _idx_header(path / MNIST_FILES["train"][1], _IDX_LABELS)[0]
    return path, ("mnist" if n == 60_000 else "mnist-small")


def _idx_header(path: Path, magic: int) -> tuple[int, ...]:
    """The dimensions in an idx file's header (reads only the first bytes)."""
    ndim = magic & 0xFF
    with reading(path, "not a readable gzip file"), gzip.open(path, "rb") as f:
        head = f.read(4 + 4 * ndim)
    return _parse_header(path, head, magic)


def _parse_header(path: Path, head: bytes, magic: int) -> tuple[int, ...]:
    ndim = magic & 0xFF
    if len(head) < 4 + 4 * ndim:
        raise DataError(f"{path}: truncated idx header ({len(head)} bytes)")
    got = int.from_bytes(head[:4], "big")
    if got != magic:
        raise DataError(f"{path}: idx magic number {got}, expected {magic}")
    return tuple(int.from_bytes(head[4 + 4 * i:8 + 4 * i], "big") for i in range(ndim))


def read_idx(path: str | os.PathLike[str], magic: int) -> np.ndarray:
    """Read one gzipped idx file of unsigned bytes into a uint8 array.

    ``magic`` is 2049 for labels (1-d) or 2051 for images (3-d). The header's magic number and
    the data size are checked.

    Raises:
        FileNotFoundError: the file does not exist.
        DataError: (a ValueError naming the file) not gzip, wrong magic number, or the size
            does not match the header.

    >>> from fastext.data.files import find_data_dir
    >>> d = find_data_dir("mnist-small", required=MNIST_FILES["test"])
    >>> read_idx(d / "t10k-labels-idx1-ubyte.gz", 2049).shape
    (500,)
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{path}: no such file")
    with reading(path, "not a readable gzip file"), gzip.open(path, "rb") as f:
        raw = f.read()
    dims = _parse_header(path, raw, magic)
    offset = 4 + 4 * len(dims)
    expected = int(np.prod(dims))
    if len(raw) - offset != expected:
        raise DataError(f"{path}: header says {'x'.join(map(str, dims))} = {expected} bytes, "
                        f"file holds {len(raw) - offset}")
    return np.frombuffer(raw, dtype=np.uint8, offset=offset).reshape(dims)


def load_mnist(root: str | os.PathLike[str] | None = None,
               split: Literal["train", "test"] = "train") -> tuple[Tensor, Tensor]:
    """Load one MNIST split as ``(images, labels)``.

    Images are uint8 ``(N, 28, 28)``, labels int64 ``(N,)`` in 0..9. ``root`` is a directory
    holding the idx ``.gz`` files, or a data root holding ``mnist/`` or ``mnist-small/``; the
    full set is preferred over a subset (see :func:`find_mnist`).

    Raises:
        FileNotFoundError: no directory with the files (the message lists the places searched).
        ValueError: unknown split. DataError (a ValueError naming the file): a file is
            corrupt, or images and labels disagree.

    >>> from fastext.data.files import find_data_dir
    >>> x, y = load_mnist(find_data_dir("mnist-small"), "test")
    >>> x.shape, x.dtype, y.dtype
    (torch.Size([500, 28, 28]), torch.uint8, torch.int64)
    """
    if split not in MNIST_FILES:
        raise ValueError(f"split must be one of {sorted(MNIST_FILES)}, got {split!r}")
    images_name, labels_name = MNIST_FILES[split]
    path, _ = find_mnist(root)
    images = read_idx(path / images_name, _IDX_IMAGES)
    labels = read_idx(path / labels_name, _IDX_LABELS)
    if images.shape[1:] != (28, 28):
        raise DataError(f"{path / images_name}: images are {images.shape[1:]}, expected 28x28")
    if len(images) != len(labels):
        raise DataError(f"{path}: {len(images)} {split} images but {len(labels)} labels")
    if labels.size and labels.max() > 9:
        raise DataError(f"{path / labels_name}: label {labels.max()} out of range 0..9")
    # frombuffer arrays are read-only; copy so torch owns writable memory.
    return torch.from_numpy(images.copy()), torch.from_numpy(labels.astype(np.int64))


def normalize(images: Tensor) -> Tensor:
    """uint8 ``(N, 28, 28)`` -> float32 ``(N, 1, 28, 28)`` with the MNIST mean and std.

    >>> normalize(torch.zeros(2, 28, 28, dtype=torch.uint8)).shape
    torch.Size([2, 1, 28, 28])
    """
    return ((images.float() / 255.0 - MNIST_MEAN) / MNIST_STD).unsqueeze(1)


def mnist_loaders(root: str | os.PathLike[str] | None = None, batch_size: int = 256,
                  valid_batch_size: int | None = None, *, shuffle: bool = True,
                  seed: int = 0, limit: int | None = None,
                  ) -> tuple[DataLoader, DataLoader]:
    """Train and valid (= the 10k test set) loaders over pre-normalised float tensors.

    The whole split is normalised once up front (60k x 784 floats = 188 MB) and the sampler
    yields whole batches of indices, so a batch is one gather from memory: no worker
    processes, no per-item indexing and collation. ``limit`` keeps only the
    first ``limit`` training images (for quick runs). The train loader shuffles with its own
    generator seeded by ``seed``, so batches repeat across runs.

    >>> from fastext.data.files import find_data_dir
    >>> train, valid = mnist_loaders(find_data_dir("mnist-small"), batch_size=100)
    >>> xb, yb = next(iter(train))
    >>> xb.shape, yb.shape
    (torch.Size([100, 1, 28, 28]), torch.Size([100]))
    """
    x_train, y_train = load_mnist(root, "train")
    x_valid, y_valid = load_mnist(root, "test")
    if limit is not None:
        x_train, y_train = x_train[:limit], y_train[:limit]
    train_ds = TensorDataset(normalize(x_train), y_train)
    valid_ds = TensorDataset(normalize(x_valid), y_valid)
    gen = torch.Generator().manual_seed(seed)
    # batch_size=None turns off auto-collation: TensorDataset[index_tensor] already returns
    # the stacked batch.
    train = DataLoader(train_ds, batch_size=None,
                       sampler=BatchIndexSampler(len(train_ds), batch_size, shuffle, gen))
    valid = DataLoader(valid_ds, batch_size=None,
                       sampler=BatchIndexSampler(len(valid_ds), valid_batch_size or 2 * batch_size))
    return train, valid


class BatchIndexSampler(Sampler[Tensor]):
    """Yields each batch's indices as one int64 tensor (a shuffled permutation, or in order).

    ``torch.utils.data.BatchSampler`` yields Python lists, and indexing a tensor with a list of
    256 ints costs about ten times the gather itself; a tensor index does not.

    >>> [b.tolist() for b in BatchIndexSampler(5, 2)]
    [[0, 1], [2, 3], [4]]
    """

    def __init__(self, n: int, batch_size: int, shuffle: bool = False,
                 generator: torch.Generator | None = None) -> None:
        if batch_size < 1:
            raise ValueError(f"batch_size must be >= 1, got {batch_size}")
        self.n, self.batch_size, self.shuffle, self.generator = n, batch_size, shuffle, generator

    def __iter__(self) -> Iterator[Tensor]:
        order = torch.randperm(self.n, generator=self.generator) if self.shuffle \
            else torch.arange(self.n)
        yield from order.split(self.batch_size)

    def __len__(self) -> int:
        return -(-self.n // self.batch_size)
