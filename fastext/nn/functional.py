"""Functional fused layers."""

from __future__ import annotations

import torch
from torch import Tensor

from .. import ops

__all__ = ["bn_relu"]


def bn_relu(input: Tensor, running_mean: Tensor | None, running_var: Tensor | None,
            weight: Tensor | None = None, bias: Tensor | None = None, training: bool = False,
            momentum: float = 0.1, eps: float = 1e-5) -> Tensor:
    """``relu(F.batch_norm(input, running_mean, running_var, weight, bias, training,
    momentum, eps))`` fused: statistics in one pass, normalise + affine + ReLU in one pass,
    and a backward that re-derives the ReLU mask from the input (only the input is saved).
    Running statistics are updated in place as ``F.batch_norm`` does (unbiased variance).

    >>> x = torch.randn(8, 3, 4, 4)
    >>> y = bn_relu(x, None, None, training=True)
    >>> torch.allclose(y, torch.relu(torch.nn.functional.batch_norm(x, None, None, training=True)),
    ...                atol=1e-6)
    True
    """
    if input.numel() == 0:  # as F.batch_norm: an empty batch gives an empty output
        return torch.relu(input.clone())
    if training:
        count = input.numel() // max(1, input.shape[1])
        if count <= 1:
            raise ValueError("Expected more than 1 value per channel when training, got input "
                             f"size {tuple(input.shape)}")
    out, mean, _, var = ops.bn_relu_forward(input, weight, bias, running_mean, running_var,
                                            training, eps)
    if training and running_mean is not None and running_var is not None:
        with torch.no_grad():  # one fused lerp for both: few launches matter on a GPU
            n = input.numel() / input.shape[1]
            unbiased = var * (n / (n - 1))
            torch._foreach_lerp_([running_mean, running_var],
                                 [mean.to(running_mean.dtype), unbiased.to(running_var.dtype)],
                                 momentum)
    return out
