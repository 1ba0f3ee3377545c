"""Transfer learning the course's way: a pretrained (or fresh) convolutional body, a new
head, the body frozen while the head warms up, then ``unfreeze`` with discriminative LRs
over three layer groups (fastai's split of a torchvision body: its low layers, its high
layers, the head). A trained learner predicts single images and exports what that needs.

>>> from fastext.tasks.vision.data import ImageDataLoaders
>>> x = torch.randint(0, 256, (16, 1, 32, 32), dtype=torch.uint8)
>>> y = torch.randint(0, 3, (16,))
>>> dls = ImageDataLoaders.from_tensors(x[:12], y[:12], x[12:], y[12:], ["a", "b", "c"],
...                                     bs=4, device="cpu")
>>> learn = vision_learner(dls, "resnet18", in_channels=1, quiet=True)
>>> [len(g) for g in learn.layer_groups()]  # body[:6], body[6:] (layer3, layer4), head
[30, 30, 8]
>>> learn.lr_range(slice(1e-5, 1e-3)).tolist()
[1e-05, 0.0001, 0.001]
>>> learn.model(torch.randn(2, 1, 32, 32)).shape
torch.Size([2, 3])
>>> label, idx, probs = learn.predict(x[12])
>>> label == dls.vocab[int(idx)], probs.shape
(True, torch.Size([3]))
"""

from __future__ import annotations

import os
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from ...learner import Learner
from ...learner.data import resize_batch
from ...learner.metrics import FBeta, accuracy, accuracy_multi
from ...learner.predict import get_preds, loss_activation, loss_decodes
from .data import warn_unless_imagenet_stats
from .model import (
    AdaptiveConcatPool2d,
    VisionModel,
    _vision_model,
    body_split,
    create_head,
    vision_splitter,
)
from .predictor import ImagePredictor, load_learner

__all__ = ["AdaptiveConcatPool2d", "ImagePredictor", "VisionLearner", "VisionModel",
           "body_split", "create_head", "load_learner", "vision_learner", "vision_splitter"]


def _multi_label_loss(pred: Tensor, targ: Tensor) -> Tensor:
    return F.binary_cross_entropy_with_logits(pred, targ.float())


# fastai's loss protocol: BCE-with-logits' activation and decoding (sigmoid, > 0.5)
_BCE = F.binary_cross_entropy_with_logits
_multi_label_loss.activation = loss_activation(_BCE)  # type: ignore[attr-defined]
_multi_label_loss.decodes = loss_decodes(_BCE)  # type: ignore[attr-defined]


def vision_learner(dls: Any, arch: str | nn.Module, n_out: int | None = None,
                   pretrained: str | os.PathLike[str] | None = None, concat_pool: bool = True,
                   in_channels: int | None = None, lin_ftrs: Sequence[int] = (512,),
                   ps: float = 0.5, cut: bool = True, fuse: bool = True,
                   loss_func: Callable[..., Tensor] | None = None,
                   metrics: Sequence[Any] | None = None, thresh: float = 0.5,
                   **learner_kwargs: Any) -> VisionLearner:
    """A :class:`VisionLearner` for image classification.

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
        learner_kwargs: passed to :class:`~fastext.learner.Learner` (lr, wd, cbs,
            precision...). The default ``splitter`` is :func:`vision_splitter`: three layer
            groups for a torchvision body, as fastai.
    """
    if n_out is None:
        n_out = getattr(dls, "n_out", None)
        if n_out is None:
            raise ValueError("n_out is not given and the loaders do not say (no dls.n_out)")
    if in_channels is None:
        ds = getattr(dls.train, "dataset", None)
        in_channels = ds[0].shape[1] if isinstance(ds, tuple) and ds[0].dim() == 4 else 3
    config = {"arch": arch, "n_out": int(n_out), "in_channels": int(in_channels),
              "lin_ftrs": [int(n) for n in lin_ftrs], "ps": float(ps),
              "concat_pool": bool(concat_pool), "fuse": bool(fuse)}
    model = _vision_model(arch, n_out, pretrained, in_channels, lin_ftrs, ps, concat_pool,
                          cut, fuse)
    if pretrained is not None:
        warn_unless_imagenet_stats(dls, in_channels)
    multi = bool(getattr(dls, "multi_label", False))
    if loss_func is None:
        loss_func = _multi_label_loss if multi else F.cross_entropy
    if metrics is None:
        metrics = ([_AccuracyMulti(thresh), FBeta(average="macro", thresh=thresh,
                                                  name="f1_macro")]
                   if multi else [accuracy])
    learner_kwargs.setdefault("splitter", vision_splitter)
    learn = VisionLearner(dls, model, loss_func, metrics=metrics, **learner_kwargs)
    # what load_learner needs to rebuild the model: only a named architecture says it all
    learn.model_config = config if isinstance(arch, str) else None
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


class VisionLearner(Learner):
    """A :class:`~fastext.learner.Learner` for image classification that also
    :meth:`predict` s single images, :meth:`export` s itself for inference and runs
    test-time augmentation (:meth:`tta`); the training loop is the Learner's."""

    model_config: dict[str, Any] | None = None

    def predictor(self) -> ImagePredictor:
        """An :class:`ImagePredictor` on this learner's model, reading size, channels,
        stats, classes and progressive resize off its validation loader, and feeding the
        model as the training loop does (precision, memory layout)."""
        ds = getattr(self.dls.valid, "dataset", None)
        if not (hasattr(self.dls, "vocab") and isinstance(ds, tuple)
                and ds[0].dtype == torch.uint8 and ds[0].dim() == 4):
            raise TypeError("predict needs ImageDataLoaders (uint8 images with a vocab); "
                            f"got {type(self.dls).__name__}")
        images = ds[0]
        return ImagePredictor(self.model, self.dls.vocab, self.dls.stats,
                              tuple(images.shape[-2:]), images.shape[1],
                              bool(self.dls.multi_label), getattr(self.dls.valid, "size", None),
                              self.model_config, feed=lambda x: self.model_output((x,)))

    def predict(self, item: Any, thresh: float = 0.5) -> tuple[Any, Tensor, Tensor]:
        """See :meth:`ImagePredictor.predict`."""
        return self.predictor().predict(item, thresh)

    def export(self, path: str | os.PathLike[str] = "export.pth") -> Path:
        """See :meth:`ImagePredictor.export`; relative to the learner's ``path``. After fp16
        training the weights written are the fp32 master weights
        (:meth:`~fastext.learner.Learner.fp32_state_dict`)."""
        return self.predictor().export(self.path / path, self.fp32_state_dict())

    def tta(self, dl: Any = None, n: int = 4, beta: float = 0.25) -> tuple[Tensor, Tensor]:
        """Test-time augmentation, as fastai's ``tta``: ``(preds, targets)`` over ``dl``
        (default: the validation loader) where ``preds`` is ``beta`` times the plain
        predictions plus ``1 - beta`` times the mean of ``n`` passes with the training
        augmentation (pass ``i`` drawn from the augmentation's ``epoch_generator(i)``, so
        reproducible)."""
        dl = self.dls.valid if dl is None else dl
        plain_preds, targets = get_preds(self, dl)
        aug = dl.loader.augment
        passes = []
        for i in range(n):
            # an augmentation without seeded epochs (any augment(x, train)) draws as it does
            kw = {"generator": aug.epoch_generator(i)} if hasattr(aug, "epoch_generator") else {}
            batches = ((aug(xb.to(self.dls.device), True, **kw), yb)
                       for xb, yb in dl.loader.base)
            passes.append(get_preds(self, _Resized(batches, getattr(dl, "size", None)))[0])
        aug_preds = torch.stack(passes).mean(0)
        return torch.lerp(aug_preds, plain_preds, beta), targets


class _Resized:
    """Batches resized as :class:`~fastext.learner.DeviceLoader` does for progressive
    resizing (``size`` None: as they are)."""

    def __init__(self, batches: Any, size: int | None) -> None:
        self.batches, self.size = batches, size

    def __iter__(self) -> Any:
        for xb, yb in self.batches:
            yield resize_batch(xb, self.size), yb
