"""Image-restoration metrics: PSNR and SSIM per image, and as Learner metrics; the
detail ratio, which tells blur (what pixel losses give) from the target's sharpness.

Images are float tensors (N, C, H, W) in ``[0, data_range]``.

>>> import torch
>>> x = torch.rand(2, 3, 16, 16)
>>> psnr(x, x).isinf().all().item(), ssim(x, x).allclose(torch.ones(2))
(True, True)
"""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor

from ...learner.metrics import Metric

__all__ = ["PSNR", "SSIM", "detail_ratio", "psnr", "ssim"]


def _check(pred: Tensor, target: Tensor) -> None:
    if pred.shape != target.shape or pred.dim() != 4:
        raise ValueError(f"pred and target must be (N, C, H, W) of one shape, got "
                         f"{tuple(pred.shape)} and {tuple(target.shape)}")


def psnr(pred: Tensor, target: Tensor, data_range: float = 1.0) -> Tensor:
    """Peak signal-to-noise ratio in dB per image: ``10 log10(range^2 / MSE)`` (inf when the
    images are equal).

    >>> target = torch.zeros(2, 3, 8, 8)
    >>> psnr(target + 0.1, target)  # MSE 0.01 of a range of 1: 20 dB
    tensor([20., 20.])
    >>> psnr(target, target)
    tensor([inf, inf])
    """
    _check(pred, target)
    mse = (pred.double() - target.double()).pow(2).flatten(1).mean(1)
    return (10 * torch.log10(data_range ** 2 / mse)).float()


def _gaussian(window: int, sigma: float, device: torch.device) -> Tensor:
    g = torch.arange(window, dtype=torch.float64, device=device) - (window - 1) / 2
    g = torch.exp(-g * g / (2 * sigma * sigma))
    return g / g.sum()


def ssim(pred: Tensor, target: Tensor, data_range: float = 1.0, window: int = 11,
         sigma: float = 1.5) -> Tensor:
    """Structural similarity per image (Wang et al. 2004): Gaussian window, K1 = 0.01,
    K2 = 0.03, computed per channel over the 'valid' positions, then averaged.

    >>> _ = torch.manual_seed(0)
    >>> x = torch.rand(2, 3, 16, 16)
    >>> ssim(x, x)
    tensor([1., 1.])
    >>> bool((ssim((x + 0.2 * torch.randn_like(x)).clamp(0, 1), x) < 0.9).all())
    True

    Raises:
        ValueError: images smaller than ``window`` on a side (and what the shape check
            refuses).
    """
    _check(pred, target)
    if min(pred.shape[-2:]) < window:
        raise ValueError(f"images must be at least {window} pixels on each side")
    x, y = pred.double(), target.double()
    c = x.shape[1]
    g = _gaussian(window, sigma, x.device)
    k = (g[:, None] * g[None, :]).expand(c, 1, window, window)

    def blur(t: Tensor) -> Tensor:
        return F.conv2d(t, k, groups=c)

    mx, my = blur(x), blur(y)
    sxx, syy, sxy = blur(x * x) - mx * mx, blur(y * y) - my * my, blur(x * y) - mx * my
    c1, c2 = (0.01 * data_range) ** 2, (0.03 * data_range) ** 2
    s = ((2 * mx * my + c1) * (2 * sxy + c2)) / ((mx * mx + my * my + c1) * (sxx + syy + c2))
    return s.flatten(1).mean(1).float()


#: The 4-neighbour Laplacian: its response is an image's fine detail (edges, texture, noise).
_LAPLACIAN = ((0.0, 1.0, 0.0), (1.0, -4.0, 1.0), (0.0, 1.0, 0.0))


def _detail_energy(x: Tensor) -> Tensor:
    c = x.shape[1]
    k = torch.tensor(_LAPLACIAN, dtype=torch.float64, device=x.device).expand(c, 1, 3, 3)
    return F.conv2d(x.double(), k, groups=c).pow(2).flatten(1).mean(1)


def detail_ratio(pred: Tensor, target: Tensor, data_range: float = 1.0) -> Tensor:
    """Per image, the mean squared Laplacian response of ``pred`` over that of ``target``
    ('valid' positions, all channels): 1 when the prediction carries as much fine detail as
    the target, below 1 when it is blurrier (the mean that a pixel loss rewards), above 1
    when it adds edges or noise. PSNR and SSIM cannot tell these apart; it is no measure of
    fidelity on its own (noise raises it).

    Both energies are floored at that of 8-bit quantisation noise (``20/12 * (data_range /
    255)**2``), the least detail an 8-bit image can be told to have, so the ratio is finite:
    two flat images (a black frame and its prediction) give 1, not 0/0, and detail added to
    a flat target counts against that floor, not 0. Images with more detail than the floor
    (any natural image) get the plain ratio.

    >>> x = torch.rand(1, 3, 16, 16)
    >>> blurred = F.avg_pool2d(x, 3, 1, 1)
    >>> detail_ratio(x, x).item(), detail_ratio(blurred, x).item() < 0.5
    (1.0, True)
    >>> flat = torch.full((1, 3, 16, 16), 0.5)
    >>> detail_ratio(flat, flat).item()
    1.0
    """
    _check(pred, target)
    if min(pred.shape[-2:]) < 3:
        raise ValueError("images must be at least 3 pixels on each side")
    # The Laplacian of white noise of variance v has variance 20 v (1 + 1 + 1 + 1 + 4**2);
    # rounding to 8 bits is uniform noise of variance step**2 / 12.
    floor = 20 / 12 * (data_range / 255) ** 2
    return (_detail_energy(pred).clamp(min=floor)
            / _detail_energy(target).clamp(min=floor)).float()


class _ImageMetric(Metric):
    fn: Any = None

    def __init__(self, data_range: float = 1.0) -> None:
        self.data_range = data_range

    def reset(self) -> None:
        self.total: Tensor | None = None
        self.count = 0

    def accumulate(self, learn: Any) -> None:
        vals = type(self).fn(learn.pred.detach().float().clamp(0, self.data_range),
                             learn.yb[0].float(), self.data_range)
        self.total = vals.sum() if self.total is None else self.total + vals.sum()
        self.count += len(vals)  # the sum stays on the device until ``value``

    @property
    def value(self) -> float:
        return float(self.total) / self.count if self.count else float("nan")


class PSNR(_ImageMetric):
    """Mean PSNR (dB) of the (clamped) predictions over the validation images."""

    fn = staticmethod(psnr)


class SSIM(_ImageMetric):
    """Mean SSIM of the (clamped) predictions over the validation images."""

    fn = staticmethod(ssim)
