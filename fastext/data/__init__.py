"""Data sets read from local files: the shipped subsets in ``data/`` or ``../shared/data``.

>>> from fastext.data import load_mnist
>>> images, labels = load_mnist(split="test")
>>> images.dtype, labels.dtype
(torch.uint8, torch.int64)
"""

from .mnist import find_data_dir, find_mnist, load_mnist, mnist_loaders, normalize

__all__ = ["find_data_dir", "find_mnist", "load_mnist", "mnist_loaders", "normalize"]
