"""flat=True against torch.optim when params are frozen between fits (their zero grad views
kept by zero_grad must not step them) and when params are re-laid out after the optimizer
was built (``p.data`` replaced: the step must still reach them)."""

from __future__ import annotations

from collections.abc import Callable

import pytest
import torch

import fastext

Pair = tuple[Callable[..., torch.optim.Optimizer], Callable[..., torch.optim.Optimizer]]

KW = dict(lr=1e-2, weight_decay=0.1)
# (ours with flat=True, torch's reference): AdamW, RMSprop with momentum, and centered too.
PAIRS: dict[str, Pair] = {
    "adamw": (lambda ps: fastext.optim.AdamW(ps, flat=True, **KW),
              lambda ps: torch.optim.AdamW(ps, foreach=False, **KW)),
    "rmsprop-momentum": (lambda ps: fastext.optim.RMSprop(ps, flat=True, momentum=0.9, **KW),
                         lambda ps: torch.optim.RMSprop(ps, foreach=False, momentum=0.9, **KW)),
    "rmsprop-centered": (
        lambda ps: fastext.optim.RMSprop(ps, flat=True, momentum=0.9, centered=True, **KW),
        lambda ps: torch.optim.RMSprop(ps, foreach=False, momentum=0.9, centered=True, **KW)),
}


def _models(device: str) -> tuple[torch.nn.Sequential, torch.nn.Sequential]:
    """Two equal small convnets (body: conv; head: linear): ours and the reference."""
    torch.manual_seed(1)

    def net() -> torch.nn.Sequential:
        return torch.nn.Sequential(torch.nn.Conv2d(3, 4, 3), torch.nn.ReLU(), torch.nn.Flatten(),
                                   torch.nn.Linear(4 * 4 * 4, 2)).to(device)

    ours, ref = net(), net()
    ref.load_state_dict(ours.state_dict())
    return ours, ref


def _groups(m: torch.nn.Sequential, split: bool) -> list:
    # split: body and head as two param groups (Learner's layer groups), else one group.
    if split:
        return [{"params": list(m[0].parameters())}, {"params": list(m[3].parameters())}]
    return list(m.parameters())


def _train_step(m: torch.nn.Module, opt: torch.optim.Optimizer, x: torch.Tensor) -> None:
    # Learner's order: backward, step, then zero_grad (so grads are cleared before a freeze).
    m(x).square().mean().backward()
    opt.step()
    opt.zero_grad()


def _assert_same(ours: torch.nn.Module, ref: torch.nn.Module, opt: torch.optim.Optimizer,
                 ref_opt: torch.optim.Optimizer) -> None:
    """Params and every state entry as torch's; the state looser: centered RMSprop's
    momentum divides by sqrt(square_avg - grad_avg**2), which magnifies float rounding."""
    for a, b in zip(ours.parameters(), ref.parameters(), strict=True):
        torch.testing.assert_close(a, b, rtol=1e-4, atol=1e-5)
        assert set(opt.state[a]) == set(ref_opt.state[b])
        for name, value in ref_opt.state[b].items():
            torch.testing.assert_close(opt.state[a][name].cpu().float(), value.cpu().float(),
                                       rtol=1e-3, atol=1e-4)


@pytest.mark.parametrize("split", [False, True], ids=["one-group", "body-head-groups"])
@pytest.mark.parametrize("make", PAIRS.values(), ids=PAIRS.keys())
def test_frozen_after_zero_grad_is_not_stepped(device, make, split):
    """fit -> freeze -> fit -> unfreeze -> fit: the body, frozen while it still holds the zero
    grad views zero_grad left it, keeps its weights and its state (step count included)
    while frozen, and afterwards trains exactly as torch's (which got no grad and was not
    stepped); the head matches torch throughout."""
    make_ours, make_ref = make
    m_ours, m_ref = _models(device)
    opt, ref_opt = make_ours(_groups(m_ours, split)), make_ref(_groups(m_ref, split))
    body = list(m_ours[0].parameters())
    for step in range(9):
        if step in (3, 6):  # freeze the body, then unfreeze it
            for m in (m_ours, m_ref):
                m[0].requires_grad_(step == 6)
        if step == 3:
            assert all(p.grad is not None for p in body)  # the stale zero views
            weights = [p.detach().clone() for p in body]
            states = [{k: v.clone() for k, v in opt.state[p].items()} for p in body]
        x = torch.randn(4, 3, 6, 6, device=device)
        for m, o in ((m_ours, opt), (m_ref, ref_opt)):
            _train_step(m, o, x)
        if 3 <= step < 6:
            for p, w, st in zip(body, weights, states, strict=True):
                assert torch.equal(p, w)
                assert opt.state[p].keys() == st.keys()
                assert all(torch.equal(opt.state[p][k], v) for k, v in st.items())
                assert opt.state[p]["step"].item() == 3
        _assert_same(m_ours, m_ref, opt, ref_opt)
    assert [opt.state[p]["step"].item() for p in body] == [6.0, 6.0]


@pytest.mark.parametrize("make", PAIRS.values(), ids=PAIRS.keys())
def test_frozen_param_is_not_stepped_whatever_its_grad(device, make):
    """A frozen param is skipped however it got a .grad (here set by hand), also when the
    rest of its flat buffer would otherwise be stepped as one slot."""
    make_ours, _ = make
    ps = [torch.nn.Parameter(torch.randn(n, device=device)) for n in (3, 4, 5)]
    opt = make_ours(ps)
    for q in ps:
        q.grad = torch.randn_like(q)
    opt.step()
    ps[1].requires_grad_(False)
    ps[1].grad = torch.randn_like(ps[1])
    before = ps[1].detach().clone()
    opt.step()
    assert torch.equal(ps[1], before)
    assert [opt.state[q]["step"].item() for q in ps] == [2.0, 1.0, 2.0]


@pytest.mark.parametrize("when", ["after-zero_grad", "before-zero_grad"])
@pytest.mark.parametrize("relayout", ["channels_last", "new_values"])
@pytest.mark.parametrize("make", PAIRS.values(), ids=PAIRS.keys())
def test_params_relaid_out_after_the_optimizer_still_train(device, make, relayout, when):
    """After the optimizer was built, the params' data is replaced (model.to(channels_last),
    which moves the grads along, or p.data = new values), after a zero_grad or between a
    step and the zero_grad: the step still reaches them (their new values kept, they and
    their grads are views into the flat buffers again) and they train as torch's do."""
    make_ours, make_ref = make
    m_ours, m_ref = _models(device)
    opt, ref_opt = make_ours(list(m_ours.parameters())), make_ref(list(m_ref.parameters()))
    fb = opt._flat[0]

    def relay() -> None:
        for m in (m_ours, m_ref):
            if relayout == "channels_last":
                m.to(memory_format=torch.channels_last)
            else:
                torch.manual_seed(2)
                for p in m.parameters():
                    p.data = torch.randn_like(p)
        assert m_ours[0].weight.data_ptr() != fb.param_buf.data_ptr()  # cut from the buffer

    for step in range(6):
        x = torch.randn(4, 3, 6, 6, device=device)
        for m, o in ((m_ours, opt), (m_ref, ref_opt)):
            m(x).square().mean().backward()
            o.step()
        if step == 2 and when == "before-zero_grad":
            relay()  # the grads, still holding this step's values, move too
        for o in (opt, ref_opt):
            o.zero_grad()
        if step == 2 and when == "after-zero_grad":
            relay()
        _assert_same(m_ours, m_ref, opt, ref_opt)
    assert m_ours[0].weight.data_ptr() == fb.param_buf.data_ptr()
    assert all(p.grad.data_ptr() == fb._view(fb.grad_buf, p).data_ptr()
               for p in m_ours.parameters())


@pytest.mark.parametrize("change", ["dtype", "shape"])
def test_param_that_no_longer_fits_its_slot_raises(device, change):
    """A param whose dtype (model.double(), which moves the grad views along) or shape
    changed after the optimizer was built cannot be laid back into the flat buffer: the
    step says so instead of silently leaving it as it is."""
    lin = torch.nn.Linear(4, 3).to(device)
    opt = fastext.optim.AdamW(lin.parameters(), lr=1e-2, flat=True)
    _train_step(lin, opt, torch.randn(8, 4, device=device))
    if change == "dtype":
        lin.double()
        x = torch.randn(8, 4, device=device, dtype=torch.float64)
    else:
        lin.weight.data = torch.randn(3, 5, device=device)
        lin.zero_grad()  # the (3, 4) grad view cannot take a (3, 5) gradient
        x = torch.randn(8, 5, device=device)
    lin(x).square().mean().backward()
    with pytest.raises(RuntimeError, match="flat=True.*replaced.*build the optimizer after"):
        opt.step()
