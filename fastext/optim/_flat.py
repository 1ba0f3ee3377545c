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
A parameter that does not require grad (frozen) is the exception: it is never stepped,
whatever its ``.grad`` holds (``zero_grad`` leaves it none, as torch does; a step skips the
zero view a ``zero_grad`` left it before it was frozen), and its state stays as it was;
unfrozen, it steps on from that state (a fresh one if it never stepped), as with torch.
While some of a buffer's parameters are frozen, or after they were, a step updates the
buffer's parameters one by one instead of as one slot.

Each parameter's data must stay its view into the buffer: one whose data was replaced
after the optimizer was built (``p.data = t``, e.g. by ``model.to(memory_format=...)``)
is found at the next step or ``zero_grad`` (its ``data_ptr`` no longer its slot's) and
laid back into its slot, its new values kept and its layout contiguous again, as at
construction (its gradient too, where ``Module.to`` moved that along); one that changed
shape, dtype or device cannot be, and the step raises (build the optimizer after such a
change).
"""

from __future__ import annotations

import operator
from typing import Any

import torch
from torch import Tensor

from ._memory import empty_buffer, zeros_buffer

# Read over a list of params with map, in C: no Python frame per param.
_DATA_PTR = Tensor.data_ptr
_GRAD = operator.attrgetter("grad")
REQUIRES_GRAD = operator.attrgetter("requires_grad")


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
        # One float32 step counter per param (torch's state_dict keeps one each). While all
        # are equal (every step so far stepped every param), a step is one slot over the
        # whole buffers; a partial step, a load with unequal counts or a reset of some
        # params' state ends that, until all restart from zero (see FusedOptimizer._plan).
        self.step_buf = torch.zeros(len(params), dtype=torch.float32, device=ref.device)
        self.steps_in_step = True
        self._index = {p: i for i, p in enumerate(params)}
        self._grad_views: list[Tensor | None] = [None] * len(params)
        with torch.no_grad():
            for p in params:
                view = self._view(self.param_buf, p)
                view.copy_(p)
                p.data = view
                if p.grad is not None:
                    self._view(self.grad_buf, p).copy_(p.grad)
                    self._set_grad_view(p)
        # Where each param's data lives while it is its slot's view, and what the slot holds
        # (see `check_layout`).
        self._ptrs = list(map(_DATA_PTR, params))
        self._shapes = [p.shape for p in params]

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

    def step_view(self, p: Tensor) -> Tensor:
        """``p``'s step counter: a 0-d view into :attr:`step_buf`."""
        return self.step_buf[self._index[p]]

    def zero_grad(self) -> None:
        # A grad moved out of grad_buf along with its param (Module.to between a step and
        # this) would escape the fill and carry its old values into the next step.
        self.check_layout()
        self.grad_buf.zero_()
        # The usual case, every param trainable and holding its grad view, checked in C
        # (~35 us for 161 params here, where the loop below took ~70).
        if (all(map(REQUIRES_GRAD, self.params))
                and all(map(operator.is_, map(_GRAD, self.params), self._grad_views))):
            return
        for i, p in enumerate(self.params):
            if not p.requires_grad:  # frozen: no gradient, so never stepped (as torch)
                p.grad = self._grad_views[i] = None
            elif p.grad is not None and p.grad.is_sparse:
                p.grad = None  # as torch: a dense view would take the next sparse grad in
            elif not self._is_grad_view(p):
                self._set_grad_view(p)

    def check_layout(self) -> None:
        """Lays params whose data was replaced (``p.data = t``: no longer their slot's view,
        so a step of the buffer would not reach them) back into their slots, keeping their
        values, and their grads too where they were moved along. Runs at every step (before
        the grads are read) and zero_grad: the usual case is one C-level pass over the
        ``data_ptr`` values (~17 us for 161 params here, where a flat step took ~60 us)."""
        if list(map(_DATA_PTR, self.params)) == self._ptrs:  # list == of ints: in C
            return
        with torch.no_grad():
            for i, p in enumerate(self.params):
                if p.data_ptr() == self._ptrs[i]:
                    continue
                buf, shape = self.param_buf, self._shapes[i]
                if (p.shape, p.dtype, p.device) != (shape, buf.dtype, buf.device):
                    raise RuntimeError(
                        f"flat=True: the data of a parameter of shape {tuple(shape)}, "
                        f"{buf.dtype} on {buf.device} was replaced by one of shape "
                        f"{tuple(p.shape)}, {p.dtype} on {p.device} after the optimizer was "
                        "built, so its flat buffer can no longer hold it: build the optimizer "
                        "after changing the model's shapes, dtypes or devices")
                view = self._view(buf, p)
                view.copy_(p)
                p.data = view  # the slot's own address again: _ptrs stays as it is
                # Module._apply moves the grad along (`p.grad.data = t`: still our view
                # object, which adopt_grads trusts, but no longer in grad_buf): lay it back.
                g, gview = p.grad, self._view(self.grad_buf, p)
                if g is not None and g.data_ptr() != gview.data_ptr():
                    gview.copy_(g)
                    self._set_grad_view(p)

    def adopt_grads(self, grads: list[Tensor | None] | None = None) -> None:
        """Moves gradients that autograd allocated elsewhere (after ``p.grad = None``,
        e.g. from ``Module.zero_grad``) back into the flat buffer. ``grads``: the params'
        current ``.grad``, in order, when the caller has read them already."""
        if grads is None:
            grads = [p.grad for p in self.params]
        # The usual case, every grad still our view, checked in C: this runs at every step.
        if all(map(operator.is_, grads, self._grad_views)):
            return
        if any(p.grad is not None and p.grad.is_sparse for p in self.params):
            # Refused before any is copied in (densified, it would step every row).
            raise RuntimeError("flat=True: sparse gradients are not supported "
                               "(use torch.optim.SparseAdam)")
        for p in self.params:
            if p.grad is not None and not self._is_grad_view(p):
                self._view(self.grad_buf, p).copy_(p.grad)
                self._set_grad_view(p)

    def adopt_states(self, state: dict[Tensor, dict[str, Tensor]]) -> None:
        """After ``load_state_dict``: copy loaded state tensors (step counters included)
        into the flat buffers, and find out whether all step counters agree."""
        all_stepped = True
        for p in self.params:
            st = state.get(p, {})
            all_stepped = all_stepped and "step" in st
            for name, value in list(st.items()):
                if not isinstance(value, Tensor):
                    continue
                if name == "step":
                    _move_in(st, name, self.step_view(p))
                elif value.shape == p.shape:
                    _move_in(st, name, self.state_view(name, p))
        if not any(state.get(p) for p in self.params):
            self.steps_in_step = True  # nothing loaded: all start from zero
        else:  # one host sync, at load time only
            self.steps_in_step = all_stepped and self._steps_agree()

    def _steps_agree(self) -> bool:
        return bool((self.step_buf == self.step_buf[0]).all())

    def recheck_steps(self) -> None:
        """After a step counter was written from outside (an in-place edit of one param's
        ``state["step"]``, a view of :attr:`step_buf`, whose version counter it shares; the
        steps write it through raw pointers, which leave that alone): the whole buffer steps
        as one slot again only if every counter agrees. One host sync, only then."""
        self.steps_in_step = self._steps_agree()

    def bind_state(self, p: Tensor, state: dict[str, Any], names: tuple[str, ...]) -> str:
        """Makes ``p``'s step counter and state buffers ``names`` in ``state`` views into the
        flat buffers, as a step needs them (when a step plan is built, not at every step):
        a missing one starts from zero, one assigned from outside (``state[name] = t``)
        is copied in. Returns what happened to the step counter: ``"kept"``, ``"zeroed"``
        (missing: a fresh or reset state) or ``"copied"``."""
        how = _move_in(state, "step", self.step_view(p))
        for name in names:
            _move_in(state, name, self.state_view(name, p))
        return how

    def _set_grad_view(self, p: Tensor) -> None:
        view = self._view(self.grad_buf, p)
        p.grad = view
        self._grad_views[self._index[p]] = view

    def _is_grad_view(self, p: Tensor) -> bool:
        # Identity, not pointers: cheap enough to run over every param at every step.
        return p.grad is not None and p.grad is self._grad_views[self._index[p]]


def _move_in(state: dict[str, Any], name: str, view: Tensor) -> str:
    """Points ``state[name]`` at ``view``, a slot of a flat buffer, which takes its value
    (zeros when missing); ``"kept"`` when it already was that view, else ``"zeroed"`` or
    ``"copied"``."""
    old = state.get(name)
    if _is_same_view(old, view):
        return "kept"
    if old is None:
        view.zero_()
    else:
        view.copy_(torch.as_tensor(old).reshape(view.shape))
    state[name] = view
    return "zeroed" if old is None else "copied"


def _is_same_view(t: Any, view: Tensor) -> bool:
    """Whether ``t`` is a tensor over exactly ``view``'s elements (e.g. a view handed out
    earlier), not one assigned from elsewhere."""
    return (isinstance(t, Tensor) and t.data_ptr() == view.data_ptr() and t.dtype == view.dtype
            and t.device == view.device and t.shape == view.shape
            and t.stride() == view.stride())
