"""U-Net segmentation (and image-to-image) models over a ResNet-style encoder, the course's way.

The encoder is :func:`~fastext.tasks.vision.body.create_body`'s body. Forward hooks on the
last encoder stage of each resolution catch the skip activations; the decoder goes back up
one resolution per :class:`UnetBlock`: a :class:`PixelShuffleUpsample` (1x1 conv with ICNR
init, then ``PixelShuffle``, so it starts free of checkerboard artefacts), BatchNorm on the
skip input, concatenation, ReLU, two 3x3 conv layers. A last upsample and a resize bring the
map back to the input size, where an optional "last cross" concatenates the input itself and
runs a residual block before the final 1x1 conv.

Targets are class-index masks (pixel-wise cross-entropy, :class:`PixelAccuracy` that can
ignore a ``Void`` class) or images (``loss_func=pixel_mse``, ``y_range`` for a bounded
output).

>>> net = DynamicUnet(create_body("resnet18"), n_out=5, img_size=(64, 64))
>>> net(torch.randn(2, 3, 61, 83)).shape  # odd sizes come back at the input size
torch.Size([2, 5, 61, 83])
>>> [tuple(s) for s in net.skip_shapes]  # (channels, H, W) of the hooked stages at 64x64
[(64, 32, 32), (64, 16, 16), (128, 8, 8), (256, 4, 4)]
"""

from __future__ import annotations

import math
import os
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from ...learner import DataLoaders, Learner
from ...learner.data import drops_last_batch
from ...learner.metrics import Metric
from ...nn import fuse_bn_relu
from ...nn.modes import eval_mode
from .body import _first_conv, create_body, load_body_weights
from .data import ImageLoader, SeededAugment, _resolve_stats, warn_unless_imagenet_stats
from .model import _params, body_split

__all__ = [
    "DynamicUnet", "PixelAccuracy", "PixelShuffleUpsample", "ResBlock", "SegmentAugment",
    "SegmentationDataLoaders", "UnetBlock", "conv_layer", "icnr_", "pixel_accuracy",
    "pixel_cross_entropy", "pixel_mse", "unet_learner", "unet_splitter",
]


# -- building blocks ------------------------------------------------------------------------
def conv_layer(ni: int, nf: int, ks: int = 3, stride: int = 1, act: bool = True,
               norm: bool = True) -> nn.Sequential:
    """Conv (no bias when a BatchNorm follows) -> BatchNorm -> ReLU, each part optional.

    >>> [type(m).__name__ for m in conv_layer(3, 8)]
    ['Conv2d', 'BatchNorm2d', 'ReLU']
    """
    layers: list[nn.Module] = [nn.Conv2d(ni, nf, ks, stride, ks // 2, bias=not norm)]
    if norm:
        layers.append(nn.BatchNorm2d(nf))
    if act:
        layers.append(nn.ReLU(inplace=True))
    return nn.Sequential(*layers)


def icnr_(weight: Tensor, scale: int = 2,
          init: Callable[[Tensor], Any] = nn.init.kaiming_normal_) -> Tensor:
    """ICNR initialisation, in place, of a conv weight that feeds ``PixelShuffle(scale)``
    (Aitken et al. 2017, "Checkerboard artifact free sub-pixel convolution").

    ``PixelShuffle`` spreads the ``scale**2`` consecutive output channels ``c*s² .. c*s²+s²-1``
    over one ``s x s`` block of output channel ``c``. Drawing one kernel per ``c`` (with
    ``init``) and repeating it over its ``s²`` channels makes every block constant: the
    upsampled map starts as a nearest-neighbour upsample, with no checkerboard.

    >>> w = icnr_(torch.empty(8, 3, 1, 1), scale=2)
    >>> bool((w[0] == w[3]).all()), bool((w[3] == w[4]).all())
    (True, False)
    """
    n_out = weight.shape[0]
    r2 = scale * scale
    if n_out % r2:
        raise ValueError(f"{n_out} output channels are not a multiple of scale**2 = {r2}")
    sub = torch.empty(n_out // r2, *weight.shape[1:], dtype=weight.dtype, device=weight.device)
    init(sub)
    with torch.no_grad():
        weight.copy_(sub.repeat_interleave(r2, dim=0))
    return weight


class PixelShuffleUpsample(nn.Sequential):
    """Upsamples by ``scale``: 1x1 conv to ``nf * scale²`` channels (ICNR, zero bias) ->
    ReLU -> ``PixelShuffle(scale)``, then with ``blur`` a shift-by-one average (replication
    pad + 2x2 average pool) that smooths what is left of the checkerboard.

    >>> up = PixelShuffleUpsample(16, 8)
    >>> up(torch.randn(2, 16, 5, 7)).shape
    torch.Size([2, 8, 10, 14])
    """

    def __init__(self, ni: int, nf: int | None = None, scale: int = 2,
                 blur: bool = False) -> None:
        nf = ni if nf is None else nf
        conv = nn.Conv2d(ni, nf * scale * scale, 1)
        icnr_(conv.weight, scale)
        nn.init.zeros_(conv.bias)  # a bias that differed inside a block would break ICNR
        layers: list[nn.Module] = [conv, nn.ReLU(inplace=True), nn.PixelShuffle(scale)]
        if blur:
            layers += [nn.ReplicationPad2d((1, 0, 1, 0)), nn.AvgPool2d(2, stride=1)]
        super().__init__(*layers)


class UnetBlock(nn.Module):
    """One decoder step: upsample ``x`` (``up_in`` channels) to the skip's resolution,
    concatenate BatchNorm(skip) (``skip_in`` channels), ReLU, two 3x3 conv layers to ``nf``.

    The upsampled map is resized to the skip's size when they differ (odd input sizes make
    the encoder floor a size somewhere).

    >>> blk = UnetBlock(32, 16, 24)
    >>> blk(torch.randn(2, 32, 4, 5), torch.randn(2, 16, 7, 9)).shape
    torch.Size([2, 24, 7, 9])
    """

    def __init__(self, up_in: int, skip_in: int, nf: int, blur: bool = False) -> None:
        super().__init__()
        self.up = PixelShuffleUpsample(up_in, up_in // 2, blur=blur)
        self.skip_bn = nn.BatchNorm2d(skip_in)
        ni = up_in // 2 + skip_in
        self.convs = nn.Sequential(conv_layer(ni, nf), conv_layer(nf, nf))

    def forward(self, x: Tensor, skip: Tensor) -> Tensor:
        up = self.up(x)
        if up.shape[-2:] != skip.shape[-2:]:
            up = F.interpolate(up, skip.shape[-2:], mode="nearest")
        return self.convs(F.relu(torch.cat([up, self.skip_bn(skip)], dim=1)))


class ResBlock(nn.Module):
    """``relu(x + bn(conv(relu(bn(conv(x))))))``, 3x3 convs keeping ``nf`` channels."""

    def __init__(self, nf: int) -> None:
        super().__init__()
        self.convs = nn.Sequential(conv_layer(nf, nf), conv_layer(nf, nf, act=False))

    def forward(self, x: Tensor) -> Tensor:
        return F.relu(x + self.convs(x))


# -- the model ------------------------------------------------------------------------------
class _Store:
    """A forward hook that appends its module's output to a list."""

    def __init__(self, out: list[Tensor]) -> None:
        self.out = out

    def __call__(self, module: nn.Module, inputs: Any, output: Tensor) -> None:
        self.out.append(output)


def _stage_shapes(encoder: nn.Sequential, in_channels: int,
                  img_size: tuple[int, int]) -> list[torch.Size]:
    """Output shape (C, H, W) of every child of ``encoder`` on one dummy image."""
    shapes: list[torch.Size] = []
    with eval_mode(encoder), torch.no_grad():
        p = next(encoder.parameters())
        x = torch.zeros(1, in_channels, *img_size, device=p.device, dtype=p.dtype)
        for layer in encoder:
            x = layer(x)
            shapes.append(x.shape[1:])
    return shapes


class DynamicUnet(nn.Module):
    """A U-Net around ``encoder``, sized by running it once on an ``img_size`` dummy.

    The hooked stages are the children of ``encoder`` (an ``nn.Sequential``) after which the
    resolution drops; for a torchvision ResNet body: ``relu`` (1/2), ``layer1`` (1/4),
    ``layer2`` (1/8), ``layer3`` (1/16). The hooks exist only while :meth:`forward` runs the
    encoder (registered, then removed in a ``finally``), so nothing dangles between calls
    and the caught activations are freed with the forward.

    Args:
        encoder: ``nn.Sequential`` body (e.g. ``create_body("resnet34")``).
        n_out: output channels (classes, or 3 for an image).
        img_size: (H, W) of the dummy used to find the stages (any size the encoder takes).
        blur: blur after each PixelShuffle. last_cross: concatenate the input image before
            a final :class:`ResBlock` (sharper edges, costs a full-resolution block).
        y_range: ``(lo, hi)``: a scaled sigmoid bounds the output (image targets).
        in_channels: input channels (default: the first conv's).

    Attributes: ``encoder``, ``middle`` (between encoder and decoder), ``blocks`` (one
    :class:`UnetBlock` per hooked stage, deepest first), ``upsample`` (the last
    PixelShuffle, when the highest skip is below the input size), ``cross``, ``final``
    (1x1 conv to ``n_out``), ``skip_idxs`` (hooked children), ``skip_shapes`` (their
    (C, H, W) at ``img_size``).
    """

    def __init__(self, encoder: nn.Sequential, n_out: int, img_size: tuple[int, int] = (64, 64),
                 blur: bool = False, last_cross: bool = False,
                 y_range: tuple[float, float] | None = None,
                 in_channels: int | None = None) -> None:
        super().__init__()
        if not isinstance(encoder, nn.Sequential):
            raise TypeError("the encoder must be an nn.Sequential whose children are its "
                            f"stages (create_body gives one), got {type(encoder).__name__}")
        if n_out < 1:
            raise ValueError(f"n_out must be positive, got {n_out}")
        if in_channels is None:
            in_channels = _first_conv(encoder, "the encoder")[2].in_channels
        self.encoder, self.in_channels = encoder, in_channels
        shapes = _stage_shapes(encoder, in_channels, tuple(img_size))
        # a stage is hooked when the next child changes the resolution
        self.skip_idxs = [i for i in range(len(shapes) - 1)
                          if shapes[i][-2:] != shapes[i + 1][-2:]]
        if not self.skip_idxs:
            raise ValueError("the encoder never changes resolution: nothing to skip-connect")
        self.skip_shapes = [shapes[i] for i in self.skip_idxs]
        nf = shapes[-1][0]
        self.middle = nn.Sequential(nn.BatchNorm2d(nf), nn.ReLU(inplace=True),
                                    conv_layer(nf, nf * 2), conv_layer(nf * 2, nf))
        blocks = []
        for j, shape in enumerate(reversed(self.skip_shapes)):
            last = j == len(self.skip_shapes) - 1
            ni = nf // 2 + shape[0]
            # halve the channels on the way up, except in the last block (a thin map at
            # the highest resolution would starve the head)
            out = ni if last else ni // 2
            blocks.append(UnetBlock(nf, shape[0], out, blur=blur))
            nf = out
        self.blocks = nn.ModuleList(blocks)
        head: list[nn.Module] = []
        # the highest skip is below the input resolution (ResNet: 1/2): one more upsample
        if tuple(self.skip_shapes[0][-2:]) != tuple(img_size):
            head.append(PixelShuffleUpsample(nf, blur=blur))
        self.upsample = nn.Sequential(*head)
        self.last_cross = last_cross
        self.cross = ResBlock(nf + in_channels) if last_cross else nn.Identity()
        self.final = nn.Conv2d(nf + in_channels if last_cross else nf, n_out, 1)
        self.y_range = y_range

    @contextmanager
    def _hooked(self) -> Iterator[list[Tensor]]:
        """Forward hooks on the skip stages for the duration of the block."""
        stored: list[Tensor] = []
        handles = [self.encoder[i].register_forward_hook(_Store(stored))
                   for i in self.skip_idxs]
        try:
            yield stored
        finally:
            for h in handles:
                h.remove()

    def forward(self, x: Tensor) -> Tensor:
        with self._hooked() as skips:
            h = self.encoder(x)
        h = self.middle(h)
        for blk, skip in zip(self.blocks, reversed(skips), strict=True):
            h = blk(h, skip)
        h = self.upsample(h)
        if h.shape[-2:] != x.shape[-2:]:
            h = F.interpolate(h, x.shape[-2:], mode="bilinear", align_corners=False)
        if self.last_cross:
            h = self.cross(torch.cat([h, x.to(h.dtype)], dim=1))
        out = self.final(h)
        if self.y_range is not None:
            lo, hi = self.y_range
            out = torch.sigmoid(out) * (hi - lo) + lo
        return out

    @property
    def decoder(self) -> nn.ModuleList:
        """Everything after the encoder (the last layer group)."""
        return nn.ModuleList([self.middle, self.blocks, self.upsample, self.cross, self.final])


def unet_splitter(model: nn.Module) -> list[list[nn.Parameter]]:
    """Layer groups ``[low encoder, high encoder, decoder]`` for a torchvision encoder,
    split as fastai's ``unet_learner`` does (its body's ``model_meta`` split, e.g. ResNet
    ``encoder[:6]`` | ``encoder[6:]``: :func:`~fastext.tasks.vision.model.body_split`),
    else ``[encoder, decoder]``; ``freeze()`` trains the decoder only.

    >>> net = DynamicUnet(create_body("resnet18"), n_out=2, img_size=(32, 32))
    >>> [len(g) for g in unet_splitter(net)][:2]
    [30, 30]
    """
    split = body_split(model.encoder)
    return _params([*split, model.decoder] if split else [model.encoder, model.decoder])


# -- losses and metrics -----------------------------------------------------------------------
def pixel_cross_entropy(pred: Tensor, target: Tensor, ignore_index: int = -100) -> Tensor:
    """Cross-entropy averaged over every pixel: ``pred`` (N, C, H, W) logits, ``target``
    (N, H, W) class indices; pixels of class ``ignore_index`` count for nothing."""
    if target.dtype not in (torch.int64, torch.int32, torch.uint8, torch.int16):
        raise TypeError(f"segmentation targets must be integer class indices, got "
                        f"{target.dtype}")
    return F.cross_entropy(pred.float(), target.long(), ignore_index=ignore_index)


def pixel_mse(pred: Tensor, target: Tensor) -> Tensor:
    """Mean squared error over every pixel and channel (image-to-image targets).

    >>> float(pixel_mse(torch.zeros(1, 3, 2, 2), torch.ones(1, 3, 2, 2)))
    1.0
    """
    if pred.shape != target.shape:
        raise ValueError(f"prediction {tuple(pred.shape)} and target {tuple(target.shape)} "
                         "differ in shape")
    return F.mse_loss(pred.float(), target.float())


def _correct_and_count(pred: Tensor, target: Tensor,
                       ignore_index: int | None) -> tuple[Tensor, Tensor]:
    if pred.dim() != target.dim() + 1 or pred.shape[2:] != target.shape[1:]:
        raise ValueError(f"pred {tuple(pred.shape)} is not (N, C, *target.shape[1:]) for "
                         f"target {tuple(target.shape)}")
    hit = pred.argmax(1) == target
    if ignore_index is None:
        return hit.sum(), torch.tensor(target.numel(), device=target.device)
    keep = target != ignore_index
    return (hit & keep).sum(), keep.sum()


def pixel_accuracy(pred: Tensor, target: Tensor, ignore_index: int | None = None) -> Tensor:
    """Fraction of pixels whose arg-max class is the target's, over the pixels whose target
    is not ``ignore_index`` (e.g. CamVid's ``Void``). NaN when no pixel counts.

    >>> pred = torch.tensor([[[[2.0, 0.0, 0.0]], [[0.0, 1.0, 3.0]]]])  # (1, 2, 1, 3)
    >>> round(float(pixel_accuracy(pred, torch.tensor([[[0, 0, 1]]]))), 4)  # 2 of 3
    0.6667
    >>> float(pixel_accuracy(pred, torch.tensor([[[0, 0, 1]]]), ignore_index=0))
    1.0
    """
    correct, count = _correct_and_count(pred, target, ignore_index)
    return correct.float() / count


class PixelAccuracy(Metric):
    """:func:`pixel_accuracy` over a whole validation pass (pixel-weighted, so images with
    much ``Void`` weigh less, as they should). Named ``pixel_acc_no_void`` when it ignores a
    class, ``pixel_acc`` otherwise."""

    def __init__(self, ignore_index: int | None = None, name: str | None = None) -> None:
        self.ignore_index = ignore_index
        self._name = name or ("pixel_acc" if ignore_index is None else "pixel_acc_no_void")
        self.reset()

    def reset(self) -> None:
        self.correct: Tensor | int = 0
        self.count: Tensor | int = 0

    def accumulate(self, learn: Any) -> None:
        c, n = _correct_and_count(learn.pred.detach(), learn.yb[0], self.ignore_index)
        self.correct = self.correct + c
        self.count = self.count + n

    @property
    def value(self) -> float:
        n = int(self.count)
        return float(self.correct) / n if n else math.nan


# -- data -----------------------------------------------------------------------------------
class SegmentAugment(SeededAugment):
    """Batched augmentation of uint8 images and their masks together, on their device:
    a horizontal flip per image with probability ``flip`` and, when ``scale`` is not
    (1, 1), a random zoom-in crop (area fraction in ``scale``) resampled bilinearly for the
    image and nearest for the mask (one ``affine_grid`` for both). Then ``/255`` and
    normalisation by ``stats``; with ``train=False`` only the normalisation.

    As :class:`~fastext.tasks.vision.data.BatchAugment`: the draws come from ``generator``
    when given (the loader passes :meth:`epoch_generator` of its epoch, so resuming and
    ``set_epoch`` replay an epoch exactly), else from one generator seeded at construction.

    >>> aug = SegmentAugment(((0.5,) * 3, (0.5,) * 3), flip=1.0)
    >>> x = torch.arange(4, dtype=torch.uint8).view(1, 1, 1, 4).expand(1, 3, 1, 4)
    >>> xb, yb = aug(x, torch.arange(4).view(1, 1, 4))
    >>> yb.tolist()
    [[[3, 2, 1, 0]]]
    """

    def __init__(self, stats: tuple[Sequence[float], Sequence[float]] | None,
                 flip: float = 0.5, scale: tuple[float, float] = (1.0, 1.0),
                 seed: int = 0) -> None:
        if not 0 < scale[0] <= scale[1] <= 1:
            raise ValueError(f"scale must satisfy 0 < lo <= hi <= 1, got {scale}")
        super().__init__(seed)
        self.stats, self.flip, self.scale = stats, flip, scale

    def _normalise(self, x: Tensor) -> Tensor:
        x = x.float().div_(255)
        if self.stats is not None:
            mean = torch.tensor(self.stats[0], device=x.device).view(1, -1, 1, 1)
            std = torch.tensor(self.stats[1], device=x.device).view(1, -1, 1, 1)
            x = (x - mean) / std
        return x

    def __call__(self, x: Tensor, y: Tensor, train: bool = True,
                 generator: torch.Generator | None = None) -> tuple[Tensor, Tensor]:
        x = self._normalise(x)
        if not train:
            return x, y
        n, g = len(x), self.generator(generator)
        flip = torch.rand(n, generator=g) < self.flip
        if self.scale == (1.0, 1.0):
            f = flip.to(x.device)
            x = torch.where(f.view(-1, 1, 1, 1), x.flip(-1), x)
            y = torch.where(f.view(-1, 1, 1), y.flip(-1), y)
            return x, y
        side = torch.empty(n).uniform_(*self.scale, generator=g).sqrt()
        tx = (torch.rand(n, generator=g) * 2 - 1) * (1 - side)
        ty = (torch.rand(n, generator=g) * 2 - 1) * (1 - side)
        theta = torch.zeros(n, 2, 3)
        theta[:, 0, 0] = torch.where(flip, -side, side)
        theta[:, 1, 1], theta[:, 0, 2], theta[:, 1, 2] = side, tx, ty
        grid = F.affine_grid(theta.to(x.device), list(x.shape), align_corners=False)
        x = F.grid_sample(x, grid, mode="bilinear", padding_mode="reflection",
                          align_corners=False)
        ym = F.grid_sample(y[:, None].float(), grid, mode="nearest", padding_mode="reflection",
                           align_corners=False)
        return x, ym[:, 0].round().to(y.dtype)


class _SegmentLoader(ImageLoader):
    """:class:`ImageLoader` for (images, masks): the augmentation moves both alike, and
    with ``size`` set both are resized (image bilinear, mask nearest)."""

    def __init__(self, images: Tensor, masks: Tensor, augment: SegmentAugment, bs: int,
                 train: bool, device: torch.device, seed: int = 0, drop_last: bool = False,
                 shuffle: bool | None = None) -> None:
        super().__init__(images, masks, augment, bs, train, device, seed,  # type: ignore[arg-type]
                         drop_last, shuffle)
        self.size: tuple[int, int] | None = None

    def __iter__(self) -> Iterator[tuple[Tensor, Tensor]]:
        kw = self._augment_kwargs()  # this epoch's generator, before the epoch advances
        for xb, yb in self.base:
            xb = xb.to(self.device, non_blocking=True)
            xb, yb = self.augment(xb, yb.to(self.device, non_blocking=True), self.train, **kw)
            if self.size is not None and tuple(xb.shape[-2:]) != self.size:
                xb = F.interpolate(xb, self.size, mode="bilinear", align_corners=False,
                                   antialias=True)
                yb = F.interpolate(yb[:, None].float(), self.size, mode="nearest")[:, 0]
                yb = yb.round().long()
            yield xb, yb


class SegmentationDataLoaders(DataLoaders):
    """Train / valid loaders of (normalised image, mask) batches.

    Attributes: ``codes`` (class names), ``n_out`` (= ``len(codes)``), ``void_code``
    (the ignored class, or ``None``), ``stats`` (mean, std used).

    >>> x = torch.randint(0, 256, (10, 3, 12, 16), dtype=torch.uint8)
    >>> y = torch.randint(0, 3, (10, 12, 16))
    >>> dls = SegmentationDataLoaders.from_tensors(x[:8], y[:8], x[8:], y[8:],
    ...     ["a", "b", "Void"], bs=4, device="cpu")
    >>> xb, yb = next(iter(dls.train))
    >>> xb.shape, xb.dtype, yb.shape, dls.n_out, dls.void_code
    (torch.Size([4, 3, 12, 16]), torch.float32, torch.Size([4, 12, 16]), 3, 2)
    """

    def __init__(self, train: _SegmentLoader, valid: _SegmentLoader, codes: Sequence[str],
                 void_code: int | None, stats: tuple, device: torch.device) -> None:
        super().__init__(train, valid, device)
        self.codes, self.void_code, self.stats = list(codes), void_code, stats
        self.n_out = len(self.codes)

    #: ``set_size`` takes (H, W) pairs (read by ``ProgressiveResize``).
    takes_hw_size = True

    def set_size(self, size: int | tuple[int, int] | None) -> None:
        """Batch size (H, W) from now on, masks resized with their images (an int is a
        square); ``None``: as stored. Used by progressive resizing."""
        if isinstance(size, int):
            size = (size, size)
        for dl in (self.train, self.valid):
            dl.loader.size = None if size is None else (int(size[0]), int(size[1]))

    @classmethod
    def from_tensors(cls, x_train: Tensor, y_train: Tensor, x_valid: Tensor,  # type: ignore[override]
                     y_valid: Tensor, codes: Sequence[str], bs: int = 8,
                     valid_bs: int | None = None, stats: str | tuple = "data",
                     flip: float = 0.5, scale: tuple[float, float] = (1.0, 1.0),
                     void_code: int | None | str = "auto", seed: int = 0,
                     device: str | torch.device | None = None, shuffle: bool = True,
                     drop_last: bool = True) -> SegmentationDataLoaders:
        """Loaders over uint8 images (N, C, H, W) and integer masks (N, H, W).

        ``stats``: ``"data"`` (the training images' per-channel mean/std, right for an
        encoder trained from scratch), ``"imagenet"`` (for torchvision weights; 3-channel
        images only) or ``(mean, std)`` with one value per channel; other counts raise
        ``ValueError``. ``void_code``: ``"auto"`` takes the index of ``"Void"`` in
        ``codes`` if present. Training batches are shuffled when ``shuffle``, and with
        ``drop_last`` (default, as in fastai) a last partial training batch is left out
        when there are more than ``bs`` images; validation batches hold ``valid_bs``
        (default ``2 * bs``).
        """
        for name, x in (("x_train", x_train), ("x_valid", x_valid)):
            if x.dtype != torch.uint8 or x.dim() != 4:
                raise TypeError(f"{name} must be uint8 (N, C, H, W), got {x.dtype} "
                                f"{tuple(x.shape)}")
        for name, x, y in (("train", x_train, y_train), ("valid", x_valid, y_valid)):
            if y.is_floating_point() or y.dim() != 3:
                raise TypeError(f"{name} masks must be integer (N, H, W), got {y.dtype} "
                                f"{tuple(y.shape)}")
            if len(x) != len(y) or x.shape[-2:] != y.shape[-2:]:
                raise ValueError(f"{name} images {tuple(x.shape)} and masks {tuple(y.shape)} "
                                 "do not match")
            if len(y) and (int(y.min()) < 0 or int(y.max()) >= len(codes)):
                raise ValueError(f"{name} masks hold values outside 0..{len(codes) - 1}")
        if void_code == "auto":
            void_code = list(codes).index("Void") if "Void" in codes else None
        dev = torch.device(device) if device is not None else (
            torch.device("cuda") if torch.cuda.is_available() else torch.device("cpu"))
        st = _resolve_stats(stats, x_train)
        aug = SegmentAugment(st, flip, scale, seed)
        y_train, y_valid = y_train.long(), y_valid.long()
        train = _SegmentLoader(x_train, y_train, aug, bs, True, dev, seed,
                               drop_last=drops_last_batch(len(x_train), bs, drop_last),
                               shuffle=shuffle)
        valid = _SegmentLoader(x_valid, y_valid, aug, valid_bs or 2 * bs, False, dev)
        return cls(train, valid, codes, void_code, st, dev)


# -- the learner ------------------------------------------------------------------------------
def unet_learner(dls: Any, arch: str | nn.Module = "resnet34", n_out: int | None = None,
                 pretrained: str | os.PathLike[str] | None = None,
                 in_channels: int | None = None, img_size: tuple[int, int] | None = None,
                 blur: bool = False, last_cross: bool = False,
                 y_range: tuple[float, float] | None = None, cut: bool = True,
                 fuse: bool = True, loss_func: Callable[..., Tensor] | None = None,
                 metrics: Sequence[Any] | None = None, **learner_kwargs: Any) -> Learner:
    """A :class:`~fastext.learner.Learner` for a :class:`DynamicUnet` on ``arch``'s body.

    Args:
        dls: loaders of (image, target) batches; a :class:`SegmentationDataLoaders` gives
            ``n_out`` and ``void_code``.
        arch: a ResNet name of :data:`~fastext.tasks.vision.body.ARCHS`, a torchvision-style
            model (cut before its pooling) or, with ``cut=False``, an ``nn.Sequential`` body.
        n_out: output channels (default ``dls.n_out``); 3 for an RGB image output.
        pretrained: a local torchvision-format weights file (with ``cut=False``: the
            body's own state dict); the encoder then starts frozen (``unfreeze()`` after the
            decoder has trained). Nothing is downloaded. Warns when 3-channel loaders are
            not normalised with ``stats="imagenet"``.
        img_size: (H, W) used to size the decoder (default: the training images' size).
        fuse: replace BatchNorm -> ReLU pairs by the fused kernel (:func:`fuse_bn_relu`).
        loss_func: default :func:`pixel_cross_entropy`; pass :func:`pixel_mse` (and usually
            ``y_range``) for image targets.
        metrics: default :class:`PixelAccuracy` ignoring ``dls.void_code`` for the default
            loss, none for a custom one.
        learner_kwargs: passed to the Learner (lr, wd, cbs, precision, quiet...).

    >>> x = torch.randint(0, 256, (6, 3, 32, 48), dtype=torch.uint8)
    >>> y = torch.randint(0, 4, (6, 32, 48))
    >>> dls = SegmentationDataLoaders.from_tensors(x[:4], y[:4], x[4:], y[4:],
    ...     ["a", "b", "c", "Void"], bs=2, device="cpu")
    >>> learn = unet_learner(dls, "resnet18", quiet=True)
    >>> [m.name for m in learn.metrics], len(learn.layer_groups())  # low / high encoder, decoder
    (['pixel_acc_no_void'], 3)
    >>> learn.model(torch.randn(1, 3, 32, 48)).shape
    torch.Size([1, 4, 32, 48])
    """
    if n_out is None:
        n_out = getattr(dls, "n_out", None)
        if n_out is None:
            raise ValueError("n_out is not given and the loaders do not say (no dls.n_out)")
    ds = getattr(dls.train, "dataset", None)
    images = ds[0] if isinstance(ds, tuple) and ds[0].dim() == 4 else None
    if in_channels is None:
        in_channels = images.shape[1] if images is not None else 3
    if img_size is None:
        img_size = tuple(images.shape[-2:]) if images is not None else (64, 64)
    if isinstance(arch, nn.Module) and not cut:  # the module is the body, weights and all
        encoder = arch if pretrained is None else load_body_weights(arch, pretrained)
    else:
        encoder = create_body(arch, pretrained, in_channels)
    if pretrained is not None:
        warn_unless_imagenet_stats(dls, in_channels)
    model = DynamicUnet(encoder, n_out, img_size, blur, last_cross, y_range, in_channels)
    if fuse:
        fuse_bn_relu(model)
    custom_loss = loss_func is not None
    if loss_func is None:
        loss_func = pixel_cross_entropy
    if metrics is None:
        metrics = [] if custom_loss else [PixelAccuracy(getattr(dls, "void_code", None))]
    learn = Learner(dls, model, loss_func, metrics=metrics, splitter=unet_splitter,
                    **learner_kwargs)
    if pretrained is not None:
        learn.freeze()
    return learn
