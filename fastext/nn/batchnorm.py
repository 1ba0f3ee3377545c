"""BatchNorm followed by ReLU as one module: the same constructor, buffers and state_dict
keys as ``nn.BatchNorm1d/2d`` (a BatchNorm state dict loads as is)."""

from __future__ import annotations

import inspect

from torch import Tensor, nn

from .functional import bn_relu

__all__ = ["BatchNormReLU1d", "BatchNormReLU2d"]

# torch 2.14's BatchNorm takes ``bias=False`` (keyword only); torch 2.11 has no such argument.
_BN_TAKES_BIAS = "bias" in inspect.signature(nn.modules.batchnorm._BatchNorm).parameters


def _bias_kwargs(bias: bool) -> dict:
    """``bias`` as this torch's BatchNorm constructor takes it: nothing for the default, a
    clear error for ``bias=False`` where it has no such argument."""
    if _BN_TAKES_BIAS:
        return {"bias": bias}
    if not bias:
        raise TypeError("bias=False needs a torch whose BatchNorm takes a bias argument "
                        "(2.14 and later)")
    return {}


def _get(module: nn.Module, tensors: dict, name: str) -> Tensor | None:
    return tensors[name] if name in tensors else getattr(module, name)


def _batch_args(m: nn.modules.batchnorm._BatchNorm, params: dict, buffers: dict):
    """What ``nn.BatchNorm*d.forward`` passes to ``F.batch_norm`` besides input, weight and
    bias: (running_mean, running_var, use_batch_stats, momentum, num_batches_tracked), the
    last to be counted by the op, once its checks have passed (the cumulative average of
    ``momentum=None`` included: a refused call counts nothing)."""
    momentum = m.momentum
    rm, rv = _get(m, buffers, "running_mean"), _get(m, buffers, "running_var")
    nbt = None
    if m.training:
        use_batch_stats = True
        if m.track_running_stats:
            nbt = _get(m, buffers, "num_batches_tracked")
            if nbt is not None and momentum is None:  # cumulative moving average
                momentum = 1.0 / (float(nbt) + 1)  # of this batch too
        else:
            rm = rv = None
    else:
        use_batch_stats = rm is None and rv is None
    return rm, rv, use_batch_stats, 0.0 if momentum is None else momentum, nbt


class _BatchNormReLU(nn.modules.batchnorm._BatchNorm):
    # Every attribute is read once, and parameters and buffers straight from their dicts
    # (nn.Module.__getattr__ costs 0.6 us each on the 2-core VM, 3 of a 13 us call): this
    # runs per layer per step, and on a GPU at ResNet sizes the host's time per layer call
    # is what a step costs. Assigning ``m.weight = ...`` or ``m.running_mean = None`` goes
    # through nn.Module.__setattr__, which updates the same dicts; a name that left them
    # (torch.nn.utils.parametrize makes ``weight`` a property) is read as an attribute.
    def forward(self, input: Tensor) -> Tensor:
        self._check_input_dim(input)
        params = self._parameters
        rm, rv, use_batch_stats, momentum, nbt = _batch_args(self, params, self._buffers)
        return bn_relu(input, rm, rv, _get(self, params, "weight"), _get(self, params, "bias"),
                       use_batch_stats, momentum, self.eps, nbt)


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
    """``nn.BatchNorm2d`` then ``nn.ReLU``, fused; NCHW or channels-last input.

    ``torch.fx.symbolic_trace`` keeps only modules of ``torch.nn`` as leaves and traces
    through the others; this forward branches on the input's shape, so it cannot be traced
    through (nor can :class:`BatchNormReLU1d`, or :class:`~fastext.nn.InPlaceABN2d`). A
    tracer that keeps the fused modules as leaves, as stock BatchNorm is kept, can trace a
    model holding them:

    >>> import torch, torch.fx
    >>> class Tracer(torch.fx.Tracer):
    ...     def is_leaf_module(self, m, name):
    ...         return isinstance(m, BatchNormReLU2d) or super().is_leaf_module(m, name)
    >>> net = nn.Sequential(nn.Conv2d(3, 4, 3), BatchNormReLU2d(4))
    >>> gm = torch.fx.GraphModule(net, Tracer().trace(net))
    >>> [n.op for n in gm.graph.nodes]
    ['placeholder', 'call_module', 'call_module', 'output']
    """

    def _check_input_dim(self, input: Tensor) -> None:
        if input.dim() != 4:
            raise ValueError(f"expected 4D input (got {input.dim()}D input)")
