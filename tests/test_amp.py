"""Loss scaling and master weights against torch's own: the ops against
torch._amp_foreach_non_finite_check_and_unscale_ / torch._amp_update_scale_, LossScaler
against torch.amp.GradScaler, master weights against an fp32 reference."""

import pytest
import torch
from optim_reference import assert_close

import fastext
from fastext import ops
from fastext.amp import LossScaler, to_fp16

DTYPES = [torch.float32, torch.float64, torch.float16, torch.bfloat16]


def _tensors(device, dtype):
    base = torch.randn(9, 14, device=device)
    shapes = [(100_003,), (), (0,), (37,)]
    return [t.to(dtype) for t in [torch.randn(s, device=device) for s in shapes] + [base.t(),
                                                                                     base[:, ::3]]]


@pytest.mark.parametrize("dtype", DTYPES, ids=str)
@pytest.mark.parametrize("bad", [None, "inf", "-inf", "nan"])
@pytest.mark.parametrize("where", [0, 4, 5])
def test_check_and_unscale_match_torch(device, dtype, bad, where):
    ts = _tensors(device, dtype)
    if bad is not None:  # the last element of a long, a transposed or a strided tensor
        t = ts[where]
        t[(-1,) * t.dim()] = float(bad)
    ref = [t.clone() for t in ts]
    inv = torch.tensor(0.125, device=device)
    flag, ref_flag = torch.zeros((), device=device), torch.zeros((), device=device)
    ops.check_finite_(ts, flag)
    assert flag.item() == (bad is not None)
    for t, r in zip(ts, ref, strict=True):  # read-only
        assert torch.equal(t.nan_to_num(), r.nan_to_num())
    flag.zero_()
    ops.unscale_and_check_(ts, flag, inv)
    if device == "cuda" and dtype == torch.bfloat16:  # torch's CUDA op has no bf16 kernel
        ref_flag = ref_flag.cpu()
        ref = [r.cpu() for r in ref]
        torch._amp_foreach_non_finite_check_and_unscale_(ref, ref_flag, inv.cpu())
        ts = [t.cpu() for t in ts]
    else:
        torch._amp_foreach_non_finite_check_and_unscale_(ref, ref_flag, inv)
    assert flag.item() == ref_flag.item()
    for t, r in zip(ts, ref, strict=True):
        torch.testing.assert_close(t, r, equal_nan=True, rtol=0, atol=0)


def test_flag_is_never_cleared(device):
    flag = torch.ones((), device=device)
    ops.check_finite_([torch.ones(5, device=device)], flag)
    assert flag.item() == 1.0
    ops.check_finite_([], flag)
    assert flag.item() == 1.0


def test_update_scale_matches_torch(device):
    g = torch.Generator().manual_seed(3)
    scale, ref = torch.full((), 1024.0, device=device), torch.full((), 1024.0, device=device)
    tr = torch.zeros((), dtype=torch.int32, device=device)
    ref_tr = tr.clone()
    for _ in range(200):
        found = torch.full((), float(torch.rand((), generator=g) < 0.1), device=device)
        ops.update_scale_(scale, tr, found, 2.0, 0.5, 3)
        torch._amp_update_scale_(ref, ref_tr, found, 2.0, 0.5, 3)
        assert scale.item() == ref.item() and tr.item() == ref_tr.item()


def test_scale_never_grows_to_inf(device):
    scale = torch.full((), 3e38, device=device)
    tr = torch.zeros((), dtype=torch.int32, device=device)
    ops.update_scale_(scale, tr, torch.zeros((), device=device), 2.0, 0.5, 1)
    assert scale.item() == pytest.approx(3e38) and tr.item() == 0


def test_opcheck_amp_ops(device):
    ts = [torch.randn(5, 3, device=device), torch.randn(7, device=device).half()]
    flag = torch.zeros((), device=device)
    torch.library.opcheck(torch.ops.fastext.check_finite_.default, (ts, flag))
    torch.library.opcheck(torch.ops.fastext.unscale_and_check_.default,
                          (ts, flag, torch.tensor(0.5, device=device)))
    torch.library.opcheck(torch.ops.fastext.update_scale_.default,
                          (torch.tensor(4.0, device=device),
                           torch.zeros((), dtype=torch.int32, device=device),
                           torch.zeros((), device=device), 2.0, 0.5, 10))


def test_op_input_checks():
    with pytest.raises(RuntimeError, match="found_inf must be a one-element"):
        ops.check_finite_([torch.ones(2)], torch.zeros(2))
    with pytest.raises(RuntimeError, match="growth_tracker must be a one-element"):
        ops.update_scale_(torch.ones(()), torch.zeros(()), torch.zeros(()), 2.0, 0.5, 1)
    with pytest.raises(RuntimeError, match="float32, float64, float16 or bfloat16"):
        ops.check_finite_([torch.ones(2, dtype=torch.int64)], torch.zeros(()))


# -- LossScaler -------------------------------------------------------------------------

def _mlp(device, dtype=torch.float32):
    torch.manual_seed(0)
    return torch.nn.Sequential(torch.nn.Linear(6, 16), torch.nn.ReLU(),
                               torch.nn.Linear(16, 3)).to(device, dtype)


def _run(model, opt, scaler, steps, overflow_at=(), clip=None, seed=0):
    g = torch.Generator().manual_seed(seed)
    dev = next(model.parameters()).device
    scales = []
    for step in range(steps):
        x = torch.randn(8, 6, generator=g).to(dev)
        opt.zero_grad()
        scaler.scale(model(x).square().mean()).backward()
        if step in overflow_at:
            model[0].weight.grad[1, 2] = float("inf") if step % 2 else float("nan")
        if clip is not None:
            scaler.unscale_(opt)
            torch.nn.utils.clip_grad_norm_(model.parameters(), clip)
        scaler.step(opt)
        scaler.update()
        scales.append(scaler.get_scale())
    return scales


@pytest.mark.parametrize("clip", [None, 0.5])
def test_trajectory_equals_gradscaler(device, clip):
    """50 steps with injected inf/NaN: scale trajectory and params equal GradScaler +
    torch.optim.AdamW, with and without unscale_ + clipping."""
    ours, ref = _mlp(device), _mlp(device)
    kw = dict(init_scale=2.0**8, growth_interval=4)
    s_ours = _run(ours, fastext.optim.AdamW(ours.parameters(), lr=1e-2), LossScaler(device, **kw),
                  50, overflow_at=(3, 4, 17, 30), clip=clip)
    s_ref = _run(ref, torch.optim.AdamW(ref.parameters(), lr=1e-2, foreach=False),
                 torch.amp.GradScaler(device, **kw), 50, overflow_at=(3, 4, 17, 30), clip=clip)
    assert s_ours == s_ref
    assert max(s_ours) > 2.0**8 and min(s_ours) < 2.0**8  # both growth and backoff happened
    assert_close(list(ours.parameters()), list(ref.parameters()))


def test_with_a_plain_torch_optimizer(device):
    """Any optimizer: one fused unscale+check pass, then the ordinary skip."""
    ours, ref = _mlp(device), _mlp(device)
    kw = dict(init_scale=2.0**8, growth_interval=4)
    s_ours = _run(ours, torch.optim.SGD(ours.parameters(), lr=0.1, momentum=0.9),
                  LossScaler(device, **kw), 20, overflow_at=(5,))
    s_ref = _run(ref, torch.optim.SGD(ref.parameters(), lr=0.1, momentum=0.9),
                 torch.amp.GradScaler(device, **kw), 20, overflow_at=(5,))
    assert s_ours == s_ref
    assert_close(list(ours.parameters()), list(ref.parameters()))


def test_overflow_skips_step_bit_identically(device):
    model = _mlp(device)
    opt = fastext.optim.AdamW(model.parameters(), lr=1e-2)
    scaler = LossScaler(device, init_scale=1024.0)
    _run(model, opt, scaler, 3)
    params = [p.detach().clone() for p in model.parameters()]
    state = {k: v.clone() for k, v in opt.state[model[0].weight].items()}
    scale = scaler.get_scale()
    _run(model, opt, scaler, 1, overflow_at=(0,), seed=9)
    assert all(torch.equal(a, b) for a, b in zip(params, model.parameters(), strict=True))
    for k, v in opt.state[model[0].weight].items():
        assert torch.equal(v, state[k]), k
    assert opt.state[model[0].weight]["step"].item() == 3
    assert scaler.get_scale() == scale / 2


def test_growth_after_interval(device):
    model = _mlp(device)
    scaler = LossScaler(device, init_scale=16.0, growth_interval=5)
    scales = _run(model, fastext.optim.AdamW(model.parameters()), scaler, 11)
    assert scales == [16.0] * 4 + [32.0] * 5 + [64.0] * 2


def test_state_dict_round_trip_with_gradscaler(device):
    model = _mlp(device)
    scaler = LossScaler(device, init_scale=64.0, growth_interval=3)
    _run(model, fastext.optim.AdamW(model.parameters()), scaler, 4, overflow_at=(1,))
    sd = scaler.state_dict()
    ref = torch.amp.GradScaler(device)
    ref.load_state_dict(sd)
    assert ref.state_dict() == sd
    back = LossScaler(device)
    back.load_state_dict(ref.state_dict())
    assert back.state_dict() == sd and back.get_scale() == sd["scale"]


def test_disabled_is_a_pass_through(device):
    model = _mlp(device)
    opt = fastext.optim.AdamW(model.parameters())
    scaler = LossScaler(device, enabled=False)
    loss = model(torch.randn(4, 6, device=device)).sum()
    assert scaler.scale(loss) is loss
    loss.backward()
    scaler.step(opt)
    scaler.update()
    assert scaler.get_scale() == 1.0 and scaler.state_dict() == {}
    assert opt.state[model[0].weight]["step"].item() == 1


def test_misuse_is_a_clear_error(device):
    model = _mlp(device)
    opt = fastext.optim.AdamW(model.parameters())
    scaler = LossScaler(device)
    with pytest.raises(RuntimeError, match="before any scale"):
        scaler.update()
    scaler.scale(model(torch.randn(4, 6, device=device)).sum()).backward()
    scaler.unscale_(opt)
    with pytest.raises(RuntimeError, match="already been called"):
        scaler.unscale_(opt)
    scaler.step(opt)
    with pytest.raises(RuntimeError, match="already been called since the last update"):
        scaler.step(opt)
    with pytest.raises(ValueError, match="growth_factor"):
        LossScaler(growth_factor=0.5)


# -- fp16 models and master weights -----------------------------------------------------

def test_to_fp16_keeps_batchnorm_fp32():
    m = to_fp16(torch.nn.Sequential(torch.nn.Conv2d(1, 4, 3), torch.nn.BatchNorm2d(4),
                                    torch.nn.ReLU(), torch.nn.Flatten(), torch.nn.Linear(4, 2)))
    assert m[0].weight.dtype == torch.float16 and m[4].weight.dtype == torch.float16
    assert m[1].weight.dtype == m[1].running_mean.dtype == torch.float32
    with pytest.raises(ValueError, match="float16 or bfloat16"):
        to_fp16(m, torch.float64)


@pytest.mark.parametrize("low", [torch.float16, torch.bfloat16], ids=str)
@pytest.mark.parametrize("kind", ["adamw", "rmsprop"])
def test_master_weights_match_fp32_reference(device, low, kind):
    """The fp32 masters follow torch.optim on fp32 copies fed the same low-precision grads;
    the model params are the masters rounded."""
    torch.manual_seed(0)
    params = [torch.randn(5, 7, device=device).to(low).requires_grad_(),
              torch.randn(70_001, device=device).to(low).requires_grad_()]
    ref = [p.detach().float().requires_grad_() for p in params]
    kw = dict(lr=1e-2, weight_decay=0.1)
    if kind == "adamw":
        opt = fastext.optim.AdamW(params, master_weights=True, **kw)
        ref_opt = torch.optim.AdamW(ref, foreach=False, **kw)
    else:
        opt = fastext.optim.RMSprop(params, master_weights=True, momentum=0.9, **kw)
        ref_opt = torch.optim.RMSprop(ref, foreach=False, momentum=0.9, **kw)
    for _ in range(10):
        for p, r in zip(params, ref, strict=True):
            g = torch.randn(p.shape, device=device).to(low)
            p.grad, r.grad = g, g.float()
        opt.step()
        ref_opt.step()
    for p, r in zip(params, ref, strict=True):
        master = opt.state[p]["master"]
        assert master.dtype == torch.float32 and opt.state[p]["step"].item() == 10
        torch.testing.assert_close(master, r.detach(), rtol=1e-5, atol=1e-6)
        assert torch.equal(p.detach(), master.to(low))
    # state_dict keeps fp32 master state through torch's dtype-casting load
    sd = opt.state_dict()
    again = type(opt)(params, master_weights=True, **kw)
    again.load_state_dict(sd)
    assert again.state[params[0]]["master"].dtype == torch.float32
    assert again.state[params[0]]["master"].equal(opt.state[params[0]]["master"])


def test_fp16_training_matches_fp32(device):
    """A small fp16 net (BatchNorm fp32) with master weights and loss scaling trains to the
    same loss as its fp32 twin."""
    def net():
        torch.manual_seed(0)
        return torch.nn.Sequential(torch.nn.Linear(20, 64), torch.nn.BatchNorm1d(64),
                                   torch.nn.ReLU(), torch.nn.Linear(64, 4)).to(device)

    torch.manual_seed(1)
    x = torch.randn(512, 20, device=device)
    y = (x[:, :4] * torch.tensor([1.0, -2.0, 0.5, 3.0], device=device)).argmax(1)
    losses = {}
    for mode in ("fp32", "fp16"):
        model = net()
        if mode == "fp16":
            to_fp16(model)
        opt = fastext.optim.AdamW(model.parameters(), lr=3e-3, master_weights=True)
        scaler = LossScaler(device, enabled=mode == "fp16")
        xin = x.half() if mode == "fp16" else x
        for _ in range(150):
            opt.zero_grad()
            loss = torch.nn.functional.cross_entropy(model(xin).float(), y)
            scaler.scale(loss).backward()
            scaler.step(opt)
            scaler.update()
        losses[mode] = torch.nn.functional.cross_entropy(model(xin).float(), y).item()
    assert losses["fp32"] < 0.3
    assert abs(losses["fp16"] - losses["fp32"]) < 0.05, losses


@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float16], ids=str)
def test_autocast_path(device, dtype):
    """fp32 params under torch.autocast: bf16 needs no scaler, fp16 uses LossScaler."""
    model = _mlp(device)
    opt = fastext.optim.AdamW(model.parameters(), lr=1e-2)
    scaler = LossScaler(device, enabled=dtype == torch.float16)
    x = torch.randn(64, 6, device=device)
    first = None
    for _ in range(30):
        opt.zero_grad()
        with torch.autocast(device, dtype=dtype):
            loss = model(x).square().mean()
        first = first if first is not None else loss.item()
        scaler.scale(loss).backward()
        scaler.step(opt)
        scaler.update()
    assert loss.item() < first / 2


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a GPU")
def test_cuda_scaled_step_has_no_host_sync():
    model = _mlp("cuda")
    opt = fastext.optim.AdamW(model.parameters(), lr=1e-3)
    scaler = LossScaler("cuda")
    x = torch.randn(8, 6, device="cuda")
    for sync_mode in (0, "error"):
        opt.zero_grad()
        scaler.scale(model(x).square().mean()).backward()
        torch.cuda.synchronize()
        torch.cuda.set_sync_debug_mode(sync_mode)
        try:
            scaler.step(opt)
            scaler.update()
        finally:
            torch.cuda.set_sync_debug_mode(0)


def test_clip_on_scaled_fp16_grads_keeps_small_values():
    """Clipping through the scaler keeps fp16 gradients scaled: values that an in-place fp16
    unscale would flush to zero survive, and the step still unscales them."""
    p = torch.nn.Parameter(torch.zeros(3, dtype=torch.float16))
    opt = fastext.optim.AdamW([p], lr=1e-3, master_weights=True)
    scaler = LossScaler("cpu", init_scale=2.0**16)
    scaler.scale(torch.zeros((), requires_grad=True).sum())  # creates the scale
    true = torch.tensor([1e-8, 3e-8, 1e-6])
    p.grad = (true * 2.0**16).half()
    norm = scaler.clip_grad_norm_(opt, max_norm=1.0)
    assert norm.item() == pytest.approx(true.norm().item(), rel=1e-2)
    assert (p.grad > 0).all()  # nothing flushed
    assert (p.grad.float() / 2.0**16 - true).abs().max() < 1e-9


@pytest.mark.parametrize("max_norm", [0.05, 1e3], ids=["clips", "no_clip"])
def test_clip_after_unscale_matches_torch(device, max_norm):
    """GradScaler's recipe, unscale_ then clip: LossScaler.clip_grad_norm_ after unscale_
    clips the already unscaled gradients as torch.nn.utils.clip_grad_norm_ does and returns
    their norm (it used to divide by the scale again: no clipping, a norm / scale)."""
    ours, ref = _mlp(device), _mlp(device)
    opt = fastext.optim.AdamW(ours.parameters(), lr=1e-2)
    ref_opt = torch.optim.AdamW(ref.parameters(), lr=1e-2, foreach=False)
    scaler = LossScaler(device, init_scale=2.0**10)
    ref_scaler = torch.amp.GradScaler(device, init_scale=2.0**10)
    x = torch.randn(8, 6, device=device)
    for model, o, s in ((ours, opt, scaler), (ref, ref_opt, ref_scaler)):
        s.scale(model(x).square().mean()).backward()
        s.unscale_(o)
    norm = scaler.clip_grad_norm_(opt, max_norm)
    ref_norm = torch.nn.utils.clip_grad_norm_(ref.parameters(), max_norm)
    torch.testing.assert_close(norm.to(ref_norm.device), ref_norm)
    assert (ref_norm > max_norm) == (max_norm == 0.05)
    assert_close([p.grad for p in ours.parameters()], [p.grad for p in ref.parameters()])
    for o, s in ((opt, scaler), (ref_opt, ref_scaler)):
        s.step(o)
        s.update()
    assert_close(list(ours.parameters()), list(ref.parameters()))


# -- review of 2026-11-28 -------------------------------------------------------------------
def test_unscale_moves_versions_and_refuses_overlap_before_writing():
    """Tensors unscaled in place get their version counters moved (as a stock in-place op's);
    one whose elements share memory (an expand) is refused before any tensor of the list is
    unscaled (it used to leave the list half unscaled and an inf unflagged)."""
    g = torch.tensor([4.0, 2.0])
    v = g._version
    ops.unscale_and_check_([g], torch.zeros(()), torch.tensor(0.5))
    assert g._version > v and torch.equal(g, torch.tensor([2.0, 1.0]))
    g1, g2 = torch.tensor([4.0, float("inf")]), torch.full((1,), 4.0).expand(3)
    flag = torch.zeros(())
    with pytest.raises(RuntimeError, match="share memory"):
        ops.unscale_and_check_([g1, g2], flag, torch.tensor(0.5))
    assert torch.equal(g1, torch.tensor([4.0, float("inf")])) and flag.item() == 0


def test_update_scale_refuses_a_growth_interval_beyond_int():
    """The rule counts in int, as torch's: 2**32 + 1 used to wrap to 1 (growth every step)."""
    scale, tracker = torch.tensor(1.0), torch.zeros((), dtype=torch.int32)
    with pytest.raises(RuntimeError, match="growth_interval must be in"):
        ops.update_scale_(scale, tracker, torch.zeros(()), 2.0, 0.5, 2**32 + 1)
    assert scale.item() == 1.0 and tracker.item() == 0


def test_scale_takes_what_grad_scaler_takes(device):
    """A tensor, a list, a tuple or a generator of tensors, scaled as GradScaler scales them
    (a generator lazily); anything else is refused as there."""
    ours = fastext.amp.LossScaler(device, init_scale=8.0)
    ref = torch.amp.GradScaler(device, init_scale=8.0)
    ts = [torch.ones(2, device=device), torch.full((3,), 2.0, device=device)]
    for make in (list, tuple, lambda xs: (x for x in xs)):
        got, want = ours.scale(make(ts)), ref.scale(make(ts))
        assert type(got) is type(want)
        for a, b in zip(got, want, strict=True):
            torch.testing.assert_close(a, b)
    with pytest.raises(ValueError, match="iterable of Tensors"):
        ours.scale(3.0)


def test_clip_of_scaled_fp32_grads_with_a_large_norm(device):
    """Scaled fp32 gradients whose squares overflow fp32 (a norm of 1e15 times the scale):
    clipped as torch's unscale_ + clip_grad_norm_ clips them, not zeroed by an inf norm."""
    ws = [torch.nn.Parameter(torch.zeros(4, device=device)) for _ in range(2)]
    k = torch.full((4,), 5e14, device=device)
    opts = [fastext.optim.AdamW([ws[0]], lr=0.1, weight_decay=0),
            torch.optim.AdamW([ws[1]], lr=0.1, weight_decay=0, foreach=False)]
    ours, ref = LossScaler(device), torch.amp.GradScaler(device)
    ours.scale((ws[0] * k).sum()).backward()
    n = ours.clip_grad_norm_(opts[0], 1.0)
    ref.scale((ws[1] * k).sum()).backward()
    ref.unscale_(opts[1])
    nr = torch.nn.utils.clip_grad_norm_([ws[1]], 1.0)
    torch.testing.assert_close(n, nr)
    for s, o in zip((ours, ref), opts, strict=True):
        s.step(o)
        s.update()
    torch.testing.assert_close(ws[0], ws[1])
    assert ours.get_scale() == ref.get_scale()
