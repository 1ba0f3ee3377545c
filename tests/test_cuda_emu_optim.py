"""The CUDA optimizer kernels (csrc/kernels/cuda/optim_cuda.cu: fused AdamW and RMSprop over
multi-tensor launches) run on the CPU emulator (tests/cuda_emu_lib.py) against the CPU ops
(themselves tested against torch.optim): parameters, states, fp16/bf16 model copies and step
counters after several steps, over dtypes, options, device-side lr / grad_scale / found_inf,
empty and unaligned tensors, a flat buffer's many counters, and tensor lists that take more
than one launch (AdamW's last block advances each counter once, whichever launch ends its
tensor). Buffers are NaN-padded and the arrival counter must read 0 after each step."""

from __future__ import annotations

import pytest
import torch
from cuda_emu_lib import DTYPES, PAD, Emulator, build, check_pads, clones, int64s, padded, ptr, ptrs

import fastext  # noqa: F401  (registers torch.ops.fastext)

OPS = torch.ops.fastext
KMIN = 16384  # multi_tensor.cuh's kMinChunk
ADAMW = dict(lr=1e-2, beta1=0.9, beta2=0.999, eps=1e-8, weight_decay=0.1)
RMSPROP = dict(lr=1e-2, alpha=0.99, eps=1e-8, weight_decay=0.1, momentum=0.0)


@pytest.fixture(scope="module")
def lib():
    return build()


def unaligned(t: torch.Tensor) -> torch.Tensor:
    """``t`` one element past a 16-byte boundary: the kernels' element-wise path."""
    buf = padded(torch.cat([t.new_zeros(1), t.flatten()]))
    return buf[1:].view(t.shape)


class Group:
    """A parameter list with grads, states, model copies and step counters: one copy for the
    emulator (padded) and one for the CPU op."""

    def __init__(self, sizes, dtype, grad_dtype=None, nstates=2, misalign=False, counters=1,
                 squares=(1, 2)):
        g = torch.Generator().manual_seed(len(sizes))
        grad_dtype = grad_dtype or dtype
        self.master = grad_dtype != dtype

        def rand(n, dt, square=False):  # squares (second moments) positive, means small
            t = torch.randn(n, generator=g, dtype=torch.float64)
            return (t.abs() + 0.5 if square else t * 0.1).to(dt)

        self.ref = dict(
            params=[rand(n, dtype) * 10 for n in sizes],
            grads=[rand(n, grad_dtype) * 10 for n in sizes],
            states=[[rand(n, dtype, k in squares) for n in sizes] for k in range(nstates)],
            models=[torch.zeros(n, dtype=grad_dtype) for n in sizes] if self.master else [],
            steps=[torch.full((counters,), float(i % 4)) for i in range(len(sizes))])
        wrap = unaligned if misalign else padded
        self.emu = {k: [wrap(t) for t in v] if k in ("params", "grads", "models") else
                    [[padded(t) for t in s] for s in v] if k == "states" else
                    [padded(t) for t in v] for k, v in self.ref.items()}
        self.dtype, self.grad_dtype, self.counters = dtype, grad_dtype, counters

    def slots(self, names):
        """api.cpp's slot arrays; ``names`` maps state k to slot s0..s2 (None: unused)."""
        e, n = self.emu, len(self.emu["params"])
        states = [e["states"][k] if k is not None else [None] * n for k in names]
        models = e["models"] or [None] * n
        return [n, ptrs(e["params"]), ptrs(e["grads"]), *(ptrs(s) for s in states),
                ptrs(models), int64s([p.numel() for p in e["params"]]), ptrs(e["steps"]),
                int64s([self.counters] * n), DTYPES[self.dtype], DTYPES[self.grad_dtype]]

    def check(self, exact=False):
        tol = dict(rtol=0, atol=0) if exact else {}
        for key in ("params", "grads", "models", "steps"):  # grads: unscaled by a grad_scale
            for mine, ref in zip(self.emu[key], self.ref[key], strict=True):
                torch.testing.assert_close(mine, ref, **tol, msg=key)
        for ms, rs in zip(self.emu["states"], self.ref["states"], strict=True):
            for mine, ref in zip(ms, rs, strict=True):
                torch.testing.assert_close(mine, ref, **tol, msg="state")
        for key in ("params", "grads", "models", "steps"):
            for t in self.emu[key]:
                if t.storage_offset() % PAD == 0:
                    check_pads(t)
        for s in self.emu["states"]:
            check_pads(*s)


def scalars(lr_tensor, grad_scale, found_inf):
    mk = lambda v: None if v is None else padded(torch.tensor([v], dtype=torch.float32))  # noqa: E731
    return mk(lr_tensor), mk(grad_scale), mk(found_inf)


def adamw_step(emu, grp, h, amsgrad=False, maximize=False, lr_tensor=None, grad_scale=None,
               found_inf=None):
    lr_t, gs, fi = scalars(lr_tensor, grad_scale, found_inf)
    r = grp.ref
    OPS.adamw_(r["params"], r["grads"], r["states"][0], r["states"][1],
               r["states"][2] if amsgrad else [], r["steps"], r["models"], h["lr"], h["beta1"],
               h["beta2"], h["eps"], h["weight_decay"], amsgrad, maximize,
               *clones((lr_t, gs, fi)))
    arrivals = padded(torch.zeros(1, dtype=torch.int32))
    ok = emu.adamw(*grp.slots([0, 1, 2 if amsgrad else None]), h["lr"], h["beta1"], h["beta2"],
                   h["eps"], h["weight_decay"], int(amsgrad), int(maximize), ptr(lr_t), ptr(gs),
                   ptr(fi), ptr(arrivals))
    assert ok
    assert arrivals.item() == 0, "the arrival counter must be left at 0"
    check_pads(arrivals)


def rmsprop_step(emu, grp, h, centered=False, maximize=False, lr_tensor=None, grad_scale=None,
                 found_inf=None, decoupled=False):
    lr_t, gs, fi = scalars(lr_tensor, grad_scale, found_inf)
    r, momentum = grp.ref, h["momentum"] > 0
    k = 1
    avg = r["states"][k] if centered else []
    k += centered
    buf = r["states"][k] if momentum else []
    OPS.rmsprop_(r["params"], r["grads"], r["states"][0], avg, buf, r["steps"], r["models"],
                 h["lr"], h["alpha"], h["eps"], h["weight_decay"], h["momentum"], centered,
                 maximize, *clones((lr_t, gs, fi)), decoupled_weight_decay=decoupled)
    names = [0, 1 if centered else None, k if momentum else None]
    ok = emu.rmsprop(*grp.slots(names), h["lr"], h["alpha"], h["eps"], h["weight_decay"],
                     h["momentum"], int(centered), int(maximize), ptr(lr_t), ptr(gs), ptr(fi),
                     int(decoupled))
    assert ok


SIZES = {"one": [37], "empties between": [0, 7, 0, 0, 130, 0], "all empty": [0, 0],
         "over the 320 empty counters a launch bumps": [0] * 330 + [5],
         "chunk edges": [KMIN, KMIN + 1, 4 * KMIN + 3],
         "over a launch's 192 tensors": [3] * 200 + [0, 2 * KMIN + 7]}
DTYPE_PAIRS = [(torch.float32, None), (torch.float64, None), (torch.float16, None),
               (torch.bfloat16, None), (torch.float32, torch.float16),
               (torch.float32, torch.bfloat16)]


def pair_id(p):
    return str(p[0]).removeprefix("torch.") + ("" if p[1] is None else
                                               "/" + str(p[1]).removeprefix("torch."))


@pytest.mark.parametrize("sms", [1, 132])
@pytest.mark.parametrize("sizes", SIZES.values(), ids=SIZES.keys())
def test_adamw_kernels_match_cpu(lib, sizes, sms):
    emu, grp = Emulator(lib, sms=sms), Group(sizes, torch.float32)
    for _ in range(3):
        adamw_step(emu, grp, ADAMW)
    grp.check()


@pytest.mark.parametrize("pair", DTYPE_PAIRS, ids=pair_id)
@pytest.mark.parametrize("misalign", [False, True], ids=["aligned", "unaligned"])
def test_adamw_kernels_dtypes(lib, pair, misalign):
    emu, grp = Emulator(lib), Group([5, 1000, 3 * KMIN + 1], *pair, misalign=misalign)
    for _ in range(2):
        adamw_step(emu, grp, ADAMW)
    grp.check()


@pytest.mark.parametrize("opts", [dict(amsgrad=True), dict(maximize=True),
                                  dict(amsgrad=True, maximize=True),
                                  dict(lr_tensor=3e-3), dict(grad_scale=1024.0),
                                  dict(found_inf=1.0), dict(found_inf=0.0, grad_scale=8.0)],
                         ids=str)
def test_adamw_kernels_options(lib, opts):
    emu, grp = Emulator(lib), Group([0, 9, 2 * KMIN + 5], torch.float32, nstates=3)
    for _ in range(2):
        adamw_step(emu, grp, ADAMW, **opts)
    grp.check()
    if opts.get("found_inf"):
        assert [s.tolist() for s in grp.emu["steps"]] == [[0.0], [1.0], [2.0]]


def test_adamw_flat_buffer_counters(lib):
    """The flat layout: one slot whose step tensor holds every parameter's counter."""
    emu, grp = Emulator(lib, sms=132), Group([5 * KMIN + 3], torch.float32, counters=161)
    for _ in range(2):
        adamw_step(emu, grp, ADAMW)
    grp.check()
    assert grp.emu["steps"][0].eq(2).all()


@pytest.mark.parametrize(("numel", "sms", "blocks"), [(1_000_000, 132, 62), (1_000_000, 4, 16),
                                                      (10_000_000, 132, 153),
                                                      (5_000_000, 132, 153)])
def test_adamw_one_launch_with_chunks_sized_to_the_gpu(lib, numel, sms, blocks):
    """One launch per step, its chunk halved (down to 16K elements) while the step would
    leave SMs without a block: 1M elements on 132 SMs are 62 blocks of 16K, 5M 153 of 32K;
    10M elements fill them as 153 blocks of 64K."""
    emu, grp = Emulator(lib, sms=sms), Group([numel], torch.float32)
    start, start_blocks = emu.launches(), emu.blocks()
    adamw_step(emu, grp, ADAMW)
    assert (emu.launches() - start, emu.blocks() - start_blocks) == (1, blocks)
    grp.check()


def test_adamw_tensor_cut_by_a_full_block_list(lib):
    """A tensor over more than 1,280 chunks continues in a second launch: its counter
    advances once, in the launch that ends it (a 1,000-SM device keeps the chunks small)."""
    emu = Emulator(lib, sms=1000)
    grp = Group([11, 1281 * KMIN + 5], torch.float32)
    start = emu.launches()
    adamw_step(emu, grp, ADAMW)
    assert emu.launches() - start == 2
    grp.check()


@pytest.mark.parametrize("sms", [1, 132])
@pytest.mark.parametrize("sizes", SIZES.values(), ids=SIZES.keys())
def test_rmsprop_kernels_match_cpu(lib, sizes, sms):
    emu, grp = Emulator(lib, sms=sms), Group(sizes, torch.float32, nstates=3, squares=(0,))
    for _ in range(3):
        rmsprop_step(emu, grp, dict(RMSPROP, momentum=0.9), centered=True)
    grp.check()


@pytest.mark.parametrize("pair", DTYPE_PAIRS, ids=pair_id)
@pytest.mark.parametrize("misalign", [False, True], ids=["aligned", "unaligned"])
def test_rmsprop_kernels_dtypes(lib, pair, misalign):
    emu, grp = Emulator(lib), Group([5, 1000, 3 * KMIN + 1], *pair, nstates=1,
                                    misalign=misalign, squares=(0,))
    for _ in range(2):
        rmsprop_step(emu, grp, RMSPROP)
    grp.check()


@pytest.mark.parametrize("opts", [dict(centered=True), dict(momentum=0.9), dict(maximize=True),
                                  dict(centered=True, momentum=0.9, maximize=True),
                                  dict(lr_tensor=3e-3), dict(grad_scale=1024.0),
                                  dict(found_inf=1.0), dict(decoupled=True),
                                  dict(decoupled=True, lr_tensor=3e-3, momentum=0.9)], ids=str)
def test_rmsprop_kernels_options(lib, opts):
    h = dict(RMSPROP, momentum=opts.pop("momentum", 0.0))
    emu = Emulator(lib)
    grp = Group([0, 9, 2 * KMIN + 5], torch.float32, nstates=3, squares=(0,))
    for _ in range(2):
        rmsprop_step(emu, grp, h, **opts)
    grp.check()
