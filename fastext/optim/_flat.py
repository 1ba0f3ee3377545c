"""The flat layout (``flat=True``): a bucket of parameters of one device and dtype lives
in one contiguous buffer, and so do their gradients and each optimizer state; every
per-parameter tensor is a view into those buffers.

Trade-off: the update, ``zero_grad`` (one fill) and any whole-model pass (norms, inf
checks) then stream through a few long buffers instead of many small tensors, on the CPU
backed by huge pages (see :mod:`fastext.optim._memory`), but
gradients are kept allocated and zeroed in place, as with ``zero_grad(set_to_none=False)``:
a parameter that got no gradient since the last ``zero_grad`` is still stepped with a
zero gradient (weight decay and momentum apply), and parameter memory is re-laid out as
contiguous views (a transposed parameter becomes a contiguous one of the same shape).
"""

from __future__ import annotations

import torch
from torch import Tensor

from ._memory import empty_buffer, zeros_buffer


class FlatBuffers:
    """One (device, dtype) bucket of parameters laid out in contiguous buffers."""

    def __init__(self, params: list[Tensor]) -> None:
        self.params = params
        self._slices: dict[Tensor, tuple[int, int]] = {}
        total = 0
        for p in params:
            self._slices[p] = (total, p.numel())
            total += p.numel()
        ref = params[0]
        self.param_buf = empty_buffer(total, ref.dtype, ref.device)
        self.grad_buf = zeros_buffer(total, ref.dtype, ref.device)
        self.state_bufs: dict[str, Tensor] = {}
        with torch.no_grad():
            for p in params:
                view = self._view(self.param_buf, p)
                view.copy_(p)
                p.data = view
                if p.grad is not None:
                    self._view(self.grad_buf, p).copy_(p.grad)
                    p.grad = self._view(self.grad_buf, p)

    @classmethod
    def flatten(cls, params: list[Tensor]) -> list[FlatBuffers]:
        """Lay out ``params`` (one param group) as one FlatBuffers per (device, dtype)."""
        buckets: dict[tuple[torch.device, torch.dtype], list[Tensor]] = {}
        for p in params:
            if p.is_sparse or p.is_complex():
                raise ValueError("flat=True needs dense real parameters")
            buckets.setdefault((p.device, p.dtype), []).append(p)
        return [cls(ps) for ps in buckets.values()]

    def owns(self, p: Tensor) -> bool:
        return p in self._slices

    def _view(self, buf: Tensor, p: Tensor) -> Tensor:
        start, n = self._slices[p]
        return buf[start:start + n].view(p.shape)

    def state_view(self, name: str, p: Tensor) -> Tensor:
        """Per-parameter view of state buffer ``name`` (allocated, zeroed, on first use)."""
        if name not in self.state_bufs:
            self.state_bufs[name] = zeros_buffer(self.param_buf.numel(), self.param_buf.dtype,
                                                 self.param_buf.device)
        return self._view(self.state_bufs[name], p)

    def zero_grad(self) -> None:
        self.grad_buf.zero_()
        for p in self.params:
            if not self._is_grad_view(p):
                p.grad = self._view(self.grad_buf, p)

    def adopt_grads(self) -> None:
        """Moves gradients that autograd allocated elsewhere (after ``p.grad = None``,
        e.g. from ``Module.zero_grad``) back into the flat buffer."""
        for p in self.params:
            if p.grad is not None and not self._is_grad_view(p):
                view = self._view(self.grad_buf, p)
                view.copy_(p.grad)
                p.grad = view

    def adopt_states(self, state: dict[Tensor, dict[str, Tensor]]) -> None:
        """After ``load_state_dict``: copy loaded state tensors into the flat buffers."""
        for p in self.params:
            for name, value in state.get(p, {}).items():
                if name != "step" and isinstance(value, Tensor) and value.shape == p.shape:
                    view = self.state_view(name, p)
                    view.copy_(value)
                    state[p][name] = view

    def _is_grad_view(self, p: Tensor) -> bool:
        g = p.grad
        start, _ = self._slices[p]
        expected = self.grad_buf.data_ptr() + start * self.grad_buf.element_size()
        return (g is not None and g.data_ptr() == expected and g.shape == p.shape
                and g.is_contiguous())
