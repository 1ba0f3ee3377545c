"""The arrival counters of the CUDA kernels whose last block finishes the work
(csrc/kernels/cuda/last_block.cuh, csrc/ops/arrival_counter.cpp): eager calls take
consecutive slots of a per-device ring of 65,536 counters, and each call's last block must
leave its slot at 0 for the call that takes it next, 65,536 calls later. A slot left
non-zero would only show then, so these tests make more calls than the ring holds and check
every one of them: BatchNorm + ReLU forward and backward in every layout, and AdamW steps
skipped by ``found_inf`` (whose blocks arrive without updating) followed by real steps.
Skipped where no GPU exists."""

import pytest
import torch
import torch.nn.functional as F

import fastext

pytestmark = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a GPU")

RING = 65_536  # kRing in csrc/ops/arrival_counter.cpp
EXTRA = 256  # calls beyond one round of the ring


def _bn_case(shape, channels_last):
    x = torch.randn(shape, device="cuda") * 2 + 1
    if channels_last:
        x = x.contiguous(memory_format=torch.channels_last)
    c = shape[1]
    w, b = torch.randn(c, device="cuda"), torch.randn(c, device="cuda")
    dy = torch.randn_like(x)
    xr, wr, br = (t.detach().clone().requires_grad_() for t in (x, w, b))
    yr = torch.relu(F.batch_norm(xr, None, None, wr, br, training=True))
    want = (yr.detach(), *torch.autograd.grad(yr, (xr, wr, br), dy))
    return (x, w, b, dy), want


def test_ring_wraps_bn_relu():
    """Forward and backward (one slot each) alternate over more calls than the ring holds,
    cycling through NCHW, channels-last and (N, C) inputs; every call's output and
    gradients are checked (on the device, so the loop never waits for the GPU)."""
    torch.manual_seed(0)
    cases = [_bn_case((4, 5, 3, 3), False), _bn_case((4, 5, 3, 3), True),
             _bn_case((6, 40), False)]
    worst = torch.zeros(4, device="cuda")
    for i in range((RING + EXTRA) // 2 + 1):
        (x, w, b, dy), want = cases[i % len(cases)]
        out, mean, invstd, _ = torch.ops.fastext.bn_relu_forward(x, w, b, None, None, None,
                                                                 True, 0.1, 1e-5)
        grads = torch.ops.fastext.bn_relu_backward(dy, x, w, b, mean, invstd, True)
        for k, (got, ref) in enumerate(zip((out, *grads), want, strict=True)):
            worst[k] = torch.maximum(worst[k], (got - ref).abs().max())
    assert worst.max().item() < 1e-4, worst.tolist()


def test_ring_wraps_adamw_skipped_steps():
    """More skipped AdamW steps than the ring holds (each launch's blocks still count
    themselves on the slot), then real steps on the slots they used: params and step
    counters as torch.optim.AdamW's after the real steps alone."""
    torch.manual_seed(0)
    p = torch.randn(3000, device="cuda")
    ref = p.clone().requires_grad_()
    state = [torch.zeros_like(p), torch.zeros_like(p)]
    step = torch.zeros(1, device="cuda")
    grad = torch.randn_like(p)
    found_inf = torch.ones(1, device="cuda")

    def fused_step():
        fastext.ops.adamw_([p], [grad], [state[0]], [state[1]], [], [step], lr=1e-2,
                           weight_decay=0.1, found_inf=found_inf)

    for _ in range(RING + EXTRA):
        fused_step()
    assert torch.equal(step, torch.zeros(1, device="cuda"))
    found_inf.zero_()
    ref_opt = torch.optim.AdamW([ref], lr=1e-2, weight_decay=0.1, foreach=False)
    for _ in range(3):
        fused_step()
        ref.grad = grad.clone()
        ref_opt.step()
    torch.testing.assert_close(p, ref.detach(), rtol=1e-5, atol=1e-6)
    assert step.item() == 3.0
