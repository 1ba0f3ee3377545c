"""Fused RMSprop: a drop-in for ``torch.optim.RMSprop``."""

from __future__ import annotations

from typing import Any

from torch import Tensor

from .. import ops
from ._fused import FusedOptimizer, ParamsT, check_hypers


class RMSprop(FusedOptimizer):
    """RMSprop (Hinton) in one fused pass per (device, dtype) bucket: same arguments,
    defaults, param-group keys and ``state_dict`` as ``torch.optim.RMSprop``, including
    ``centered``, ``momentum`` and coupled ``weight_decay``.

    torch has no fused RMSprop; its foreach path makes about eight passes over memory per
    step where this makes one. Math in fp32 (fp64 for fp64 params). ``foreach`` is
    accepted and ignored; ``capturable`` is always true on CUDA (a tensor ``lr`` must then be
    on the device: a CPU one is refused under capture).

    Args: as ``torch.optim.RMSprop``, plus ``flat`` (see :mod:`fastext.optim._flat`),
    ``master_weights`` (as :class:`fastext.optim.AdamW`) and ``decoupled_weight_decay``
    (keyword, default off as in torch): AdamW's decay, the param scaled by
    ``1 - lr * weight_decay`` instead of ``weight_decay * param`` added to the gradient,
    which RMSprop's normalisation turns into a step of about ``lr`` whatever the weight's
    size (fastai's RMSProp decouples by default; the Learner turns it on).

    >>> import torch, fastext
    >>> w = torch.nn.Parameter(torch.ones(3))
    >>> opt = fastext.optim.RMSprop([w], lr=0.01, momentum=0.9, centered=True)
    >>> w.grad = torch.ones(3)
    >>> opt.step()
    >>> sorted(opt.state[w])
    ['grad_avg', 'momentum_buffer', 'square_avg', 'step']
    """

    def __init__(self, params: ParamsT, lr: float | Tensor = 1e-2, alpha: float = 0.99,
                 eps: float = 1e-8, weight_decay: float = 0, momentum: float = 0,
                 centered: bool = False, capturable: bool = False,
                 foreach: bool | None = None, maximize: bool = False,
                 differentiable: bool = False, *, flat: bool = False,
                 master_weights: bool = False, decoupled_weight_decay: bool = False) -> None:
        check_hypers(lr, epsilon=eps, momentum=momentum, weight_decay=weight_decay, alpha=alpha)
        defaults = dict(lr=lr, momentum=momentum, alpha=alpha, eps=eps, centered=centered,
                        weight_decay=weight_decay, capturable=capturable, foreach=foreach,
                        maximize=maximize, differentiable=differentiable)
        if decoupled_weight_decay:  # only then: torch's param-group keys otherwise
            defaults["decoupled_weight_decay"] = True
        super().__init__(params, defaults, flat=flat, master_weights=master_weights)

    def _buffer_names(self, group: dict[str, Any]) -> tuple[str, ...]:
        names = ["square_avg"]
        if group["momentum"] > 0:
            names.append("momentum_buffer")
        if group["centered"]:
            names.append("grad_avg")
        return tuple(names)

    def _launch(self, group, params, grads, cols, models, grad_scale, found_inf) -> None:
        ops.rmsprop_(params, grads, cols["square_avg"], cols.get("grad_avg", []),
                     cols.get("momentum_buffer", []), cols["step"], lr=group["lr"],
                     alpha=group["alpha"],
                     eps=group["eps"], weight_decay=group["weight_decay"],
                     momentum=group["momentum"], centered=group["centered"],
                     maximize=group["maximize"], grad_scale=grad_scale,
                     found_inf=found_inf, model_params=models,
                     # groups without the key (built without the flag) decay as torch
                     decoupled_weight_decay=group.get("decoupled_weight_decay", False))
