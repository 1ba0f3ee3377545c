"""A trained image classifier without its training data: single-image and batch
predictions as the validation loader would feed them, and the export file that
:func:`load_learner` reads back (``torch.load(weights_only=True)``-safe).
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
from ...learner.data import resize_batch
from ...learner.learner import float32_cpu
from ...learner.predict import loss_activation
from ...nn.modes import eval_mode
from .data import BatchAugment, image_tensor
from .model import _vision_model

__all__ = ["ImagePredictor", "load_learner"]

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
        loss = F.binary_cross_entropy_with_logits if self.multi_label else F.cross_entropy
        return loss_activation(loss)(out)  # the training loss's activation

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
    >>> from fastext.tasks.vision.learner import vision_learner
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
