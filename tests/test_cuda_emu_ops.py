"""The CUDA ops whole: the glue of csrc/ops/*_cuda.cpp (argument checks, scratch buffers,
dtype conversions, the running statistics' fallback, results) over the emulated kernels,
registered for CPU tensors as torch.ops.fastext_emu.* (tests/cuda_emu_lib.py), against the
CPU ops torch.ops.fastext.*. What differs from a GPU: one emulated device, launches that run
as they are made, and an arrival counter ring on the host (tests/cuda_emu/
arrival_counter_emu.cpp) that fails at once if a call leaves a counter non-zero. The AMP
flags must be on the GPU, so the optimizer ops are called without them here (the launcher
tests in test_cuda_emu_optim.py cover them)."""

from __future__ import annotations

import pytest
import torch
from cuda_emu_lib import Emulator, activation, build, clones, padded

import fastext  # noqa: F401  (registers torch.ops.fastext)

CPU = torch.ops.fastext
TOL = {torch.float32: dict(rtol=1e-4, atol=1e-5), torch.float64: dict(rtol=1e-9, atol=1e-10),
       torch.float16: dict(rtol=1e-2, atol=1e-2), torch.bfloat16: dict(rtol=5e-2, atol=5e-2)}


@pytest.fixture(scope="module")
def emu():
    Emulator(build(), sms=132)  # loads torch.ops.fastext_emu, on an H200's grid
    return torch.ops.fastext_emu


def close(mine, ref, dtype=torch.float32):
    if isinstance(ref, (list, tuple)):
        assert len(mine) == len(ref)
        for m, r in zip(mine, ref, strict=True):
            close(m, r, dtype)
        return
    assert mine.dtype == ref.dtype and mine.shape == ref.shape
    torch.testing.assert_close(mine, ref, **TOL.get(dtype, {}))


BN_SHAPES = [((4, 3, 5, 7), False), ((4, 3, 5, 7), True), ((66, 37), False),
             ((2, 40, 3), False), ((3, 300, 2, 2), True)]
BN_CASES = [(*c, dt) for c in BN_SHAPES for dt in (torch.float32, torch.float64)] + [
    (*c, dt) for c in BN_SHAPES[:2] for dt in (torch.float16, torch.bfloat16)]


@pytest.mark.parametrize(("shape", "channels_last", "dtype"), BN_CASES, ids=str)
@pytest.mark.parametrize("leaky", [False, True], ids=["relu", "leaky"])
def test_bn_ops_match_cpu(emu, dtype, shape, channels_last, leaky):
    """Two training steps and an evaluation step, forward and backward. Running statistics
    in float32 beside low-precision activations (updated in the kernel), and in float64
    beside float32 ones (the glue's fallback: torch ops after the kernel)."""
    C, sd = shape[1], torch.float64 if dtype in (torch.float64, torch.float32) else torch.float32
    g = torch.Generator().manual_seed(1)
    w = torch.randn(C, generator=g)  # the in-place layer scales by |w| + eps
    b = torch.randn(C, generator=g)
    state = [torch.randn(C, dtype=sd), torch.rand(C, dtype=sd) + 0.5, torch.tensor([2])]
    ref_state = clones(state)
    for step in range(3):
        train = step < 2
        x = padded(activation(shape, dtype, channels_last, step))
        dy = padded(activation(shape, dtype, channels_last, 10 + step))
        if leaky:
            out, ref_out = x.clone(), x.clone()
            mean, invstd = emu.bn_leaky_relu_(out, w, b, *state, train, 0.1, 1e-5, 0.1)
            r_mean, r_invstd = CPU.bn_leaky_relu_(ref_out, w, b, *ref_state, train, 0.1, 1e-5,
                                                  0.1)
            grads = emu.bn_leaky_relu_backward(dy, out, w, b, mean, invstd, train, 1e-5, 0.1)
            r_grads = CPU.bn_leaky_relu_backward(dy, ref_out, w, b, r_mean, r_invstd, train,
                                                 1e-5, 0.1)
        else:
            out, mean, invstd, var = emu.bn_relu_forward(x, w, b, *state, train, 0.1, 1e-5)
            ref_out, r_mean, r_invstd, r_var = CPU.bn_relu_forward(x, w, b, *ref_state, train,
                                                                  0.1, 1e-5)
            close(var, r_var)
            grads = emu.bn_relu_backward(dy, x, w, b, mean, invstd, train)
            r_grads = CPU.bn_relu_backward(dy, x, w, b, r_mean, r_invstd, train)
        close(out, ref_out, dtype)
        assert out.stride() == ref_out.stride()
        close([mean, invstd], [r_mean, r_invstd])
        close(grads[0], r_grads[0], dtype)
        close(grads[1:], r_grads[1:], torch.float32 if dtype != torch.float64 else dtype)
        close(state, ref_state)


@pytest.mark.parametrize("leaky", [False, True], ids=["relu", "leaky"])
@pytest.mark.parametrize("affine", ["none", "weight", "bias"])
def test_bn_ops_options_match_cpu(emu, leaky, affine):
    """Without weight or bias, without running statistics, with a bfloat16 weight beside
    float32 activations (the gradients come back in the parameters' dtypes)."""
    C = 5
    w = torch.randn(C).to(torch.bfloat16) if affine == "weight" else None
    b = torch.randn(C, dtype=torch.bfloat16) if affine == "bias" else None
    x = padded(activation((4, C, 3, 3), torch.float32, False))
    dy = padded(activation((4, C, 3, 3), torch.float32, False, seed=3))
    if leaky:
        out, ref_out = x.clone(), x.clone()
        stats = emu.bn_leaky_relu_(out, w, b, None, None, None, True, 0.1, 1e-5, 0.2)
        r_stats = CPU.bn_leaky_relu_(ref_out, w, b, None, None, None, True, 0.1, 1e-5, 0.2)
        grads = emu.bn_leaky_relu_backward(dy, out, w, b, *stats, True, 1e-5, 0.2)
        r_grads = CPU.bn_leaky_relu_backward(dy, ref_out, w, b, *r_stats, True, 1e-5, 0.2)
    else:
        out, *stats = emu.bn_relu_forward(x, w, b, None, None, None, True, 0.1, 1e-5)
        ref_out, *r_stats = CPU.bn_relu_forward(x, w, b, None, None, None, True, 0.1, 1e-5)
        grads = emu.bn_relu_backward(dy, x, w, b, stats[0], stats[1], True)
        r_grads = CPU.bn_relu_backward(dy, x, w, b, r_stats[0], r_stats[1], True)
    close(out, ref_out)
    close(list(stats), list(r_stats))
    close(list(grads), list(r_grads), torch.bfloat16)


@pytest.mark.parametrize("op", ["relu", "leaky"])
def test_bn_ops_empty_and_channelless(emu, op):
    x0 = torch.randn(3, 0, 4, 4)
    nbt, r_nbt = torch.tensor([0]), torch.tensor([0])
    if op == "relu":
        out = emu.bn_relu_forward(x0, None, None, None, None, nbt, True, 0.1, 1e-5)[0]
        CPU.bn_relu_forward(x0, None, None, None, None, r_nbt, True, 0.1, 1e-5)
    else:
        out = x0.clone()
        emu.bn_leaky_relu_(out, None, None, None, None, nbt, True, 0.1, 1e-5, 0.1)
        CPU.bn_leaky_relu_(x0.clone(), None, None, None, None, r_nbt, True, 0.1, 1e-5, 0.1)
    assert out.shape == x0.shape and nbt.item() == r_nbt.item() == 1
    w, b = torch.rand(4) + 0.5, torch.randn(4)
    v, dy = torch.empty(0, 4, 2, 2), torch.empty(0, 4, 2, 2)
    mean, invstd = torch.randn(4), torch.rand(4) + 0.5
    if op == "relu":
        grads = emu.bn_relu_backward(dy, v, w, b, mean, invstd, False)
        r_grads = CPU.bn_relu_backward(dy, v, w, b, mean, invstd, False)
    else:
        grads = emu.bn_leaky_relu_backward(dy, v, w, b, mean, invstd, False, 1e-5, 0.1)
        r_grads = CPU.bn_leaky_relu_backward(dy, v, w, b, mean, invstd, False, 1e-5, 0.1)
    close(list(grads), list(r_grads))


@pytest.mark.parametrize(("args", "message"), [
    (lambda x: (x, torch.ones(4), None, None, None, None, True, 0.1, 1e-5), "C = 3"),
    (lambda x: (x[:2], None, None, None, None, None, True, 0.1, 1e-5), None),
    (lambda x: (x.int(), None, None, None, None, None, True, 0.1, 1e-5), "floating point"),
    (lambda x: (x, None, None, None, None, None, False, 0.1, 1e-5), "running_mean"),
    (lambda x: (x[:0], None, None, None, None, None, True, 0.1, 1e-5), "empty batch"),
    (lambda x: (x, None, None, torch.zeros(3, dtype=torch.long), torch.ones(3, dtype=torch.long),
                None, False, 0.1, 1e-5), "running_mean must be floating point"),
    (lambda x: (x, torch.ones(3, dtype=torch.int32), None, None, None, None, True, 0.1, 1e-5),
     "weight must be floating point"),
    (lambda x: (x, None, None, torch.zeros(3, dtype=torch.half), torch.ones(3, dtype=torch.half),
                None, False, 0.1, 1e-5), None),
])
def test_bn_errors_match_cpu(emu, args, message):
    x = torch.randn(4, 3, 2, 2)
    try:
        ref = CPU.bn_relu_forward(*args(x))
    except RuntimeError as e:
        with pytest.raises(RuntimeError, match=message or ".") as got:
            emu.bn_relu_forward(*args(x))
        assert str(e).split("\n")[0] == str(got.value).split("\n")[0]
    else:
        close(list(emu.bn_relu_forward(*args(x))), list(ref))


@pytest.mark.parametrize("op", ["relu", "leaky"])
@pytest.mark.parametrize(("where", "training"), [
    ("running_mean", True), ("running_mean", False), ("num_batches_tracked", True),
    ("weight", True), ("bias", False)])
def test_bn_tensors_on_another_device_refused_before_writing(emu, op, where, training):
    """Running statistics, a batch count, a weight or a bias on another device than the
    input's are refused up front, as F.batch_norm refuses them, in training and in
    evaluation: the glue used to count the batch in the kernel and only then fail in its
    torch-ops fallback for the running statistics, and to copy the per-channel tensors of an
    evaluation to the input's device. The emulated glue serves CPU tensors; ``meta`` stands
    in for the other device, and the call goes to that glue directly (the dispatcher would
    hand it to the meta kernel)."""
    x = torch.randn(4, 3, 2, 2)
    on = lambda name: "meta" if where == name else "cpu"  # noqa: E731
    rm, rv = torch.zeros(3, device=on("running_mean")), torch.ones(3)
    w, b = torch.ones(3, device=on("weight")), torch.zeros(3, device=on("bias"))
    nbt = torch.zeros((), dtype=torch.long, device=on("num_batches_tracked"))
    before = [t.clone() for t in (x, rm, rv, nbt)]
    keys = torch._C.DispatchKeySet(torch._C.DispatchKey.CPU)
    match = (f"{where} must be on the input's device" if where != "num_batches_tracked" else
             "num_batches_tracked must be a one-element int64 tensor on the input's device")
    with pytest.raises(RuntimeError, match=match):
        if op == "relu":
            emu.bn_relu_forward.default.redispatch(keys, x, w, b, rm, rv, nbt, training, 0.1,
                                                   1e-5)
        else:
            emu.bn_leaky_relu_.default.redispatch(keys, x, w, b, rm, rv, nbt, training, 0.1,
                                                  1e-5, 0.1)
    for t, b in zip((x, rm, rv, nbt), before, strict=True):
        assert t.is_meta or torch.equal(t, b)


@pytest.mark.parametrize("op", ["relu", "leaky"])
@pytest.mark.parametrize("where", ["weight", "save_mean"])
def test_bn_backward_tensors_on_another_device_refused(emu, op, where):
    """The backward's weight and saved statistics on another device are refused, not copied
    to the input's device (``meta`` stands in for it, as above)."""
    x, dy = torch.randn(4, 3, 2, 2), torch.randn(4, 3, 2, 2)
    on = lambda name: "meta" if where == name else "cpu"  # noqa: E731
    w, b = torch.ones(3, device=on("weight")), torch.zeros(3)
    mean, invstd = torch.zeros(3, device=on("save_mean")), torch.ones(3)
    keys = torch._C.DispatchKeySet(torch._C.DispatchKey.CPU)
    with pytest.raises(RuntimeError, match=f"{where} must be on the input's device"):
        if op == "relu":
            emu.bn_relu_backward.default.redispatch(keys, dy, x, w, b, mean, invstd, True)
        else:
            emu.bn_leaky_relu_backward.default.redispatch(keys, dy, x, w, b, mean, invstd, True,
                                                          1e-5, 0.1)


def optimizer_lists(sizes, dtype, grad_dtype, nstates, counters=1, seed=0, squares=(1, 2)):
    """[params, grads, states..., steps, models]; the states in ``squares`` (second moments)
    positive and large, the others small."""
    g = torch.Generator().manual_seed(seed)
    rnd = lambda n, dt, k=1.0: (torch.randn(n, generator=g, dtype=torch.float64) * k).to(dt)  # noqa: E731
    params = [padded(rnd(n, dtype)) for n in sizes]
    grads = [padded(rnd(n, grad_dtype)) for n in sizes]
    states = [[padded(rnd(n, dtype).abs() + 2 if k in squares else rnd(n, dtype, 0.1))
               for n in sizes] for k in range(nstates)]
    steps = [torch.full((counters,), 3.0) for _ in sizes]
    models = [torch.zeros(n, dtype=grad_dtype) for n in sizes] if grad_dtype != dtype else []
    return [params, grads, *states, steps, models]


def clone_lists(lists):
    return [[t.clone() for t in ts] for ts in lists]


OPT_CASES = [([37, 0, 5000, 70000], torch.float32, torch.float32),
             ([3] * 200 + [40000], torch.float32, torch.float32),
             ([9, 33000], torch.float16, torch.float16),
             ([9, 33000], torch.float32, torch.bfloat16),
             ([9, 33000], torch.float64, torch.float64)]


@pytest.mark.parametrize(("sizes", "dtype", "grad_dtype"), OPT_CASES,
                         ids=["mixed", "201 tensors", "fp16", "fp32/bf16 master", "fp64"])
@pytest.mark.parametrize("opt", ["adamw", "rmsprop"])
def test_optimizer_ops_match_cpu(emu, sizes, dtype, grad_dtype, opt):
    mine = optimizer_lists(sizes, dtype, grad_dtype, 3, squares=(1, 2) if opt == "adamw" else (0,))
    ref = clone_lists(mine)
    ref_op, my_op = (CPU.adamw_, emu.adamw_) if opt == "adamw" else (CPU.rmsprop_, emu.rmsprop_)
    # AdamW: lr, betas, eps, weight decay, amsgrad, maximize; RMSprop: lr, alpha, eps, weight
    # decay, momentum, centered, maximize
    hyper = ((0.01, 0.9, 0.999, 1e-8, 0.1, True, False) if opt == "adamw" else
             (0.01, 0.99, 1e-8, 0.1, 0.9, True, False))
    for step in range(2):
        lr = torch.tensor(0.01 / (step + 1))  # a CPU lr tensor: read on the host
        ref_op(*ref, *hyper, lr)
        my_op(*mine, *hyper, lr)
    for m, r in zip(mine, ref, strict=True):
        close(m, r, dtype)


def test_adamw_flat_counters_and_shared_counters(emu):
    mine = optimizer_lists([70000], torch.float32, torch.float32, 3, counters=161)
    ref = clone_lists(mine)
    hyper = (1e-3, 0.9, 0.999, 1e-8, 0.1, False, False)
    CPU.adamw_(*ref[:4], [], ref[5], [], *hyper)
    emu.adamw_(*mine[:4], [], mine[5], [], *hyper)
    close(mine[0], ref[0])
    assert mine[5][0].eq(4).all()
    p = optimizer_lists([5, 5], torch.float32, torch.float32, 3)
    shared = torch.zeros(1)
    with pytest.raises(RuntimeError, match="share a step counter"):
        emu.adamw_(*p[:4], [], [shared, shared], [], *hyper)
    before = clone_lists(p)
    with pytest.raises(RuntimeError, match="param 1's exp_avg and exp_avg_sq share memory"):
        emu.adamw_(p[0], p[1], p[2], [p[3][0], p[2][1]], [], p[5], [], *hyper)
    for t, b in zip(p, before, strict=True):  # nothing moved, the step counters included
        assert all(torch.equal(x, y) for x, y in zip(t, b, strict=True))


def test_cpu_lr_tensor_refused_under_graph_capture(emu):
    """A captured graph would keep the lr read at capture (optim_cuda.cpp)."""
    ls = optimizer_lists([5], torch.float32, torch.float32, 3)
    lib = build()
    versions = [p._version for p in ls[0]]
    lib.fx_emu_set_capturing(1)
    try:
        with pytest.raises(RuntimeError, match="cannot be captured"):
            emu.adamw_(*ls[:4], [], ls[5], [], 1e-3, 0.9, 0.999, 1e-8, 0.1, False, False,
                       torch.tensor(1e-3))
    finally:
        lib.fx_emu_set_capturing(0)
    assert [p._version for p in ls[0]] == versions  # refused before they moved


@pytest.mark.parametrize("dtype", [torch.float32, torch.float16, torch.bfloat16, torch.float64],
                         ids=str)
@pytest.mark.parametrize("bad", [None, float("inf"), float("nan")])
def test_amp_ops_match_cpu(emu, dtype, bad):
    ts = [padded((torch.randn(n) * 100).to(dtype)) for n in (3, 0, 20000, 70001)]
    if bad is not None:
        ts[2][19999] = bad
    ref = [t.clone() for t in ts]
    found, r_found = torch.zeros(1), torch.zeros(1)
    emu.check_finite_(ts, found)
    CPU.check_finite_(ref, r_found)
    assert found.item() == r_found.item()
    found.zero_()
    r_found.zero_()
    emu.unscale_and_check_(ts, found, torch.tensor([0.125]))
    CPU.unscale_and_check_(ref, r_found, torch.tensor([0.125]))
    assert found.item() == r_found.item() == (bad is not None)
    for m, r in zip(ts, ref, strict=True):
        torch.testing.assert_close(m, r, equal_nan=True, rtol=0, atol=0)
    scale, tracker = torch.tensor([1024.0]), torch.tensor([1999], dtype=torch.int32)
    r_scale, r_tracker = scale.clone(), tracker.clone()
    emu.update_scale_(scale, tracker, found, 2.0, 0.5, 2000)
    CPU.update_scale_(r_scale, r_tracker, r_found, 2.0, 0.5, 2000)
    assert scale.item() == r_scale.item() and tracker.item() == r_tracker.item()


@pytest.mark.parametrize("dtype", [torch.float32, torch.float16, torch.float64], ids=str)
def test_feature_loss_ops_match_cpu(emu, dtype):
    g = torch.Generator().manual_seed(0)
    shapes = [(2, 3, 16, 16), (2, 8, 5, 5), (1, 1, 1, 1), (2, 40, 2, 2)]
    xs = [padded(torch.randn(s, generator=g).to(dtype)) for s in shapes]
    ts = [padded(torch.randn(s, generator=g).to(dtype)) for s in shapes]
    weights, gram = [1.0, 0.5, 2.0, 0.25], [0.0, 3.0, 1.0, 2.0]
    losses, diffs = emu.feature_loss(xs, ts, weights, gram)
    r_losses, r_diffs = CPU.feature_loss(xs, ts, weights, gram)
    close(losses, r_losses, dtype)
    close(diffs, r_diffs, dtype)
    grad = torch.arange(1.0, 2 * len(shapes) + 1, dtype=losses.dtype)
    grads = emu.feature_loss_backward(grad, xs, ts, diffs, weights, gram)
    r_grads = CPU.feature_loss_backward(grad, xs, ts, r_diffs, weights, gram)
    close(grads, r_grads, dtype)
