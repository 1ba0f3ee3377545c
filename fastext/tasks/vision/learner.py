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
from collections.abc import Callable, Hashable, Sequence
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from ..._values import plain
from ...data.files import save_torch_file
from ...learner import Learner, body_head_splitter
from ...learner.data import resize_batch
from ...learner.learner import float32_cpu
from ...learner.metrics import FBeta, accuracy, accuracy_multi
from ...learner.predict import get_preds, loss_activation, loss_decodes
from ...nn import fuse_bn_relu
from ...nn.modes import eval_mode
from .body import create_body, load_body_weights, num_features
from .data import BatchAugment, image_tensor, warn_unless_imagenet_stats

__all__ = ["AdaptiveConcatPool2d", "ImagePredictor", "VisionLearner", "VisionModel",
           "body_split", "create_head", "load_learner", "vision_learner", "vision_splitter"]


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


# -- layer groups: fastai's model_meta splits of torchvision bodies ------------------------
#: Where fastai (``model_meta``) splits the layers of each torchvision family's body (the
#: cut model's ``features`` for all but ResNet): ``body[:i]`` is the low group.
_SPLIT_AT = {"resnet": 6, "densenet": 7, "vgg": 22, "alexnet": 6, "squeezenet": 5}
#: Layers that leave a VGG / AlexNet layer pattern as it is (fused BatchNorm -> ReLU pairs
#: leave an Identity and a fused norm behind).
_PATTERN_NEUTRAL = (nn.ReLU, nn.Identity, nn.modules.batchnorm._BatchNorm, nn.Dropout)


def _is_resnet_body(body: nn.Module) -> bool:
    """A torchvision ResNet cut before its pooling: stem (4 layers) and 4 stages of blocks."""
    return (isinstance(body, nn.Sequential) and len(body) == 8
            and all(isinstance(body[i], nn.Sequential) and len(body[i]) > 0
                    and all(hasattr(b, "conv1") and hasattr(b, "conv2") for b in body[i])
                    for i in range(4, 8)))


def _conv_pattern(body: nn.Sequential) -> list[int | str] | None:
    """Conv widths with ``"M"`` for max-pools (torchvision's VGG ``cfgs`` notation) of a flat
    conv body, or ``None`` when it holds anything else."""
    out: list[int | str] = []
    for m in body:
        if isinstance(m, nn.Conv2d):
            out.append(m.out_channels)
        elif isinstance(m, nn.MaxPool2d):
            out.append("M")
        elif not isinstance(m, _PATTERN_NEUTRAL):
            return None
    return out


def _family(body: nn.Module) -> tuple[str, nn.Sequential] | None:
    """The torchvision family of ``body`` and the sequence fastai splits (ResNet: the body;
    DenseNet: its ``features``; VGG, AlexNet, SqueezeNet: the body, their ``features``),
    recognised from its layers so that a body made anywhere (``cut=False``, the
    restoration U-Net) splits alike; ``None`` for any other body."""
    if not isinstance(body, nn.Sequential) or len(body) == 0:
        return None
    if _is_resnet_body(body):
        return "resnet", body
    feats = body[0] if isinstance(body[0], nn.Sequential) else body
    if "transition2" in dict(feats.named_children()):
        return "densenet", feats
    if any(type(m).__name__ == "Fire" for m in body):
        return "squeezenet", body
    pattern = _conv_pattern(body)
    first = body[0]
    if (pattern is not None and isinstance(first, nn.Conv2d)
            and first.kernel_size == (11, 11) and pattern == [64, "M", 192, "M", 384, 256,
                                                                   256, "M"]):
        return "alexnet", body
    if pattern is not None and pattern in _vgg_cfgs():
        return "vgg", body
    return None


def _vgg_cfgs() -> list[list[int | str]]:
    from torchvision.models.vgg import cfgs

    return list(cfgs.values())


def body_split(body: nn.Module) -> tuple[list[nn.Module], list[nn.Module]] | None:
    """The low and high layers of a torchvision body, split where fastai's ``model_meta``
    splits them (``_resnet_split`` and kin): ResNet ``body[:6]`` (stem, layer1, layer2) |
    ``body[6:]`` (layer3, layer4); DenseNet ``features[:7]`` | the rest; VGG
    ``features[:22]``; AlexNet ``features[:6]``; SqueezeNet ``features[:5]`` (fastai v2's
    three groups; v1 split SqueezeNet once more). ``None`` for another body (fastai's
    ``default_split``: the body is one group).

    >>> from fastext.tasks.vision.body import create_body
    >>> low, high = body_split(create_body("resnet18"))
    >>> [type(m).__name__ for m in low][-2:], len(high)
    (['Sequential', 'Sequential'], 2)
    >>> body_split(nn.Sequential(nn.Conv2d(3, 8, 3), nn.ReLU())) is None
    True
    """
    found = _family(body)
    if found is None:
        return None
    name, seq = found
    i = _SPLIT_AT[name]
    low, high = list(seq)[:i], list(seq)[i:]
    if seq is not body:  # DenseNet: what follows its features (the final ReLU) goes high
        high += list(body)[1:]
    return low, high


def _params(parts: Sequence[nn.Module | Sequence[nn.Module]]) -> list[list[nn.Parameter]]:
    """Parameter lists of ``parts`` (a module or a list of modules each); a parameter goes
    in its first group only, and empty groups are dropped."""
    seen: set[int] = set()
    out = []
    for part in parts:
        modules = [part] if isinstance(part, nn.Module) else list(part)
        params = [p for m in modules for p in m.parameters() if id(p) not in seen]
        seen.update(id(p) for p in params)
        if params:
            out.append(params)
    return out


def vision_splitter(model: nn.Module) -> list[list[nn.Parameter]]:
    """Layer groups of a :class:`VisionModel`: ``[low body, high body, head]`` for a
    torchvision body (:func:`body_split`), else ``[body, head]``; ``freeze()`` trains the
    head only, ``slice(lo, hi)`` spreads its rates geometrically over the groups.

    >>> from fastext.tasks.vision.body import create_body
    >>> model = VisionModel(create_body("resnet34"), create_head(512, 2))
    >>> [len(g) for g in vision_splitter(model)]
    [48, 60, 8]
    """
    if not (hasattr(model, "body") and hasattr(model, "head")):
        return body_head_splitter(model)
    split = body_split(model.body)
    return _params([*split, model.head] if split else [model.body, model.head])


class VisionModel(nn.Module):
    """``head(body(x))``; :func:`vision_splitter` makes its layer groups."""

    def __init__(self, body: nn.Module, head: nn.Module) -> None:
        super().__init__()
        self.body, self.head = body, head

    def forward(self, x: Tensor) -> Tensor:
        return self.head(self.body(x))


def _multi_label_loss(pred: Tensor, targ: Tensor) -> Tensor:
    return F.binary_cross_entropy_with_logits(pred, targ.float())


# fastai's loss protocol: BCE-with-logits' activation and decoding (sigmoid, > 0.5)
_BCE = F.binary_cross_entropy_with_logits
_multi_label_loss.activation = loss_activation(_BCE)  # type: ignore[attr-defined]
_multi_label_loss.decodes = loss_decodes(_BCE)  # type: ignore[attr-defined]


def _vision_model(arch: str | nn.Module, n_out: int, pretrained: Any = None,
                  in_channels: int = 3, lin_ftrs: Sequence[int] = (512,), ps: float = 0.5,
                  concat_pool: bool = True, cut: bool = True, fuse: bool = True,
                  ) -> VisionModel:
    """The model :func:`vision_learner` trains (also rebuilt by :func:`load_learner`)."""
    if cut or isinstance(arch, str):
        body = create_body(arch, pretrained, in_channels)
    else:  # the module is the body: the weights go into it as it is
        body = arch if pretrained is None else load_body_weights(arch, pretrained)
    if fuse:
        body = fuse_bn_relu(body)
    head = create_head(num_features(body, in_channels), n_out, lin_ftrs, ps, concat_pool)
    return VisionModel(body, head)


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


# -- inference and export ----------------------------------------------------------------
EXPORT_FORMAT = "fastext-vision-classifier-1"


class ImagePredictor:
    """A trained image classifier with what its inputs need: class ``vocab``, normalisation
    ``stats``, stored image ``size`` (h, w), ``channels``, ``multi_label`` and the loaders'
    progressive-resize ``resize`` (``None``: none). Made by :meth:`VisionLearner.predictor`
    or :func:`load_learner`; ``feed(x)`` runs the model on a normalised batch (default:
    ``model(x)``; the learner's feeds it as its training loop does)."""

    def __init__(self, model: nn.Module, vocab: Sequence[Hashable],
                 stats: tuple[Sequence[float], Sequence[float]] | None,
                 size: tuple[int, int], channels: int, multi_label: bool,
                 resize: int | None = None, config: dict[str, Any] | None = None,
                 feed: Callable[[Tensor], Tensor] | None = None) -> None:
        self.model, self.vocab, self.stats = model, list(vocab), stats
        self.size, self.channels, self.multi_label = tuple(size), channels, multi_label
        self.resize, self.config = resize, config
        self.feed = feed if feed is not None else self.model

    def batch(self, items: Sequence[Any]) -> Tensor:
        """``items`` (paths, PIL images, uint8 tensors) as the validation loader delivers
        them: decoded, resized and centre-cropped to ``size`` (:func:`image_tensor`),
        ``/255`` and normalised, resized for progressive resizing when ``resize`` is set,
        on the model's device; no augmentation."""
        x = torch.stack([image_tensor(it, self.size, self.channels) for it in items])
        device = next(self.model.parameters()).device
        x = BatchAugment(self.stats)(x.to(device), train=False)
        return resize_batch(x, self.resize)  # as DeviceLoader resizes a batch

    def probs(self, items: Sequence[Any]) -> Tensor:
        """Class probabilities (N, n_classes), float32 on the CPU: softmax, or sigmoid for
        multi-label; the model in eval mode (submodule flags restored), no gradients."""
        x = self.batch(items)
        with eval_mode(self.model), torch.no_grad():
            out = self.feed(x).float().cpu()
        return loss_activation(_multi_label_loss if self.multi_label else F.cross_entropy)(out)

    def predict(self, item: Any, thresh: float = 0.5) -> tuple[Any, Tensor, Tensor]:
        """``(decoded, encoded, probs)`` for one image, as fastai's ``learn.predict``:
        single-label: the class, its index (0-d tensor) and the class probabilities;
        multi-label: the list of classes with probability above ``thresh``, their multi-hot
        ``bool`` row and the probabilities."""
        probs = self.probs([item])[0]
        if self.multi_label:
            hot = probs > thresh
            return [self.vocab[i] for i in hot.nonzero()[:, 0].tolist()], hot, probs
        idx = probs.argmax()
        return self.vocab[int(idx)], idx, probs

    def export(self, path: str | os.PathLike[str],
               state_dict: dict[str, Tensor] | None = None) -> Path:
        """Writes the weights (float32, CPU: ``state_dict``, default the model's) and what
        :meth:`predict` needs to one file, readable with ``torch.load(weights_only=True)``;
        :func:`load_learner` reads it."""
        vocab = plain(self.vocab)
        if not all(isinstance(v, (str, int, float, bool)) for v in vocab):
            raise TypeError("export needs classes that are str, int, float or bool, got "
                            f"{sorted({type(v).__name__ for v in vocab})}")
        state = {"format": EXPORT_FORMAT, "config": self.config,
                 "model": float32_cpu(state_dict or self.model.state_dict()),
                 "vocab": vocab, "channels": self.channels, "size": list(self.size),
                 "multi_label": self.multi_label, "resize": self.resize,
                 "stats": None if self.stats is None else [[float(v) for v in part]
                                                           for part in self.stats]}
        return save_torch_file(state, path)


def load_learner(path: str | os.PathLike[str],
                 model_factory: Callable[[], nn.Module] | None = None,
                 device: str | torch.device = "cpu") -> ImagePredictor:
    """Reads what :meth:`VisionLearner.export` wrote: an :class:`ImagePredictor` (model in
    eval mode on ``device``) that decodes and normalises images as the validation loader
    did, without the training data. The model is rebuilt from the exported configuration
    (a named architecture, random weights, then the exported ones), or by
    ``model_factory()`` for a learner built on a module.

    Raises:
        FileNotFoundError: no such file. ValueError: not a fastext image-classifier export,
            or one that needs ``model_factory``.

    >>> import tempfile
    >>> from fastext.tasks.vision.data import ImageDataLoaders
    >>> x = torch.randint(0, 256, (8, 3, 16, 16), dtype=torch.uint8)
    >>> y = torch.tensor([0, 1] * 4)
    >>> dls = ImageDataLoaders.from_tensors(x[:6], y[:6], x[6:], y[6:], ["cat", "dog"],
    ...                                     bs=3, device="cpu")
    >>> learn = vision_learner(dls, "resnet18", quiet=True)
    >>> with tempfile.TemporaryDirectory() as d:
    ...     clf = load_learner(learn.export(Path(d) / "export.pth"))
    >>> clf.predict(x[7])[0] == learn.predict(x[7])[0], clf.vocab
    (True, ['cat', 'dog'])
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"no exported image classifier at {path}")
    state = torch.load(path, map_location="cpu", weights_only=True)
    if not isinstance(state, dict) or state.get("format") != EXPORT_FORMAT:
        raise ValueError(f"{path} is not a fastext image-classifier export ({EXPORT_FORMAT})")
    config = state["config"]
    if model_factory is not None:
        model = model_factory()
    elif config is not None:
        model = _vision_model(**config)
    else:
        raise ValueError(f"{path} holds a model built on a module, not a named "
                         "architecture: pass model_factory() that builds it")
    model.load_state_dict(state["model"])
    stats = None if state["stats"] is None else tuple(tuple(p) for p in state["stats"])
    return ImagePredictor(model.to(device).eval(), state["vocab"], stats,
                          tuple(state["size"]), state["channels"], state["multi_label"],
                          state["resize"], config)


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
