"""Drives a fastext optimizer and its torch.optim reference side by side."""

from __future__ import annotations

from collections.abc import Callable

import torch

LOW = (torch.float16, torch.bfloat16)

# Tolerances per dtype after ~10 steps: the low precisions may differ by a rounding step.
TOL = {
    torch.float32: dict(rtol=1e-5, atol=1e-6),
    torch.float64: dict(rtol=1e-12, atol=1e-13),
    torch.float16: dict(rtol=2e-3, atol=1e-3),
    torch.bfloat16: dict(rtol=1.6e-2, atol=8e-3),
}


def clone_params(tensors: list[torch.Tensor],
                 dtype: torch.dtype | None = None) -> list[torch.Tensor]:
    """Leaf copies with the same strides (so transposed / sliced layouts survive)."""
    out = []
    for t in tensors:
        c = torch.empty_strided(t.size(), t.stride(), dtype=dtype or t.dtype, device=t.device)
        c.copy_(t)
        out.append(c.requires_grad_())
    return out


def run_pair(make_ours: Callable, make_ref: Callable, params: list[torch.Tensor], steps: int = 10,
             grad_mask: Callable[[int, int], bool] = lambda step, i: True,
             sched: Callable | None = None,
             after_step: Callable | None = None) -> tuple[list, list, object, object]:
    """Steps fastext (in the params' dtype) and the reference (same dtype; for fp16 / bf16 in
    float64, rounded to the low dtype after every step as ours stores it) with identical
    gradients; ``after_step(step, opt, ref_opt, ours, ref)`` runs after each step (state
    changed between steps). Returns both parameter lists and optimizers."""
    dtype = params[0].dtype
    ours = clone_params(params)
    ref = clone_params(params, torch.float64 if dtype in LOW else None)
    opt, ref_opt = make_ours(ours), make_ref(ref)
    scheds = (sched(opt), sched(ref_opt)) if sched else ()
    for step in range(steps):
        for i, (p, r) in enumerate(zip(ours, ref, strict=True)):
            if grad_mask(step, i):
                g = torch.randn(p.shape, device=p.device).to(p.dtype)
                p.grad, r.grad = g.clone(), g.to(r.dtype)
            else:
                p.grad = r.grad = None
        opt.step()
        ref_opt.step()
        if dtype in LOW:  # the reference stores what ours stores: low-precision params and state
            with torch.no_grad():
                for r in ref:
                    for t in [r, *(v for k, v in ref_opt.state[r].items() if k != "step")]:
                        t.copy_(t.to(dtype))
        for s in scheds:
            s.step()
        if after_step is not None:
            after_step(step, opt, ref_opt, ours, ref)
    return ours, ref, opt, ref_opt


def assert_close(ours: list[torch.Tensor], ref: list[torch.Tensor]) -> None:
    for p, r in zip(ours, ref, strict=True):
        torch.testing.assert_close(p.detach().double(), r.detach().double(), **TOL[p.dtype])
