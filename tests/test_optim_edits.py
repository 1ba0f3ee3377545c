"""The fused optimizers against torch.optim when the optimizer is edited between steps: one
param's state reset in place or cleared, a group's params reordered, a group removed, and
what torch refuses or forces (sparse gradients, ``decoupled_weight_decay``). A step reuses
what it gathered from the state and the groups, so each edit must be seen."""

from __future__ import annotations

import copy

import pytest
import torch

import fastext

FLAT = pytest.mark.parametrize("flat", [False, True], ids=["plain", "flat"])


def _pair(device, n=3, groups=False, flat=False, **kw):
    """fastext.optim.AdamW and torch's (foreach=False) over equal float64 params: one group,
    or one group per param."""
    torch.manual_seed(0)
    ps = [torch.nn.Parameter(torch.randn(4 + i, dtype=torch.float64, device=device))
          for i in range(n)]
    qs = [torch.nn.Parameter(p.detach().clone()) for p in ps]
    spec = (lambda xs: [{"params": [x]} for x in xs]) if groups else list
    ours = fastext.optim.AdamW(spec(ps), lr=0.1, flat=flat, **kw)
    ref = torch.optim.AdamW(spec(qs), lr=0.1, foreach=False, **kw)
    return ps, qs, ours, ref


def _steps(ps, qs, ours, ref, k, none_grads=False):
    """k steps with equal random grads; ``none_grads``: set to None first and let autograd
    allocate them (as Module.zero_grad does), else assigned."""
    for _ in range(k):
        xs = [torch.randn_like(p) for p in ps]
        for params, opt in ((ps, ours), (qs, ref)):
            if none_grads:
                for p in params:
                    p.grad = None
                sum((p * x).sum() ** 2 for p, x in zip(params, xs, strict=True)).backward()
            else:
                for p, x in zip(params, xs, strict=True):
                    p.grad = x.clone()
            opt.step()


def _assert_same(ps, qs, ours, ref):
    for p, q in zip(ps, qs, strict=True):
        torch.testing.assert_close(p, q, rtol=1e-12, atol=1e-12)
        for key, value in ref.state[q].items():
            torch.testing.assert_close(ours.state[p][key].to(value), value.to(value.device),
                                       rtol=1e-12, atol=1e-12, check_device=False)


@FLAT
@pytest.mark.parametrize("edit", ["zero_all", "step_only"])
def test_one_params_state_reset_in_place(device, flat, edit):
    """Zeroing one param's state in place (or setting only its step counter) restarts that
    param alone. With flat=True the counters are views of one buffer stepped as one slot
    while they agree: the other params used to be stepped with the edited count."""
    ps, qs, ours, ref = _pair(device, flat=flat)
    _steps(ps, qs, ours, ref, 3)
    for opt, params in ((ours, ps), (ref, qs)):
        st = opt.state[params[0]]
        for key in (st if edit == "zero_all" else ["step"]):
            st[key].zero_() if edit == "zero_all" else st[key].fill_(1)
    _steps(ps, qs, ours, ref, 2)
    _assert_same(ps, qs, ours, ref)
    # and when the counters agree again, as one slot: set every one to the same count
    for opt, params in ((ours, ps), (ref, qs)):
        for p in params:
            opt.state[p]["step"].fill_(7)
    _steps(ps, qs, ours, ref, 2)
    _assert_same(ps, qs, ours, ref)


def test_step_edit_seen_after_a_refused_step(device):
    """An edited step counter is still seen when the step after the edit is refused: the
    refusal used to use the edit up and leave the one-slot plan in place."""
    ps, qs, ours, ref = _pair(device, flat=True)
    _steps(ps, qs, ours, ref, 3)
    ours.state[ps[0]]["step"].fill_(1)
    ref.state[qs[0]]["step"].fill_(1)
    keep, ps[1].grad = ps[1].grad, torch.zeros_like(ps[1]).to_sparse()
    with pytest.raises(RuntimeError, match="sparse"):
        ours.step()
    ps[1].grad = keep
    _steps(ps, qs, ours, ref, 2)
    _assert_same(ps, qs, ours, ref)


def test_step_edit_seen_by_each_shallow_copy(device):
    """copy.copy shares the flat buffers: each optimizer sees an edit of their counters."""
    ps, qs, ours, ref = _pair(device, flat=True)
    _steps(ps, qs, ours, ref, 2)
    ours2, ref2 = copy.copy(ours), copy.copy(ref)
    _steps(ps, qs, ours2, ref2, 1)
    ours.state[ps[0]]["step"].fill_(1)
    ref.state[qs[0]]["step"].fill_(1)
    _steps(ps, qs, ours, ref, 1)
    _steps(ps, qs, ours2, ref2, 1)
    _assert_same(ps, qs, ours, ref)


@FLAT
def test_one_params_state_cleared(device, flat):
    """``state[p].clear()`` restarts p's state, as torch's lazy init does, and its state
    shows in state_dict: the step used to go on updating the old, now unlisted tensors."""
    ps, qs, ours, ref = _pair(device, flat=flat)
    _steps(ps, qs, ours, ref, 3)
    ours.state[ps[0]].clear()
    ref.state[qs[0]].clear()
    _steps(ps, qs, ours, ref, 2)
    _assert_same(ps, qs, ours, ref)
    assert ours.state_dict()["state"][0].keys() == ref.state_dict()["state"][0].keys()


@FLAT
def test_group_params_reordered(device, flat):
    ps, qs, ours, ref = _pair(device, flat=flat)
    _steps(ps, qs, ours, ref, 2)
    ours.param_groups[0]["params"].reverse()
    ref.param_groups[0]["params"].reverse()
    _steps(ps, qs, ours, ref, 2)
    _assert_same(ps, qs, ours, ref)


@FLAT
@pytest.mark.parametrize("which", [0, 1, 2])
def test_param_group_removed(device, flat, which):
    """A group popped from param_groups: with flat=True the later groups used to find the
    flat buffers of the group before them (and step a stale gradient buffer)."""
    ps, qs, ours, ref = _pair(device, groups=True, flat=flat)
    _steps(ps, qs, ours, ref, 2, none_grads=True)
    ours.param_groups.pop(which)
    ref.param_groups.pop(which)
    _steps(ps, qs, ours, ref, 3, none_grads=True)
    _assert_same(ps, qs, ours, ref)


def test_flat_group_added_directly_is_refused(device):
    ps, qs, ours, ref = _pair(device, flat=True)
    ours.param_groups.append({**ours.param_groups[0], "params": [torch.nn.Parameter(
        torch.randn(2, dtype=torch.float64, device=device))]})
    with pytest.raises(RuntimeError, match="add_param_group"):
        ours.step()


@FLAT
def test_sparse_grads_refused_at_every_step(device, flat):
    """As torch: every step with a sparse gradient raises, and nothing moves. flat=True used
    to take the first one into its dense gradient buffer and step every row from then on."""
    emb = torch.nn.Embedding(5, 3, sparse=True).to(device)
    opt = fastext.optim.AdamW(emb.parameters(), flat=flat)
    before = emb.weight.detach().clone()
    for _ in range(2):
        opt.zero_grad()
        emb(torch.tensor([1, 2], device=device)).sum().backward()
        assert emb.weight.grad.is_sparse
        with pytest.raises(RuntimeError, match="sparse"):
            opt.step()
        assert torch.equal(emb.weight.detach(), before)


def test_decoupled_weight_decay_as_torch(device):
    """AdamW's groups decay decoupled: loading torch.optim.Adam's state dict sets the key as
    torch.optim.AdamW does, and a group set to coupled decay (which torch would run as Adam)
    is refused before any group steps."""
    ps, qs, ours, ref = _pair(device, groups=True, weight_decay=0.5)
    adam = torch.optim.Adam([{"params": [q]} for q in qs], lr=0.1, weight_decay=0.5)
    assert adam.state_dict()["param_groups"][0]["decoupled_weight_decay"] is False
    ours.load_state_dict(adam.state_dict())
    ref.load_state_dict(adam.state_dict())
    assert [g["decoupled_weight_decay"] for g in ours.param_groups] == \
        [g["decoupled_weight_decay"] for g in ref.param_groups] == [True] * 3
    _steps(ps, qs, ours, ref, 2)
    _assert_same(ps, qs, ours, ref)
    ours.param_groups[2]["decoupled_weight_decay"] = False
    before = [p.detach().clone() for p in ps]
    with pytest.raises(ValueError, match="decoupled"):
        ours.step()
    assert all(torch.equal(p.detach(), b) for p, b in zip(ps, before, strict=True))
