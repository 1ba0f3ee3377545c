"""What the fused optimizers share: lazy state, one native call per (device, dtype)
bucket of a param group, step counters kept on the params' device, the AMP
``grad_scale``/``found_inf`` protocol, fp32 master weights, and the optional flat layout."""

from __future__ import annotations

import itertools
import operator
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any

import torch
from torch import Tensor

from ._flat import REQUIRES_GRAD, FlatBuffers

ParamsT = Iterable[Tensor] | Iterable[dict[str, Any]] | Iterable[tuple[str, Tensor]]

_LOW = (torch.float16, torch.bfloat16)
_NONES = itertools.repeat(None)  # map(operator.is_not, grads, _NONES): which grads exist
#: The param dtypes the fused kernels step.
STEP_DTYPES = (torch.float32, torch.float64, torch.float16, torch.bfloat16)


def check_hypers(lr: float | Tensor, **non_negative: float) -> None:
    """torch.optim's argument checks: a one-element tensor lr, non-negative values."""
    if isinstance(lr, Tensor) and lr.numel() != 1:
        raise ValueError("Tensor lr must be 1-element")
    if not 0.0 <= lr:
        raise ValueError(f"Invalid learning rate: {lr}")
    for name, value in non_negative.items():
        if not 0.0 <= value:
            raise ValueError(f"Invalid {name} value: {value}")


def _on(t: Tensor | None, dev: torch.device) -> Tensor | None:
    """An AMP flag on a bucket's device (a no-op in the usual one-device case)."""
    if t is None or t.device == dev:
        return t
    return t.to(dev, non_blocking=dev.type != "cpu")


@dataclass
class _Bucket:
    """One native call of a step: same device, dtype and master-ness. ``index`` locates its
    grads in the group (``None``: all of them, in order); ``cols`` holds its state lists.
    ``flat`` (the single-slot case of ``flat=True``) means params/grads/states are whole
    flat buffers, and the one step tensor holds every param's counter (all advance)."""

    device: torch.device
    index: list[int] | None
    params: list[Tensor]
    cols: dict[str, list[Tensor]]
    models: list[Tensor]
    flat: FlatBuffers | None


class FusedOptimizer(torch.optim.Optimizer):
    """Base of :class:`fastext.optim.AdamW` and :class:`fastext.optim.RMSprop`.

    Subclasses name their state buffers (:meth:`_buffer_names`) and launch the native
    op for one bucket (:meth:`_launch`). Everything else, including ``state_dict``
    compatibility with ``torch.optim``, lives here.

    A step reuses what it gathered from ``state`` (the tensors each native call updates)
    until the params, which of them have grads, or ``state``'s per-param dicts (or how many
    entries each holds) change. So reset or replace a param's state as a whole
    (``opt.state.clear()``, ``del opt.state[p]``, ``opt.state[p] = {...}``,
    ``opt.state[p].clear()``) or in place (``.zero_()``, ``.fill_()``); a tensor swapped
    inside a param's dict (``opt.state[p]["exp_avg"] = t``) is not seen.
    """

    # torch.amp.GradScaler hands over `grad_scale` / `found_inf` as attributes and lets
    # the step unscale and skip on the device, with no host sync.
    _step_supports_amp_scaling = True

    def __init__(self, params: ParamsT, defaults: dict[str, Any], *, flat: bool = False,
                 master_weights: bool = False) -> None:
        if defaults.get("differentiable"):
            raise NotImplementedError("fastext optimizers do not support differentiable=True")
        if flat and master_weights:
            raise ValueError("flat=True and master_weights=True cannot be combined")
        self.flat = bool(flat)
        self.master_weights = bool(master_weights)
        # Each param group's flat buffers, with the group's params list (the object torch's
        # load_state_dict carries over to the new group dicts) to find them by.
        self._group_flat: list[tuple[list[Tensor], list[FlatBuffers]]] = []
        # param group -> (its params, which have a grad, state names, bucketing)
        self._plans: dict[int, tuple[tuple, tuple, tuple, list[_Bucket]]] = {}
        # `self.state` and its per-param dicts when the plans were last built (see `step`).
        self._state_seen: tuple | None = None
        # Each flat buffer's step-counter version when this optimizer last planned with it: a
        # change is an edit from outside (see FlatBuffers.recheck_steps). Kept here, not on the
        # buffer, which a shallow copy of this optimizer shares.
        self._step_versions: dict[FlatBuffers, int] = {}
        super().__init__(params, defaults)

    # -- subclass hooks -------------------------------------------------------------
    def _buffer_names(self, group: dict[str, Any]) -> tuple[str, ...]:
        raise NotImplementedError

    def _launch(self, group: dict[str, Any], params: list[Tensor], grads: list[Tensor],
                cols: dict[str, list[Tensor]], models: list[Tensor],
                grad_scale: Tensor | None, found_inf: Tensor | None) -> None:
        """One native call. ``cols`` maps each state name (those of :meth:`_buffer_names`
        and ``"step"``) to its tensors, one per param. With master weights ``params`` are
        the fp32 masters and ``models`` the fp16/bf16 params they are copied back to (else
        ``models`` is empty)."""
        raise NotImplementedError

    # -- torch.optim.Optimizer API ------------------------------------------------
    def add_param_group(self, param_group: dict[str, Any]) -> None:
        super().add_param_group(param_group)
        self._plans.clear()
        if self.flat:
            params = self.param_groups[-1]["params"]
            self._group_flat.append((params, FlatBuffers.flatten(params)))

    @property
    def _flat(self) -> list[FlatBuffers]:
        """Every flat buffer, of all param groups."""
        return [fb for _, fbs in self._group_flat for fb in fbs]

    def _group_buffers(self) -> list[list[FlatBuffers]]:
        """Each param group's flat buffers, in the groups' order: found again by the groups'
        params lists when groups were removed or reordered since (``param_groups.pop(i)``)."""
        if len(self._group_flat) == len(self.param_groups) and all(
                map(operator.is_, (ps for ps, _ in self._group_flat),
                    (g["params"] for g in self.param_groups))):
            return [fbs for _, fbs in self._group_flat]
        by_list = {id(entry[0]): entry for entry in self._group_flat}
        entries = [by_list.get(id(g["params"])) for g in self.param_groups]
        if None in entries:
            raise RuntimeError("flat=True: a param group was added to param_groups directly, or "
                               "its params list replaced; add groups with add_param_group")
        self._group_flat = entries
        self._plans.clear()  # they are keyed by group position
        return [fbs for _, fbs in entries]

    def zero_grad(self, set_to_none: bool = True) -> None:
        """As ``torch.optim.Optimizer.zero_grad``; with ``flat=True`` gradients stay
        allocated (views into one buffer) and are zeroed with one fill per buffer, but
        params that do not require grad get none (see :mod:`fastext.optim._flat`)."""
        if not self.flat:
            return super().zero_grad(set_to_none)
        for fb in self._flat:
            fb.zero_grad()

    @torch.no_grad()
    def step(self, closure: Callable[[], Any] | None = None) -> Any:
        """Performs one optimization step (see ``torch.optim.Optimizer.step``)."""
        loss = None
        if closure is not None:
            with torch.enable_grad():
                loss = closure()
        grad_scale = getattr(self, "grad_scale", None)
        found_inf = getattr(self, "found_inf", None)
        # The plans hold the state tensors: state reset or replaced from outside
        # (`state.clear()`, a new `state`, `del state[p]`, `state[p] = {...}`,
        # `state[p].clear()`) makes them stale, so the state and its per-param dicts are
        # compared, by identity and size, with what the plans were built from (two C-level
        # maps: ~4 us each for 161 params here, where comparing every state tensor cost
        # ~20 us, a third of a flat step). In-place changes
        # (`.zero_()`, `copy_`) need no rebuild; a tensor replaced inside a param's dict
        # (`state[p]["exp_avg"] = t`) is not seen: replace the dict (see the class doc).
        seen = self._state_seen
        fresh = (seen is not None and seen[0] is self.state and len(seen[1]) == len(self.state)
                 and all(map(operator.is_, self.state.values(), seen[1]))
                 and tuple(map(len, self.state.values())) == seen[2])  # `state[p].clear()`
        if not fresh:
            self._plans.clear()
        rebuilt = False
        # Every group's plan first, then the launches: a param refused while planning (a
        # dtype the kernels lack, a sparse grad) must not find other groups already stepped.
        launches = []
        group_fbs = self._group_buffers() if self.flat else None
        for gi, group in enumerate(self.param_groups):
            params = group["params"]
            plan = self._plans.get(gi)
            if self.flat:
                fbs = group_fbs[gi]
                for fb in fbs:  # params re-laid out since (their grads too): back into fb
                    fb.check_layout()
                    if fb.step_buf._version != self._step_versions.get(fb):
                        # Counters edited: one slot may no longer be right, or be again. The
                        # plan goes now, so a step refused below leaves none that is stale.
                        fb.recheck_steps()
                        self._plans.pop(gi, None)
                        plan = None
            grads = [p.grad for p in params]
            if self.flat:
                for fb in fbs:  # one buffer holds the group's params in order: reuse grads
                    fb.adopt_grads(grads if len(fbs) == 1 else None)
                # A param frozen after a zero_grad still holds that zero view: count it as
                # gradless, so neither it nor (with it) its whole buffer as one slot steps.
                # One C-level pass (~14 us for 161 params here), flat only: without
                # flat=True, as in torch, a grad is stepped whether or not it is required.
                if not all(map(REQUIRES_GRAD, params)):
                    grads = [g if p.requires_grad else None
                             for p, g in zip(params, grads, strict=True)]
            # The bucketing is redone only when which params have a gradient, the params
            # themselves, the state names or the state (above) change. Per step, Python reads
            # each .grad once and checks the rest with C-level maps (no per-param Python
            # frames; `count(None)` or `==` would call Tensor.__eq__); then one native call
            # per bucket. On a GPU this host work, not the kernel, is what a step of many
            # small params waits for.
            has_grad = tuple(map(operator.is_not, grads, _NONES))
            names = self._buffer_names(group)
            if (plan is None or plan[1] != has_grad or plan[2] != names
                    or len(plan[0]) != len(params) or not all(map(operator.is_, params, plan[0]))):
                plan = (tuple(params), has_grad, names, self._plan(group, params, grads))
                self._plans[gi] = plan
                rebuilt = True
                if self.flat:
                    for fb in fbs:  # the counters as the plan left them
                        self._step_versions[fb] = fb.step_buf._version
            launches.append((group, grads, plan[3]))
        if rebuilt:  # building a plan creates state
            self._state_seen = (self.state, tuple(self.state.values()),
                                tuple(map(len, self.state.values())))
        for group, grads, buckets in launches:
            for b in buckets:
                if b.flat is not None:
                    # The op sees the flat buffer, not the params, whose version counters are
                    # their own: moved here, as the op moves those of the params it is given
                    # (12 us for 161 params with torch 2.11 on the 2-core VM).
                    torch._C._increment_version(b.flat.params)
                    gs = [b.flat.grad_buf]
                else:
                    gs = grads if b.index is None else [grads[i] for i in b.index]
                self._launch(group, b.params, gs, b.cols, b.models, _on(grad_scale, b.device),
                             _on(found_inf, b.device))
        return loss

    def _plan(self, group: dict[str, Any], params: list[Tensor],
              grads: list[Tensor | None]) -> list[_Bucket]:
        """Groups the params with a gradient into (device, dtype, master?) buckets, creating
        missing state, and gathers each bucket's state lists once."""
        names = (*self._buffer_names(group), "step")
        by_key: dict[tuple, tuple[list[int], list[dict[str, Tensor]]]] = {}
        restarted: dict[FlatBuffers, list[int]] = {}  # flat buffer -> [zeroed, copied] counters
        for i, (p, g) in enumerate(zip(params, grads, strict=True)):
            if g is None:
                continue
            if g.is_sparse:
                raise RuntimeError(f"{type(self).__name__} does not support sparse gradients "
                                   "(use torch.optim.SparseAdam)")
            if p.dtype not in STEP_DTYPES:
                raise RuntimeError(f"{type(self).__name__} steps float32, float64, float16 and "
                                   f"bfloat16 params, got {p.dtype}")
            idx, states = by_key.setdefault((p.device, p.dtype, self._uses_master(p)), ([], []))
            idx.append(i)
            fb = self._flat_of(p) if self.flat else None
            if fb is None:
                states.append(self._state_for(p, group))
                continue
            st = self.state[p]
            how = fb.bind_state(p, st, names[:-1])
            if how != "kept":
                restarted.setdefault(fb, [0, 0])[how == "copied"] += 1
            states.append(st)
        for fb, (zeroed, copied) in restarted.items():
            # Some counters (re)started here: they all agree only if every one started at 0.
            fb.steps_in_step = not copied and zeroed == len(fb.params)
        buckets = []
        for (dev, _, master), (idx, states) in by_key.items():
            ps = [params[i] for i in idx]
            fb = self._flat_of(ps[0]) if self.flat else None
            if (fb is not None and fb.steps_in_step and len(ps) == len(fb.params)
                    and all(map(fb.owns, ps))):
                # Every param of the flat buffer steps, all at the same count: one slot.
                cols = {n: [fb.state_bufs[n]] for n in names if n != "step"}
                cols["step"] = [fb.step_buf]
                buckets.append(_Bucket(dev, idx, [fb.param_buf], cols, [], fb))
                continue
            if fb is not None:
                for q in self._flat:  # a partial step: step counts diverge for good
                    if any(q.owns(p) for p in ps):
                        q.steps_in_step = False
            cols = {n: [st[n] for st in states] for n in names}
            whole = idx == list(range(len(params)))
            buckets.append(_Bucket(dev, None if whole else idx,
                                   [st["master"] for st in states] if master else ps,
                                   cols, ps if master else [], None))
        return buckets

    def __getstate__(self) -> dict[str, Any]:
        # torch pickles defaults, state and param_groups; the layout options go along. The
        # flat buffers do not: the state (views into them) carries their contents.
        return {**super().__getstate__(), "flat": self.flat,
                "master_weights": self.master_weights}

    def __copy__(self) -> FusedOptimizer:
        # As torch's shallow copy (shared state and groups), sharing the flat buffers too:
        # laying the shared params out afresh would cut them from this optimizer's buffers.
        new = type(self).__new__(type(self))
        new.__dict__["_group_flat"] = self._group_flat
        new.__setstate__(self.__getstate__())
        return new

    def __setstate__(self, state: dict[str, Any]) -> None:
        # Runs on unpickling / deepcopy (a bare object) and inside load_state_dict.
        unpickled = "_group_flat" not in self.__dict__
        super().__setstate__(state)
        self.__dict__.setdefault("flat", False)
        self.__dict__.setdefault("master_weights", False)
        self.__dict__.setdefault("_plans", {})
        self.__dict__.setdefault("_state_seen", None)
        self.__dict__.setdefault("_step_versions", {})
        self.__dict__.setdefault("_group_flat", [])
        for group in self.param_groups:  # groups saved by older torch lack newer keys
            for k, v in self.defaults.items():
                group.setdefault(k, v)
        if unpickled and self.flat:  # lay the (copied) params out afresh, state included
            self._group_flat = [(g["params"], FlatBuffers.flatten(g["params"]))
                                for g in self.param_groups]
            for fb in self._flat:
                fb.adopt_states(self.state)

    @torch.no_grad()
    def refresh_master_weights(self) -> None:
        """Copies the (fp16/bf16) params into their fp32 master weights: call it after
        loading model weights without this optimizer's state."""
        for p, state in self.state.items():
            if isinstance(p, Tensor) and "master" in state:  # not state kept for no param
                state["master"].copy_(p)

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        # torch casts every floating state tensor to its param's dtype; master-weight state
        # (fp32 for an fp16/bf16 param) must keep fp32, so set it aside and restore it.
        saved_ids = itertools.chain.from_iterable(g["params"] for g in state_dict["param_groups"])
        own = itertools.chain.from_iterable(g["params"] for g in self.param_groups)
        keep = {p: {k: v for k, v in state_dict["state"].get(pid, {}).items()
                    if k != "step" and isinstance(v, Tensor) and v.is_floating_point()}
                for pid, p in zip(saved_ids, own, strict=False) if self._uses_master(p)}
        if self._flat:
            # The state_dict may hold views of our own flat buffers (a reload of our own
            # state): copy it. Params it has no state for start afresh (below, once torch
            # has accepted it: a refused state_dict leaves the live state as it was).
            state_dict = {**state_dict, "state": {
                k: {n: v.clone() if isinstance(v, Tensor) else v for n, v in st.items()}
                for k, st in state_dict["state"].items()}}
        super().load_state_dict(state_dict)
        self._plans.clear()
        self._state_seen = None  # holds the old state's tensors
        for p, values in keep.items():
            for k, v in values.items():
                self.state[p][k] = v.to(device=p.device, dtype=torch.float32)
        for p, st in self.state.items():
            if not isinstance(p, Tensor):  # state for an id no group lists: kept as is (torch)
                continue
            # A loaded master is trusted only where it still rounds to the param: one kept by
            # an optimizer without masters (never updated) or saved before the param was
            # changed would be copied over the param at the next step. A dropped one is
            # rebuilt from the param then (which may be loaded after this optimizer).
            if "master" in st and not (self._uses_master(p) and st["master"].to(p.dtype).equal(p)):
                del st["master"]
            # torch keeps `step` on the CPU for its non-fused paths; ours lives with the param.
            if "step" in st:
                step = torch.as_tensor(st["step"], dtype=torch.float32)
                st["step"] = step.to(p.device).reshape(())
        if self.flat:
            for fb in self._flat:
                fb.step_buf.zero_()
                for buf in fb.state_bufs.values():
                    buf.zero_()
                fb.adopt_states(self.state)  # decides whether the loaded counters agree
                self._step_versions[fb] = fb.step_buf._version

    # -- state ----------------------------------------------------------------------
    def _uses_master(self, p: Tensor) -> bool:
        return self.master_weights and p.dtype in _LOW

    def _state_for(self, p: Tensor, group: dict[str, Any]) -> dict[str, Tensor]:
        """``p``'s state, missing entries created (a param of no flat buffer; those of one
        go through :meth:`FlatBuffers.bind_state`)."""
        state = self.state[p]
        if "step" not in state:
            state["step"] = torch.zeros((), dtype=torch.float32, device=p.device)
        master = self._uses_master(p)
        if master and "master" not in state:
            state["master"] = p.detach().clone(memory_format=torch.preserve_format).float()
        missing = [n for n in self._buffer_names(group) if n not in state]
        if missing:
            like = state["master"] if master else p
            for name in missing:
                state[name] = torch.zeros_like(like, memory_format=torch.preserve_format)
        return state

    def _flat_of(self, p: Tensor) -> FlatBuffers | None:
        for fb in self._flat:
            if fb.owns(p):
                return fb
        return None
