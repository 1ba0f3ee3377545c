"""RMSprop with decoupled weight decay (fastai's RMSProp default, AdamW's rule): each step
scales the param by ``1 - lr * wd`` and leaves the gradient alone. Reference: that scaling
followed by torch.optim.RMSprop without decay, in float64."""

from __future__ import annotations

import pytest
import torch

import fastext


def _reference_steps(p0, grads, lr, wd, **kw):
    p = p0.detach().double().clone().requires_grad_()
    opt = torch.optim.RMSprop([p], lr=lr, weight_decay=0, foreach=False, **kw)
    for g in grads:
        with torch.no_grad():
            p.mul_(1 - lr * wd)
        p.grad = g.double().clone()
        opt.step()
    return p.detach()


@pytest.mark.parametrize("opts", [{}, {"momentum": 0.9}, {"centered": True},
                                  {"centered": True, "momentum": 0.9, "maximize": True}],
                         ids=str)
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64, torch.bfloat16])
@pytest.mark.parametrize("flat", [False, True])
def test_decoupled_decay_matches_scaling_then_torch_rmsprop(opts, dtype, flat):
    torch.manual_seed(0)
    p0 = torch.randn(37, 5).to(dtype)
    grads = [torch.randn(37, 5).to(dtype) for _ in range(10)]
    lr, wd = 1e-2, 0.1
    p = torch.nn.Parameter(p0.clone())
    opt = fastext.optim.RMSprop([p], lr=lr, weight_decay=wd, decoupled_weight_decay=True,
                                flat=flat, **opts)
    for g in grads:
        p.grad = g.clone()
        opt.step()
    ref = _reference_steps(p0, grads, lr, wd, **opts)
    tol = {torch.float64: 1e-12, torch.float32: 1e-5, torch.bfloat16: 2e-2}[dtype]
    torch.testing.assert_close(p.detach().double(), ref, rtol=tol, atol=tol)
    coupled = torch.nn.Parameter(p0.clone())
    opt = fastext.optim.RMSprop([coupled], lr=lr, weight_decay=wd, **opts)
    for g in grads:
        coupled.grad = g.clone()
        opt.step()
    assert not torch.allclose(coupled.double(), ref, rtol=tol, atol=tol)  # not torch's rule


def test_decoupled_decay_is_a_group_key_and_survives_state_dict():
    w = torch.nn.Parameter(torch.ones(3))
    opt = fastext.optim.RMSprop([w], lr=0.1, weight_decay=0.5, decoupled_weight_decay=True)
    assert opt.param_groups[0]["decoupled_weight_decay"] is True
    w.grad = torch.zeros(3)
    opt.step()  # a zero gradient: only the decay moves the weight
    torch.testing.assert_close(w.detach(), torch.full((3,), 1 - 0.1 * 0.5))
    other = fastext.optim.RMSprop([torch.nn.Parameter(torch.ones(3))])
    other.load_state_dict(opt.state_dict())
    assert other.param_groups[0]["decoupled_weight_decay"] is True
    # a torch.optim.RMSprop state dict (no such key) keeps torch's coupled decay
    t = torch.optim.RMSprop([torch.nn.Parameter(torch.ones(3))], weight_decay=0.5)
    mine = fastext.optim.RMSprop([torch.nn.Parameter(torch.ones(3))])
    mine.load_state_dict(t.state_dict())
    assert not mine.param_groups[0].get("decoupled_weight_decay", False)


def test_decoupled_rmsprop_opcheck():
    p = [torch.randn(4)]
    args = (p, [torch.randn(4)], [torch.rand(4)], [], [], [torch.zeros(())], [])
    torch.library.opcheck(torch.ops.fastext.rmsprop_.default,
                          (*args, 1e-2, 0.99, 1e-8, 0.1, 0.0, False, False),
                          {"decoupled_weight_decay": True})
