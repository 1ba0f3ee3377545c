"""Mixed precision: dynamic loss scaling without host syncs, and fp16 models with fp32
master weights.

:class:`LossScaler` speaks ``torch.amp.GradScaler``'s API. With a fastext optimizer (or any
optimizer that sets ``_step_supports_amp_scaling``) it checks the gradients in one read-only
pass and hands ``grad_scale``/``found_inf`` to the step, which unscales inside its own pass
(writing the unscaled grads back, as torch's fused optimizers do) and skips itself on overflow,
all on the device. With any other optimizer it makes one fused
unscale-and-check pass, then reads ``found_inf`` to decide whether to step (the one host sync
such an optimizer needs).

:func:`to_fp16` converts a model the fastai v1 way (BatchNorm stays fp32); pair it with
``fastext.optim.AdamW(..., master_weights=True)``. For the autocast path (fp32 params,
``torch.autocast`` around the forward), use :class:`LossScaler` with fp16 and nothing at all
with bf16, whose range needs no scaling.

>>> import torch, fastext
>>> model = fastext.amp.to_fp16(torch.nn.Sequential(torch.nn.Linear(4, 4), torch.nn.BatchNorm1d(4)))
>>> opt = fastext.optim.AdamW(model.parameters(), master_weights=True)
>>> scaler = fastext.amp.LossScaler()
>>> loss = model(torch.randn(8, 4).half()).float().square().mean()
>>> scaler.scale(loss).backward()
>>> scaler.step(opt)
>>> scaler.update()
>>> scaler.get_scale()
65536.0
"""

from __future__ import annotations

from collections.abc import Iterable
from enum import Enum
from typing import Any

import torch
from torch import Tensor, nn

from . import ops

__all__ = ["LossScaler", "to_fp16"]


class _Stage(Enum):
    READY = 0
    UNSCALED = 1
    STEPPED = 2


def _new_opt_state() -> dict[str, Any]:
    return {"stage": _Stage.READY, "found_inf_per_device": {}}


class LossScaler:
    """Dynamic loss scaling with ``torch.amp.GradScaler``'s API and defaults.

    Args:
        device: where the scale lives; by default the device of the first scaled loss.
        init_scale: initial scale (2**16).
        growth_factor: multiplier after ``growth_interval`` steps without overflow (2.0).
        backoff_factor: multiplier on overflow (0.5).
        growth_interval: clean steps between growths (2000).
        enabled: when False every method is a pass-through, as GradScaler's.

    With a fastext optimizer the overflow check and the unscale run inside its fused step,
    on the device; an overflowing step is skipped and the scale backs off:

    >>> from fastext.optim import AdamW
    >>> w = torch.nn.Parameter(torch.ones(3))
    >>> opt = AdamW([w], lr=0.1, weight_decay=0.0)
    >>> scaler = LossScaler("cpu", init_scale=1024.0)
    >>> scaler.scale((w * 2).sum()).backward()
    >>> w.grad  # scaled by 1024
    tensor([2048., 2048., 2048.])
    >>> scaler.step(opt); scaler.update()
    >>> w.grad, w.detach()  # unscaled in the step; Adam's first step is lr times the sign
    (tensor([2., 2., 2.]), tensor([0.9000, 0.9000, 0.9000]))
    >>> opt.zero_grad(); w.grad = torch.full((3,), float("inf"))
    >>> scaler.step(opt); scaler.update()
    >>> w.detach(), scaler.get_scale()  # skipped, scale halved
    (tensor([0.9000, 0.9000, 0.9000]), 512.0)
    """

    def __init__(self, device: str | torch.device | None = None, init_scale: float = 2.0**16,
                 growth_factor: float = 2.0, backoff_factor: float = 0.5,
                 growth_interval: int = 2000, enabled: bool = True) -> None:
        if enabled:
            if growth_factor <= 1.0:
                raise ValueError("growth_factor should be > 1.")
            if backoff_factor >= 1.0:
                raise ValueError("backoff_factor should be < 1.")
            if growth_interval < 1:
                raise ValueError("growth_interval should be a positive integer.")
        self._device = torch.device(device) if device is not None else None
        self._enabled = enabled
        self._init_scale = float(init_scale)
        self._growth_factor = float(growth_factor)
        self._backoff_factor = float(backoff_factor)
        self._growth_interval = int(growth_interval)
        self._init_growth_tracker = 0
        self._scale: Tensor | None = None
        self._growth_tracker: Tensor | None = None
        self._per_optimizer: dict[int, dict[str, Any]] = {}

    # -- scaling ------------------------------------------------------------------
    def _lazy_init(self, device: torch.device) -> None:
        self._device = self._device or device
        self._scale = torch.full((), self._init_scale, dtype=torch.float32, device=self._device)
        self._growth_tracker = torch.full((), self._init_growth_tracker, dtype=torch.int32,
                                          device=self._device)

    def scale(self, outputs: Any) -> Any:
        """Multiplies a tensor (or an iterable of tensors) by the scale, on the device."""
        if not self._enabled:
            return outputs
        if isinstance(outputs, Tensor):
            if self._scale is None:
                self._lazy_init(outputs.device)
            return outputs * self._scale.to(outputs.device, non_blocking=True)
        if isinstance(outputs, (list, tuple)):
            scaled = [self.scale(o) for o in outputs]
            return type(outputs)(scaled)
        if isinstance(outputs, dict):
            return {k: self.scale(v) for k, v in outputs.items()}
        if isinstance(outputs, Iterable):  # a generator: scaled lazily, as GradScaler does
            return map(self.scale, outputs)
        raise ValueError("outputs must be a Tensor or an iterable of Tensors")

    def _state(self, optimizer: torch.optim.Optimizer) -> dict[str, Any]:
        return self._per_optimizer.setdefault(id(optimizer), _new_opt_state())

    def _grads_by_device(self, optimizer: torch.optim.Optimizer) -> dict[torch.device, list]:
        grads: dict[torch.device, list[Tensor]] = {}
        for group in optimizer.param_groups:
            for p in group["params"]:
                if p.grad is None:
                    continue
                if p.grad.is_sparse:
                    raise RuntimeError("LossScaler does not support sparse gradients")
                grads.setdefault(p.grad.device, []).append(p.grad)
        return grads

    def _found_inf_flags(self, optimizer: torch.optim.Optimizer, unscale: bool) -> dict:
        if self._scale is None:
            raise RuntimeError("LossScaler: scale() was never called before this step")
        flags = {}
        inv_scale = self._scale.double().reciprocal().float() if unscale else None
        for dev, grads in self._grads_by_device(optimizer).items():
            flag = torch.zeros((), dtype=torch.float32, device=dev)
            if unscale:
                ops.unscale_and_check_(grads, flag, inv_scale.to(dev, non_blocking=True))
            else:
                ops.check_finite_(grads, flag)
            flags[dev] = flag
        return flags

    def unscale_(self, optimizer: torch.optim.Optimizer) -> None:
        """Divides the optimizer's gradients by the scale in place (one fused pass that also
        checks them), e.g. before gradient clipping."""
        if not self._enabled:
            return
        state = self._state(optimizer)
        if state["stage"] is _Stage.UNSCALED:
            raise RuntimeError("unscale_() has already been called on this optimizer since the "
                               "last update().")
        if state["stage"] is _Stage.STEPPED:
            raise RuntimeError("unscale_() is being called after step().")
        state["found_inf_per_device"] = self._found_inf_flags(optimizer, unscale=True)
        state["stage"] = _Stage.UNSCALED

    def clip_grad_norm_(self, optimizer: torch.optim.Optimizer, max_norm: float,
                        norm_type: float = 2.0) -> Tensor:
        """Clips the optimizer's gradients to a total (unscaled) norm of ``max_norm`` while
        they are still scaled, and returns that unscaled norm (a device tensor). Unlike
        ``unscale_`` + ``clip_grad_norm_`` this keeps fp16 gradients scaled (dividing them in
        fp16 would flush small values to zero) and leaves the unscale to the fused step; an
        overflow still skips the step. Norms are computed in fp64 (fp32 on MPS, which lacks
        it): the scaled gradients' squares overflow fp32 once the scaled norm passes ~1.8e19,
        which an fp32 model's unscaled norm times a scale of 65536 can reach.

        After ``unscale_(optimizer)`` the gradients are no longer scaled: it then clips them
        as they are, as ``torch.nn.utils.clip_grad_norm_`` would."""
        grads = [g for gs in self._grads_by_device(optimizer).values() for g in gs]
        if not grads:
            return torch.zeros(())
        if not self._enabled or self._scale is None:
            params = [p for grp in optimizer.param_groups for p in grp["params"]
                      if p.grad is not None]
            return torch.nn.utils.clip_grad_norm_(params, max_norm, norm_type)
        dev = self._scale.device
        acc = torch.float32 if dev.type == "mps" else torch.float64
        norms = torch.stack([torch.linalg.vector_norm(g, norm_type, dtype=acc).to(dev)
                             for g in grads])
        norm = torch.linalg.vector_norm(norms, norm_type)
        state = self._per_optimizer.get(id(optimizer))
        if state is None or state["stage"] is not _Stage.UNSCALED:  # still scaled
            norm = norm / self._scale
        norm = norm.float()  # as before: the norm and the coefficient in fp32
        coef = (max_norm / (norm + 1e-6)).clamp(max=1.0)
        for g in grads:
            g.mul_(coef.to(g.device))
        return norm

    def _combined_found_inf(self, state: dict[str, Any]) -> Tensor:
        flags = [f.to(self._scale.device, non_blocking=True)
                 for f in state["found_inf_per_device"].values()]
        return sum(flags) if flags else torch.zeros((), device=self._scale.device)

    def step(self, optimizer: torch.optim.Optimizer, *args: Any, **kwargs: Any) -> Any:
        """Steps ``optimizer`` unless a gradient overflowed (as ``GradScaler.step``)."""
        if not self._enabled:
            return optimizer.step(*args, **kwargs)
        if "closure" in kwargs:
            raise RuntimeError("Closure use is not currently supported if LossScaler is enabled.")
        state = self._state(optimizer)
        if state["stage"] is _Stage.STEPPED:
            raise RuntimeError("step() has already been called since the last update().")
        if getattr(optimizer, "_step_supports_amp_scaling", False):
            if state["stage"] is _Stage.READY:
                state["found_inf_per_device"] = self._found_inf_flags(optimizer, unscale=False)
            optimizer.grad_scale = None if state["stage"] is _Stage.UNSCALED else self._scale
            optimizer.found_inf = self._combined_found_inf(state)
            try:
                result = optimizer.step(*args, **kwargs)
            finally:
                del optimizer.grad_scale, optimizer.found_inf
        else:
            if state["stage"] is _Stage.READY:
                self.unscale_(optimizer)
            # An optimizer that cannot skip itself: the one host read it needs.
            result = None
            if not self._combined_found_inf(state).item():
                result = optimizer.step(*args, **kwargs)
        state["stage"] = _Stage.STEPPED
        return result

    def update(self, new_scale: float | Tensor | None = None) -> None:
        """Updates the scale on the device (backoff on overflow, growth after
        ``growth_interval`` clean steps), or sets it to ``new_scale``."""
        if not self._enabled:
            return
        if self._scale is None:
            raise RuntimeError("LossScaler: update() before any scale()")
        if new_scale is not None:
            if isinstance(new_scale, Tensor):
                self._scale.copy_(new_scale.reshape(()))
            else:
                self._scale.fill_(float(new_scale))
        else:
            flags = [f.to(self._scale.device, non_blocking=True)
                     for st in self._per_optimizer.values()
                     for f in st["found_inf_per_device"].values()]
            if not flags:
                raise RuntimeError("No inf checks were recorded prior to update.")
            found_inf = flags[0]
            for f in flags[1:]:
                found_inf = found_inf + f
            ops.update_scale_(self._scale, self._growth_tracker, found_inf, self._growth_factor,
                              self._backoff_factor, self._growth_interval)
        self._per_optimizer.clear()

    # -- accessors and state --------------------------------------------------------
    def get_scale(self) -> float:
        """The current scale as a Python float (a host read: call it only when you need it)."""
        if not self._enabled:
            return 1.0
        return self._init_scale if self._scale is None else float(self._scale.item())

    def get_growth_factor(self) -> float:
        return self._growth_factor

    def set_growth_factor(self, new_factor: float) -> None:
        self._growth_factor = float(new_factor)

    def get_backoff_factor(self) -> float:
        return self._backoff_factor

    def set_backoff_factor(self, new_factor: float) -> None:
        self._backoff_factor = float(new_factor)

    def get_growth_interval(self) -> int:
        return self._growth_interval

    def set_growth_interval(self, new_interval: int) -> None:
        self._growth_interval = int(new_interval)

    def is_enabled(self) -> bool:
        return self._enabled

    def state_dict(self) -> dict[str, Any]:
        """GradScaler's keys: scale, growth_factor, backoff_factor, growth_interval,
        _growth_tracker (empty when disabled)."""
        if not self._enabled:
            return {}
        tracker = (self._init_growth_tracker if self._growth_tracker is None
                   else int(self._growth_tracker.item()))
        return {"scale": self.get_scale(), "growth_factor": self._growth_factor,
                "backoff_factor": self._backoff_factor, "growth_interval": self._growth_interval,
                "_growth_tracker": tracker}

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        if not self._enabled:
            return
        if len(state_dict) == 0:
            raise RuntimeError("The source state dict is empty, possibly because it was saved "
                               "from a disabled instance of LossScaler.")
        self._init_scale = float(state_dict["scale"])
        self._growth_factor = float(state_dict["growth_factor"])
        self._backoff_factor = float(state_dict["backoff_factor"])
        self._growth_interval = int(state_dict["growth_interval"])
        self._init_growth_tracker = int(state_dict["_growth_tracker"])
        if self._scale is not None:
            self._scale.fill_(self._init_scale)
            self._growth_tracker.fill_(self._init_growth_tracker)


_KEEP_FP32 = (nn.modules.batchnorm._BatchNorm,)


def to_fp16(model: nn.Module, dtype: torch.dtype = torch.float16) -> nn.Module:
    """Converts ``model``'s parameters and buffers to ``dtype`` (fp16 or bf16) in place,
    except BatchNorm layers, which stay fp32 for stable statistics (fastai v1's ``to_fp16``).
    Returns the model. Feed it inputs of ``dtype``; train it with an optimizer that keeps
    fp32 master weights (``fastext.optim.AdamW(..., master_weights=True)``) and a
    :class:`LossScaler` (fp16).

    >>> m = to_fp16(torch.nn.Sequential(torch.nn.Conv2d(3, 4, 3), torch.nn.BatchNorm2d(4)))
    >>> m[0].weight.dtype, m[1].weight.dtype
    (torch.float16, torch.float32)
    """
    if dtype not in (torch.float16, torch.bfloat16):
        raise ValueError(f"to_fp16 converts to float16 or bfloat16, not {dtype}")
    model.to(dtype)
    for module in model.modules():
        if isinstance(module, _KEEP_FP32):
            module.float()
    return model
