"""fastext.optim against torch.optim (foreach=False; float64 for fp16/bf16): every option,
dtype, layout and param-group split, over 10 steps."""

import collections

import pytest
import torch
from optim_reference import LOW, assert_close, run_pair

import fastext

DTYPES = [torch.float32, torch.float64, torch.float16, torch.bfloat16]


def shapes_params(device: str, dtype: torch.dtype) -> list[torch.Tensor]:
    """Awkward shapes and layouts: 0-d, empty, one element, odd sizes, several CPU work
    ranges, transposed, strided (non-dense), misaligned and channels-last."""
    base = torch.randn(9, 14, device=device)
    return [t.to(dtype) for t in [
        torch.randn((), device=device),
        torch.randn(0, device=device),
        torch.randn(1, device=device),
        torch.randn(3, 5, device=device),
        torch.randn(100_003, device=device),
        torch.randn(7, 13, device=device).t(),
        base[:, ::2],
        base.view(-1)[1:40],  # storage offset 1: not 16-byte aligned
        torch.randn(2, 3, 4, 5, device=device).contiguous(memory_format=torch.channels_last),
    ]]


def adamw_pair(**kw):
    return (lambda ps: fastext.optim.AdamW(ps, **kw),
            lambda ps: torch.optim.AdamW(ps, foreach=False, **kw))


def rmsprop_pair(**kw):
    return (lambda ps: fastext.optim.RMSprop(ps, **kw),
            lambda ps: torch.optim.RMSprop(ps, foreach=False, **kw))


@pytest.mark.parametrize("dtype", DTYPES, ids=str)
@pytest.mark.parametrize("amsgrad", [False, True])
@pytest.mark.parametrize("maximize", [False, True])
@pytest.mark.parametrize("weight_decay", [0.0, 0.1])
def test_adamw_matches_torch(device, dtype, amsgrad, maximize, weight_decay):
    ours, ref = adamw_pair(lr=1e-2, betas=(0.8, 0.99), weight_decay=weight_decay,
                           amsgrad=amsgrad, maximize=maximize)
    p, r, opt, _ = run_pair(ours, ref, shapes_params(device, dtype))
    assert_close(p, r)
    assert all(s["step"].item() == 10 for s in opt.state.values())


@pytest.mark.parametrize("dtype", DTYPES, ids=str)
@pytest.mark.parametrize("centered", [False, True])
@pytest.mark.parametrize("momentum", [0.0, 0.9])
@pytest.mark.parametrize("weight_decay", [0.0, 0.1])
@pytest.mark.parametrize("maximize", [False, True])
def test_rmsprop_matches_torch(device, dtype, centered, momentum, weight_decay, maximize):
    ours, ref = rmsprop_pair(lr=1e-3, alpha=0.9, centered=centered, momentum=momentum,
                             weight_decay=weight_decay, maximize=maximize)
    p, r, opt, _ = run_pair(ours, ref, shapes_params(device, dtype))
    assert_close(p, r)
    keys = {"step", "square_avg"} | ({"momentum_buffer"} if momentum else set()) | (
        {"grad_avg"} if centered else set())
    assert all(set(s) == keys for s in opt.state.values())


@pytest.mark.parametrize("make", [adamw_pair, rmsprop_pair], ids=["adamw", "rmsprop"])
def test_state_matches_torch(device, make):
    ours, ref = make(lr=1e-2, weight_decay=0.1)
    p, r, opt, ref_opt = run_pair(ours, ref, [torch.randn(4, 6, device=device)])
    for name, value in ref_opt.state[r[0]].items():
        torch.testing.assert_close(opt.state[p[0]][name].cpu(), value.cpu(), rtol=1e-5, atol=1e-7)


@pytest.mark.parametrize("make", [adamw_pair, rmsprop_pair], ids=["adamw", "rmsprop"])
def test_param_groups_and_missing_grads(device, make):
    """Two groups with their own hyper-parameters; one param gets a grad every other step
    (its step count lags), one never does (it has no state)."""
    ours, ref = make(lr=1e-2)
    params = [torch.randn(5, 3, device=device) for _ in range(4)]

    def groups(maker):
        def build(ps):
            return maker([{"params": ps[:2], "lr": 3e-2, "weight_decay": 0.2},
                          {"params": ps[2:]}])
        return build

    p, r, opt, ref_opt = run_pair(groups(ours), groups(ref), params,
                                  grad_mask=lambda step, i: i != 3 and (i != 1 or step % 2 == 0))
    assert_close(p, r)
    assert opt.state[p[1]]["step"].item() == 5 and p[3] not in opt.state
    assert len(opt.state) == len(ref_opt.state) == 3


@pytest.mark.parametrize("dtype", [torch.float32, torch.float16], ids=str)
def test_tensor_lr(device, dtype):
    ours, ref = adamw_pair(lr=torch.tensor(0.01), weight_decay=0.1)
    p, r, _, _ = run_pair(ours, ref, [torch.randn(64, device=device, dtype=dtype)])
    assert_close(p, r)


def test_mixed_dtypes_in_one_group(device):
    """A group holding fp32 and fp64 params is split into one fused call per dtype."""
    ours, ref = adamw_pair(lr=1e-2)
    params = [torch.randn(10, device=device), torch.randn(10, device=device, dtype=torch.float64)]
    p, r, _, _ = run_pair(ours, ref, params)
    assert_close(p, r)


def _mlp_pair(device):
    """Two equal seeded MLPs (6 -> 5 -> 2) on ``device``: ours and the reference."""
    torch.manual_seed(1)

    def mlp():
        layers = [torch.nn.Linear(6, 5), torch.nn.ReLU(), torch.nn.Linear(5, 2)]
        return torch.nn.Sequential(*layers).to(device)

    m_ours, m_ref = mlp(), mlp()
    m_ref.load_state_dict(m_ours.state_dict())
    return m_ours, m_ref


@pytest.mark.parametrize("make", [adamw_pair, rmsprop_pair], ids=["adamw", "rmsprop"])
def test_flat_layout_matches_torch(device, make):
    """flat=True keeps params/grads/states as views of one buffer and behaves like torch with
    zero_grad(set_to_none=False), also after a Module.zero_grad() that drops the views."""
    m_ours, m_ref = _mlp_pair(device)
    _, make_ref = make(lr=1e-2, weight_decay=0.1)
    kind = fastext.optim.AdamW if make is adamw_pair else fastext.optim.RMSprop
    opt = kind(m_ours.parameters(), lr=1e-2, weight_decay=0.1, flat=True)
    ref_opt = make_ref(list(m_ref.parameters()))
    bufs = {p.data_ptr() - opt._flat[0].param_buf.data_ptr() for p in m_ours.parameters()}
    total = sum(p.numel() for p in m_ours.parameters())
    assert len(bufs) == 4 and opt._flat[0].param_buf.numel() == total
    for step in range(8):
        x = torch.randn(16, 6, device=device)
        for m, o in ((m_ours, opt), (m_ref, ref_opt)):
            if step == 4:
                m.zero_grad(set_to_none=True)  # drops the flat grad views; step must recover
            else:
                o.zero_grad(set_to_none=False)
            m(x).pow(2).mean().backward()
            o.step()
    for a, b in zip(m_ours.parameters(), m_ref.parameters(), strict=True):
        torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-6)
    flat_grad = opt._flat[0].grad_buf
    assert all(p.grad.untyped_storage().data_ptr() == flat_grad.untyped_storage().data_ptr()
               for p in m_ours.parameters())


@pytest.mark.parametrize("make", [adamw_pair, rmsprop_pair], ids=["adamw", "rmsprop"])
def test_flat_frozen_params_match_torch(device, make):
    """flat=True with params that do not require grad (a frozen body, as Learner.freeze
    leaves it): as with torch, they get no gradient and are never stepped (weight decay
    included); unfrozen, they step from a fresh state as torch's do; frozen again, they stop.
    The rest match torch throughout."""
    m_ours, m_ref = _mlp_pair(device)
    _, make_ref = make(lr=1e-2, weight_decay=0.5)
    kind = fastext.optim.AdamW if make is adamw_pair else fastext.optim.RMSprop
    for m in (m_ours, m_ref):
        m[0].requires_grad_(False)
    opt = kind(m_ours.parameters(), lr=1e-2, weight_decay=0.5, flat=True)
    ref_opt = make_ref(list(m_ref.parameters()))
    frozen = m_ours[0].weight.detach().clone()
    for step in range(9):
        if step in (3, 6):  # unfreeze, then freeze again
            for m in (m_ours, m_ref):
                m[0].requires_grad_(step == 3)
        x = torch.randn(16, 6, device=device)
        for m, o in ((m_ours, opt), (m_ref, ref_opt)):
            o.zero_grad()
            m(x).pow(2).mean().backward()
            o.step()
        if step < 3:
            assert m_ours[0].weight.grad is None and m_ours[0].weight not in opt.state
            torch.testing.assert_close(m_ours[0].weight, frozen, rtol=0, atol=0)
        for a, b in zip(m_ours.parameters(), m_ref.parameters(), strict=True):
            torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-6)
        assert [p.grad is None for p in m_ours.parameters()] == [
            p.grad is None for p in m_ref.parameters()]
    for a, b in zip(m_ours.parameters(), m_ref.parameters(), strict=True):
        for name, value in ref_opt.state[b].items():
            torch.testing.assert_close(opt.state[a][name].cpu(), value.cpu(), rtol=1e-5,
                                       atol=1e-7)


def test_low_precision_state_dtype(device):
    """Like torch, state buffers keep the parameter's dtype; the math runs in fp32."""
    p = torch.nn.Parameter(torch.randn(8, device=device, dtype=torch.bfloat16))
    opt = fastext.optim.AdamW([p])
    p.grad = torch.randn_like(p)
    opt.step()
    assert opt.state[p]["exp_avg"].dtype == torch.bfloat16
    assert opt.state[p]["step"].dtype == torch.float32 and opt.state[p]["step"].device == p.device
    assert LOW  # the float64 reference above covers the values


@pytest.mark.parametrize("make", [adamw_pair, rmsprop_pair], ids=["adamw", "rmsprop"])
def test_transposed_param_with_contiguous_grad(device, make):
    """The layout torch 2.14.1's fused CPU AdamW gets wrong: a transposed parameter whose
    gradient is contiguous. Ours must equal the for-loop reference."""
    ours, ref = make(lr=0.1)
    p, r, _, _ = run_pair(ours, ref, [torch.randn(7, 13, device=device).t()], steps=3)
    assert p[0].stride() == (1, 13)
    assert_close(p, r)


def test_flat_load_of_a_fresh_state_dict_resets_state():
    """Loading a state_dict without state (e.g. from a fresh optimizer) must not leave stale
    moments in the flat buffers."""
    lin = torch.nn.Linear(4, 3)
    opt = fastext.optim.AdamW(lin.parameters(), lr=1e-2, flat=True)
    fresh = opt.state_dict()
    start = [p.detach().clone() for p in lin.parameters()]
    lin(torch.randn(8, 4)).sum().backward()
    opt.step()
    opt.load_state_dict(fresh)
    with torch.no_grad():
        for p, s in zip(lin.parameters(), start, strict=True):
            p.copy_(s)
    ref = torch.nn.Linear(4, 3)
    ref.load_state_dict(lin.state_dict())
    ref_opt = torch.optim.AdamW(ref.parameters(), lr=1e-2, foreach=False)
    x = torch.randn(8, 4)
    for m, o in ((lin, opt), (ref, ref_opt)):
        o.zero_grad()
        m(x).sum().backward()
        o.step()
    torch.testing.assert_close(lin.weight, ref.weight)


def test_flat_reload_of_its_own_state_keeps_it():
    lin = torch.nn.Linear(4, 3)
    opt = fastext.optim.AdamW(lin.parameters(), lr=1e-2, flat=True)
    lin(torch.randn(8, 4)).sum().backward()
    opt.step()
    before = opt.state[lin.weight]["exp_avg"].clone()
    opt.load_state_dict(opt.state_dict())
    assert torch.equal(opt.state[lin.weight]["exp_avg"], before) and before.abs().sum() > 0


def test_state_dict_from_older_torch_without_newer_keys():
    lin = torch.nn.Linear(4, 3)
    opt = fastext.optim.AdamW(lin.parameters())
    sd = opt.state_dict()
    del sd["param_groups"][0]["maximize"]  # as saved by torch < 1.11
    opt.load_state_dict(sd)
    lin(torch.randn(2, 4)).sum().backward()
    opt.step()
    assert opt.param_groups[0]["maximize"] is False


@pytest.mark.parametrize("make", [adamw_pair, rmsprop_pair], ids=["adamw", "rmsprop"])
def test_flat_single_slot_and_its_fallback_match_torch(device, make):
    """While every param steps every time, flat=True updates each buffer as one slot; a step
    without one param's gradient drops to per-param slots for good. Both match torch, and the
    per-param step counters stay right (torch's state_dict keeps one each)."""
    ours, ref = make(lr=1e-2, weight_decay=0.1)
    kind = fastext.optim.AdamW if make is adamw_pair else fastext.optim.RMSprop

    def flat(ps):
        return kind(ps, lr=1e-2, weight_decay=0.1, flat=True)

    params = [torch.randn(5, 3, device=device), torch.randn(7, device=device),
              torch.randn((), device=device)]
    # Steps 0-3 all params (single slot); step 4 skips param 1 (fallback from then on).
    p, r, opt, ref_opt = run_pair(flat, ref, params, steps=8,
                                  grad_mask=lambda step, i: not (step == 4 and i == 1))
    assert_close(p, r)
    assert not opt._flat[0].steps_in_step
    steps = [opt.state_dict()["state"][i]["step"].item() for i in range(3)]
    assert steps == [float(ref_opt.state[q]["step"]) for q in r] == [8.0, 7.0, 8.0]


def test_flat_single_slot_is_one_native_call(monkeypatch):
    opt = fastext.optim.AdamW([torch.nn.Parameter(torch.randn(n)) for n in (3, 4, 5)], flat=True)
    for q in opt.param_groups[0]["params"]:
        q.grad = torch.randn_like(q)
    calls = []
    real = fastext.ops.adamw_
    monkeypatch.setattr(fastext.ops, "adamw_", lambda ps, *a, **k: calls.append(len(ps))
                        or real(ps, *a, **k))
    opt.step()
    opt.step()
    assert calls == [1, 1]
    assert [opt.state[q]["step"].item() for q in opt.param_groups[0]["params"]] == [2.0] * 3


@pytest.mark.parametrize("flat", [False, True], ids=["lists", "flat"])
def test_found_inf_skips_every_step_counter(device, flat):
    """With found_inf set (the GradScaler protocol) nothing moves: params, states and every
    step counter, also those the flat single-slot path advances outside the kernel."""
    ps = [torch.nn.Parameter(torch.randn(n, device=device)) for n in (3, 4, 5)]
    opt = fastext.optim.AdamW(ps, lr=0.1, flat=flat)
    for q in ps:
        q.grad = torch.randn_like(q)
    opt.step()
    before = [q.detach().clone() for q in ps]
    opt.grad_scale = torch.ones((), device=device)
    opt.found_inf = torch.ones((), device=device)
    opt.step()
    assert all(torch.equal(a, b) for a, b in zip(ps, before, strict=True))
    assert [opt.state[q]["step"].item() for q in ps] == [1.0] * 3
    opt.found_inf.zero_()
    opt.step()
    assert [opt.state[q]["step"].item() for q in ps] == [2.0] * 3


def test_rebucketing_follows_which_params_have_grads(device):
    """The step's bucketing is cached; it must follow grads appearing and disappearing
    (freeze/unfreeze) and a param group added later."""
    ours, ref = adamw_pair(lr=1e-2)
    params = [torch.randn(4, device=device) for _ in range(4)]
    p, r, _, _ = run_pair(ours, ref, params, steps=9,
                          grad_mask=lambda step, i: (step + i) % 3 != 0)
    assert_close(p, r)


@pytest.mark.parametrize("make", [adamw_pair, rmsprop_pair], ids=["adamw", "rmsprop"])
@pytest.mark.parametrize("flat", [False, True], ids=["lists", "flat"])
@pytest.mark.parametrize("reset", ["clear", "new_state", "del_one", "assign"])
def test_state_changed_from_outside_matches_torch(device, make, flat, reset):
    """The step's bucketing is cached, but a state reset or replaced between steps
    (opt.state.clear(), a new opt.state, del opt.state[p], a param's dict replaced with new
    tensors) takes effect at the next step as in torch.optim, and state_dict shows the state
    in use."""
    _, make_ref = make(lr=1e-2, weight_decay=0.1)
    kind = fastext.optim.AdamW if make is adamw_pair else fastext.optim.RMSprop
    params = [torch.randn(5, 3, device=device), torch.randn(7, device=device),
              torch.randn((), device=device)]
    buffer = "exp_avg" if make is adamw_pair else "square_avg"

    def change_state(step, opt, ref_opt, ours, ref):
        if step != 2:
            return
        for o, ps in ((opt, ours), (ref_opt, ref)):
            if reset == "clear":
                o.state.clear()
            elif reset == "new_state":
                o.state = collections.defaultdict(dict)
            elif reset == "del_one":
                del o.state[ps[1]]
            else:
                o.state[ps[0]] = {**o.state[ps[0]], buffer: torch.full_like(ps[0], 0.25),
                                  "step": torch.zeros((), device=device)}

    ours, ref, opt, ref_opt = run_pair(lambda ps: kind(ps, lr=1e-2, weight_decay=0.1, flat=flat),
                                       make_ref, params, steps=6, after_step=change_state)
    assert_close(ours, ref)
    ours_sd, ref_sd = opt.state_dict()["state"], ref_opt.state_dict()["state"]
    assert ours_sd.keys() == ref_sd.keys() == {0, 1, 2}
    for i in ours_sd:
        assert ours_sd[i].keys() == ref_sd[i].keys()
        assert float(ours_sd[i]["step"]) == float(ref_sd[i]["step"])
        torch.testing.assert_close(ours_sd[i][buffer], ref_sd[i][buffer], rtol=1e-5, atol=1e-6)
    if flat:  # a whole reset keeps the one-slot step; a partial one ends it
        assert opt._flat[0].steps_in_step == (reset in ("clear", "new_state"))


def _one_step(kind, p, g, steps):
    state = [torch.zeros_like(p)]
    if kind == "adamw":
        fastext.ops.adamw_([p], [g], state, [torch.zeros_like(p)], [], [steps], lr=0.1)
    else:
        fastext.ops.rmsprop_([p], [g], state, [], [], [steps], lr=0.1)


@pytest.mark.parametrize("kind", ["adamw", "rmsprop"])
@pytest.mark.parametrize("n", [50, 0])
def test_step_tensor_of_several_counters(device, kind, n):
    """A step tensor of k counters (the flat layout keeps one per param in one buffer)
    advances all k, and the update reads the first: the same as a step with that counter
    alone. Empty params advance too (on CUDA RMSprop bumps in its kernel, which has no
    block for an empty param)."""
    g = torch.randn(n, device=device)
    p_many, p_one = torch.randn(n, device=device), torch.zeros(n, device=device)
    p_one.copy_(p_many)
    many = torch.tensor([3.0, 7.0, 0.0, 1.0], device=device)
    one = torch.tensor(3.0, device=device)
    _one_step(kind, p_many, g, many)
    _one_step(kind, p_one, g, one)
    assert many.tolist() == [4.0, 8.0, 1.0, 2.0] and one.item() == 4.0
    torch.testing.assert_close(p_many, p_one, rtol=0, atol=0)


@pytest.mark.parametrize("kind", ["adamw", "rmsprop"])
def test_every_step_counter_advances_once_per_step(device, kind):
    """Many params (more than one CUDA launch's 192 slots), an empty one, and on CUDA one of
    more chunks than a launch holds (it continues into the next launch): after 3 steps every
    counter reads 3, and the update matches torch's."""
    sizes = [1] * 200 + [0, 65536 * 2 + 7]
    if device == "cuda":
        sizes.append(65536 * 1290 + 5)  # 1,291 chunks: cut by the 1,280-block launch limit
    ours, ref = (adamw_pair if kind == "adamw" else rmsprop_pair)(lr=1e-2)
    params = [torch.randn(n, device=device) for n in sizes]
    p, r, opt, _ = run_pair(ours, ref, params, steps=3)
    assert_close(p, r)
    assert {float(opt.state[q]["step"]) for q in p} == {3.0}


@pytest.mark.parametrize("kind", ["adamw_", "rmsprop_"])
def test_direct_binding_is_the_op(device, kind):
    """fastext._C's direct entry points (what eager steps call) give what torch.ops gives,
    and raise its errors."""
    def run(fn):
        torch.manual_seed(0)
        p, g = torch.randn(33, device=device), torch.randn(33, device=device)
        states = [torch.rand(33, device=device)]
        step = torch.zeros((), device=device)
        if kind == "adamw_":
            fn([p], [g], states, [torch.rand(33, device=device)], [], [step], [], 0.1, 0.9,
               0.999, 1e-8, 0.01, False, False, None, None, None)
        else:  # decoupled decay (the last argument) on
            fn([p], [g], states, [], [], [step], [], 0.1, 0.99, 1e-8, 0.1, 0.0, False, False,
               None, None, None, True)
        return p, states[0], step

    for a, b in zip(run(getattr(torch.ops.fastext, kind)), run(getattr(fastext._C, kind)),
                    strict=True):
        torch.testing.assert_close(a, b, rtol=0, atol=0)
    z = torch.zeros(2, device=device)
    extra = () if kind == "adamw_" else (False,)
    with pytest.raises(RuntimeError, match="same length"):
        getattr(fastext._C, kind)([z], [], [z.clone()], [z.clone()], [z.clone()], [], [], 0.1,
                                  0.9, 0.9, 1e-8, 0.0, False, False, None, None, None, *extra)
