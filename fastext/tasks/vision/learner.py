"""Transfer learning the course's way: a pretrained (or fresh) convolutional body, a new
head, the body frozen while the head warms up, then ``unfreeze`` with discriminative LRs.

>>> from fastext.tasks.vision.data import ImageDataLoaders
>>> x = torch.randint(0, 256, (16, 1, 32, 32), dtype=torch.uint8)
>>> y = torch.randint(0, 3, (16,))
>>> dls = ImageDataLoaders.from_tensors(x[:12], y[:12], x[12:], y[12:], ["a", "b", "c"],
...                                     bs=4, device="cpu")
>>> learn = vision_learner(dls, "resnet18", in_channels=1, quiet=True)
>>> [len(g) for g in learn.splitter(learn.model)]  # layer groups: body, head
[60, 8]
>>> learn.model(torch.randn(2, 1, 32, 32)).shape
torch.Size([2, 3])
"""

from __future__ import annotations

import os
from collections.abc import Callable, Sequence
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from ...learner import Learner
from ...learner.metrics import FBeta, accuracy, accuracy_multi
from ...nn import fuse_bn_relu
from .body import create_body, load_body_weights, num_features
from .data import warn_unless_imagenet_stats

__all__ = ["AdaptiveConcatPool2d", "VisionModel", "create_head", "vision_learner"]


class AdaptiveConcatPool2d(nn.Module):
    """Average and max pooling side by side: 2x the channels, both summaries of the map."""

    def __init__(self, size: int = 1) -> None:
        super().__init__()
        self.avg, self.max = nn.AdaptiveAvgPool2d(size), nn.AdaptiveMaxPool2d(size)

    def forward(self, x: Tensor) -> Tensor:
        return torch.cat([self.max(x), self.avg(x)], 1)


def create_head(nf: int, n_out: int, lin_ftrs: Sequence[int] = (512,), ps: float = 0.5,
                concat_pool: bool = True) -> nn.Sequential:
    """Pool -> Flatten -> [BN -> Dropout -> Linear -> ReLU] per hidden size -> BN ->
    Dropout -> Linear(n_out). Dropout is ``ps / 2`` before the hidden layers and ``ps``
    before the last (the course's head)."""
    pool = AdaptiveConcatPool2d() if concat_pool else nn.AdaptiveAvgPool2d(1)
    sizes = [nf * (2 if concat_pool else 1), *lin_ftrs, n_out]
    layers: list[nn.Module] = [pool, nn.Flatten()]
    for i, (a, b) in enumerate(zip(sizes[:-1], sizes[1:], strict=True)):
        last = i == len(sizes) - 2
        layers += [nn.BatchNorm1d(a), nn.Dropout(ps if last else ps / 2), nn.Linear(a, b)]
        if not last:
            layers.append(nn.ReLU(inplace=True))
    return nn.Sequential(*layers)


class VisionModel(nn.Module):
    """``head(body(x))``; the ``body`` / ``head`` attributes are the Learner's layer groups."""

    def __init__(self, body: nn.Module, head: nn.Module) -> None:
        super().__init__()
        self.body, self.head = body, head

    def forward(self, x: Tensor) -> Tensor:
        return self.head(self.body(x))


def _multi_label_loss(pred: Tensor, targ: Tensor) -> Tensor:
    return F.binary_cross_entropy_with_logits(pred, targ.float())


def vision_learner(dls: Any, arch: str | nn.Module, n_out: int | None = None,
                   pretrained: str | os.PathLike[str] | None = None, concat_pool: bool = True,
                   in_channels: int | None = None, lin_ftrs: Sequence[int] = (512,),
                   ps: float = 0.5, cut: bool = True, fuse: bool = True,
                   loss_func: Callable[..., Tensor] | None = None,
                   metrics: Sequence[Any] | None = None, thresh: float = 0.5,
                   **learner_kwargs: Any) -> Learner:
    """A :class:`~fastext.learner.Learner` for image classification.

    Args:
        dls: loaders (an :class:`~fastext.tasks.vision.data.ImageDataLoaders` gives
            ``n_out``, ``multi_label`` and the channel count).
        arch: a name in :data:`~fastext.tasks.vision.body.ARCHS` or a module: a
            torchvision-style model (cut before its pooling) or, with ``cut=False``, a body.
        pretrained: path to a torchvision-format weights file (with ``cut=False``: the
            body's own state dict); then the body starts frozen (call ``unfreeze()`` after
            the head has trained). Nothing is downloaded. Warns when 3-channel loaders are
            not normalised with ``stats="imagenet"``.
        fuse: replace BatchNorm -> ReLU pairs of the body by the fused kernel.
        loss_func / metrics: default cross-entropy and accuracy, or for multi-label data
            ``BCEWithLogits`` with ``accuracy_multi(thresh)`` and macro F1 at ``thresh``.
        learner_kwargs: passed to :class:`~fastext.learner.Learner` (lr, wd, cbs, precision...).
    """
    if n_out is None:
        n_out = getattr(dls, "n_out", None)
        if n_out is None:
            raise ValueError("n_out is not given and the loaders do not say (no dls.n_out)")
    if in_channels is None:
        ds = getattr(dls.train, "dataset", None)
        in_channels = ds[0].shape[1] if isinstance(ds, tuple) and ds[0].dim() == 4 else 3
    if cut or isinstance(arch, str):
        body = create_body(arch, pretrained, in_channels)
    else:  # the module is the body: the weights go into it as it is
        body = arch if pretrained is None else load_body_weights(arch, pretrained)
    if pretrained is not None:
        warn_unless_imagenet_stats(dls, in_channels)
    if fuse:
        body = fuse_bn_relu(body)
    head = create_head(num_features(body, in_channels), n_out, lin_ftrs, ps, concat_pool)
    model = VisionModel(body, head)
    multi = bool(getattr(dls, "multi_label", False))
    if loss_func is None:
        loss_func = _multi_label_loss if multi else F.cross_entropy
    if metrics is None:
        metrics = ([_AccuracyMulti(thresh), FBeta(average="macro", thresh=thresh,
                                                  name="f1_macro")]
                   if multi else [accuracy])
    learn = Learner(dls, model, loss_func, metrics=metrics, **learner_kwargs)
    if pretrained is not None:
        learn.freeze()
    return learn


class _AccuracyMulti:
    """``accuracy_multi`` at a fixed threshold, named so in the progress table."""

    def __init__(self, thresh: float) -> None:
        self.thresh = thresh
        self.__name__ = "accuracy_multi"

    def __call__(self, pred: Tensor, targ: Tensor) -> Tensor:
        return accuracy_multi(pred, targ, self.thresh)
