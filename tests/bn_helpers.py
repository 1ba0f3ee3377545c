"""Shared by the BatchNorm layer tests (test_bn_relu.py, test_inplace_abn.py)."""

from __future__ import annotations

from collections.abc import Callable, Iterator

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


def check_compiled_matches_eager(make: Callable[[], torch.nn.Module], device) -> None:
    """Two copies of ``make()`` (the same weights), one stepped eagerly and one under
    torch.compile, give the same losses, gradients and buffers (running statistics). TF32
    convolutions are off: their rounding would differ between the two graphs."""
    with torch.backends.cudnn.flags(enabled=True, allow_tf32=False):
        torch.manual_seed(0)
        eager, comp = make().to(device), make().to(device)
        comp.load_state_dict(eager.state_dict())
        step = torch.compile(lambda m, x: m(x).square().mean())
        for _ in range(2):
            x = torch.randn(4, 3, 9, 9, device=device)
            le, lc = eager(x).square().mean(), step(comp, x)
            le.backward()
            lc.backward()
            torch.testing.assert_close(lc, le)
    for (n, pe), pc in zip(eager.named_parameters(), comp.parameters(), strict=True):
        torch.testing.assert_close(pc.grad, pe.grad, msg=n)
    for (n, be), bc in zip(eager.named_buffers(), comp.buffers(), strict=True):
        torch.testing.assert_close(bc, be, msg=n)
