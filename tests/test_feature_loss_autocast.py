"""The feature-loss op under torch.autocast: it fixes its own precisions (Gram matrices in
float32, float64 for float64 pairs), so autocast must change nothing inside it. Its ATen GEMMs
used to be cast again, giving bfloat16 Gram matrices forward and a dtype error backward."""

import pytest
import torch

from fastext import ops
from fastext.nn import FeatureLoss

AUTOCAST_DTYPE = {"cpu": torch.bfloat16, "cuda": torch.float16}


def _loss_and_grads(device, dtype, autocast):
    torch.manual_seed(0)
    xs = [torch.randn(2, 3, 6, 5, device=device, dtype=dtype).requires_grad_(),
          torch.randn(2, 8, 4, 4, device=device, dtype=dtype).requires_grad_()]
    ts = [x.detach() + 0.1 * torch.randn_like(x) for x in xs]
    with torch.autocast(device, dtype=AUTOCAST_DTYPE[device], enabled=autocast):
        losses = ops.feature_loss(xs, ts, [1.0, 5.0], [0.0, 3.0])
    losses.sum().backward()
    return [losses.detach(), *(x.grad for x in xs)]


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16, torch.float64])
def test_op_ignores_autocast(device, dtype):
    """Losses (float32 Gram terms included) and gradients as without autocast, to the bit."""
    want = _loss_and_grads(device, dtype, autocast=False)
    got = _loss_and_grads(device, dtype, autocast=True)
    for g, w in zip(got, want, strict=True):
        assert g.dtype == w.dtype
        torch.testing.assert_close(g, w, rtol=0, atol=0)


def test_module_trains_under_autocast(device):
    """A fused FeatureLoss over a small conv body under autocast (what Learner(precision=
    "bf16") runs): gradients close to the same loss computed in float32 without autocast."""
    torch.manual_seed(0)
    body = torch.nn.Sequential(torch.nn.Conv2d(3, 8, 3, padding=1), torch.nn.ReLU(),
                               torch.nn.MaxPool2d(2), torch.nn.Conv2d(8, 8, 3, padding=1),
                               torch.nn.ReLU()).to(device)
    loss_fn = FeatureLoss(body, [1, 4], [5.0, 15.0], fused=True)
    x = torch.rand(2, 3, 16, 16, device=device)
    t = torch.rand(2, 3, 16, 16, device=device)
    grads = []
    for autocast in (False, True):
        xi = x.clone().requires_grad_()
        with torch.autocast(device, dtype=AUTOCAST_DTYPE[device], enabled=autocast):
            loss = loss_fn(xi, t)
        loss.backward()
        grads.append((loss.detach().float(), xi.grad))
    (want_loss, want_grad), (got_loss, got_grad) = grads
    torch.testing.assert_close(got_loss, want_loss, rtol=0.05, atol=0)
    torch.testing.assert_close(got_grad, want_grad, rtol=0.1, atol=0.05 * want_grad.abs().max())
