"""The restoration generator: a U-Net that predicts a correction added to its input.

Starting as the identity (its last conv is zero), the net's output is never worse than the
degraded input at step 0, and every step spends its capacity on what is wrong with the
input rather than on reproducing the image (residual learning, as in VDSR, Kim et al. 2016).

>>> import torch
>>> net = restoration_unet("resnet18", (32, 48))
>>> x = torch.rand(2, 3, 32, 48)
>>> torch.equal(net(x), x)
True
"""

from __future__ import annotations

import os
from collections.abc import Sequence

import torch
from torch import Tensor, nn

from ...nn import fuse_bn_relu
from ..vision.body import create_body
from ..vision.data import IMAGENET_STATS
from ..vision.unet import DynamicUnet, unet_splitter

__all__ = ["ResidualImage", "residual_splitter", "restoration_unet"]


class ResidualImage(nn.Module):
    """``x + body(x)``; ``body`` maps an image to a same-shaped correction. With ``stats``
    (per-channel mean and std) the body sees ``(x - mean) / std`` (a pretrained encoder
    gets the statistics it was trained on) while input and output stay in the image's own
    range."""

    def __init__(self, body: nn.Module,
                 stats: tuple[Sequence[float], Sequence[float]] | None = None) -> None:
        super().__init__()
        self.body = body
        self.stats = stats
        if stats is not None:
            mean, std = (torch.tensor(v, dtype=torch.float32).view(1, -1, 1, 1) for v in stats)
            self.register_buffer("mean", mean, persistent=False)
            self.register_buffer("std", std, persistent=False)

    def forward(self, x: Tensor) -> Tensor:
        if self.stats is None:
            return x + self.body(x)
        return x + self.body((x - self.mean.to(x.dtype)) / self.std.to(x.dtype))


def restoration_unet(arch: str = "resnet18", img_size: tuple[int, int] = (96, 128),
                     in_channels: int = 3, fuse: bool = True, blur: bool = False,
                     pretrained: str | os.PathLike[str] | None = None) -> ResidualImage:
    """A :class:`DynamicUnet` on ``arch``, the input crossed in before its last block, its
    final conv zeroed, wrapped in :class:`ResidualImage`; ``blur`` smooths after each
    PixelShuffle (the course's ``blur=True``, against its checkerboard). ``pretrained``: a
    local torchvision checkpoint of ``arch`` for the encoder (the course's pretrained
    ResNet-34 U-Net), whose inputs in [0, 1] are then normalised with ImageNet's
    statistics inside the model, as the encoder was trained (3 channels only)."""
    if pretrained is not None and in_channels != 3:
        raise ValueError(f"a pretrained encoder takes 3 ImageNet-normalised channels, not "
                         f"{in_channels}")
    unet = DynamicUnet(create_body(arch, pretrained, in_channels), in_channels,
                       tuple(img_size), blur=blur, last_cross=True)
    nn.init.zeros_(unet.final.weight)
    nn.init.zeros_(unet.final.bias)
    if fuse:
        fuse_bn_relu(unet)
    return ResidualImage(unet, IMAGENET_STATS if pretrained is not None else None)


def residual_splitter(model: ResidualImage) -> list[list[nn.Parameter]]:
    """Layer groups of the wrapped U-Net (:func:`~fastext.tasks.vision.unet.unet_splitter`:
    low encoder, high encoder, decoder for a torchvision encoder)."""
    return unet_splitter(model.body)
