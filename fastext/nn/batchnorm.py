"""BatchNorm followed by ReLU as one module: the same constructor, buffers and state_dict
keys as ``nn.BatchNorm1d/2d`` (a BatchNorm state dict loads as is)."""

from __future__ import annotations

from torch import Tensor, nn

from .functional import bn_relu

__all__ = ["BatchNormReLU1d", "BatchNormReLU2d"]


class _BatchNormReLU(nn.modules.batchnorm._BatchNorm):
    def forward(self, input: Tensor) -> Tensor:
        self._check_input_dim(input)
        # As nn.BatchNorm: momentum=None means a cumulative moving average.
        factor = 0.0 if self.momentum is None else self.momentum
        if self.training and self.track_running_stats and self.num_batches_tracked is not None:
            self.num_batches_tracked.add_(1)
            if self.momentum is None:
                factor = 1.0 / float(self.num_batches_tracked)
        use_batch_stats = self.training or (self.running_mean is None and self.running_var is None)
        track = not self.training or self.track_running_stats
        return bn_relu(input, self.running_mean if track else None,
                       self.running_var if track else None, self.weight, self.bias,
                       use_batch_stats, factor, self.eps)


class BatchNormReLU1d(_BatchNormReLU):
    """``nn.BatchNorm1d`` then ``nn.ReLU``, fused; input (N, C) or (N, C, L).

    >>> import torch
    >>> m = BatchNormReLU1d(4)
    >>> m.load_state_dict(torch.nn.BatchNorm1d(4).state_dict())
    <All keys matched successfully>
    >>> bool((m(torch.randn(6, 4)) >= 0).all())
    True
    """

    def _check_input_dim(self, input: Tensor) -> None:
        if input.dim() not in (2, 3):
            raise ValueError(f"expected 2D or 3D input (got {input.dim()}D input)")


class BatchNormReLU2d(_BatchNormReLU):
    """``nn.BatchNorm2d`` then ``nn.ReLU``, fused; NCHW or channels-last input."""

    def _check_input_dim(self, input: Tensor) -> None:
        if input.dim() != 4:
            raise ValueError(f"expected 4D input (got {input.dim()}D input)")
