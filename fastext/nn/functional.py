"""Functional fused layers."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor

from .. import ops

__all__ = ["bn_relu", "inplace_abn"]


def _empty_batch(input: Tensor, training: bool, num_batches_tracked: Tensor | None) -> bool:
    """Whether ``input`` is empty (as F.batch_norm, its output is then empty, and a training
    call still counts a tracked batch); refuses training on one value per channel."""
    if input.numel() == 0:
        if training and num_batches_tracked is not None:
            num_batches_tracked.add_(1)
        return True
    if training and input.numel() <= input.shape[1]:
        raise ValueError("Expected more than 1 value per channel when training, got input "
                         f"size {tuple(input.shape)}")
    return False


def bn_relu(input: Tensor, running_mean: Tensor | None, running_var: Tensor | None,
            weight: Tensor | None = None, bias: Tensor | None = None, training: bool = False,
            momentum: float = 0.1, eps: float = 1e-5,
            num_batches_tracked: Tensor | None = None) -> Tensor:
    """``relu(F.batch_norm(input, running_mean, running_var, weight, bias, training,
    momentum, eps))`` fused: statistics in one pass, normalise + affine + ReLU in one pass,
    and a backward that re-derives the ReLU mask from the input (only the input is saved).
    Running statistics are updated in place as ``F.batch_norm`` does (unbiased variance),
    inside the same native call; ``num_batches_tracked``, when given, grows by one with them.

    >>> x = torch.randn(8, 3, 4, 4)
    >>> y = bn_relu(x, None, None, training=True)
    >>> torch.allclose(y, torch.relu(torch.nn.functional.batch_norm(x, None, None, training=True)),
    ...                atol=1e-6)
    True
    """
    if _empty_batch(input, training, num_batches_tracked):
        # F.batch_norm's empty output still depends on weight and bias: their gradients are
        # zeros, not None (DDP's unused-parameter check relies on that).
        return torch.relu(F.batch_norm(input, None, None, weight, bias, True, 0.0, eps))
    return ops._bn_relu_forward_op(input, weight)(input, weight, bias, running_mean,
                                                  running_var, num_batches_tracked, training,
                                                  momentum, eps)[0]


def inplace_abn(input: Tensor, running_mean: Tensor | None, running_var: Tensor | None,
                weight: Tensor | None = None, bias: Tensor | None = None, training: bool = False,
                momentum: float = 0.1, eps: float = 1e-5, negative_slope: float = 0.01,
                num_batches_tracked: Tensor | None = None) -> Tensor:
    """In-place activated BatchNorm (InPlace-ABN, Rota Bulo et al. 2018):
    ``leaky_relu(F.batch_norm(input, ..., |weight| + eps, bias, ...), negative_slope)``
    written over ``input``, which is returned. Only that output is kept for the backward,
    which recovers the normalised input from it by inverting the activation and the affine
    map; hence the scale ``|weight| + eps`` (never 0) and ``negative_slope > 0``. A conv
    followed by this layer then keeps one activation for the backward where a conv,
    BatchNorm and LeakyReLU keep three (the fused :func:`bn_relu`, two).
    ``input`` must be contiguous (NCHW or channels-last) and may not be a leaf that
    requires grad, nor needed by another op's backward (autograd's version check says so).
    Under ``torch.compile`` the op writes a copy of ``input``, then copies it back (so the
    compiled graph sees the write): the memory saving is the eager mode's.

    >>> x = torch.randn(8, 3, 4, 4)
    >>> ref = torch.nn.functional.leaky_relu(
    ...     torch.nn.functional.batch_norm(x, None, None, training=True), 0.01)
    >>> y = inplace_abn(x, None, None, training=True)
    >>> y is x and torch.allclose(y, ref, atol=1e-5)
    True
    """
    if not negative_slope > 0:
        raise ValueError(f"negative_slope must be positive (the backward inverts the "
                         f"activation), got {negative_slope}")
    if _empty_batch(input, training, num_batches_tracked):
        # As F.batch_norm's empty output, this one depends on weight and bias (zero
        # gradients, not None: DDP's unused-parameter check relies on that).
        shape = (1, -1) + (1,) * (input.dim() - 2)
        if weight is not None:
            input = input.mul_((weight.abs() + eps).view(shape))
        return input if bias is None else input.add_(bias.view(shape))
    return ops.bn_leaky_relu_(input, weight, bias, running_mean, running_var, training,
                              momentum, eps, negative_slope, num_batches_tracked)[0]
