"""The CUDA BatchNorm kernels (csrc/kernels/cuda/bn_relu_cuda.cu: BatchNorm + ReLU and the
in-place BatchNorm + LeakyReLU) run on the CPU emulator (tests/cuda_emu_lib.py) with the
arguments their glue gives them, against the CPU ops (themselves tested against
nn.BatchNorm*d): outputs, statistics, running statistics, num_batches_tracked and every
gradient, over shapes, layouts, dtypes, options and the grid sizes of 1, 4 and 132 SMs.
Every buffer is padded with NaN (a stray read shows in the results, a stray write in the
pads), the reduction's workspace starts as NaN (it needs no initialisation), and the arrival
counter must read 0 after each call (the next call on the stream relies on it)."""

from __future__ import annotations

import math
import random

import pytest
import torch
from cuda_emu_lib import (
    DTYPES,
    Emulator,
    activation,
    build,
    check_pads,
    clones,
    padded,
    padded_empty,
    ptr,
)

import fastext  # noqa: F401  (registers torch.ops.fastext)

OPS = torch.ops.fastext
TOL = {torch.float32: dict(rtol=1e-4, atol=1e-5), torch.float64: dict(rtol=1e-9, atol=1e-10),
       torch.float16: dict(rtol=1e-2, atol=1e-2), torch.bfloat16: dict(rtol=5e-2, atol=5e-2)}
PARAM_TOL = {torch.float32: dict(rtol=1e-4, atol=1e-4), torch.float64: dict(rtol=1e-9, atol=1e-9),
             torch.float16: dict(rtol=1e-2, atol=3e-2), torch.bfloat16: dict(rtol=2e-2, atol=1e-1)}


@pytest.fixture(scope="module")
def lib():
    return build()


@pytest.fixture(scope="module")
def lib64():
    """The kernels built to index every tensor with 64 bits (see csrc/kernels/cuda/index32.cuh),
    as a GPU would only for tensors of 2^31 elements and more."""
    return build("-DFX_INDEX32_LIMIT=0")


def stat_dtype(dtype: torch.dtype) -> torch.dtype:
    return torch.float64 if dtype == torch.float64 else torch.float32


def bn_shape(x: torch.Tensor) -> tuple[int, int, int, int]:
    """(N, C, S, channels_last) as the glue's bn_input reads them."""
    cl = x.dim() == 4 and not x.is_contiguous() and x.is_contiguous(
        memory_format=torch.channels_last)
    return x.shape[0], x.shape[1], math.prod(x.shape[2:]), int(cl)


def in_layout(t: torch.Tensor, like: torch.Tensor) -> torch.Tensor:
    cl = bn_shape(like)[3]
    return t.contiguous(memory_format=torch.channels_last) if cl else t.contiguous()


def opt(t):
    return None if t is None else padded(t)


def emu_forward(emu, x, w, b, rm, rv, nbt, train, momentum, eps, slope=None):
    """The CUDA glue's forward (forward_stats, then the elementwise pass) on the emulator:
    (out, mean, invstd, var, running_mean, running_var, num_batches_tracked, launches)."""
    xp = padded(x)  # contiguous in the layout the glue would give the kernels
    shape, dt, sd = bn_shape(xp), DTYPES[x.dtype], stat_dtype(x.dtype)
    C = shape[1]
    abn = int(slope is not None)  # the in-place layer scales by |w| + eps
    wp, bp = opt(None if w is None else w.to(sd)), opt(None if b is None else b.to(sd))
    rmp, rvp, nbtp = opt(rm), opt(rv), opt(nbt)
    mean, invstd, var = (padded_empty((C,), sd) for _ in range(3))
    coef = padded_empty((2 * C,), sd)
    work = arrivals = None
    start = emu.launches()
    if train:
        work = padded_empty((emu.bn_reduce_work(*shape),), torch.float64)
        arrivals = padded(torch.zeros(1, dtype=torch.int32))
        emu.bn_train_stats(ptr(xp), dt, *shape, ptr(wp), ptr(bp), eps, abn, ptr(mean),
                           ptr(invstd), ptr(var), ptr(coef), ptr(rmp), ptr(rvp), momentum,
                           ptr(nbtp), ptr(work), ptr(arrivals))
        assert arrivals.item() == 0, "the arrival counter must be left at 0"
        if nbtp is not None and C == 0:
            nbtp += 1  # the glue counts a call without channels itself
    else:
        emu.bn_eval_coef(dt, C, ptr(rmp), ptr(rvp), ptr(wp), ptr(bp), eps, abn, ptr(mean),
                         ptr(invstd), ptr(var), ptr(coef))
    if slope is None:
        out = padded_empty(xp)
        emu.bn_fwd(ptr(xp), ptr(out), dt, *shape, ptr(coef))
    else:
        out = xp
        emu.bn_leaky_fwd(ptr(xp), ptr(xp), dt, *shape, ptr(coef), slope)
    check_pads(xp, out, wp, bp, rmp, rvp, nbtp, mean, invstd, var, coef, work, arrivals)
    return out, mean, invstd, var, rmp, rvp, nbtp, emu.launches() - start


def emu_backward(emu, dy, v, w, b, mean, invstd, use_batch_stats, slope=None, eps=1e-5):
    """The CUDA glue's backward (backward_call, then the launcher) on the emulator, v being
    the input (BatchNorm + ReLU) or the output (in place): (dx, dweight, dbias, launches)."""
    vp = padded(v)
    shape, dt, sd = bn_shape(vp), DTYPES[v.dtype], stat_dtype(v.dtype)
    N, C, S, _ = shape
    dyp = padded(in_layout(dy, vp))
    wp, bp = opt(None if w is None else w.to(sd)), opt(None if b is None else b.to(sd))
    meanp, invstdp = padded(mean.to(sd)), padded(invstd.to(sd))
    dw = None if w is None else padded_empty((C,), sd)
    db = None if b is None else padded_empty((C,), sd)
    coef = padded_empty((5 * C,), sd)
    reduces = N * S > 0
    work = padded_empty((emu.bn_reduce_work(*shape),), torch.float64) if reduces else None
    arrivals = padded(torch.zeros(1, dtype=torch.int32)) if reduces else None
    dx = padded_empty(vp)
    start = emu.launches()
    tensors = [ptr(dyp), ptr(vp), ptr(dx), dt, *shape, ptr(wp), ptr(bp), ptr(meanp),
               ptr(invstdp)]
    outs = [ptr(dw), ptr(db), ptr(coef), ptr(work), ptr(arrivals)]
    if slope is None:
        emu.bn_bwd(*tensors, int(use_batch_stats), *outs)
    else:  # the in-place layer's weight enters as |w| + eps
        emu.bn_leaky_bwd(*tensors, eps, int(use_batch_stats), slope, *outs)
    if reduces:
        assert arrivals.item() == 0, "the arrival counter must be left at 0"
    check_pads(vp, dyp, dx, wp, bp, meanp, invstdp, dw, db, coef, work, arrivals)
    return dx, dw, db, emu.launches() - start


def params(C, sd, affine):
    g = torch.Generator().manual_seed(C)
    w = torch.randn(C, generator=g, dtype=sd) if affine in ("both", "weight") else None
    b = torch.randn(C, generator=g, dtype=sd) if affine in ("both", "bias") else None
    return w, b


def check_layer(emu, shape, dtype=torch.float32, channels_last=False, affine="both",
                track=True, steps=2, slope=None, momentum=0.1, eps=1e-5):
    """`steps` training steps (running statistics accumulate), then an evaluation step, each
    forward and backward, against the CPU ops."""
    sd, C = stat_dtype(dtype), shape[1]
    w, b = params(C, sd, affine)
    if slope is not None and w is not None and C > 1:
        w[1] = 0  # the in-place layer scales by |w| + eps; sign(0) = 0 in its gradient
    rm = torch.randn(C, dtype=sd) * 0.1 if track else None
    rv = torch.rand(C, dtype=sd) + 0.5 if track else None
    nbt = torch.tensor([3]) if track else None
    ref_rm, ref_rv, ref_nbt = clones((rm, rv, nbt))
    tol, ptol = TOL[dtype], PARAM_TOL[dtype]
    for step in range(steps + (1 if track else 0)):
        train = step < steps
        x = activation(shape, dtype, channels_last, seed=step)
        dy = activation(shape, dtype, channels_last, seed=100 + step)
        out, mean, invstd, var, rm, rv, nbt, nf = emu_forward(emu, x, w, b, rm, rv, nbt, train,
                                                              momentum, eps, slope)
        if slope is None:
            r_out, r_mean, r_invstd, r_var = OPS.bn_relu_forward(x, w, b, ref_rm, ref_rv, ref_nbt,
                                                                 train, momentum, eps)
        else:
            r_out = x.clone()
            r_mean, r_invstd = OPS.bn_leaky_relu_(r_out, w, b, ref_rm, ref_rv, ref_nbt, train,
                                                  momentum, eps, slope)
            r_var = None
        assert nf == (2 if C else 0), f"a forward is two launches, got {nf}"
        torch.testing.assert_close(out.float(), r_out.float(), **tol)
        torch.testing.assert_close(mean, r_mean, **ptol)
        torch.testing.assert_close(invstd, r_invstd, **ptol)
        if r_var is not None:
            torch.testing.assert_close(var, r_var, **ptol)
        for mine, ref in ((rm, ref_rm), (rv, ref_rv), (nbt, ref_nbt)):
            if ref is not None:
                torch.testing.assert_close(mine, ref, rtol=1e-5, atol=1e-6)
        v, r_v = (x, x) if slope is None else (out, r_out)
        dx, dw, db, nb = emu_backward(emu, dy, v, w, b, mean, invstd, train, slope, eps)
        if slope is None:
            r_dx, r_dw, r_db = OPS.bn_relu_backward(dy, r_v, w, b, r_mean, r_invstd, train)
        else:
            r_dx, r_dw, r_db = OPS.bn_leaky_relu_backward(dy, r_v, w, b, r_mean, r_invstd, train,
                                                          eps, slope)
        assert nb == (2 if C else 0), f"a backward is two launches, got {nb}"
        torch.testing.assert_close(dx.float(), r_dx.float(), **tol)
        if w is not None:
            torch.testing.assert_close(dw, r_dw.to(sd), **ptol)
        if b is not None:
            torch.testing.assert_close(db, r_db.to(sd), **ptol)


SHAPES = [((4, 3, 5, 7), False), ((4, 3, 5, 7), True), ((1, 2, 6, 5), False),
          ((1, 2, 6, 5), True), ((7, 3, 1, 1), False), ((3, 1, 4, 4), True),
          ((2, 512, 3, 3), False), ((2, 512, 3, 3), True), ((3, 21, 5, 7), True),
          ((5, 7, 9, 11), False), ((8, 5), False), ((66, 37), False), ((3, 4, 7), False),
          ((2, 600, 1, 2), True), ((8, 3, 20, 21), False), ((8, 3, 20, 21), True),
          ((701, 5), False)]  # the last three: every slot of the loops' unrolled tiles


@pytest.mark.parametrize("sms", [1, 4, 132])
@pytest.mark.parametrize(("shape", "channels_last"), SHAPES, ids=str)
def test_bn_relu_kernels_match_cpu(lib, sms, shape, channels_last):
    check_layer(Emulator(lib, sms=sms), shape, channels_last=channels_last)


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16, torch.float64], ids=str)
@pytest.mark.parametrize("channels_last", [False, True], ids=["nchw", "nhwc"])
def test_bn_relu_kernels_dtypes(lib, dtype, channels_last):
    check_layer(Emulator(lib, sms=8), (4, 6, 5, 3), dtype, channels_last)


@pytest.mark.parametrize(("shape", "channels_last"), [((16, 40, 24, 24), False),
                                                       ((16, 40, 24, 24), True),
                                                       ((3000, 37), False)], ids=str)
def test_bn_relu_kernels_many_splits_float64(lib, shape, channels_last):
    """An H200's grid (132 SMs): several blocks per channel, whose partials the last block
    adds; float64, so that no element sits on the ReLU's edge by rounding alone."""
    check_layer(Emulator(lib, sms=132), shape, torch.float64, channels_last, steps=1)


@pytest.mark.parametrize("affine", ["none", "weight", "bias"])
@pytest.mark.parametrize("track", [True, False], ids=["track", "no_track"])
def test_bn_relu_kernels_options(lib, affine, track):
    check_layer(Emulator(lib, sms=4), (3, 4, 5, 5), affine=affine, track=track, momentum=0.3,
                eps=1e-3)


@pytest.mark.parametrize("slope", [0.01, 0.3])
@pytest.mark.parametrize(("shape", "channels_last"),
                         [((4, 3, 5, 7), False), ((4, 3, 5, 7), True), ((2, 300, 2, 2), True),
                          ((1, 2, 6, 5), False), ((66, 37), False), ((3, 4, 7), False)], ids=str)
def test_inplace_abn_kernels_match_cpu(lib, slope, shape, channels_last):
    check_layer(Emulator(lib, sms=132), shape, channels_last=channels_last, slope=slope)


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16, torch.float64], ids=str)
def test_inplace_abn_kernels_dtypes(lib, dtype):
    check_layer(Emulator(lib, sms=4), (4, 6, 5, 3), dtype, True, slope=0.1)


@pytest.mark.parametrize("affine", ["none", "weight", "bias"])
def test_inplace_abn_kernels_options(lib, affine):
    check_layer(Emulator(lib, sms=4), (3, 4, 5, 5), affine=affine, track=False, slope=0.05)


@pytest.mark.parametrize("dtype", [torch.float32, torch.float16], ids=str)
@pytest.mark.parametrize("slope", [None, 0.1])
@pytest.mark.parametrize(("shape", "channels_last"),
                         [((4, 3, 5, 7), False), ((4, 3, 5, 7), True), ((2, 300, 2, 2), True),
                          ((5, 40, 9, 11), False), ((66, 37), False), ((3, 4, 7), False)],
                         ids=str)
def test_64bit_index_kernels_match_cpu(lib, lib64, dtype, slope, shape, channels_last):
    """The 64-bit index instantiations of every BatchNorm kernel (reductions, finish and
    elementwise passes), which no GPU test reaches (they need 2^31 elements)."""
    assert Emulator(lib).index32_limit() == 2**31 and Emulator(lib64).index32_limit() == 0
    check_layer(Emulator(lib64, sms=132), shape, dtype, channels_last, slope=slope)


def test_division_by_multiplication_is_exact(lib):
    """csrc/kernels/cuda/fast_div.cuh's n / d for the 32-bit index path (n, d < 2^31): every
    power of two and its neighbours, the largest values, and random ones."""
    emu, g = Emulator(lib), random.Random(3)
    top = 2**31 - 1
    ds = {1, 2, 3, 5, 7, 49, 196, 3136, top, top - 1, *(g.randint(1, top) for _ in range(200))}
    ds |= {v for k in range(1, 31) for v in (2**k - 1, 2**k, 2**k + 1)}
    for d in sorted(ds):
        ns = {0, 1, d - 1, d, d + 1, 2 * d - 1, 2 * d, top, top - 1, top - d,
              *(g.randint(0, top) for _ in range(50)), *(g.randint(0, 4 * d) for _ in range(20))}
        for n in ns:
            if 0 <= n <= top:
                assert emu.div_u32(n, d) == n // d, (n, d)


def test_zero_channels_launch_nothing(lib):
    """(N, 0, H, W): no kernel runs (a zero-block launch is an error on a GPU)."""
    check_layer(Emulator(lib), (2, 0, 3, 3), steps=1)


@pytest.mark.parametrize("slope", [None, 0.1])
def test_backward_of_an_empty_batch(lib, slope):
    """N = 0 in evaluation: no reduction, the finish alone gives zero dweight and dbias."""
    emu = Emulator(lib)
    w, b = params(5, torch.float32, "both")
    v = torch.empty(0, 5, 3, 3)
    mean, invstd = torch.randn(5), torch.rand(5) + 0.5
    dx, dw, db, n = emu_backward(emu, torch.empty_like(v), v, w, b, mean, invstd, False, slope)
    assert n == 1 and dx.shape == v.shape
    assert torch.equal(dw, torch.zeros(5)) and torch.equal(db, torch.zeros(5))


@pytest.mark.parametrize("channels_last", [False, True], ids=["nchw", "nhwc"])
def test_results_do_not_depend_on_block_order(lib, channels_last):
    """The last block adds each channel's partials in a fixed order, whichever block arrives
    last: the emulator runs the blocks in another order for each seed."""
    x = activation((6, 5, 16, 16), torch.float32, channels_last)
    dy = activation((6, 5, 16, 16), torch.float32, channels_last, seed=1)
    w, b = params(5, torch.float32, "both")
    runs = []
    for seed in range(3):
        emu = Emulator(lib, sms=132, seed=seed)
        out, mean, invstd, *_ = emu_forward(emu, x, w, b, None, None, None, True, 0.1, 1e-5)
        runs.append((out, mean, invstd, *emu_backward(emu, dy, x, w, b, mean, invstd, True)[:3]))
    for other in runs[1:]:
        for a, c in zip(runs[0], other, strict=True):
            assert torch.equal(a, c)


def random_configs(n: int, seed: int = 7):
    """Shapes, layouts and SM counts drawn at random (seeded): grid arithmetic meets sizes
    nobody chose, e.g. channel counts around the 32-channel tile and the finish's 256."""
    g = random.Random(seed)
    for _ in range(n):
        cl = g.random() < 0.4
        dims = 4 if cl else g.choice([2, 3, 4])
        spatial = [g.randint(1, 9) for _ in range(dims - 2)]
        n = g.choice([1, 2, 3, 5, 17])
        n = 2 if n * math.prod(spatial) == 1 else n  # training needs two values per channel
        shape = (n, g.choice([1, 2, 31, 32, 33, 64, 255, 257, 300]), *spatial)
        yield pytest.param(shape, cl, g.choice([1, 3, 4, 108, 132]), g.choice([None, 0.2]),
                           id=f"{shape}-{'nhwc' if cl else 'nchw'}")


@pytest.mark.parametrize(("shape", "channels_last", "sms", "slope"), list(random_configs(24)))
def test_random_shapes_float64(lib, shape, channels_last, sms, slope):
    check_layer(Emulator(lib, sms=sms), shape, torch.float64, channels_last, steps=1,
                slope=slope)
