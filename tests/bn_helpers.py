"""Shared by the BatchNorm layer tests (test_bn_relu.py, test_inplace_abn.py)."""

from __future__ import annotations

from collections.abc import Iterator

import torch


def train_then_eval(*modules: torch.nn.Module, steps: int) -> Iterator[bool]:
    """Puts ``modules`` in training mode for ``steps`` iterations, then evaluation mode for
    one; yields whether it is training."""
    for step in range(steps + 1):
        train = step < steps
        for m in modules:
            m.train(train)
        yield train


def activation(shape, device, dtype: torch.dtype, channels_last: bool) -> torch.Tensor:
    """A random activation with mean 1 and std 2, channels-last when asked."""
    x = (torch.randn(shape, device=device) * 2 + 1).to(dtype)
    return x.contiguous(memory_format=torch.channels_last) if channels_last else x
