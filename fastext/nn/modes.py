"""Train/eval mode for a block of code, every submodule's own flag given back afterwards."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

from torch import nn

__all__ = ["eval_mode"]


@contextmanager
def eval_mode(module: nn.Module) -> Iterator[nn.Module]:
    """``module`` in eval mode for the block, then every submodule's own train/eval flag
    restored: ``module.train(was)`` alone would flip a deliberately frozen part (a body kept
    in eval mode for its BatchNorm statistics) back to training.

    >>> net = nn.Sequential(nn.BatchNorm1d(2), nn.BatchNorm1d(2)).train()
    >>> _ = net[0].eval()
    >>> with eval_mode(net):
    ...     [m.training for m in net.modules()]
    [False, False, False]
    >>> [m.training for m in net.modules()]
    [True, False, True]
    """
    modes = [(m, m.training) for m in module.modules()]
    module.eval()
    try:
        yield module
    finally:
        for m, training in modes:
            m.training = training
