"""Data sets read from local files: the shipped subsets in ``data/`` or ``../shared/data``.

A file that cannot be read or is not in its format raises :class:`DataError`, a
``ValueError`` whose message starts with the file's path.

>>> from fastext.data import load_mnist
>>> images, labels = load_mnist(split="test")
>>> images.dtype, labels.dtype
(torch.uint8, torch.int64)
"""

from .files import DataError, find_data_dir, load_torch_file, save_torch_file
from .mnist import find_mnist, load_mnist, mnist_loaders, normalize

__all__ = ["DataError", "find_data_dir", "find_mnist", "load_mnist", "load_torch_file",
           "mnist_loaders", "normalize", "save_torch_file"]
