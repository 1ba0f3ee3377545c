"""In-place BatchNorm + LeakyReLU (InPlace-ABN) against its stock formula,
``leaky_relu(F.batch_norm(x, ..., |w| + eps, b, ...), slope)``: outputs, running statistics
over several steps and every gradient, over shapes, layouts, dtypes, slopes and options;
gradcheck in float64; opcheck; errors for what cannot be done in place; the activation
memory it saves; a small network trained side by side with its stock twin."""

import copy
import inspect

import pytest
import torch
import torch.nn.functional as F
from bn_helpers import activation, check_compiled_matches_eager, train_then_eval
from torch import nn

from fastext.bench.bn_relu import saved_bytes
from fastext.nn import BatchNormReLU2d, InPlaceABN1d, InPlaceABN2d, inplace_abn
from fastext.ops import bn_leaky_relu_

SHAPES = [(4, 3, 5, 7), (1, 2, 6, 5), (7, 3, 1, 1), (3, 1, 4, 4), (2, 64, 3, 3), (5, 7, 9, 11),
          (8, 5), (3, 4, 7), (66, 37)]
TOL = {torch.float32: dict(rtol=1e-4, atol=1e-4), torch.float64: dict(rtol=1e-9, atol=1e-9),
       torch.float16: dict(rtol=1e-2, atol=3e-2), torch.bfloat16: dict(rtol=5e-2, atol=1e-1)}
STAT_DTYPE = {torch.float64: torch.float64}


class Reference(nn.modules.batchnorm._BatchNorm):
    """The stock computation the layer replaces, with the same parameters and buffers."""

    def __init__(self, c, negative_slope, **kw):
        super().__init__(c, **kw)
        self.negative_slope = negative_slope

    def _check_input_dim(self, input):
        pass

    def forward(self, x):  # nn.BatchNorm2d.forward's logic, with the scale |w| + eps
        factor = 0.0 if self.momentum is None else self.momentum
        if self.training and self.track_running_stats:
            self.num_batches_tracked.add_(1)
            if self.momentum is None:
                factor = 1.0 / float(self.num_batches_tracked)
        batch = self.training or (self.running_mean is None and self.running_var is None)
        keep = not self.training or self.track_running_stats
        w = self.weight.abs() + self.eps if self.weight is not None else None
        y = F.batch_norm(x, self.running_mean if keep else None,
                         self.running_var if keep else None, w, self.bias, batch, factor,
                         self.eps)
        return F.leaky_relu(y, self.negative_slope)


def pair(shape, device, dtype, negative_slope=0.01, **kw):
    torch.manual_seed(0)
    c = shape[1]
    cls = InPlaceABN2d if len(shape) == 4 else InPlaceABN1d
    stat = STAT_DTYPE.get(dtype, torch.float32)
    ours = cls(c, negative_slope=negative_slope, **kw).to(device, stat)
    ref = Reference(c, negative_slope, **kw).to(device, stat)
    if ours.affine:
        with torch.no_grad():
            ours.weight.normal_()  # negative entries too: the layer scales by |w| + eps
            ours.bias.normal_()
    ref.load_state_dict(ours.state_dict())
    return ours, ref


def check_steps(ours, ref, shape, device, dtype, channels_last=False, steps=3):
    """Several training steps (running statistics accumulate), then evaluation."""
    stat = STAT_DTYPE.get(dtype, torch.float32)
    for _ in train_then_eval(ours, ref, steps=steps):
        x = activation(shape, device, dtype, channels_last)
        xo = x.clone().requires_grad_()
        xr = x.clone().to(stat).requires_grad_()
        yo = ours(xo * 1)  # a non-leaf to overwrite
        yr = ref(xr)
        torch.testing.assert_close(yo.to(stat), yr, **TOL[dtype])
        if channels_last:
            assert yo.is_contiguous(memory_format=torch.channels_last)
        dy = torch.randn(shape, device=device).to(dtype)
        yo.backward(dy)
        yr.backward(dy.to(stat))
        torch.testing.assert_close(xo.grad.to(stat), xr.grad, **TOL[dtype])
        for (name, po), pr in zip(ours.named_parameters(), ref.parameters(), strict=True):
            torch.testing.assert_close(po.grad, pr.grad, **TOL[dtype], msg=name)
            po.grad = pr.grad = None
    for name, b in ref.named_buffers():
        torch.testing.assert_close(getattr(ours, name), b, rtol=1e-5, atol=1e-6, msg=name)


# Every shape contiguous, and the 4-D ones channels-last too.
LAYOUTS = [(s, False) for s in SHAPES] + [(s, True) for s in SHAPES if len(s) == 4]


@pytest.mark.parametrize(("shape", "channels_last"), LAYOUTS,
                         ids=[f"{s}-{'nhwc' if cl else 'contiguous'}" for s, cl in LAYOUTS])
def test_matches_stock_formula(device, shape, channels_last):
    ours, ref = pair(shape, device, torch.float32)
    check_steps(ours, ref, shape, device, torch.float32, channels_last)


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16, torch.float64], ids=str)
@pytest.mark.parametrize("channels_last", [False, True], ids=["nchw", "nhwc"])
def test_dtypes(device, dtype, channels_last):
    shape = (6, 5, 7, 3)
    ours, ref = pair(shape, device, dtype)
    check_steps(ours, ref, shape, device, dtype, channels_last)


@pytest.mark.parametrize("negative_slope", [1e-3, 0.3, 1.0, 2.5], ids=str)
def test_slopes(device, negative_slope):
    """Any positive slope, 1 (no activation) and beyond included."""
    shape = (4, 6, 5, 5)
    ours, ref = pair(shape, device, torch.float32, negative_slope)
    check_steps(ours, ref, shape, device, torch.float32)


@pytest.mark.parametrize("kw", [dict(affine=False), dict(track_running_stats=False),
                                dict(momentum=None), dict(eps=1e-3)], ids=str)
def test_options(device, kw):
    shape = (4, 3, 6, 6)
    ours, ref = pair(shape, device, torch.float32, **kw)
    check_steps(ours, ref, shape, device, torch.float32)


def test_gradcheck_float64(device):
    torch.manual_seed(0)
    x = torch.randn(4, 3, 3, 2, dtype=torch.float64, device=device, requires_grad=True)
    w = torch.tensor([0.5, -1.5, 2.0], dtype=torch.float64, device=device, requires_grad=True)
    b = torch.randn(3, dtype=torch.float64, device=device, requires_grad=True)
    for training in (True, False):
        rm = torch.randn(3, dtype=torch.float64, device=device)
        rv = torch.rand(3, dtype=torch.float64, device=device) + 0.5

        def f(x, w, b, training=training, rm=rm, rv=rv):
            return inplace_abn(x * 1, rm.clone(), rv.clone(), w, b, training, 0.1, 1e-5, 0.2)

        assert torch.autograd.gradcheck(f, (x, w, b))


def test_opcheck(device):
    torch.manual_seed(0)
    x = torch.randn(4, 3, 5, 5, device=device)
    w, b = torch.randn(3, device=device), torch.randn(3, device=device)  # scale |w| + eps
    rm, rv = torch.zeros(3, device=device), torch.ones(3, device=device)
    nbt = torch.zeros((), dtype=torch.long, device=device)
    for training in (True, False):
        torch.library.opcheck(torch.ops.fastext.bn_leaky_relu_.default,
                              (x.clone(), w, b, rm, rv, nbt, training, 0.1, 1e-5, 0.1))
    y = x.clone()
    mean, invstd = torch.ops.fastext.bn_leaky_relu_(y, w, b, None, None, None, True, 0.1, 1e-5,
                                                    0.1)
    torch.library.opcheck(torch.ops.fastext.bn_leaky_relu_backward.default,
                          (torch.randn_like(x), y, w, b, mean, invstd, True, 1e-5, 0.1))


@pytest.mark.parametrize("eps", [1e-5, 0.3])
def test_weight_enters_as_abs_plus_eps(device, eps):
    """The op scales by |w| + eps itself: negative weights, and a weight of exactly 0,
    whose gradient is 0 as through torch's abs (sign(0) = 0), match the stock formula."""
    torch.manual_seed(0)
    base = torch.randn(5, 4, 3, 3, device=device)
    w = torch.tensor([-1.5, 0.0, 0.7, -0.2], device=device, requires_grad=True)
    b = torch.randn(4, device=device, requires_grad=True)
    y = inplace_abn(base.clone(), None, None, w, b, True, eps=eps, negative_slope=0.1)
    yr = F.leaky_relu(F.batch_norm(base, None, None, w.abs() + eps, b, True, eps=eps), 0.1)
    torch.testing.assert_close(y, yr, **TOL[torch.float32])
    dy = torch.randn_like(y)
    gw, gb = torch.autograd.grad(y, (w, b), dy)
    gwr, gbr = torch.autograd.grad(yr, (w, b), dy)
    torch.testing.assert_close(gw, gwr, **TOL[torch.float32])
    torch.testing.assert_close(gb, gbr, **TOL[torch.float32])
    assert gw[1] == 0


def test_layer_runs_the_fused_ops_alone(device):
    """A training forward + backward dispatches the op and its backward and nothing else
    (no abs / add for |w| + eps before the op, nor their backwards after it): on a GPU each
    would be a launch per layer per step."""
    from torch.utils._python_dispatch import TorchDispatchMode

    class Record(TorchDispatchMode):
        def __init__(self):
            super().__init__()
            self.ops = []

        def __torch_dispatch__(self, func, types, args=(), kwargs=None):
            self.ops.append(func.name())
            return func(*args, **(kwargs or {}))

    m = InPlaceABN2d(3).to(device)
    x = torch.randn(4, 3, 5, 5, device=device)
    dy = torch.randn_like(x)
    with Record() as rec:
        y = m(x)
        torch.autograd.grad(y, list(m.parameters()), dy)
    assert [op for op in rec.ops if not op.startswith("aten::detach")] == [
        "fastext::bn_leaky_relu_", "fastext::bn_leaky_relu_backward"], rec.ops


def test_in_place_and_what_it_refuses(device):
    m = InPlaceABN2d(3).to(device)
    x = torch.randn(2, 3, 4, 4, device=device)
    assert m(x) is x  # overwritten, and returned
    with pytest.raises(RuntimeError, match="leaf Variable that requires grad"):
        m(torch.randn(2, 3, 4, 4, device=device, requires_grad=True))
    x = torch.randn(2, 3, 4, 4, device=device, requires_grad=True)
    h = x.exp()  # exp saves its output for its backward: overwriting it must be caught
    with pytest.raises(RuntimeError, match="modified by an inplace operation"):
        m(h).sum().backward()
    with pytest.raises(RuntimeError, match="contiguous"):
        m(torch.randn(2, 3, 4, 8, device=device)[..., ::2])
    with pytest.raises(ValueError, match="negative_slope must be positive"):
        InPlaceABN2d(3, negative_slope=0.0)
    with pytest.raises(ValueError, match="more than 1 value per channel"):
        InPlaceABN1d(3).to(device)(torch.randn(1, 3, device=device))
    with pytest.raises(RuntimeError, match="negative_slope must be positive"):
        torch.ops.fastext.bn_leaky_relu_(torch.randn(2, 3, device=device), None, None, None,
                                         None, None, True, 0.1, 1e-5, -0.1)
    empty = torch.randn(0, 3, 4, 4, device=device)
    assert m(empty) is empty


def test_loads_a_batchnorm_state_dict(device):
    bn = nn.BatchNorm2d(5).to(device)
    bn(torch.randn(4, 5, 3, 3, device=device))  # running statistics move
    m = InPlaceABN2d(5).to(device)
    m.load_state_dict(bn.state_dict())
    for name, t in bn.state_dict().items():
        torch.testing.assert_close(m.state_dict()[name], t, msg=name)
    m.eval()
    bn.eval()
    x = torch.randn(4, 5, 3, 3, device=device)
    # BatchNorm's default weight is 1: the layer's scale is 1 + eps.
    want = F.leaky_relu(bn(x) * 1, 0.01)
    torch.testing.assert_close(m(x.clone()), want, rtol=1e-4, atol=1e-4)


def _stack(block, width=16):
    torch.manual_seed(0)
    layers = [nn.Conv2d(3, width, 3, padding=1, bias=False), *block(width)]
    for _ in range(3):
        layers += [nn.Conv2d(width, width, 3, padding=1, bias=False), *block(width)]
    return nn.Sequential(*layers, nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(width, 10))


def _stock(width):
    return [nn.BatchNorm2d(width), nn.LeakyReLU(0.01)]


def _fused(width):
    return [InPlaceABN2d(width)]


def test_saves_about_half_the_activations():
    """Autograd-saved bytes of a stack of four conv blocks. Each conv keeps its input (the
    previous block's output, the image for the first); BatchNorm + LeakyReLU keep the conv's
    output and the normalised one, fastext's fused BatchNorm + ReLU the conv's output,
    InPlace-ABN only the block's output, the one the next conv keeps anyway."""
    x, y = torch.randn(8, 3, 32, 32), torch.randint(0, 10, (8,))
    stock = saved_bytes(_stack(_stock), x, y)
    fused_relu = saved_bytes(_stack(lambda w: [BatchNormReLU2d(w)]), x, y)
    ours = saved_bytes(_stack(_fused), x, y)
    act = 8 * 16 * 32 * 32 * 4  # one block's activation
    base = x.numel() * 4  # the image, and the head's few bytes
    for got, blocks in ((stock, 3 + 4 + 4), (fused_relu, 3 + 4), (ours, 4)):
        assert blocks * act + base <= got < blocks * act + base + act / 100, (got / act, blocks)


def test_trains_as_the_stock_formula(device):
    """A conv stack with InPlaceABN and its stock twin (same initial weights, the twin's
    BatchNorms scaled by |w| + eps) take the same SGD steps."""
    # TF32 convolutions round to 10 mantissa bits: last-bit differences would grow.
    with torch.backends.cudnn.flags(enabled=True, allow_tf32=False):
        _trains_as_the_stock_formula(device)


def _trains_as_the_stock_formula(device):
    torch.manual_seed(0)
    ours = _stack(_fused).to(device)
    ref = _stack(lambda w: [Reference(w, 0.01)]).to(device)
    ref.load_state_dict(ours.state_dict())
    opts = [torch.optim.SGD(m.parameters(), lr=0.05, momentum=0.9) for m in (ours, ref)]
    for _ in range(5):
        x = torch.randn(8, 3, 16, 16, device=device)
        y = torch.randint(0, 10, (8,), device=device)
        for m, opt in zip((ours, ref), opts, strict=True):
            opt.zero_grad()
            F.cross_entropy(m(x), y).backward()
            opt.step()
    for (name, a), b in zip(ours.state_dict().items(), ref.state_dict().values(), strict=True):
        torch.testing.assert_close(a, b, rtol=1e-3, atol=1e-4, msg=name)


def test_compiled_matches_eager(device):
    """Under torch.compile, a conv block with InPlaceABN2d gives the eager outputs,
    gradients and running statistics."""
    check_compiled_matches_eager(
        lambda: nn.Sequential(nn.Conv2d(3, 8, 3), InPlaceABN2d(8, negative_slope=0.1),
                              nn.Conv2d(8, 4, 3)), device)


@pytest.mark.parametrize("momentum", [0.1, None])
@pytest.mark.parametrize("train", [True, False])
def test_compiled_layer_alone_passes_the_input_gradient(train, momentum):
    """The layer compiled on its own (regional compilation; momentum=None also breaks the
    graph before the op): its input comes from outside the graph. Its gradient went
    through the layer unchanged, the op's write having been taken for one without grad."""
    torch.manual_seed(0)
    eager = InPlaceABN2d(3, momentum=momentum).train(train)
    compiled = copy.deepcopy(eager)
    x = torch.randn(4, 3, 5, 5)
    grads = []
    for layer in (eager, torch.compile(compiled, backend="aot_eager")):
        xl = x.clone().requires_grad_()
        layer(xl * 2).square().sum().backward()
        grads.append(xl.grad)
    torch.testing.assert_close(grads[1], grads[0])
    for a, b in zip(compiled.parameters(), eager.parameters(), strict=True):
        torch.testing.assert_close(a.grad, b.grad)
    for a, b in zip(compiled.buffers(), eager.buffers(), strict=True):
        torch.testing.assert_close(a, b)


@pytest.mark.parametrize("given", ["weight", "bias"])
def test_weight_or_bias_alone(device, given):
    """F.batch_norm takes a weight without a bias and a bias without a weight; so do both
    fused layers' functions, with the one gradient. The reference spells a missing weight as
    ones: torch 2.11's CUDA batch_norm backward raised "tensor does not have a device" for a
    bias without a weight (an H200, 2026-11-28), in the reference's backward, not ours."""
    from fastext.nn import bn_relu

    torch.manual_seed(0)
    x = torch.randn(6, 3, 4, 4, device=device)
    p = (torch.rand(3, device=device) + 0.5) if given == "weight" else torch.randn(3, device=device)
    p.requires_grad_()
    w, b = (p, None) if given == "weight" else (None, p)
    ours = [bn_relu(x, None, None, w, b, True),
            inplace_abn(x.clone(), None, None, w, b, True, negative_slope=0.2)]
    ones = torch.ones(3, device=device)
    wr = w.abs() + 1e-5 if w is not None else ones
    refs = [torch.relu(F.batch_norm(x, None, None, w if w is not None else ones, b, True)),
            F.leaky_relu(F.batch_norm(x, None, None, wr, b, True), 0.2)]
    for y, yr in zip(ours, refs, strict=True):
        dy = torch.randn_like(y)
        torch.testing.assert_close(y, yr, **TOL[torch.float32])
        (g,) = torch.autograd.grad(y, p, dy)
        (gr,) = torch.autograd.grad(yr, p, dy)
        torch.testing.assert_close(g, gr, **TOL[torch.float32])


def test_running_statistics_versions_advance(device):
    """The op updates the running statistics in place; their version counters say so (as
    for BatchNorm + ReLU), so a graph that saved them notices."""
    m = InPlaceABN2d(3).to(device)
    before = [t._version for t in m.buffers()]
    m(torch.randn(4, 3, 2, 2, device=device))
    assert all(t._version > v for t, v in zip(m.buffers(), before, strict=True))


@pytest.mark.parametrize("wants", ["input", "weight", "bias", "weight+bias"])
def test_gradients_of_a_subset(device, wants):
    """Only what requires grad gets one (a frozen input behind a frozen body; frozen
    BatchNorm parameters), as the stock formula gives it."""
    torch.manual_seed(0)
    base = torch.randn(4, 3, 5, 5, device=device, requires_grad="input" in wants)
    w = (torch.rand(3, device=device) + 0.5).requires_grad_("weight" in wants)
    b = torch.randn(3, device=device, requires_grad="bias" in wants)
    y = inplace_abn(base * 1, None, None, w, b, True, negative_slope=0.1)
    yr = F.leaky_relu(F.batch_norm(base, None, None, w.abs() + 1e-5, b, True), 0.1)
    dy = torch.randn_like(y)
    wanted = [t for t in (base, w, b) if t.requires_grad]
    for g, gr in zip(torch.autograd.grad(y, wanted, dy), torch.autograd.grad(yr, wanted, dy),
                     strict=True):
        torch.testing.assert_close(g, gr, **TOL[torch.float32])


def test_version_advances_and_double_backward_refused(device):
    m = InPlaceABN2d(3).to(device)
    x = torch.randn(2, 3, 4, 4, device=device)
    v = x._version
    m(x)
    assert x._version > v  # a tensor saved elsewhere would be caught as modified
    with torch.no_grad():
        v = x._version
        m(x)
        assert x._version > v
    base = torch.randn(2, 3, 4, 4, device=device, requires_grad=True)
    (g,) = torch.autograd.grad(m(base * 1).square().sum(), base, create_graph=True)
    with pytest.raises(RuntimeError, match="double backward"):
        g.sum().backward()


@pytest.mark.parametrize("view", ["flatten", "slice"])
def test_view_input_matches_stock(device, view):
    """A view (the flattened conv output of an MLP head; a slice of a batch) is overwritten
    as a stock in-place op would overwrite it: output, every gradient (the conv's through
    the view included) and the running statistics as BatchNorm + LeakyReLU."""
    torch.manual_seed(0)
    conv = nn.Conv2d(3, 4, 3).to(device)
    conv_ref = copy.deepcopy(conv)
    c = 16 if view == "flatten" else 4
    ours = (InPlaceABN1d if view == "flatten" else InPlaceABN2d)(c, negative_slope=0.1)
    bn = (nn.BatchNorm1d if view == "flatten" else nn.BatchNorm2d)(c)
    ours, bn = ours.to(device), bn.to(device)
    with torch.no_grad():
        ours.weight.uniform_(0.5, 1.5)  # positive: |w| + eps has w's gradient
        ours.bias.normal_()
        bn.weight.copy_(ours.weight + ours.eps)
        bn.bias.copy_(ours.bias)

    def head(conv, x):
        h = conv(x)
        return torch.flatten(h, 1) if view == "flatten" else h[1:]

    for _ in range(2):
        x = torch.randn(5, 3, 4, 4, device=device)
        h = head(conv, x)
        assert h._is_view()
        y = ours(h)
        assert y is h
        yr = F.leaky_relu(bn(head(conv_ref, x)), 0.1)
        torch.testing.assert_close(y, yr, **TOL[torch.float32])
        dy = torch.randn_like(y)
        y.backward(dy)
        yr.backward(dy)
    for a, b in zip([*conv.parameters(), *ours.parameters()],
                    [*conv_ref.parameters(), *bn.parameters()], strict=True):
        torch.testing.assert_close(a.grad, b.grad, **TOL[torch.float32])
    for name, b in bn.named_buffers():
        torch.testing.assert_close(getattr(ours, name), b, msg=name)


@pytest.mark.parametrize("case", ["leaf", "view_of_leaf", "non_contiguous", "one_running_stat",
                                  "running_stat_size", "momentum_none"])
def test_refused_before_anything_changes(device, case):
    """A call the op refuses raises before anything is written: the input, the running
    statistics and num_batches_tracked are as they were (autograd's own check of an in-place
    leaf comes after the forward: the op checks up front, with the stock messages)."""
    torch.manual_seed(0)
    m = InPlaceABN2d(3, momentum=None if case == "momentum_none" else 0.1).to(device)
    leaf = torch.randn(4, 3, 2, 2, device=device, requires_grad=True)
    x = {"leaf": leaf, "view_of_leaf": leaf[1:], "momentum_none": leaf,
         "non_contiguous": (leaf * 1).transpose(2, 3)}.get(case, leaf * 1)
    if case in ("leaf", "view_of_leaf"):  # the stock message, from a stock in-place op
        with pytest.raises(RuntimeError) as stock:
            F.leaky_relu_(x)
        match = str(stock.value)[:40]
    else:
        match = {"non_contiguous": "contiguous", "momentum_none": "leaf Variable",
                 "one_running_stat": "running_mean and running_var must either both be None",
                 "running_stat_size": "running_var must have C = 3 elements"}[case]
    rm, rv, nbt = m.running_mean, m.running_var, m.num_batches_tracked
    if case == "one_running_stat":
        call = lambda: inplace_abn(x, rm, None, m.weight, m.bias, True)  # noqa: E731
    elif case == "running_stat_size":
        call = lambda: inplace_abn(x, rm, rv[:2], m.weight, m.bias, True, 0.1, 1e-5, 0.01,  # noqa: E731
                                   nbt)
    else:
        call = lambda: m(x)  # noqa: E731
    before = [t.detach().clone() for t in (x, rm, rv, nbt)]
    # F.batch_norm's error for one running statistic is a ValueError
    with pytest.raises(ValueError if case == "one_running_stat" else RuntimeError, match=match):
        call()
    for t, b in zip((x, rm, rv, nbt), before, strict=True):
        assert torch.equal(t.detach(), b)


@pytest.mark.parametrize("case", ["running_stat_size", "batch_count_dtype", "non_contiguous",
                                  "slope", "running_stat_device", "batch_count_device"])
def test_raw_op_in_inference_mode_refuses_before_writing(device, case):
    """Inference mode skips the autograd kernel: the device kernels check the arguments
    themselves before writing the activation, the running statistics or the batch count.
    Statistics on another device than the input's are refused as F.batch_norm refuses them.
    The dispatcher hands such a call to the other device's kernel (``meta`` would answer
    with its fake kernel), so those cases call the input's device kernel directly: the CPU
    one used to find out only after overwriting the activation."""
    x = torch.randn(4, 3, 2, 2, device=device)
    if case == "non_contiguous":
        x = x.transpose(2, 3)
    other = "meta" if device == "cpu" else "cpu"
    rm = torch.zeros(3, device=other if case == "running_stat_device" else device)
    rv = torch.ones(3, device=device)
    nbt = torch.zeros((), dtype=torch.float32 if case == "batch_count_dtype" else torch.long,
                      device=other if case == "batch_count_device" else device)
    if case == "running_stat_size":
        rv = torch.ones(2, device=device)
    slope = -0.1 if case == "slope" else 0.1
    match = {"running_stat_size": "running_var must have C = 3 elements",
             "batch_count_dtype": "num_batches_tracked must be a one-element int64",
             "batch_count_device": "num_batches_tracked must be a one-element int64 tensor on "
                                   "the input's device",
             "running_stat_device": "running_mean must be on the input's device",
             "non_contiguous": "contiguous", "slope": "negative_slope must be positive"}[case]
    before = [t.clone() for t in (x, rm, rv, nbt)]
    with torch.inference_mode(), pytest.raises(RuntimeError, match=match):
        if case.endswith("_device"):
            key = torch._C.DispatchKey.CPU if device == "cpu" else torch._C.DispatchKey.CUDA
            torch.ops.fastext.bn_leaky_relu_.default.redispatch(
                torch._C.DispatchKeySet(key), x, None, None, rm, rv, nbt, True, 0.1, 1e-5,
                slope)
        else:
            bn_leaky_relu_(x, None, None, rm, rv, True, 0.1, 1e-5, slope, nbt)
    for t, b in zip((x, rm, rv, nbt), before, strict=True):
        assert t.is_meta or torch.equal(t, b)


@pytest.mark.parametrize("module", [False, True], ids=["functional", "module"])
def test_empty_batch_gives_zero_parameter_gradients(device, module):
    """As stock BatchNorm, an empty batch leaves the weight and bias in the graph: their
    gradients are zeros, not None (DDP's unused-parameter check needs them)."""
    ours, ref = InPlaceABN2d(3).to(device), nn.BatchNorm2d(3).to(device)
    x = torch.randn(0, 3, 2, 2, device=device)
    if module:
        y, yr = ours(x.clone()), F.leaky_relu(ref(x), 0.01)
    else:
        y = inplace_abn(x.clone(), None, None, ours.weight, ours.bias, True)
        yr = F.leaky_relu(F.batch_norm(x, None, None, ref.weight.abs() + 1e-5, ref.bias, True))
    assert y.shape == yr.shape
    y.sum().backward()
    yr.sum().backward()
    for a, b in zip(ours.parameters(), ref.parameters(), strict=True):
        assert a.grad is not None
        torch.testing.assert_close(a.grad, b.grad)
    assert ours.num_batches_tracked == ref.num_batches_tracked


def test_bias_false_loads_a_batchnorm_state_dict(device):
    """``bias=False`` as stock BatchNorm takes it (torch 2.14): no bias parameter, and a
    ``BatchNorm2d(bias=False)`` state dict loads."""
    if "bias" not in inspect.signature(nn.BatchNorm2d).parameters:
        with pytest.raises(TypeError, match="bias"):
            InPlaceABN2d(3, bias=False)
        pytest.skip("this torch's BatchNorm2d has no bias argument (torch 2.14 has)")
    bn = nn.BatchNorm2d(3, bias=False).to(device)
    m = InPlaceABN2d(3, bias=False, negative_slope=0.2).to(device)
    assert m.bias is None and m.negative_slope == 0.2
    m.load_state_dict(bn.state_dict())
    x = torch.randn(4, 3, 2, 2, device=device)
    want = F.leaky_relu(F.batch_norm(x, None, None, bn.weight.abs() + m.eps, None, True), 0.2)
    torch.testing.assert_close(m(x.clone()), want, **TOL[torch.float32])
    assert InPlaceABN1d(3).bias is not None


# -- what both fused BatchNorm ops refuse before writing (review of 2026-11-28) -------------
def _forward(op, x, rm, rv, nbt, train=True, eps=1e-5):
    """One raw forward of ``op`` ("relu": fastext::bn_relu_forward, "leaky": the in-place
    fastext::bn_leaky_relu_) with running statistics and a batch count."""
    if op == "relu":
        return torch.ops.fastext.bn_relu_forward(x, None, None, rm, rv, nbt, train, 0.1, eps)
    return torch.ops.fastext.bn_leaky_relu_(x, None, None, rm, rv, nbt, train, 0.1, eps, 0.1)


@pytest.mark.parametrize("op", ["relu", "leaky"])
@pytest.mark.parametrize("case", ["int_running_var", "eps_zero", "eps_negative", "eps_nan",
                                  "one_value", "one_value_nchw"])
def test_forward_refusals_change_nothing(device, op, case):
    """F.batch_norm's refusals (eps <= 0 while training, one value per channel while
    training) and integer running statistics, refused before anything moves: the CPU ops
    used to write the running mean (and InPlace-ABN its input) first, or give NaN."""
    shape = {"one_value": (1, 3), "one_value_nchw": (1, 3, 1, 1)}.get(case, (4, 3, 2, 2))
    x = torch.randn(shape, device=device)
    rm, nbt = torch.zeros(3, device=device), torch.zeros((), dtype=torch.long, device=device)
    rv = torch.ones(3, device=device, dtype=torch.long if case == "int_running_var" else None)
    eps = {"eps_zero": 0.0, "eps_negative": -1.0, "eps_nan": float("nan")}.get(case, 1e-5)
    error, match = {"int_running_var": (RuntimeError, "must be floating point"),
                    "one_value": (ValueError, "more than 1 value per channel"),
                    "one_value_nchw": (ValueError, "more than 1 value per channel")}.get(
                        case, (ValueError, "eps must be positive"))
    before = [t.clone() for t in (x, rm, rv, nbt)]
    with pytest.raises(error, match=match):
        _forward(op, x, rm, rv, nbt, eps=eps)
    for t, b in zip((x, rm, rv, nbt), before, strict=True):
        assert torch.equal(t, b)


def test_eps_zero_in_evaluation(device):
    """In evaluation torch 2.14's F.batch_norm takes eps = 0 (2.11's refuses it): a positive
    running variance needs none. InPlace-ABN does not: its backward inverts |weight| + eps."""
    x = torch.randn(4, 3, 2, 2, device=device)
    rm, rv = torch.randn(3, device=device), torch.rand(3, device=device) + 0.5
    out = _forward("relu", x, rm, rv, None, train=False, eps=0.0)[0]
    want = torch.relu((x - rm[:, None, None]) / rv[:, None, None].sqrt())
    torch.testing.assert_close(out, want, **TOL[torch.float32])
    with pytest.raises(ValueError, match="eps must be positive"):
        _forward("leaky", x.clone(), rm, rv, None, train=False, eps=0.0)


@pytest.mark.parametrize("op", ["relu", "leaky"])
def test_backward_refuses_grad_out_on_another_device(device, op):
    """grad_out on another device than the activation: its pointer would be read as this
    device's (a segfault on the CPU with a meta grad_out). The dispatcher would hand such a
    call to the other device's kernel, so the activation's kernel is called directly."""
    x = torch.randn(4, 3, 2, 2, device=device)
    other = "meta" if device == "cpu" else "cpu"
    dy = torch.randn(4, 3, 2, 2, device=other)
    mean, invstd = torch.zeros(3, device=device), torch.ones(3, device=device)
    keys = torch._C.DispatchKeySet(torch._C.DispatchKey.CPU if device == "cpu"
                                   else torch._C.DispatchKey.CUDA)
    with pytest.raises(RuntimeError, match="grad_out must be on the activation's device"):
        if op == "relu":
            torch.ops.fastext.bn_relu_backward.default.redispatch(
                keys, dy, x, None, None, mean, invstd, True)
        else:
            torch.ops.fastext.bn_leaky_relu_backward.default.redispatch(
                keys, dy, x, None, None, mean, invstd, True, 1e-5, 0.1)


@pytest.mark.parametrize(("module", "made"), [("leaky", "input"), ("leaky", "module"),
                                               ("relu", "module")])
def test_inference_tensors_refused_before_writing(device, module, made):
    """Tensors made under torch.inference_mode (a frozen backbone's features, or a layer
    built there) cannot be written in place outside it: autograd said so only after the
    kernel had overwritten the input and moved the running statistics. (BatchNorm + ReLU
    writes no input of its own.)"""
    with torch.inference_mode(made == "module"):
        m = (InPlaceABN2d(3) if module == "leaky" else BatchNormReLU2d(3)).to(device)
    with torch.inference_mode(made == "input"):
        x = torch.randn(4, 3, 2, 2, device=device)
    before = [t.clone() for t in (x, *m.buffers())]
    with pytest.raises(RuntimeError, match="inference tensor"):
        m(x)
    for t, b in zip((x, *m.buffers()), before, strict=True):
        assert torch.equal(t, b)


def test_positional_arguments_as_batch_norm():
    """BatchNorm2d's positional arguments, device and dtype included, mean the same here;
    negative_slope is keyword-only (it used to sit where BatchNorm2d takes device)."""
    positional = [n for n, p in inspect.signature(nn.BatchNorm2d).parameters.items()
                  if p.kind is inspect.Parameter.POSITIONAL_OR_KEYWORD]
    ours = inspect.signature(InPlaceABN2d).parameters
    assert list(ours)[:len(positional)] == positional
    assert ours["negative_slope"].kind is inspect.Parameter.KEYWORD_ONLY
    m = InPlaceABN2d(4, 1e-5, 0.1, True, True, None, torch.float64)
    assert m.weight.dtype == torch.float64
