"""The fused feature loss against its references: the op against the formula in float64
(values and gradients over shapes, dtypes, layouts and weights), gradcheck, opcheck, errors;
FeatureLoss (fused) against the hook-based plain PyTorch formula (fused=False) on a small
VGG-style net and on torchvision's vgg16_bn."""

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from fastext import ops
from fastext.nn import FeatureLoss, gram_matrix, relu_before_pools

TOL = {torch.float32: dict(rtol=2e-5, atol=1e-6), torch.float64: dict(rtol=1e-10, atol=1e-12),
       torch.float16: dict(rtol=2e-3, atol=1e-5), torch.bfloat16: dict(rtol=2e-3, atol=1e-5)}
GRAD_TOL = {torch.float32: dict(rtol=1e-4, atol=1e-9), torch.float64: dict(rtol=1e-9, atol=1e-14),
            torch.float16: dict(rtol=1e-2, atol=1e-7), torch.bfloat16: dict(rtol=2e-2, atol=1e-7)}


def reference_terms(xs, ts, w, g):
    """The formula in float64 on the same (rounded) values."""
    xs = [x.double() for x in xs]
    ts = [t.double() for t in ts]
    feat = [F.l1_loss(x, t) * wi for x, t, wi in zip(xs, ts, w, strict=True)]
    gram = [F.l1_loss(gram_matrix(x), gram_matrix(t)) * gi if gi != 0 else x.new_zeros(())
            for x, t, gi in zip(xs, ts, g, strict=True)]
    return torch.stack(feat + gram)


def make_pairs(shapes, device, dtype, layout="contiguous"):
    xs, ts = [], []
    for s in shapes:
        x, t = torch.randn(s, device=device), torch.randn(s, device=device)
        if layout == "channels_last" and len(s) == 4:
            x, t = (v.contiguous(memory_format=torch.channels_last) for v in (x, t))
        elif layout == "transposed":
            x, t = (v.transpose(-1, -2).contiguous().transpose(-1, -2) for v in (x, t))
        xs.append(x.to(dtype).requires_grad_())
        ts.append(t.to(dtype))
    return xs, ts


SHAPE_SETS = [
    [(2, 3, 8, 8), (2, 4, 4, 4), (2, 8, 2, 2)],   # pixels + two slices
    [(1, 1, 5, 7)],                               # N=1, C=1
    [(3, 16, 1, 1), (3, 5, 3)],                   # H=W=1; a 3-D (N, C, L) slice
    [(2, 64, 33, 17)],                            # spans several blocks
]


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64, torch.float16, torch.bfloat16])
@pytest.mark.parametrize("layout", ["contiguous", "channels_last", "transposed"])
@pytest.mark.parametrize("shapes", SHAPE_SETS, ids=lambda s: "-".join(map(str, s[0])))
def test_op_matches_formula(device, dtype, layout, shapes):
    xs, ts = make_pairs(shapes, device, dtype, layout)
    w = [1.0, 20.0, 70.0][:len(xs)]
    g = [0.0, 5e3 * 400, 3.5][:len(xs)] if len(xs) > 1 else [2.5]
    terms = ops.feature_loss(xs, ts, w, g)
    ref_x = [x.detach().double().requires_grad_() for x in xs]
    ref = reference_terms(ref_x, ts, w, g)
    assert terms.dtype == (torch.float64 if dtype == torch.float64 else torch.float32)
    torch.testing.assert_close(terms.double(), ref, **TOL[dtype])
    gl = torch.rand(len(ref), device=device, dtype=torch.float64)
    (terms * gl.to(terms.dtype)).sum().backward()
    (ref * gl).sum().backward()
    for x, r in zip(xs, ref_x, strict=True):
        assert x.grad.dtype == dtype and x.grad.shape == x.shape
        tol = dict(GRAD_TOL[dtype])
        if dtype in (torch.float16, torch.bfloat16):  # two terms, each rounded: cancellation
            tol["atol"] = tol["rtol"] * r.grad.abs().max().item()
        torch.testing.assert_close(x.grad.double(), r.grad, **tol)


def test_zero_differences_give_zero_gradient(device):
    x = torch.randn(2, 3, 4, 4, device=device, requires_grad=True)
    terms = ops.feature_loss([x], [x.detach().clone()], [1.0], [1.0])
    assert terms.abs().max().item() == 0
    terms.sum().backward()
    assert x.grad.abs().max().item() == 0  # sign(0) = 0, as torch's l1_loss


def test_gradcheck_float64(device):
    xs, ts = make_pairs([(2, 3, 4, 5), (2, 4, 3, 3)], device, torch.float64)
    w, g = [1.0, 3.0], [0.0, 7.0]
    assert torch.autograd.gradcheck(lambda *a: ops.feature_loss(a, ts, w, g), tuple(xs))


def test_opcheck(device):
    for layout in ("contiguous", "channels_last"):
        xs, ts = make_pairs([(2, 3, 6, 6), (2, 5, 3, 3)], device, torch.float32, layout)
        torch.library.opcheck(torch.ops.fastext.feature_loss.default,
                              (xs, ts, [1.0, 2.0], [0.0, 3.0]))


@pytest.mark.parametrize("gram", [[0.0, 3.0], [3.0, 3.0], [3.0, 0.0]], ids=str)
def test_opcheck_mixed_dtypes(device, gram):
    """A float64 pair beside a float32 one: each Gram difference has its own pair's dtype
    (the losses are float64), in the fake kernel as in the op."""
    x64, t64 = make_pairs([(2, 3, 6, 6)], device, torch.float64)
    x32, t32 = make_pairs([(2, 5, 3, 3)], device, torch.float32)
    torch.library.opcheck(torch.ops.fastext.feature_loss.default,
                          (x64 + x32, t64 + t32, [1.0, 2.0], gram))


def test_gram_of_2d_features(device):
    """An (N, C) feature has the Gram matrix of (N, C, 1), as gram_matrix gives it: the op
    matches the formula (values and gradients), and FeatureLoss on a backbone ending in a
    linear layer matches its hook-based reference."""
    xs, ts = make_pairs([(2, 3, 4, 4), (2, 6)], device, torch.float64)
    w, g = [1.0, 2.0], [0.5, 3.0]
    terms = ops.feature_loss(xs, ts, w, g)
    ref_x = [x.detach().clone().requires_grad_() for x in xs]
    ref = reference_terms(ref_x, ts, w, g)
    torch.testing.assert_close(terms, ref, **TOL[torch.float64])
    terms.sum().backward()
    ref.sum().backward()
    for x, r in zip(xs, ref_x, strict=True):
        torch.testing.assert_close(x.grad, r.grad, **GRAD_TOL[torch.float64])

    torch.manual_seed(0)
    net = nn.Sequential(nn.Conv2d(3, 4, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2), nn.Flatten(),
                        nn.Linear(4 * 4 * 4, 5), nn.ReLU()).to(device)
    x, t = torch.rand(2, 3, 8, 8, device=device), torch.rand(2, 3, 8, 8, device=device)
    xa, xb = x.clone().requires_grad_(), x.clone().requires_grad_()
    fused = FeatureLoss(net, [1, 5], [5.0, 15.0])(xa, t)
    plain = FeatureLoss(net, [1, 5], [5.0, 15.0], fused=False)(xb, t)
    torch.testing.assert_close(fused, plain, rtol=1e-5, atol=1e-7)
    fused.backward()
    plain.backward()
    torch.testing.assert_close(xa.grad, xb.grad, rtol=1e-4, atol=1e-6 * xb.grad.abs().max())


@pytest.mark.parametrize("dtype", [torch.float64, torch.bfloat16], ids=str)
def test_reference_computes_in_the_fused_dtype(device, dtype):
    """fused=False computes and returns what the fused op does: float64 for float64 images
    (as the op), float32 for half types."""
    net = small_vgg().to(device, dtype)
    x, t = (torch.rand(2, 3, 16, 16, device=device, dtype=dtype) for _ in range(2))
    fused = FeatureLoss(net, [2, 6], [5.0, 15.0])(x, t)
    plain = FeatureLoss(net, [2, 6], [5.0, 15.0], fused=False)(x, t)
    want = torch.float64 if dtype == torch.float64 else torch.float32
    assert fused.dtype == plain.dtype == want
    torch.testing.assert_close(fused, plain, **TOL[want])


def test_same_result_whatever_the_thread_count():
    xs, ts = make_pairs([(4, 32, 64, 64)], "cpu", torch.float32)
    old = torch.get_num_threads()
    try:
        torch.set_num_threads(1)
        one = ops.feature_loss(xs, ts, [1.0], [0.0])
        torch.set_num_threads(2)
        two = ops.feature_loss(xs, ts, [1.0], [0.0])
    finally:
        torch.set_num_threads(old)
    assert torch.equal(one, two)


def test_targets_get_no_gradient(device):
    x = torch.randn(2, 3, 4, 4, device=device, requires_grad=True)
    t = torch.randn(2, 3, 4, 4, device=device, requires_grad=True)
    ops.feature_loss([x], [t], [1.0], [1.0]).sum().backward()
    assert x.grad is not None and t.grad is None


@pytest.mark.parametrize("case", ["shape", "dtype", "empty", "gram_1d", "lengths", "int",
                                  "sparse", "nan_weight"])
def test_errors(case):
    x, t = torch.randn(2, 3, 4, 4), torch.randn(2, 3, 4, 4)
    args = {"shape": ([x], [t[:, :2]], [1.0], [0.0]),
            "dtype": ([x], [t.double()], [1.0], [0.0]),
            "empty": ([x[:0]], [t[:0]], [1.0], [0.0]),
            "gram_1d": ([x[:, 0, 0, 0]], [t[:, 0, 0, 0]], [1.0], [1.0]),
            "lengths": ([x, x], [t], [1.0], [0.0]),
            "int": ([x.long()], [t.long()], [1.0], [0.0]),
            "sparse": ([x[0, 0].to_sparse()], [t[0, 0].to_sparse()], [1.0], [0.0]),
            "nan_weight": ([x], [t], [float("nan")], [0.0])}[case]
    with pytest.raises((RuntimeError, ValueError)):
        ops.feature_loss(*args)


def small_vgg() -> nn.Sequential:
    torch.manual_seed(0)
    layers, ci = [], 3
    for co in (8, 16, 32):
        layers += [nn.Conv2d(ci, co, 3, padding=1), nn.BatchNorm2d(co), nn.ReLU(inplace=True),
                   nn.MaxPool2d(2)]
        ci = co
    net = nn.Sequential(*layers)
    for m in net.modules():  # non-trivial BN statistics
        if isinstance(m, nn.BatchNorm2d):
            m.running_mean.uniform_(-0.5, 0.5)
            m.running_var.uniform_(0.5, 2)
    return net


def test_feature_loss_module_matches_hook_reference(device):
    net = small_vgg().to(device)
    ids = relu_before_pools(net)
    assert ids == [2, 6, 10]
    fused = FeatureLoss(net, ids, [20.0, 70.0, 10.0], stats=([0.5] * 3, [0.25] * 3)).to(device)
    ref = FeatureLoss(net, ids, [20.0, 70.0, 10.0], stats=([0.5] * 3, [0.25] * 3),
                      fused=False).to(device)
    x0 = torch.rand(3, 3, 24, 24, device=device)
    t = torch.rand(3, 3, 24, 24, device=device)
    xa, xb = x0.clone().requires_grad_(), x0.clone().requires_grad_()
    la, lb = fused(xa, t), ref(xb, t)
    torch.testing.assert_close(la, lb, rtol=1e-5, atol=1e-7)
    for k in fused.names:
        torch.testing.assert_close(fused.metrics[k], ref.metrics[k], rtol=1e-5, atol=1e-7)
    la.backward()
    lb.backward()
    # The two formulas' feature gradients differ by summation order (up to 8e-5 relative,
    # measured on the CPU and on an H200); the backbone's backward sums them into pixel
    # gradients whose magnitudes span 1e-3 to 3e2 here, and where terms cancel to a small
    # value that difference is large relative to it (6e-4 on an H200). So the bound is
    # relative to the gradient's scale: 1e-6 of its largest element, plus 1e-4 relative.
    scale = float(xb.grad.abs().max())
    torch.testing.assert_close(xa.grad, xb.grad, rtol=1e-4, atol=1e-6 * scale)


def test_feature_loss_backbone_frozen_and_untouched():
    net = small_vgg()
    before = {k: v.clone() for k, v in net.state_dict().items()}
    loss = FeatureLoss(net, [2, 6], [1.0, 1.0])
    loss.train()
    assert not loss.body.training and len(loss.body) == 7
    assert all(not p.requires_grad for p in loss.body.parameters())
    assert net[2].inplace  # the user's backbone keeps its in-place ReLUs
    x = torch.rand(2, 3, 16, 16, requires_grad=True)
    loss(x, torch.rand(2, 3, 16, 16)).backward()
    for k, v in net.state_dict().items():
        assert torch.equal(v, before[k])  # eval mode: no running-stat update


def test_feature_loss_vgg16_bn_slices():
    tv = pytest.importorskip("torchvision")
    torch.manual_seed(0)
    vgg = tv.models.vgg16_bn(weights=None).features
    ids = relu_before_pools(vgg)
    assert ids == [5, 12, 22, 32, 42]
    fused = FeatureLoss(vgg, ids[2:5], [5.0, 15.0, 2.0])
    ref = FeatureLoss(vgg, ids[2:5], [5.0, 15.0, 2.0], fused=False)
    x, t = torch.rand(2, 3, 32, 32), torch.rand(2, 3, 32, 32)
    torch.testing.assert_close(fused(x, t), ref(x, t), rtol=1e-5, atol=1e-7)


def test_feature_loss_bad_arguments():
    net = small_vgg()
    with pytest.raises(TypeError):
        FeatureLoss(nn.ModuleList(list(net)), [2], [1.0])
    with pytest.raises(ValueError):
        FeatureLoss(net, [2, 6], [1.0])
    with pytest.raises(ValueError):
        FeatureLoss(net, [6, 2], [1.0, 1.0])
    with pytest.raises(ValueError):
        FeatureLoss(net, [99], [1.0])
    with pytest.raises(ValueError):
        FeatureLoss(net, [2], [1.0])(torch.rand(1, 3, 8, 8), torch.rand(1, 3, 4, 4))


def test_calibrated_weights_equalise_the_terms():
    net = small_vgg()
    loss = FeatureLoss(net, [2, 6], [20.0, 70.0])
    x, t = torch.rand(4, 3, 16, 16), torch.rand(4, 3, 16, 16)
    cal = loss.calibrated(x, t)
    assert cal is not loss and loss.wgts == [20.0, 70.0]  # the original is unchanged
    cal(x, t)
    pixel = cal.metrics["pixel"]
    for k in cal.names:
        torch.testing.assert_close(cal.metrics[k], pixel, rtol=1e-4, atol=0)
    ref = FeatureLoss(net, [2, 6], cal.wgts, gram_wgts=cal.gram_wgts, fused=False)
    torch.testing.assert_close(ref(x, t), cal(x, t), rtol=1e-5, atol=1e-7)
    with pytest.raises(ValueError):
        FeatureLoss(net, [2, 6], [1.0, 1.0], gram_wgts=[1.0])


def test_double_backward_is_refused_first_order_still_right(device):
    """The op's backward builds no graph: create_graph=True raises instead of returning
    second derivatives that ignore grad_outputs (a warning only, before); first-order
    gradients are unchanged, and the plain path gives second derivatives."""
    xs, ts = make_pairs([(2, 3, 4, 5)], device, torch.float64)
    terms = ops.feature_loss(xs, ts, [1.0], [2.0])
    v = torch.ones_like(terms, requires_grad=True)
    with pytest.raises(RuntimeError, match="differentiable once"):
        torch.autograd.grad(terms, xs, grad_outputs=v, create_graph=True)
    with pytest.raises(RuntimeError, match="differentiable once"):  # grad_outputs constant
        torch.autograd.grad(ops.feature_loss(xs, ts, [1.0], [2.0]).sum(), xs, create_graph=True)
    assert torch.autograd.gradcheck(lambda a: ops.feature_loss([a], ts, [1.0], [2.0]), xs[0])
    net = nn.Sequential(nn.Conv2d(3, 4, 3, padding=1), nn.Tanh()).double().to(device)
    x = torch.rand(2, 3, 6, 6, device=device, dtype=torch.float64, requires_grad=True)
    t = torch.rand(2, 3, 6, 6, device=device, dtype=torch.float64)
    with pytest.raises(RuntimeError, match="differentiable once"):
        torch.autograd.grad(FeatureLoss(net, [1], [2.0])(x, t), x, create_graph=True)
    plain = FeatureLoss(net, [1], [2.0], fused=False)
    # cuDNN's convolution backward accumulates in a nondeterministic order (torch's own
    # kernels, not ours): repeated float64 backward passes differ in the last bits there.
    nondet = 1e-12 if x.is_cuda else 0.0
    assert torch.autograd.gradgradcheck(lambda a: plain(a, t), x, nondet_tol=nondet)


@pytest.mark.parametrize("fused", [True, False])
def test_target_is_a_constant_on_both_paths(fused):
    """A target that requires grad gets none, on either path, and the input's gradient is
    the one a detached target gives."""
    net = nn.Sequential(nn.Conv2d(3, 4, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2))
    loss_fn = FeatureLoss(net, [1], [2.0], fused=fused)
    x = torch.rand(2, 3, 8, 8, requires_grad=True)
    t = torch.rand(2, 3, 8, 8, requires_grad=True)
    loss_fn(x, t).backward()
    assert t.grad is None
    x_ref = x.detach().clone().requires_grad_()
    FeatureLoss(net, [1], [2.0], fused=False)(x_ref, t.detach()).backward()
    torch.testing.assert_close(x.grad, x_ref.grad)
