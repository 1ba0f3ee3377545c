"""The CUDA loss-scaling and feature-loss kernels (csrc/kernels/cuda/amp_cuda.cu,
feature_loss_cuda.cu) run on the CPU emulator (tests/cuda_emu_lib.py): the fused inf/NaN
check and unscale against the CPU ops, the scale update against torch's rule as the CPU op
applies it, and the L1 sums and signs against torch, over dtypes, tensor lists that take
several launches, unaligned and empty tensors. Buffers are NaN-padded (finite pads where a
NaN would be found), and every written buffer's pads are checked."""

from __future__ import annotations

import pytest
import torch
from cuda_emu_lib import (
    DTYPES,
    PAD,
    Emulator,
    build,
    check_pads,
    doubles,
    int64s,
    ints,
    padded,
    padded_empty,
    ptr,
    ptrs,
)

import fastext  # noqa: F401  (registers torch.ops.fastext)

OPS = torch.ops.fastext
DT = [torch.float32, torch.float64, torch.float16, torch.bfloat16]
KMIN = 16384


@pytest.fixture(scope="module")
def lib():
    return build()


def finite_padded(t: torch.Tensor, offset: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    """``t`` inside a buffer of zeros (a stray read must not raise found_inf), ``offset``
    elements past a 16-byte boundary; returns (view, buffer)."""
    buf = torch.zeros(t.numel() + 2 * PAD + offset, dtype=t.dtype)
    view = buf[PAD + offset:PAD + offset + t.numel()].view(t.shape)
    view.copy_(t)
    return view, buf


def grads(sizes, dtype, bad=None, seed=0):
    g = torch.Generator().manual_seed(seed)
    ts = [(torch.randn(n, generator=g) * 100).to(dtype) for n in sizes]
    if bad is not None:
        i, j, v = bad
        ts[i][j] = v
    return ts


CASES = {"one": [100], "with empties": [0, 5, 0, KMIN + 3],
         "over a launch's 110 tensors": [7] * 115 + [3 * KMIN + 1]}


@pytest.mark.parametrize("dtype", DT, ids=str)
@pytest.mark.parametrize("sizes", CASES.values(), ids=CASES.keys())
@pytest.mark.parametrize("bad", [None, "inf", "nan", "-inf"])
@pytest.mark.parametrize("unscale", [False, True], ids=["check", "unscale"])
def test_check_and_unscale_match_cpu(lib, dtype, sizes, bad, unscale):
    emu = Emulator(lib, sms=132)
    where = None if bad is None else (len(sizes) - 1, sizes[-1] - 1, float(bad))
    ref = grads(sizes, dtype, where)
    mine = [finite_padded(t, offset=i % 3) for i, t in enumerate(ref)]
    found, r_found = padded(torch.zeros(1)), torch.zeros(1)
    inv = padded(torch.tensor([1 / 64]))
    if unscale:
        OPS.unscale_and_check_(ref, r_found, inv.clone())
    else:
        OPS.check_finite_(ref, r_found)
    emu.unscale(len(mine), ptrs([v for v, _ in mine]), int64s(sizes), DTYPES[dtype], ptr(found),
                ptr(inv) if unscale else None)
    assert found.item() == r_found.item() == (0.0 if bad is None else 1.0)
    for (view, buf), r in zip(mine, ref, strict=True):
        torch.testing.assert_close(view, r, equal_nan=True, rtol=0, atol=0)
        assert not buf[:PAD].any() and not buf[PAD + view.numel() + 2:].any()
    check_pads(found, inv)


@pytest.mark.parametrize("found", [0.0, 1.0])
@pytest.mark.parametrize("tracker", [0, 1999])
def test_update_scale_matches_cpu(lib, found, tracker):
    emu = Emulator(lib)
    scale, fi = padded(torch.tensor([2.0**16])), padded(torch.tensor([found]))
    tr = padded(torch.tensor([tracker], dtype=torch.int32))
    r_scale, r_tr = scale.clone(), tr.clone()
    OPS.update_scale_(r_scale, r_tr, fi.clone(), 2.0, 0.5, 2000)
    emu.update_scale(ptr(scale), ptr(tr), ptr(fi), 2.0, 0.5, 2000)
    assert scale.item() == r_scale.item() and tr.item() == r_tr.item()
    check_pads(scale, tr, fi)


def l1_segments(sizes, dtype, with_target):
    g = torch.Generator().manual_seed(len(sizes))
    a = [torch.randn(n, generator=g).to(dtype) for n in sizes]
    b = [torch.randn(n, generator=g).to(dtype) if with_target else None for n in sizes]
    scale = [0.5 + i for i in range(len(sizes))]
    index = [(len(sizes) - 1 - i) for i in range(len(sizes))]  # reversed: not the seg order
    return a, b, scale, index


L1_CASES = {"one": [1000], "with empties": [0, 3, 0, 2 * KMIN + 5],
            "over a table's 32 pairs": [5] * 33 + [KMIN + 1]}


@pytest.mark.parametrize("dtype", DT, ids=str)
@pytest.mark.parametrize("sizes", L1_CASES.values(), ids=L1_CASES.keys())
@pytest.mark.parametrize("with_target", [True, False], ids=["pairs", "no_target"])
@pytest.mark.parametrize("f64_losses", [False, True], ids=["f32_losses", "f64_losses"])
def test_l1_sums_and_signs_match_torch(lib, dtype, sizes, with_target, f64_losses):
    emu = Emulator(lib)
    a, b, scale, index = l1_segments(sizes, dtype, with_target)
    ap, bp = [padded(t) for t in a], [None if t is None else padded(t) for t in b]
    n = len(sizes)
    seg = [n, ptrs(ap), ptrs(bp), int64s(sizes)]
    tail = [doubles(scale), ints(index)]
    loss_dtype = torch.float64 if f64_losses else torch.float32
    work = padded_empty((emu.l1_work(*seg, *tail),), torch.float64)
    losses = padded_empty((n,), loss_dtype)
    emu.l1_sums(*seg, *tail, DTYPES[dtype], ptr(work), ptr(losses), int(f64_losses))
    diffs = [x.double() - (0 if y is None else y.double()) for x, y in zip(a, b, strict=True)]
    expect = torch.zeros(n, dtype=torch.float64)
    for i in range(n):
        expect[index[i]] = scale[i] * diffs[i].abs().sum()
    written = [index[i] for i in range(n) if sizes[i] > 0]  # the op zero-fills empty pairs
    torch.testing.assert_close(losses[written].double(), expect[written], rtol=1e-5, atol=1e-5)
    grad_losses = padded(torch.arange(1.0, n + 1, dtype=loss_dtype))
    outs = [padded_empty(t) for t in a]
    emu.l1_signs(*seg[:3], ptrs(outs), seg[3], *tail, DTYPES[dtype], ptr(grad_losses),
                 int(f64_losses))
    for i in range(n):
        want = (diffs[i].sign() * grad_losses[index[i]].double() * scale[i]).to(dtype)
        torch.testing.assert_close(outs[i], want, rtol=0, atol=0)
    check_pads(work, losses, grad_losses, *outs, *ap, *[t for t in bp if t is not None])
