"""Looking inside a trained classifier: Grad-CAM heat maps, the top losses, the confusion
matrix and the most confused pairs.

Grad-CAM (Selvaraju et al., 2017): the activations A of a conv layer, weighted per channel
by the mean gradient of the class score over the map, summed and passed through ReLU,
upsampled to the input: where the network looked for that class.

>>> model = torch.nn.Sequential(torch.nn.Conv2d(1, 4, 3, padding=1), torch.nn.ReLU(),
...                             torch.nn.AdaptiveAvgPool2d(1), torch.nn.Flatten(),
...                             torch.nn.Linear(4, 3))
>>> cam = grad_cam(model, model[0], torch.randn(2, 1, 8, 8))
>>> cam.shape, bool((cam >= 0).all())
(torch.Size([2, 8, 8]), True)
"""

from __future__ import annotations

import os
from collections import Counter
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from ...learner.figures import save_figure as _save
from ...learner.predict import get_preds
from ...nn.modes import eval_mode

__all__ = ["ClassificationInterpretation", "bounding_boxes", "grad_cam", "mass_in_box",
           "save_cam_overlays"]


def grad_cam(model: nn.Module, layer: nn.Module, x: Tensor,
             target: Tensor | int | Sequence[int] | None = None) -> Tensor:
    """Grad-CAM maps (N, H, W), float32, of ``x`` (N, C, H, W) at ``layer`` for class
    ``target`` (one class for every image, or one per image; default: the predicted class),
    each upsampled to the input size and scaled to [0, 1]
    (all-zero where the class has no positive evidence). The model runs in eval mode and
    every submodule's train/eval flag is restored afterwards; its parameter gradients and
    ``requires_grad`` flags are left untouched. The model may be frozen
    (``requires_grad_(False)``, a frozen pretrained body): the gradient flows from a detached
    copy of ``x`` that requires grad, so the activation at ``layer`` is always part of the
    graph. That copy takes the dtype and device of the model's floating parameters (an fp16
    model takes a float32 batch), and is an ordinary tensor even when ``x`` was made under
    ``torch.inference_mode()``.

    Raises:
        ValueError: ``target`` has neither one nor ``len(x)`` classes or names a class the
            model does not output, ``layer`` is not called by ``model``'s forward, or its
            output is not a (N, C, H, W) map.
    """
    if target is not None:
        target = torch.as_tensor(target, dtype=torch.long).reshape(-1)
        if target.numel() not in (1, len(x)):
            raise ValueError(f"target must be one class or one per image ({len(x)}), got "
                             f"{target.numel()}")
    acts: list[Tensor] = []

    def keep(_m: nn.Module, _i: Any, out: Tensor) -> None:
        acts.append(out)

    p = next((q for q in model.parameters() if q.is_floating_point()), None)
    if x.is_floating_point():
        # a fresh copy: not an inference tensor, and in the model's dtype (fp16 models)
        x_in = x.detach().to(device=p.device if p is not None else x.device,
                             dtype=p.dtype if p is not None else x.dtype, copy=True)
        x_in.requires_grad_()
    else:
        x_in = x
    handle = layer.register_forward_hook(keep)
    try:
        with eval_mode(model), torch.enable_grad():
            logits = model(x_in)
            if not acts:
                raise ValueError(f"layer {type(layer).__name__} was never called by the "
                                 "model's forward: pass a module of this model (not of a "
                                 "copy of it)")
            if not isinstance(acts[-1], Tensor) or acts[-1].dim() != 4:
                shape = tuple(acts[-1].shape) if isinstance(acts[-1], Tensor) else None
                raise ValueError(f"layer {type(layer).__name__} gives {shape}, not a "
                                 "(N, C, H, W) map: Grad-CAM needs a conv layer's output")
            if target is not None and not bool(((target >= 0) & (target < logits.shape[1])).all()):
                raise ValueError(f"target classes must be in 0..{logits.shape[1] - 1}, got "
                                 f"{target.tolist()}")
            cls = (logits.argmax(1) if target is None
                   else target.to(logits.device).expand(len(logits)))
            score = logits.gather(1, cls.view(-1, 1)).sum()
            (grad,) = torch.autograd.grad(score, acts[-1])
    finally:
        handle.remove()
    a = acts[-1].detach().float()
    weights = grad.float().mean((2, 3), keepdim=True)
    cam = F.relu((weights * a).sum(1, keepdim=True))
    cam = F.interpolate(cam, size=x.shape[-2:], mode="bilinear", align_corners=False)[:, 0]
    peak = cam.flatten(1).amax(1).clamp_min(1e-12).view(-1, 1, 1)
    return cam / peak


def bounding_boxes(image: Tensor, thresh: float = 0.0) -> list[tuple[int, int, int, int] | None]:
    """Per image (N, C, H, W) or (N, H, W), the bounding box ``(top, bottom, left, right)``
    (inclusive) of its pixels above ``thresh`` (any channel), or ``None`` for a blank one.

    >>> img = torch.zeros(1, 5, 6)
    >>> img[0, 1, 2] = img[0, 3, 4] = 1
    >>> bounding_boxes(img)
    [(1, 3, 2, 4)]
    """
    img = image if image.dim() == 3 else image.amax(1)
    boxes: list[tuple[int, int, int, int] | None] = []
    for im in img:
        ys, xs = (im > thresh).nonzero(as_tuple=True)
        boxes.append(None if len(ys) == 0 else
                     (int(ys.min()), int(ys.max()), int(xs.min()), int(xs.max())))
    return boxes


def mass_in_box(cam: Tensor, image: Tensor, thresh: float = 0.0) -> Tensor:
    """Per image, the fraction of the heat map's total mass inside the bounding box of the
    image's pixels above ``thresh`` (cam (N, H, W), image (N, C, H, W) or (N, H, W)); 0 for
    a blank image or an all-zero map. For an even map it is the box's share of the image."""
    fracs = []
    for c, box in zip(cam, bounding_boxes(image, thresh), strict=True):
        total = c.sum()
        if box is None or total <= 0:
            fracs.append(torch.tensor(0.0))
            continue
        top, bottom, left, right = box
        fracs.append(c[top:bottom + 1, left:right + 1].sum() / total)
    return torch.stack(fracs)


def _display(image: Tensor) -> Any:
    """What ``imshow`` shows for one image (C, H, W) or (H, W): with 3 or more channels an
    RGB array (H, W, 3) in [0, 1] (the first three channels, an alpha dropped; uint8 divided
    by 255, a float image, e.g. a normalised batch's, rescaled from its own min and max);
    else a grey (H, W) map (the mean over channels), scaled by ``imshow``.

    >>> rgb = _display(torch.tensor([[[255]], [[0]], [[51]]], dtype=torch.uint8))
    >>> rgb.shape, rgb.astype(float).round(3).tolist()
    ((1, 1, 3), [[[1.0, 0.0, 0.2]]])
    """
    img = image.detach().cpu()
    if img.dim() == 3 and img.shape[0] >= 3:
        rgb = img[:3].float()
        if img.dtype == torch.uint8:
            rgb = rgb / 255
        else:
            lo, hi = rgb.min(), rgb.max()
            rgb = (rgb - lo) / (hi - lo).clamp_min(1e-6)
        return rgb.permute(1, 2, 0).numpy()
    img = img.float()
    return (img.mean(0) if img.dim() == 3 else img).numpy()


def save_cam_overlays(images: Tensor, cams: Tensor, path: str | os.PathLike[str],
                      titles: Sequence[str] | None = None,
                      boxes: Sequence[tuple[int, int, int, int] | None] | None = None,
                      ) -> Path:
    """A PNG grid: each image (in colour for RGB, see :func:`_display`; else in grey) with
    its heat map over it (jet, half transparent), and when ``boxes`` (from
    :func:`bounding_boxes`) are given, each box outlined in white."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.patches import Rectangle

    n = len(images)
    cols = min(n, 8)
    rows = -(-n // cols)
    fig, axes = plt.subplots(rows, cols, figsize=(1.6 * cols, 1.8 * rows), squeeze=False)
    for i, ax in enumerate(axes.flat):
        ax.axis("off")
        if i >= n:
            continue
        ax.imshow(_display(images[i]), cmap="gray")  # the colour map only acts on grey
        ax.imshow(cams[i].cpu().numpy(), cmap="jet", alpha=0.45, vmin=0, vmax=1)
        if boxes is not None and boxes[i] is not None:
            top, bottom, left, right = boxes[i]
            ax.add_patch(Rectangle((left - 0.5, top - 0.5), right - left + 1, bottom - top + 1,
                                   fill=False, edgecolor="white", linewidth=0.8,
                                   linestyle="--"))
        if titles is not None:
            ax.set_title(titles[i], fontsize=8)
    fig.tight_layout()
    return _save(fig, path)


def _logits(x: Tensor) -> Tensor:
    return x


def _class_names(dls: Any, n: int) -> list[str]:
    """Names of the ``n`` classes: the first of ``dls.classes`` (text), ``dls.proc.y_classes``
    (tabular) and ``dls.vocab`` (images; a text loader's vocab is its tokens) that lists
    ``n`` of them, else ``"0"``, ``"1"``..."""
    for names in (getattr(dls, "classes", None),
                  getattr(getattr(dls, "proc", None), "y_classes", None),
                  getattr(dls, "vocab", None)):
        if isinstance(names, (list, tuple)) and len(names) == n:
            return list(names)
    return [str(i) for i in range(n)]


_SINGLE_LABEL_ONLY = ("ClassificationInterpretation is for single-label classifiers (class-index "
                      "targets); multi-label data has no confusion matrix or softmax loss")


class ClassificationInterpretation:
    """Predictions, targets and losses of a single-label classifier on its validation set.

    Build with :meth:`from_learner`; then :meth:`top_losses`, :meth:`confusion_matrix`,
    :meth:`most_confused`, :meth:`plot_top_losses`, :meth:`plot_confusion_matrix`.
    """

    def __init__(self, inputs: Tensor | tuple[Any, ...], preds: Tensor, targets: Tensor,
                 losses: Tensor, vocab: Sequence[str]) -> None:
        self.inputs, self.preds, self.targets, self.losses = inputs, preds, targets, losses
        self.vocab = list(vocab)

    @classmethod
    def from_learner(cls, learn: Any, dl: Any = None) -> ClassificationInterpretation:
        """Runs ``learn.model`` over ``dl`` (default: the validation loader) with
        :func:`~fastext.learner.predict.get_preds`: eval mode (every submodule's flag
        restored afterwards), batches split into inputs and target as the Learner splits
        them and fed as it feeds them (``Learner.model_output``: its precision and layout),
        so any single-label classifier learner works (image, tabular, text). ``inputs``
        keep the loader's own batches (a tuple of them for a model of several inputs);
        ``preds`` are the float32 logits. Class names come from ``dls.classes``, the
        tabular ``dls.proc.y_classes`` or ``dls.vocab``, whichever names every class.

        Raises:
            ValueError: multi-label loaders (``dls.multi_label``, or float / 2-D targets).
        """
        if getattr(learn.dls, "multi_label", False):
            raise ValueError(_SINGLE_LABEL_ONLY)
        inputs, preds, targets = get_preds(learn, dl, with_input=True, act=_logits)
        if (not isinstance(targets, Tensor) or targets.is_floating_point()
                or targets.dim() != 1):  # multi-hot rows, not class ids
            got = (f"{targets.dtype} {tuple(targets.shape)}" if isinstance(targets, Tensor)
                   else type(targets).__name__)
            raise ValueError(_SINGLE_LABEL_ONLY + f" (got targets {got})")
        losses = F.cross_entropy(preds, targets, reduction="none")
        return cls(inputs, preds, targets, losses, _class_names(learn.dls, preds.shape[1]))

    def top_losses(self, k: int | None = None) -> tuple[Tensor, Tensor]:
        """The ``k`` largest losses (all by default) and their indices, largest first."""
        k = len(self.losses) if k is None else min(k, len(self.losses))
        return self.losses.topk(k)

    def confusion_matrix(self) -> Tensor:
        """Counts (n_class, n_class): row = actual class, column = predicted."""
        n = len(self.vocab)
        idx = self.targets * n + self.preds.argmax(1)
        return torch.bincount(idx, minlength=n * n).view(n, n)

    def most_confused(self, min_val: int = 1) -> list[tuple[str, str, int]]:
        """(actual, predicted, count) off the diagonal with count >= ``min_val``, most
        frequent first."""
        cm = self.confusion_matrix()
        pairs = Counter({(self.vocab[a], self.vocab[p]): int(cm[a, p])
                         for a in range(len(cm)) for p in range(len(cm)) if a != p})
        return [(a, p, c) for (a, p), c in pairs.most_common() if c >= min_val]

    def plot_top_losses(self, k: int, path: str | os.PathLike[str]) -> Path:
        """PNG of the ``k`` worst-predicted images: predicted / actual / loss / probability
        of the actual class."""
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt

        if not (isinstance(self.inputs, Tensor) and self.inputs.dim() == 4):
            raise ValueError("plot_top_losses shows images: this learner's inputs are not "
                             "image batches (N, C, H, W)")
        losses, idx = self.top_losses(k)
        cols = min(len(idx), 5)
        rows = -(-len(idx) // cols)
        fig, axes = plt.subplots(rows, cols, figsize=(2.4 * cols, 3.0 * rows), squeeze=False)
        probs = self.preds.softmax(1)
        for ax in axes.flat:
            ax.axis("off")
        for ax, i, loss in zip(axes.flat, idx.tolist(), losses.tolist(), strict=False):
            img = self.inputs[i].float()
            img = (img - img.min()) / (img.max() - img.min()).clamp_min(1e-6)
            if img.shape[0] == 1:
                ax.imshow(img[0].numpy(), cmap="gray")
            else:
                ax.imshow(img.permute(1, 2, 0).numpy())
            t = int(self.targets[i])
            ax.set_title(f"{self.vocab[int(self.preds[i].argmax())]}/{self.vocab[t]}\n"
                         f"{loss:.2f}/{probs[i, t]:.2f}", fontsize=8)
        fig.suptitle("predicted/actual, loss/probability of actual", fontsize=9)
        fig.tight_layout(h_pad=1.5)  # room for each row's two-line titles
        return _save(fig, path)

    def plot_confusion_matrix(self, path: str | os.PathLike[str]) -> Path:
        """PNG of the confusion matrix with counts in the cells."""
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt

        cm = self.confusion_matrix().numpy()
        n = len(self.vocab)
        fig, ax = plt.subplots(figsize=(1 + 0.5 * n, 1 + 0.5 * n))
        ax.imshow(cm, cmap="Blues")
        ax.set_xticks(range(n), self.vocab, rotation=90)
        ax.set_yticks(range(n), self.vocab)
        ax.set_xlabel("predicted")
        ax.set_ylabel("actual")
        for a in range(n):
            for p in range(n):
                ax.text(p, a, str(cm[a, p]), ha="center", va="center", fontsize=7,
                        color="white" if cm[a, p] > cm.max() / 2 else "black")
        fig.tight_layout()
        return _save(fig, path)

