"""``convert_sync_batchnorm``: torch's conversion to ``nn.SyncBatchNorm`` for data-parallel
training, keeping the fused layers' ReLU (torch's converter drops it)."""

from __future__ import annotations

from typing import Any

import torch.nn.functional as F
from torch import Tensor, nn

from .batchnorm import _BatchNormReLU
from .fuse import _fused_copy
from .inplace_bn import _InPlaceABN

__all__ = ["SyncBatchNormReLU", "convert_sync_batchnorm"]


class SyncBatchNormReLU(nn.SyncBatchNorm):
    """``nn.SyncBatchNorm`` then ReLU: what :func:`convert_sync_batchnorm` makes of
    ``BatchNormReLU1d/2d``, with their parameters, buffers and state_dict keys.

    Synchronised training needs a GPU, as torch's ``SyncBatchNorm`` does: in training mode
    under an initialised process group it refuses CPU input (a ``ValueError``). Evaluation,
    and training without a process group (plain BatchNorm then ReLU, nothing synchronised),
    run on the CPU too.
    """

    def forward(self, input: Tensor) -> Tensor:
        return F.relu(super().forward(input))


def convert_sync_batchnorm(module: nn.Module, process_group: Any = None) -> nn.Module:
    """``torch.nn.SyncBatchNorm.convert_sync_batchnorm`` for models holding fastext's fused
    layers. torch's converter turns ``BatchNormReLU1d/2d`` (and ``InPlaceABN1d/2d``) into a
    plain ``SyncBatchNorm``, silently dropping the activation; here stock BatchNorms are
    converted by torch's converter and ``BatchNormReLU1d/2d`` become
    :class:`SyncBatchNormReLU` (SyncBatchNorm, then ReLU), sharing their parameters and
    buffers, as torch's converter shares them, and with the same state_dict keys. A
    :class:`SyncBatchNormReLU` stays one (converting twice keeps the ReLU), with the new
    ``process_group``, as torch's converter treats a ``SyncBatchNorm``.

    InPlace-ABN is refused (a ``TypeError``, before anything is converted): it scales by
    ``|weight| + eps``, which SyncBatchNorm cannot express. Returns the converted
    ``module`` (a new one if ``module`` itself is a BatchNorm), as torch's converter does.

    >>> from fastext.nn import BatchNormReLU2d
    >>> net = nn.Sequential(nn.Conv2d(3, 4, 3), BatchNormReLU2d(4))
    >>> [type(m).__name__ for m in convert_sync_batchnorm(net)]
    ['Conv2d', 'SyncBatchNormReLU']
    """
    abn = [name or type(module).__name__ for name, m in module.named_modules()
           if isinstance(m, _InPlaceABN)]
    if abn:
        raise TypeError(f"convert_sync_batchnorm: InPlace-ABN ({', '.join(abn)}) scales by "
                        "|weight| + eps, which SyncBatchNorm cannot express; use BatchNorm "
                        "and LeakyReLU there to train with synchronised statistics")
    return _convert(module, process_group)


def _convert(module: nn.Module, process_group) -> nn.Module:
    # SyncBatchNormReLU first: as a SyncBatchNorm, torch's converter would drop its ReLU
    if isinstance(module, (_BatchNormReLU, SyncBatchNormReLU)):
        out = _fused_copy(module, SyncBatchNormReLU, process_group=process_group)
        if hasattr(module, "qconfig"):
            out.qconfig = module.qconfig
    elif isinstance(module, nn.modules.batchnorm._BatchNorm):
        return nn.SyncBatchNorm.convert_sync_batchnorm(module, process_group)
    else:
        out = module
    for name, child in module.named_children():
        out.add_module(name, _convert(child, process_group))
    return out
