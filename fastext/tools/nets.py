"""Small MNIST networks the tools train in seconds on a CPU, and a helper that trains one
with the Learner on MNIST training images.

>>> mnist_cnn(bn=True)(torch.zeros(2, 1, 28, 28)).shape
torch.Size([2, 10])
>>> sum(isinstance(m, nn.BatchNorm2d) for m in mnist_cnn(bn=False).modules())
0
"""

from __future__ import annotations

import os

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from ..data.mnist import load_mnist, normalize
from ..learner import DataLoaders, Learner

__all__ = ["CNN_CHANNELS", "CNN_PER_STAGE", "load_mnist_train", "mnist_cnn", "train_mnist"]

#: Channels of the three stages (28 -> 14 -> 7 -> 4 pixels).
CNN_CHANNELS = (16, 32, 64)
#: Convs per stage: six conv layers in all. BatchNorm's effect on the landscape grows with
#: depth (as skip connections' does in Li et al.); with one conv per stage the BN and no-BN
#: nets' minima were about equally flat.
CNN_PER_STAGE = 2


def mnist_cnn(bn: bool = True, channels: tuple[int, ...] = CNN_CHANNELS,
              per_stage: int = CNN_PER_STAGE) -> nn.Sequential:
    """Stages of ``per_stage`` convs (the first of each with stride 2: 28 -> 14 -> 7 -> 4
    pixels for three stages), each conv followed by BatchNorm (``bn``) and ReLU, then global
    average pooling and a linear layer to 10 logits. Without BatchNorm the convs get a bias
    (with it, BatchNorm's shift makes one redundant).

    >>> len([m for m in mnist_cnn(per_stage=3) if isinstance(m, nn.Conv2d)])
    9
    """
    if per_stage < 1 or not channels:
        raise ValueError(f"need per_stage >= 1 and some channels, got {per_stage}, {channels}")
    layers: list[nn.Module] = []
    c_in = 1
    for i, c in enumerate(channels):
        for j in range(per_stage):
            ks = 5 if i == j == 0 else 3
            layers.append(nn.Conv2d(c_in, c, ks, stride=2 if j == 0 else 1, padding=ks // 2,
                                    bias=not bn))
            if bn:
                layers.append(nn.BatchNorm2d(c))
            layers.append(nn.ReLU())
            c_in = c
    layers += [nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(c_in, 10)]
    return nn.Sequential(*layers)


def load_mnist_train(data: str | os.PathLike[str] | None, n: int) -> tuple[Tensor, Tensor]:
    """The first ``n`` MNIST training images, normalised, ``(n, 1, 28, 28)``, and labels.

    Raises:
        ValueError: the split holds fewer than ``n`` images.
    """
    x, y = load_mnist(data, "train")
    if n > len(x):
        raise ValueError(f"{n} training images asked for, the split holds {len(x)}")
    return normalize(x[:n]), y[:n].clone()


def train_mnist(model: nn.Module, x: Tensor, y: Tensor, epochs: int = 2, lr: float = 1e-2,
                bs: int = 128, seed: int = 0, wd: float = 0.1) -> Learner:
    """Trains ``model`` on ``(x, y)`` with ``fit_one_cycle`` (the last sixth of the rows held
    out as the valid set) and returns the Learner."""
    k = len(x) - len(x) // 6
    torch.manual_seed(seed)
    dls = DataLoaders.from_tensors(x[:k], y[:k], x[k:], y[k:], bs=bs, seed=seed, device="cpu")
    learn = Learner(dls, model, F.cross_entropy, wd=wd, quiet=True)
    learn.fit_one_cycle(epochs, lr)
    return learn
