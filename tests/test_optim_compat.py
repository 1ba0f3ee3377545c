"""Drop-in behaviour: state_dict both ways, LR schedulers, GradScaler, torch.compile,
and clear errors for bad input."""

import copy
import io

import pytest
import torch
from logged_tensor import Logged
from optim_reference import assert_close, run_pair

import fastext

PAIRS = {
    "adamw": (fastext.optim.AdamW, torch.optim.AdamW,
              dict(lr=1e-2, weight_decay=0.1, amsgrad=True)),
    "rmsprop": (fastext.optim.RMSprop, torch.optim.RMSprop,
                dict(lr=1e-3, momentum=0.9, centered=True, weight_decay=0.1)),
}


def _model(device):
    layers = [torch.nn.Linear(8, 16), torch.nn.ReLU(), torch.nn.Linear(16, 3)]
    return torch.nn.Sequential(*layers).to(device)


def _train(model, opt, steps, seed, sched=None):
    g = torch.Generator().manual_seed(seed)
    dev = next(model.parameters()).device
    for _ in range(steps):
        x = torch.randn(32, 8, generator=g).to(dev)
        opt.zero_grad()
        model(x).pow(2).mean().backward()
        opt.step()
        if sched is not None:
            sched.step()


@pytest.mark.parametrize("kind", PAIRS)
@pytest.mark.parametrize("direction", ["ours_to_torch", "torch_to_ours"])
def test_state_dict_round_trip(device, kind, direction):
    """Train 5 steps with one optimizer, hand its state_dict to the other, train 5 more:
    equal to training 10 steps with torch alone."""
    ours_cls, ref_cls, kw = PAIRS[kind]
    first, second = (ours_cls, ref_cls) if direction == "ours_to_torch" else (ref_cls, ours_cls)
    m_a, m_ref = _model(device), _model(device)
    m_ref.load_state_dict(m_a.state_dict())
    opt_ref = ref_cls(m_ref.parameters(), foreach=False, **kw)
    _train(m_ref, opt_ref, 10, seed=1)

    opt_a = first(m_a.parameters(), **kw)
    _train(m_a, opt_a, 5, seed=1)
    sd = opt_a.state_dict()
    opt_b = second(m_a.parameters(), **kw)
    opt_b.load_state_dict(sd)
    assert opt_b.state_dict()["param_groups"] == sd["param_groups"]
    g = torch.Generator().manual_seed(1)
    for _ in range(5):  # replay the first five batches' RNG draws, then train on
        torch.randn(32, 8, generator=g)
    for _ in range(5):
        x = torch.randn(32, 8, generator=g).to(device)
        opt_b.zero_grad()
        m_a(x).pow(2).mean().backward()
        opt_b.step()
    assert_close(list(m_a.parameters()), list(m_ref.parameters()))
    steps = {float(s["step"]) for s in opt_b.state.values()}
    assert steps == {10.0}


def test_state_dict_keys_match_torch():
    p = torch.nn.Parameter(torch.randn(3))
    for ours_cls, ref_cls, kw in PAIRS.values():
        a, b = ours_cls([p], **kw), ref_cls([p], **kw)
        p.grad = torch.randn(3)
        a.step()
        b.step()
        sa, sb = a.state_dict(), b.state_dict()
        assert sa["param_groups"][0].keys() == sb["param_groups"][0].keys()
        assert sa["state"][0].keys() == sb["state"][0].keys()


@pytest.mark.parametrize("kind", PAIRS)
@pytest.mark.parametrize("flat", [False, True], ids=["lists", "flat"])
def test_refused_load_state_dict_leaves_state_alone(device, kind, flat):
    """A state_dict that torch refuses (a group of another size, another number of groups)
    raises and leaves the live state as it was, as in torch.optim: training goes on as if
    the load had not been tried (flat=True used to zero its buffers before torch's checks)."""
    ours_cls, ref_cls, kw = PAIRS[kind]
    params = [torch.randn(3, device=device), torch.randn(2, 2, device=device)]
    one = [torch.nn.Parameter(torch.randn(3))]
    two = [{"params": [torch.nn.Parameter(torch.randn(3))]},
           {"params": [torch.nn.Parameter(torch.randn(2, 2))]}]
    refused = [ref_cls(one, **kw).state_dict(), ref_cls(two, **kw).state_dict()]

    def try_loads(step, opt, ref_opt, ours, ref):
        if step == 2:
            for sd in refused:
                for o in (opt, ref_opt):
                    with pytest.raises(ValueError, match="loaded state dict"):
                        o.load_state_dict(sd)

    ours, ref, opt, _ = run_pair(lambda ps: ours_cls(ps, flat=flat, **kw),
                                 lambda ps: ref_cls(ps, foreach=False, **kw), params, steps=6,
                                 after_step=try_loads)
    assert_close(ours, ref)
    assert [opt.state[p]["step"].item() for p in ours] == [6.0, 6.0]


@pytest.mark.parametrize("kind", PAIRS)
@pytest.mark.parametrize("layout", ["lists", "flat", "master_weights"])
@pytest.mark.parametrize("how", ["deepcopy", "torch.save"])
def test_copied_optimizer_steps_like_the_original(kind, layout, how):
    """copy.deepcopy(opt) and torch.save(opt) + torch.load give an optimizer (over copies of
    the params) that steps exactly as the original, as with torch.optim; the copy shares no
    memory with the original."""
    ours_cls, _, kw = PAIRS[kind]
    dtype = torch.float16 if layout == "master_weights" else torch.float32
    params = [torch.randn(shape).to(dtype).requires_grad_() for shape in ((5, 3), (7,))]
    opt = ours_cls(params, flat=layout == "flat", master_weights=layout == "master_weights", **kw)

    def grads():
        return [torch.randn(p.shape).to(dtype) for p in params]

    for _ in range(3):
        for p, g in zip(params, grads(), strict=True):
            p.grad = g
        opt.step()
    if how == "deepcopy":
        other = copy.deepcopy(opt)
    else:
        buf = io.BytesIO()
        torch.save(opt, buf)
        buf.seek(0)
        other = torch.load(buf, weights_only=False)
    assert (other.flat, other.master_weights) == (opt.flat, opt.master_weights)
    copies = other.param_groups[0]["params"]
    assert all(c is not p for c, p in zip(copies, params, strict=True))
    before = [c.detach().clone() for c in copies]
    for p, g in zip(params, grads(), strict=True):
        p.grad = g
    opt.step()  # the original alone: the copy must not move
    assert all(torch.equal(a, b) for a, b in zip(before, copies, strict=True))
    for c, p in zip(copies, params, strict=True):
        c.grad = p.grad.clone()
    other.step()
    for _ in range(3):
        for p, c, g in zip(params, copies, grads(), strict=True):
            p.grad, c.grad = g, g.clone()
        opt.step()
        other.step()
    assert all(torch.equal(c, p) for c, p in zip(copies, params, strict=True))
    for c, p in zip(copies, params, strict=True):
        for name, value in opt.state[p].items():
            assert torch.equal(other.state[c][name], value), name
    other.zero_grad()


def test_shallow_copy_of_a_flat_optimizer_shares_it():
    """copy.copy(opt) shares the state and the flat buffers (as torch's shallow copy shares
    the state): the original keeps training as it would have."""
    torch.manual_seed(0)
    params = [torch.randn(4, 3), torch.randn(5)]
    ours = [p.clone().requires_grad_() for p in params]
    ref = [p.clone().requires_grad_() for p in params]
    opt = fastext.optim.AdamW(ours, lr=1e-2, flat=True)
    ref_opt = torch.optim.AdamW(ref, lr=1e-2, foreach=False)
    for step in range(4):
        for p, r in zip(ours, ref, strict=True):
            p.grad = torch.randn(p.shape)
            r.grad = p.grad.clone()
        opt.step()
        ref_opt.step()
        if step == 1:
            shallow = copy.copy(opt)
            assert shallow.state is opt.state and shallow.flat
    assert_close(ours, ref)


@pytest.mark.parametrize("kind", PAIRS)
def test_one_cycle_scheduler_cycles_momentum(device, kind):
    """OneCycleLR drives lr and betas[0] (AdamW) / momentum (RMSprop) the same way."""
    ours_cls, ref_cls, kw = PAIRS[kind]

    def sched(opt):
        return torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=0.05, total_steps=12)

    p, r, opt, ref_opt = run_pair(lambda ps: ours_cls(ps, **kw),
                                  lambda ps: ref_cls(ps, foreach=False, **kw),
                                  [torch.randn(6, 4, device=device)], steps=12, sched=sched)
    assert_close(p, r)
    key = "betas" if kind == "adamw" else "momentum"
    assert opt.param_groups[0][key] == ref_opt.param_groups[0][key]


def test_step_and_cosine_schedulers(device):
    for make in (lambda o: torch.optim.lr_scheduler.StepLR(o, 3, gamma=0.5),
                 lambda o: torch.optim.lr_scheduler.CosineAnnealingLR(o, T_max=10)):
        p, r, _, _ = run_pair(lambda ps: fastext.optim.AdamW(ps, lr=1e-2),
                              lambda ps: torch.optim.AdamW(ps, lr=1e-2, foreach=False),
                              [torch.randn(5, device=device)], steps=10, sched=make)
        assert_close(p, r)


def _scaled_steps(models, opts, scalers, steps, inf_at=2):
    """GradScaler steps of each (model, optimizer, scaler) on the same batches, an inf in a
    grad at step ``inf_at``; yields each step's index once all have taken it."""
    device = next(models[0].parameters()).device
    for step in range(steps):
        x = torch.randn(16, 8, device=device)
        for m, o, s in zip(models, opts, scalers, strict=True):
            o.zero_grad()
            s.scale(m(x).pow(2).mean()).backward()
            if step == inf_at:
                m[0].weight.grad[0, 0] = float("inf")
            s.step(o)
            s.update()
        yield step


def test_grad_scaler_protocol(device):
    """torch.amp.GradScaler hands grad_scale/found_inf to the step (no separate unscale
    pass); the trajectory equals GradScaler + torch AdamW, including a skipped step."""
    models = [_model(device), _model(device)]
    models[1].load_state_dict(models[0].state_dict())
    opts = [fastext.optim.AdamW(models[0].parameters(), lr=1e-2),
            torch.optim.AdamW(models[1].parameters(), lr=1e-2, foreach=False)]
    scalers = [torch.amp.GradScaler(device, init_scale=2.0**10, growth_interval=3) for _ in opts]
    for _ in _scaled_steps(models, opts, scalers, 8):
        pass
    assert scalers[0].get_scale() == scalers[1].get_scale()
    assert_close(list(models[0].parameters()), list(models[1].parameters()))
    assert opts[0].state[models[0][0].weight]["step"].item() == 7


@pytest.mark.parametrize("kind", ["adamw", "rmsprop"])
def test_grads_left_unscaled_after_a_scaled_step(device, kind):
    """After GradScaler's step the grads hold the unscaled values, as with torch's
    optimizers (its fused AdamW writes them back too); a step skipped on an inf leaves them
    as they were, as torch's fused AdamW does (its other paths unscale before the check)."""
    models = [_model(device), _model(device)]
    models[1].load_state_dict(models[0].state_dict())
    if kind == "adamw":
        opts = [fastext.optim.AdamW(models[0].parameters(), lr=1e-2),
                torch.optim.AdamW(models[1].parameters(), lr=1e-2, fused=True)]
    else:
        opts = [fastext.optim.RMSprop(models[0].parameters(), lr=1e-2),
                torch.optim.RMSprop(models[1].parameters(), lr=1e-2, foreach=False)]
    scalers = [torch.amp.GradScaler(device, init_scale=2.0**10) for _ in opts]
    for step in _scaled_steps(models, opts, scalers, 4):
        ours, ref = ([p.grad for p in m.parameters()] for m in models)
        if step == 2 and kind == "rmsprop":
            ours = [g / (scalers[0].get_scale() * 2) for g in ours]  # the skipped step's scale
        # loose: the params drift apart by float rounding; a scaled grad is 1024x off
        torch.testing.assert_close(ours, ref, rtol=1e-3, atol=1e-4)


@pytest.mark.parametrize("op", ["adamw_", "rmsprop_"])
def test_grads_shared_by_two_params_refused_with_a_grad_scale(device, op):
    """With a grad_scale each grad is unscaled in place: one shared by two params would be
    unscaled twice (the second param stepping with grad / scale^2), so it is refused before
    anything moves; without one it is read only, and taken."""
    g = torch.full((6,), 8.0, device=device)
    ps = [torch.randn(6, device=device) for _ in range(2)]
    states = [[torch.zeros(6, device=device) for _ in ps] for _ in range(2)]
    if op == "rmsprop_":
        states[1] = []
    steps = [torch.zeros((), device=device) for _ in ps]
    call = getattr(fastext.ops, op)
    before = [p.clone() for p in ps]
    with pytest.raises(RuntimeError, match="grads share memory"):
        call(ps, [g, g], *states, [], steps, grad_scale=torch.tensor(2.0, device=device))
    assert all(torch.equal(p, b) for p, b in zip(ps, before, strict=True))
    assert torch.equal(g, torch.full((6,), 8.0, device=device))
    buf = torch.full((9,), 8.0, device=device)
    with pytest.raises(RuntimeError, match="grads share memory"):  # overlapping views too
        call(ps, [buf[:6], buf[3:]], *states, [], steps,
             grad_scale=torch.tensor(2.0, device=device))
    call(ps, [g, g], *states, [], steps)
    assert all(s.item() == 1 for s in steps)


def test_found_inf_skips_and_grad_scale_divides(device):
    p = [torch.randn(50, device=device)]
    g = [torch.randn(50, device=device) * 8]
    def zeros(*shape):
        return [torch.zeros(shape, device=device)]

    m, v, st = zeros(50), zeros(50), zeros()
    before = p[0].clone()
    fastext.ops.adamw_(p, g, m, v, [], st, lr=0.1, found_inf=torch.ones((), device=device))
    assert torch.equal(p[0], before) and st[0].item() == 0 and not m[0].any()
    ref, unscaled, version = [before.clone()], [g[0] / 8], g[0]._version
    mr, vr, sr = zeros(50), zeros(50), zeros()
    fastext.ops.adamw_(p, g, m, v, [], st, lr=0.1, grad_scale=torch.tensor(8.0, device=device),
                       found_inf=torch.zeros((), device=device))
    fastext.ops.adamw_(ref, unscaled, mr, vr, [], sr, lr=0.1)
    torch.testing.assert_close(p[0], ref[0])
    torch.testing.assert_close(m[0], mr[0])
    torch.testing.assert_close(g[0], unscaled[0])  # written back unscaled, as torch's fused
    assert g[0]._version == version + 1


@pytest.mark.parametrize("op", ["adamw_", "rmsprop_"])
def test_skipped_step_is_checked_as_a_taken_one(device, op):
    """found_inf skips the update, not the checks: arguments a step would refuse are refused
    when the step is skipped too, and the params' version counters move either way. The
    CUDA op reads found_inf on the device, so it always did both; the CPU op used to return
    before them."""
    p, g = [torch.randn(50, device=device)], [torch.randn(50, device=device)]
    st, skip = [torch.zeros(1, device=device)], torch.ones((), device=device)

    def call(dtype):
        states = [[torch.zeros(50, device=device, dtype=dtype)], [torch.zeros(50, device=device)]]
        if op == "rmsprop_":
            states[1] = []  # grad_avgs: not centered
        getattr(fastext.ops, op)(p, g, *states, [], st, found_inf=skip)

    before, version = p[0].clone(), p[0]._version
    with pytest.raises(RuntimeError, match="optimizer state must match"):
        call(torch.float64)
    assert p[0]._version == version
    call(torch.float32)
    assert torch.equal(p[0], before) and st[0].item() == 0
    assert p[0]._version == version + 1


def test_compiled_training_step():
    """A torch.compile'd step (forward, backward, fused optimizer) matches eager."""
    torch.manual_seed(0)
    m_c, m_e = _model("cpu"), _model("cpu")
    m_e.load_state_dict(m_c.state_dict())
    o_c = fastext.optim.AdamW(m_c.parameters(), lr=1e-2, weight_decay=0.1)
    o_e = fastext.optim.AdamW(m_e.parameters(), lr=1e-2, weight_decay=0.1)

    def train_step(model, opt, x):
        loss = model(x).pow(2).mean()
        loss.backward()
        opt.step()
        opt.zero_grad()
        return loss

    compiled = torch.compile(train_step)
    for _ in range(4):
        x = torch.randn(16, 8)
        torch.testing.assert_close(compiled(m_c, o_c, x), train_step(m_e, o_e, x))
    assert_close(list(m_c.parameters()), list(m_e.parameters()))


# -- bad input -------------------------------------------------------------------------

def test_sparse_grad_is_a_clear_error():
    emb = torch.nn.Embedding(10, 3, sparse=True)
    opt = fastext.optim.AdamW(emb.parameters())
    emb(torch.tensor([1, 2])).sum().backward()
    with pytest.raises(RuntimeError, match="sparse gradients"):
        opt.step()


def test_bad_arguments():
    p = [torch.nn.Parameter(torch.randn(2))]
    with pytest.raises(ValueError, match="learning rate"):
        fastext.optim.AdamW(p, lr=-1)
    with pytest.raises(ValueError, match="beta"):
        fastext.optim.AdamW(p, betas=(1.0, 0.9))
    with pytest.raises(ValueError, match="momentum"):
        fastext.optim.RMSprop(p, momentum=-0.1)
    with pytest.raises(NotImplementedError, match="differentiable"):
        fastext.optim.AdamW(p, differentiable=True)


def test_op_input_checks():
    f32 = torch.zeros(4)
    st = [torch.zeros(())]
    with pytest.raises(RuntimeError, match="same length"):
        fastext.ops.adamw_([f32], [], [f32.clone()], [f32.clone()], [], st)
    with pytest.raises(RuntimeError, match="share a dtype"):
        fastext.ops.adamw_([f32], [f32.double()], [f32.clone()], [f32.clone()], [], st)
    with pytest.raises(RuntimeError, match="float32, float64, float16 or bfloat16"):
        i = torch.zeros(4, dtype=torch.int32)
        fastext.ops.adamw_([i], [i], [i], [i], [], st)
    with pytest.raises(RuntimeError, match="grad shape"):
        fastext.ops.adamw_([f32], [torch.zeros(5)], [f32.clone()], [f32.clone()], [], st)
    for bad_step in (torch.zeros(0), torch.zeros((), dtype=torch.float64), torch.zeros(4)[::2]):
        with pytest.raises(RuntimeError, match="contiguous float32 tensor of one or more"):
            fastext.ops.adamw_([f32], [f32.clone()], [f32.clone()], [f32.clone()], [], [bad_step])
    with pytest.raises(RuntimeError, match="amsgrad needs"):
        fastext.ops.adamw_([f32], [f32.clone()], [f32.clone()], [f32.clone()], [], st, amsgrad=True)
    with pytest.raises(RuntimeError, match="centered needs"):
        fastext.ops.rmsprop_([f32], [f32.clone()], [f32.clone()], [], [], st, centered=True)


@pytest.mark.parametrize("op", ["adamw_", "rmsprop_"])
def test_ops_refuse_shared_step_counters(device, op):
    """Each param needs its own step counter: shared or overlapping ones would advance twice
    per step. Disjoint views of one buffer, in any order, are fine."""
    ps = [torch.zeros(4, device=device) for _ in range(3)]

    def step(steps):
        gs, s0, s1 = ([torch.ones_like(p) for p in ps] for _ in range(3))
        getattr(fastext.ops, op)(ps, gs, s0, s1, [], steps)

    buf = torch.zeros(4, device=device)
    for steps in ([buf[0]] * 3, [buf[0], buf[1], buf[0]], [buf[0:2], buf[2], buf[1]]):
        with pytest.raises(RuntimeError, match="share a step counter"):
            step(steps)
    step([buf[2], buf[0], buf[1]])
    assert buf.tolist() == [1.0, 1.0, 1.0, 0.0]
    step([torch.zeros((), device=device) for _ in ps])


def test_subclass_params_go_through_torch_ops():
    """Params of a __torch_function__ subclass take torch.ops.fastext.* (whose overrides the
    subclass sees) rather than the direct binding; the update is the same."""
    torch.manual_seed(0)
    Logged.seen.clear()
    plain = [torch.nn.Parameter(torch.randn(5)) for _ in range(2)]
    logged = [torch.nn.Parameter(p.detach().clone().as_subclass(Logged)) for p in plain]
    for a, b in zip(plain, logged, strict=True):
        a.grad = torch.randn(5)
        b.grad = a.grad.clone().as_subclass(Logged)
    fastext.optim.AdamW(plain, lr=0.1).step()
    fastext.optim.AdamW(logged, lr=0.1).step()
    assert torch.ops.fastext.adamw_.default in Logged.seen
    for a, b in zip(plain, logged, strict=True):
        torch.testing.assert_close(a.detach(), b.detach().as_subclass(torch.Tensor),
                                   rtol=0, atol=0)


# -- review of 2026-11-28: what a step writes, autograd and the caller can see --------------
@pytest.mark.parametrize("flat", [False, True])
@pytest.mark.parametrize("name", sorted(PAIRS))
def test_step_moves_param_versions_so_stale_graphs_fail(device, name, flat):
    """A graph that saved a param and is differentiated after a step would use the new
    values: torch's optimizers bump the params' version counters so that backward fails
    instead. So does the fused step (through the op, or for flat=True around it)."""
    ours_cls, torch_cls, kwargs = PAIRS[name]
    for cls, extra in ((torch_cls, {}), (ours_cls, {"flat": flat})):
        w = torch.nn.Parameter(torch.ones(3, device=device))
        x = torch.randn(3, device=device, requires_grad=True)
        y = (w * x).sum()
        w.grad = torch.ones_like(w)
        before = w._version
        cls([w], **kwargs, **extra).step()
        assert w._version > before
        with pytest.raises(RuntimeError, match="modified by an inplace operation"):
            y.backward()


def test_master_weight_step_moves_the_model_params_versions(device):
    model = torch.nn.Linear(4, 2).to(device).half()
    opt = fastext.optim.AdamW(model.parameters(), lr=1e-3, master_weights=True)
    for p in model.parameters():
        p.grad = torch.ones_like(p)
    before = [p._version for p in model.parameters()]
    opt.step()
    assert all(p._version > b for p, b in zip(model.parameters(), before, strict=True))


def test_overlapping_state_refused_before_any_step(device):
    """A state whose elements share memory (an expand) cannot take its update back: refused
    before any param or step counter moves (it used to fail only in the write-back, after
    every param had been stepped)."""
    ps = [torch.ones(4, device=device), torch.ones(4, device=device)]
    gs = [torch.full((4,), 0.5, device=device) for _ in ps]
    m = [torch.zeros(4, device=device), torch.zeros(1, device=device).expand(4)]
    v = [torch.zeros(4, device=device) for _ in ps]
    steps = [torch.zeros((), device=device) for _ in ps]
    before = [t.clone() for t in (*ps, *steps)]
    with pytest.raises(RuntimeError, match="share memory"):
        fastext.ops.adamw_(ps, gs, m, v, [], steps, lr=0.1)
    for t, b in zip((*ps, *steps), before, strict=True):
        assert torch.equal(t, b)


@pytest.mark.parametrize("op", ["adamw_", "rmsprop_"])
def test_one_params_buffers_that_share_memory_are_refused(device, op):
    """The kernels read and write a param's buffers in one pass: the same tensor passed as
    two states (or a state that is the param, its grad or a view of either) would read what
    the pass had just written. Refused before anything moves; disjoint views of one buffer
    are fine."""
    first, second = ("exp_avg", "exp_avg_sq") if op == "adamw_" else ("square_avg", "grad_avg")
    kwargs = {} if op == "adamw_" else {"centered": True}

    def call(p, g, s0, s1):
        st = torch.zeros((), device=device)
        getattr(fastext.ops, op)([p], [g], [s0], [s1], [], [st], lr=0.1, **kwargs)
        return st

    def zeros():
        return torch.zeros(4, 4, device=device)

    p, shared, buf = torch.ones(4, 4, device=device), zeros(), torch.zeros(48, device=device)
    g = torch.full((4, 4), 0.5, device=device)
    cases = [
        (first, second, (p, g, shared, shared)),
        ("param", first, (p, g, p, zeros())),
        ("grad", second, (p, g, zeros(), g)),
        (first, second, (p, g, buf[:16].view(4, 4), buf[8:24].view(4, 4))),  # views overlapping
        ("param", second, (p, g, zeros(), p.t())),  # a transposed view: another layout
    ]
    for a, b, args in cases:
        before = [t.clone() for t in args]
        with pytest.raises(RuntimeError, match=f"param 0's {a} and {b} share memory"):
            call(*args)
        assert all(torch.equal(t, t0) for t, t0 in zip(args, before, strict=True))
    assert float(call(p, g, buf[:16].view(4, 4), buf[16:32].view(4, 4))) == 1  # disjoint views
    assert not torch.equal(p, torch.ones_like(p))


def test_unsupported_dtype_in_a_later_group_steps_nothing(device):
    """Every group is planned before any launch: a param the kernels cannot step (complex)
    in the second group leaves the first group's params and step counts as they were."""
    a = torch.nn.Parameter(torch.ones(3, device=device))
    c = torch.nn.Parameter(torch.ones(3, dtype=torch.complex64, device=device))
    a.grad, c.grad = torch.ones_like(a), torch.ones_like(c)
    opt = fastext.optim.AdamW([{"params": [a]}, {"params": [c]}], lr=0.1)
    for _ in range(2):  # a retry steps nothing either
        with pytest.raises(RuntimeError, match="got torch.complex64"):
            opt.step()
    assert torch.equal(a, torch.ones_like(a))
    assert all(float(s["step"]) == 0 for s in opt.state.values())
