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

from torch import Tensor, nn

from ...nn import fuse_bn_relu
from ..vision.body import create_body
from ..vision.unet import DynamicUnet, unet_splitter

__all__ = ["ResidualImage", "residual_splitter", "restoration_unet"]


class ResidualImage(nn.Module):
    """``x + body(x)``; ``body`` maps an image to a same-shaped correction."""

    def __init__(self, body: nn.Module) -> None:
        super().__init__()
        self.body = body

    def forward(self, x: Tensor) -> Tensor:
        return x + self.body(x)


def restoration_unet(arch: str = "resnet18", img_size: tuple[int, int] = (96, 128),
                     in_channels: int = 3, fuse: bool = True,
                     blur: bool = False) -> ResidualImage:
    """A :class:`DynamicUnet` on ``arch`` (random init), the input crossed in before its last
    block, its final conv zeroed, wrapped in :class:`ResidualImage`; ``blur`` smooths after
    each PixelShuffle (the course's ``blur=True``, against its checkerboard)."""
    unet = DynamicUnet(create_body(arch, None, in_channels), in_channels, tuple(img_size),
                       blur=blur, last_cross=True)
    nn.init.zeros_(unet.final.weight)
    nn.init.zeros_(unet.final.bias)
    if fuse:
        fuse_bn_relu(unet)
    return ResidualImage(unet)


def residual_splitter(model: ResidualImage) -> list[list[nn.Parameter]]:
    """Layer groups [encoder, decoder] of the wrapped U-Net."""
    return unet_splitter(model.body)
