"""Fused AdamW: a drop-in for ``torch.optim.AdamW``."""

from __future__ import annotations

from typing import Any

from torch import Tensor

from .. import ops
from ._fused import FusedOptimizer, ParamsT, check_hypers


class AdamW(FusedOptimizer):
    """AdamW (Loshchilov & Hutter, decoupled weight decay) in one fused pass per
    (device, dtype) bucket: same arguments, defaults, param-group keys and ``state_dict``
    as ``torch.optim.AdamW``.

    The update of each element (``p``, ``grad``, ``exp_avg``, ``exp_avg_sq``) is read and
    written once, in fp32 (fp64 for fp64 params) whatever the storage dtype. Step
    counters live on the params' device, so a step never waits for the GPU, and CUDA
    steps can be captured in a graph (``capturable`` is accepted and always true; a tensor
    ``lr`` must then be on the device, since a CPU one would be read once, at capture).
    ``foreach`` and ``fused`` are accepted for compatibility and ignored.

    Args: as ``torch.optim.AdamW``, plus ``flat`` (see :mod:`fastext.optim._flat`) and
    ``master_weights``: for fp16/bf16 params keep fp32 master copies (state ``"master"``)
    and fp32 state; the step reads the low-precision gradient, updates the master and writes
    it back rounded into the param, in the same pass (see :func:`fastext.amp.to_fp16`).

    >>> import torch, fastext
    >>> model = torch.nn.Linear(10, 1)
    >>> opt = fastext.optim.AdamW(model.parameters(), lr=1e-2, weight_decay=0.1)
    >>> for _ in range(3):
    ...     opt.zero_grad()
    ...     model(torch.randn(32, 10)).pow(2).mean().backward()
    ...     opt.step()
    >>> opt.state[model.weight]["step"].item()
    3.0
    """

    def __init__(self, params: ParamsT, lr: float | Tensor = 1e-3,
                 betas: tuple[float, float] = (0.9, 0.999), eps: float = 1e-8,
                 weight_decay: float = 1e-2, amsgrad: bool = False, *, maximize: bool = False,
                 foreach: bool | None = None, capturable: bool = False,
                 differentiable: bool = False, fused: bool | None = None,
                 flat: bool = False, master_weights: bool = False) -> None:
        check_hypers(lr, epsilon=eps, weight_decay=weight_decay)
        if not 0.0 <= betas[0] < 1.0:
            raise ValueError(f"Invalid beta parameter at index 0: {betas[0]}")
        if not 0.0 <= betas[1] < 1.0:
            raise ValueError(f"Invalid beta parameter at index 1: {betas[1]}")
        defaults = dict(lr=lr, betas=betas, eps=eps, weight_decay=weight_decay, amsgrad=amsgrad,
                        maximize=maximize, foreach=foreach, capturable=capturable,
                        differentiable=differentiable, fused=fused, decoupled_weight_decay=True)
        super().__init__(params, defaults, flat=flat, master_weights=master_weights)

    def __setstate__(self, state: dict[str, Any]) -> None:
        # As torch.optim.AdamW: state loaded into AdamW (from torch.optim.Adam too) decays
        # decoupled.
        super().__setstate__(state)
        for group in self.param_groups:
            group["decoupled_weight_decay"] = True

    def _buffer_names(self, group: dict[str, Any]) -> tuple[str, ...]:
        # Read for every group before any steps (FusedOptimizer.step): the place to refuse
        # what torch.optim.AdamW would run as Adam's L2 decay, which the kernel lacks.
        if group.get("decoupled_weight_decay") is False:
            raise ValueError("fastext.optim.AdamW decays weights decoupled only: a param "
                             "group's decoupled_weight_decay must stay True")
        if group["amsgrad"]:
            return ("exp_avg", "exp_avg_sq", "max_exp_avg_sq")
        return ("exp_avg", "exp_avg_sq")

    def _launch(self, group, params, grads, cols, models, grad_scale, found_inf) -> None:
        beta1, beta2 = group["betas"]
        ops.adamw_(params, grads, cols["exp_avg"], cols["exp_avg_sq"],
                   cols.get("max_exp_avg_sq", []), cols["step"], lr=group["lr"],
                   beta1=beta1, beta2=beta2,
                   eps=group["eps"], weight_decay=group["weight_decay"],
                   amsgrad=group["amsgrad"], maximize=group["maximize"],
                   grad_scale=grad_scale,
                   found_inf=found_inf, model_params=models)
