"""Predictions of a :class:`~fastext.learner.Learner` over a loader: fastai's ``get_preds``.

The model runs in eval mode (every submodule's own train/eval flag given back afterwards)
without gradients; its outputs go through the final activation the loss implies, as in
fastai: softmax over the class dimension for cross-entropy, sigmoid for BCE-with-logits,
nothing otherwise (a loss can name its own with ``activation`` / ``decodes`` attributes,
fastai's protocol).

>>> import torch
>>> from fastext.learner import DataLoaders, Learner
>>> x = torch.randn(10, 4); y = torch.randint(0, 3, (10,))
>>> dls = DataLoaders.from_tensors(x, y, x, y, bs=4, device="cpu")
>>> learn = Learner(dls, torch.nn.Linear(4, 3), torch.nn.functional.cross_entropy, quiet=True)
>>> probs, targs, dec = get_preds(learn, with_decoded=True)
>>> probs.shape, bool(torch.allclose(probs.sum(1), torch.ones(10))), torch.equal(targs, y)
(torch.Size([10, 3]), True, True)
>>> torch.equal(dec, probs.argmax(1))
True
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Iterable, Sequence
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from ..nn.modes import eval_mode

__all__ = ["get_preds", "loss_activation", "loss_decodes"]

#: fastai's threshold for decoding sigmoid outputs (``BCEWithLogitsLossFlat.thresh``).
SIGMOID_THRESH = 0.5


def _identity(x: Tensor) -> Tensor:
    return x


def _softmax(x: Tensor) -> Tensor:
    return F.softmax(x, dim=1)


def _argmax(x: Tensor) -> Tensor:
    return x.argmax(dim=1)


def _over_thresh(x: Tensor) -> Tensor:
    return x > SIGMOID_THRESH


def _base(loss_func: Any) -> Any:
    """The function under ``functools.partial`` layers (``partial(F.cross_entropy,
    label_smoothing=0.1)`` is still a cross-entropy)."""
    while isinstance(loss_func, functools.partial):
        loss_func = loss_func.func
    return loss_func


def _kind(loss_func: Any) -> str | None:
    base = _base(loss_func)
    if base is F.cross_entropy or isinstance(base, nn.CrossEntropyLoss):
        return "softmax"
    if base is F.binary_cross_entropy_with_logits or isinstance(base, nn.BCEWithLogitsLoss):
        return "sigmoid"
    return None


def loss_activation(loss_func: Any) -> Callable[[Tensor], Tensor]:
    """The final activation ``loss_func`` implies: its own ``activation`` attribute if it has
    one, else softmax over dim 1 for cross-entropy (``F.cross_entropy``,
    ``nn.CrossEntropyLoss``, partials of them), sigmoid for BCE-with-logits, identity
    otherwise (regression, custom losses).

    >>> loss_activation(F.cross_entropy)(torch.zeros(1, 4)).tolist()
    [[0.25, 0.25, 0.25, 0.25]]
    >>> loss_activation(nn.BCEWithLogitsLoss())(torch.zeros(1, 2)).tolist()
    [[0.5, 0.5]]
    >>> loss_activation(F.mse_loss)(torch.ones(2)).tolist()
    [1.0, 1.0]
    """
    own = getattr(loss_func, "activation", None)
    if own is not None:
        return own
    kind = _kind(loss_func)
    return _softmax if kind == "softmax" else torch.sigmoid if kind == "sigmoid" else _identity


def loss_decodes(loss_func: Any) -> Callable[[Tensor], Tensor]:
    """How activated predictions decode, as fastai's losses do: the loss's own ``decodes``,
    else the arg-max class for cross-entropy, ``> 0.5`` for BCE-with-logits, identity
    otherwise.

    >>> loss_decodes(F.binary_cross_entropy_with_logits)(torch.tensor([0.2, 0.7])).tolist()
    [False, True]
    """
    own = getattr(loss_func, "decodes", None)
    if own is not None:
        return own
    kind = _kind(loss_func)
    return _argmax if kind == "softmax" else _over_thresh if kind == "sigmoid" else _identity


def _split_batch(batch: Any) -> tuple[tuple[Any, ...], tuple[Any, ...]]:
    """Inputs and targets of a batch as ``Learner._split`` cuts them: all but the last
    element are inputs, the last is the target (a one-element batch has no target)."""
    batch = tuple(batch) if isinstance(batch, (tuple, list)) else (batch,)
    return (batch[:-1], batch[-1:]) if len(batch) > 1 else (batch, ())


def _cat(parts: Sequence[Any]) -> Any:
    """Batches joined along dim 0; batches of different trailing shapes (text padded to
    each batch's longest document) come back as a list of rows instead."""
    if not parts or not all(isinstance(p, Tensor) for p in parts):
        return list(parts)
    if len({tuple(p.shape[1:]) for p in parts}) == 1:
        return torch.cat(parts)
    return [row for p in parts for row in p]


def _output(learn: Any, xb: tuple[Any, ...], yb: tuple[Any, ...]) -> Tensor:
    """The model's output on the batch ``(*xb, *yb)`` fed as the training loop feeds it
    (precision, memory layout, autocast: ``learn.model_output``), or plainly for a learner
    without it."""
    feed = getattr(learn, "model_output", None)
    if feed is not None:
        return feed((*xb, *yb))  # the batch as split here (a bare tensor is one input)
    return learn.model(*xb)


def get_preds(learn: Any, dl: Iterable | None = None, with_input: bool = False,
              with_decoded: bool = False, act: Callable[[Tensor], Tensor] | None = None,
              ) -> tuple[Any, ...]:
    """``(preds, targets)`` of ``learn`` over ``dl`` (default: the validation loader), as
    fastai's ``Learner.get_preds``: with ``with_input`` the inputs come first, with
    ``with_decoded`` the decoded predictions last (:func:`loss_decodes`), so at most
    ``(inputs, preds, targets, decoded)``.

    ``preds`` are float32 on the CPU, passed through ``act`` (default:
    :func:`loss_activation` of ``learn.loss_func``). ``targets`` is ``None`` for a loader
    without them (batches of inputs only). ``inputs`` are the loader's own batches (one
    tensor, or a tuple with one entry per model input). Batches whose shapes differ past
    dim 0 come back as lists of rows. The model runs in eval mode without gradients and
    every submodule's train/eval flag is restored afterwards.
    """
    dl = learn.dls.valid if dl is None else dl
    act = loss_activation(learn.loss_func) if act is None else act
    inputs: list[list[Any]] = []
    preds: list[Tensor] = []
    targets: list[Any] = []
    with eval_mode(learn.model), torch.no_grad():
        for batch in dl:
            xb, yb = _split_batch(batch)
            preds.append(_output(learn, xb, yb).float().cpu())
            if yb:
                targets.append(yb[0].cpu() if isinstance(yb[0], Tensor) else yb[0])
            if with_input:
                inputs.append([x.cpu() if isinstance(x, Tensor) else x for x in xb])
    if not preds:
        raise ValueError("get_preds: the loader gave no batches")
    outs = [act(p) for p in preds]  # per batch: the activations work row by row
    res: list[Any] = [_cat(outs), _cat(targets) if len(targets) == len(preds) and targets
                      else None]
    if with_decoded:
        decodes = loss_decodes(learn.loss_func)
        res.append(_cat([decodes(o) for o in outs]))
    if with_input:
        cols = [_cat([b[i] for b in inputs]) for i in range(len(inputs[0]))] if inputs else []
        res.insert(0, cols[0] if len(cols) == 1 else tuple(cols))
    return tuple(res)
