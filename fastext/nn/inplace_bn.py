"""In-place activated BatchNorm (InPlace-ABN): BatchNorm + LeakyReLU whose output overwrites
its input, with the state_dict keys of ``nn.BatchNorm1d/2d``."""

from __future__ import annotations

import torch
from torch import Tensor, nn

from .batchnorm import _batch_args, _bias_kwargs, _get
from .functional import inplace_abn

__all__ = ["InPlaceABN1d", "InPlaceABN2d"]


class _InPlaceABN(nn.modules.batchnorm._BatchNorm):
    def __init__(self, num_features: int, eps: float = 1e-5, momentum: float | None = 0.1,
                 affine: bool = True, track_running_stats: bool = True,
                 device: torch.device | str | None = None, dtype: torch.dtype | None = None,
                 *, negative_slope: float = 0.01, bias: bool = True) -> None:
        if not negative_slope > 0:
            raise ValueError(f"negative_slope must be positive (the backward inverts the "
                             f"activation), got {negative_slope}")
        super().__init__(num_features, eps, momentum, affine, track_running_stats, device,
                         dtype, **_bias_kwargs(bias))
        self.negative_slope = negative_slope

    def forward(self, input: Tensor) -> Tensor:
        self._check_input_dim(input)
        params = self._parameters
        rm, rv, use_batch_stats, momentum, nbt = _batch_args(self, params, self._buffers)
        return inplace_abn(input, rm, rv, _get(self, params, "weight"),
                           _get(self, params, "bias"), use_batch_stats, momentum, self.eps,
                           self.negative_slope, nbt)

    def extra_repr(self) -> str:
        return f"{super().extra_repr()}, negative_slope={self.negative_slope}"


class InPlaceABN2d(_InPlaceABN):
    """``nn.BatchNorm2d`` then ``nn.LeakyReLU(negative_slope)``, computed in place
    (InPlace-ABN, Rota Bulo et al. 2018): the input (NCHW or channels-last contiguous) is
    overwritten by the output and returned, and only that output is kept for the backward.
    Behind a convolution this keeps one activation per block for the backward (the block's
    output, which the next layer keeps anyway) where ``BatchNorm2d`` + ``LeakyReLU`` keep
    three and the fused :class:`BatchNormReLU2d` two. A view (``torch.flatten(conv(x), 1)``
    into :class:`InPlaceABN1d`) is overwritten as stock in-place ops overwrite one.

    ``bias=False`` (keyword only) leaves out the bias as ``nn.BatchNorm2d(bias=False)``
    does, where the installed torch's BatchNorm takes that argument (2.14 does, 2.11 not).

    The backward recovers the normalised input from the output, so the layer scales by
    ``|weight| + eps`` (never 0), as the paper's implementation does: a BatchNorm state
    dict loads as is, and its non-negative weights give the same outputs to within eps (a
    weight of exactly 0 gets no gradient through ``abs`` and stays there). The input must
    not be needed elsewhere (a leaf that requires grad, refused before anything is written;
    a tensor another op saved for its backward), and the output is saved for the backward,
    so it may not be modified in place afterwards (``out += identity``, an in-place ReLU or
    dropout): autograd refuses those, as for any in-place op.

    >>> import torch
    >>> m = InPlaceABN2d(4, negative_slope=0.1)
    >>> x = torch.randn(2, 4, 5, 5)
    >>> y = m(x)
    >>> y is x
    True
    """

    def _check_input_dim(self, input: Tensor) -> None:
        if input.dim() != 4:
            raise ValueError(f"expected 4D input (got {input.dim()}D input)")


class InPlaceABN1d(_InPlaceABN):
    """:class:`InPlaceABN2d` for ``(N, C)`` or ``(N, C, L)`` input (as ``nn.BatchNorm1d``)."""

    def _check_input_dim(self, input: Tensor) -> None:
        if input.dim() not in (2, 3):
            raise ValueError(f"expected 2D or 3D input (got {input.dim()}D input)")
