"""Fused BatchNorm + ReLU against nn.BatchNorm*d + nn.ReLU: outputs, running statistics over
several steps and every gradient, over shapes, layouts, dtypes and options; gradcheck in
float64; opcheck; a converted ResNet-18; training on MNIST."""

import copy
import inspect

import pytest
import torch
import torch.nn.functional as F
from bn_helpers import activation, check_compiled_matches_eager, train_then_eval
from logged_tensor import Logged
from torch import nn

import fastext
from fastext.nn import BatchNormReLU1d, BatchNormReLU2d, fuse_bn_relu

SHAPES_2D = [(4, 3, 5, 7), (1, 2, 6, 5), (7, 3, 1, 1), (3, 1, 4, 4), (2, 512, 3, 3),
             (5, 7, 9, 11), (3, 21, 5, 7)]
PARAM_TOL = {torch.float32: dict(rtol=1e-4, atol=1e-4), torch.float64: dict(rtol=1e-9, atol=1e-9),
             torch.float16: dict(rtol=1e-2, atol=3e-2), torch.bfloat16: dict(rtol=2e-2, atol=1e-1)}
TOL = {torch.float32: dict(rtol=1e-4, atol=1e-5), torch.float64: dict(rtol=1e-9, atol=1e-10),
       torch.float16: dict(rtol=1e-2, atol=1e-2), torch.bfloat16: dict(rtol=5e-2, atol=5e-2)}


def pair(kind, c, device, dtype, **kw):
    torch.manual_seed(0)
    ref_bn = (nn.BatchNorm2d if kind == 2 else nn.BatchNorm1d)(c, **kw).to(device)
    if ref_bn.affine:
        with torch.no_grad():
            ref_bn.weight.normal_()
            ref_bn.bias.normal_()
    ours = (BatchNormReLU2d if kind == 2 else BatchNormReLU1d)(c, **kw).to(device)
    ours.load_state_dict(ref_bn.state_dict())
    return ours, nn.Sequential(ref_bn, nn.ReLU())


def check_steps(ours, ref, shape, device, dtype, channels_last=False, steps=3):
    """Several train steps (running stats accumulate), then eval; compares everything."""
    for _ in train_then_eval(ours, ref, steps=steps):
        x = activation(shape, device, dtype, channels_last)
        ref_dtype = torch.float64 if dtype == torch.float64 else torch.float32
        xo, xr = x.clone().requires_grad_(), x.clone().to(ref_dtype).requires_grad_()
        yo = ours(xo)
        yr = ref(xr)
        tol = TOL[dtype]
        torch.testing.assert_close(yo.float(), yr.float(), **tol)
        if channels_last:
            assert yo.is_contiguous(memory_format=torch.channels_last)
        dy = torch.randn(shape, device=device).to(dtype)  # both see the same rounded values
        yo.backward(dy)
        yr.backward(dy.to(ref_dtype))
        torch.testing.assert_close(xo.grad.float(), xr.grad.float(), **tol)
        for (n, po), pr in zip(ours.named_parameters(), ref[0].parameters(), strict=True):
            torch.testing.assert_close(po.grad.float(), pr.grad.float(), **PARAM_TOL[dtype], msg=n)
            po.grad = pr.grad = None
    for name, b in ref[0].named_buffers():
        torch.testing.assert_close(getattr(ours, name).float(), b.float(), rtol=1e-5, atol=1e-6,
                                   msg=name)


@pytest.mark.parametrize("shape", SHAPES_2D, ids=str)
@pytest.mark.parametrize("channels_last", [False, True], ids=["nchw", "nhwc"])
def test_bn_relu_2d_matches_torch(device, shape, channels_last):
    ours, ref = pair(2, shape[1], device, torch.float32)
    check_steps(ours, ref, shape, device, torch.float32, channels_last)


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16, torch.float64], ids=str)
@pytest.mark.parametrize("channels_last", [False, True], ids=["nchw", "nhwc"])
def test_bn_relu_dtypes(device, dtype, channels_last):
    """Low-precision activations with fp32 BatchNorm parameters (as after to_fp16), and
    float64 throughout."""
    ours, ref = pair(2, 6, device, dtype)
    if dtype == torch.float64:
        ours.double()
        ref.double()
    check_steps(ours, ref, (4, 6, 5, 3), device, dtype, channels_last)


@pytest.mark.parametrize(("shape", "channels_last"), [((16, 40, 24, 24), False),
                                                       ((16, 40, 24, 24), True),
                                                       ((3000, 37), False)], ids=str)
def test_bn_relu_large_float64(device, shape, channels_last):
    """Shapes whose reductions a GPU splits over many blocks per channel; 40 and 37 channels
    are a full and a partial 32-channel tile of the row-major reduction. In float64, so that
    no element sits on the ReLU's edge by rounding alone (at 368k fp32 elements one does)."""
    ours, ref = pair(len(shape) - 2 or 1, shape[1], device, torch.float64)
    ours.double()
    ref.double()
    check_steps(ours, ref, shape, device, torch.float64, channels_last)


@pytest.mark.parametrize("shape", [(8, 5), (3, 4, 7), (1, 3, 9), (66, 37)], ids=str)
def test_bn_relu_1d_matches_torch(device, shape):
    ours, ref = pair(1, shape[1], device, torch.float32)
    check_steps(ours, ref, shape, device, torch.float32)


@pytest.mark.parametrize("kw", [dict(affine=False), dict(track_running_stats=False),
                                dict(momentum=None), dict(eps=1e-3, momentum=0.3)], ids=str)
def test_bn_relu_options(device, kw):
    ours, ref = pair(2, 4, device, torch.float32, **kw)
    check_steps(ours, ref, (3, 4, 5, 5), device, torch.float32)


def test_gradcheck_float64(device):
    from fastext.nn.functional import bn_relu

    x = torch.randn(3, 2, 4, 5, dtype=torch.float64, device=device, requires_grad=True)
    w = torch.randn(2, dtype=torch.float64, device=device, requires_grad=True)
    b = torch.randn(2, dtype=torch.float64, device=device, requires_grad=True)
    assert torch.autograd.gradcheck(lambda x, w, b: bn_relu(x, None, None, w, b, True), (x, w, b))
    rm, rv = torch.randn(2, dtype=torch.float64, device=device), torch.rand(2, dtype=torch.float64,
                                                                           device=device) + 0.5
    assert torch.autograd.gradcheck(lambda x, w, b: bn_relu(x, rm, rv, w, b, False), (x, w, b))


def test_create_graph_gives_first_order_grads_and_refuses_the_second(device):
    """Under create_graph=True (e.g. a gradient penalty) the first-order gradients are right
    and differentiable-looking; differentiating them again is a clear error, not silence."""
    ours, ref = pair(2, 3, device, torch.float32)
    x = torch.randn(4, 3, 5, 5, device=device, requires_grad=True)
    g = torch.randn_like(x)
    gx, gw = torch.autograd.grad(ours(x), (x, ours.weight), g, create_graph=True)
    rx, rw = torch.autograd.grad(ref(x), (x, ref[0].weight), g)
    torch.testing.assert_close(gx, rx, **TOL[torch.float32])
    torch.testing.assert_close(gw, rw, **PARAM_TOL[torch.float32])
    assert gx.requires_grad
    with pytest.raises(RuntimeError, match="double backward"):
        gx.sum().backward()


def test_only_the_output_is_differentiated(device):
    """The statistics outputs get no gradient buffers (they are not materialised as zeros):
    a backward through the output alone gives eager's gradients."""
    ours, ref = pair(2, 3, device, torch.float32)
    x = torch.randn(2, 3, 4, 4, device=device, requires_grad=True)
    out, mean, invstd, var = torch.ops.fastext.bn_relu_forward(
        x, ours.weight, ours.bias, None, None, None, True, 0.1, 1e-5)
    assert not (mean.requires_grad or invstd.requires_grad or var.requires_grad)
    (gx,) = torch.autograd.grad(out.sum(), x)
    (rx,) = torch.autograd.grad(ref(x).sum(), x)
    torch.testing.assert_close(gx, rx, **TOL[torch.float32])


def test_opcheck(device):
    x = torch.randn(4, 3, 5, 5, device=device)
    w, b = torch.randn(3, device=device), torch.randn(3, device=device)

    def running():
        return (torch.zeros(3, device=device), torch.ones(3, device=device),
                torch.zeros((), dtype=torch.long, device=device))

    for args in [(x, w, b, None, None, None, True, 0.1, 1e-5),
                 (x.contiguous(memory_format=torch.channels_last), None, None, None, None, None,
                  True, 0.1, 1e-5),
                 (x, w, b, *running(), True, 0.1, 1e-5),  # updates the running statistics
                 (x, w, b, *running(), False, 0.1, 1e-5)]:
        torch.library.opcheck(torch.ops.fastext.bn_relu_forward.default, args)
    out, mean, invstd, _ = torch.ops.fastext.bn_relu_forward(x, w, b, None, None, None, True, 0.1,
                                                             1e-5)
    torch.library.opcheck(torch.ops.fastext.bn_relu_backward.default,
                          (torch.randn_like(out), x, w, b, mean, invstd, True))


def test_bad_input():
    with pytest.raises(ValueError, match="more than 1 value per channel"):
        BatchNormReLU1d(3)(torch.randn(1, 3))
    with pytest.raises(ValueError, match="4D input"):
        BatchNormReLU2d(3)(torch.randn(2, 3))
    with pytest.raises(RuntimeError, match="floating point"):
        torch.ops.fastext.bn_relu_forward(torch.ones(2, 3, dtype=torch.int64), None, None, None,
                                          None, None, True, 0.1, 1e-5)


@pytest.mark.parametrize("channels_last", [False, True], ids=["nchw", "channels_last"])
@pytest.mark.parametrize("training", [True, False])
def test_nan_passes_as_through_relu(device, training, channels_last):
    """A NaN in the input comes out as NaN (a whole channel of them in training) and its
    gradient passes, as through BatchNorm2d + ReLU: the fused ReLU used to turn it into 0,
    hiding it from the loss while the running statistics took it in. In evaluation the input
    gradient where x is NaN is finite, as torch's (its backward there never reads x). 16 MiB
    of float32: the CPU's channels-last passes use streaming stores from that size."""
    torch.manual_seed(0)
    x = torch.randn(8, 32, 128, 128, device=device)
    x[0, 1, 2, 2] = float("nan")
    x[3, 5, 0, 1] = float("nan")
    if channels_last:
        x = x.contiguous(memory_format=torch.channels_last)
    ref, ours = nn.BatchNorm2d(32).to(device), BatchNormReLU2d(32).to(device)
    for m in (ref, ours):
        m.running_var[5] = 0.0  # eval: the largest scale eps allows (torch 2.11 refuses eps 0)
        m.train(training)
    xr, xo = x.clone().requires_grad_(), x.clone().requires_grad_()
    yr, yo = torch.relu(ref(xr)), ours(xo)
    assert yr.isnan().any()
    torch.testing.assert_close(yo, yr, equal_nan=True, rtol=1e-4, atol=1e-4)
    dy = torch.randn_like(yr)
    yr.backward(dy)
    yo.backward(dy)
    torch.testing.assert_close(xo.grad, xr.grad, equal_nan=True, rtol=1e-3, atol=1e-3)
    for a, b in zip(ours.parameters(), ref.parameters(), strict=True):
        torch.testing.assert_close(a.grad, b.grad, equal_nan=True, rtol=1e-3, atol=1e-2)
    torch.testing.assert_close(ours.running_mean, ref.running_mean, equal_nan=True)


@pytest.mark.parametrize("op", ["bn_relu", "inplace_abn"])
@pytest.mark.parametrize("training", [True, False])
@pytest.mark.parametrize("name", ["weight", "bias", "running_mean"])
def test_integer_channel_tensor_refused_as_batch_norm(device, op, training, name):
    """An integer weight, bias or running statistic is refused by name, in training and in
    evaluation, as F.batch_norm refuses it, before anything is written. Evaluation used to
    fail inside a dtype dispatch on the CPU and to convert the tensor on CUDA."""
    x = torch.randn(4, 3, 2, 2, device=device)
    a = {"weight": torch.ones(3, device=device), "bias": torch.zeros(3, device=device),
         "running_mean": torch.zeros(3, device=device), "running_var": torch.ones(3, device=device)}
    a[name] = a[name].long()
    if name == "running_mean":
        a["running_var"] = a["running_var"].long()
    args = (a["running_mean"], a["running_var"], a["weight"], a["bias"], training)
    with pytest.raises(RuntimeError):
        F.batch_norm(x, *args)
    before = [t.clone() for t in (x, *a.values())]
    call = fastext.nn.functional.bn_relu if op == "bn_relu" else fastext.nn.inplace_abn
    with pytest.raises(RuntimeError, match=f"{name} must be floating point, got Long"):
        call(x, *args)
    for t, b in zip((x, *a.values()), before, strict=True):
        assert torch.equal(t, b)


@pytest.mark.parametrize("train", [True, False])
def test_fused_resnet18_equals_original(device, train):
    # TF32 convolutions round to 10 mantissa bits: the fp32 BN outputs' last-bit
    # differences would come out as 1e-3 differences in the logits.
    with torch.backends.cudnn.flags(enabled=True, allow_tf32=False):
        _fused_resnet18_equals_original(device, train)


def _fused_resnet18_equals_original(device, train):
    torchvision = pytest.importorskip("torchvision")
    torch.manual_seed(0)
    ref = torchvision.models.resnet18(num_classes=10).to(device)
    ours = torchvision.models.resnet18(num_classes=10).to(device)
    ours.load_state_dict(ref.state_dict())
    fuse_bn_relu(ours)
    assert sum(isinstance(m, BatchNormReLU2d) for m in ours.modules()) == 9
    assert ours.state_dict().keys() == ref.state_dict().keys()
    ref.train(train)
    ours.train(train)
    x = torch.randn(2, 3, 64, 64, device=device)
    yr, yo = ref(x), ours(x)
    torch.testing.assert_close(yo, yr, rtol=1e-4, atol=1e-4)
    yr.square().sum().backward()
    yo.square().sum().backward()
    for (n, a), b in zip(ours.named_parameters(), ref.parameters(), strict=True):
        torch.testing.assert_close(a.grad, b.grad, rtol=1e-3, atol=1e-3, msg=n)
    for (n, a), b in zip(ours.named_buffers(), ref.buffers(), strict=True):
        torch.testing.assert_close(a.float(), b.float(), rtol=1e-5, atol=1e-5, msg=n)


def test_fuse_sequential_shares_parameters():
    bn = nn.BatchNorm2d(4)
    m = nn.Sequential(nn.Conv2d(1, 4, 3), bn, nn.ReLU(), nn.BatchNorm2d(4), nn.Conv2d(4, 1, 1))
    params = {id(p) for p in m.parameters()}
    fuse_bn_relu(m)
    assert isinstance(m[1], BatchNormReLU2d) and isinstance(m[2], nn.Identity)
    assert isinstance(m[3], nn.BatchNorm2d)  # not followed by a ReLU: left alone
    assert {id(p) for p in m.parameters()} == params
    assert m[1].weight is bn.weight and m[1].running_mean is bn.running_mean


@pytest.mark.parametrize("kw", [dict(bias=False), dict(affine=False),
                                dict(track_running_stats=False), dict(momentum=None)], ids=str)
@pytest.mark.parametrize("train", [True, False])
def test_fuse_keeps_absent_parameters_and_buffers_absent(kw, train):
    """A BatchNorm without a bias (or without affine parameters, or running statistics)
    fuses into a module without them: nothing of the fused module's own (made on the meta
    device) is left to be read."""
    if "bias" in kw and "bias" not in inspect.signature(nn.BatchNorm2d).parameters:
        pytest.skip("this torch's BatchNorm2d has no bias argument (torch 2.14 has)")
    torch.manual_seed(0)
    ref = nn.Sequential(nn.BatchNorm2d(3, **kw), nn.ReLU())
    if ref[0].weight is not None:
        with torch.no_grad():
            ref[0].weight.normal_()
    ours = copy.deepcopy(ref)
    fuse_bn_relu(ours)
    assert isinstance(ours[0], BatchNormReLU2d)
    assert ours.state_dict().keys() == ref.state_dict().keys()
    assert not any(t.is_meta for t in (*ours.parameters(), *ours.buffers()))
    ref.train(train)
    ours.train(train)
    for _ in range(2):
        x = torch.randn(4, 3, 5, 5)
        torch.testing.assert_close(ours(x), ref(x))
    for a, b in zip(ours.state_dict().values(), ref.state_dict().values(), strict=True):
        torch.testing.assert_close(a, b)


_HOOKS = {
    "forward": lambda m, log: m.register_forward_hook(lambda *a: log.append("forward")),
    "forward_pre": lambda m, log: m.register_forward_pre_hook(lambda *a: log.append("pre")),
    "full_backward": lambda m, log: m.register_full_backward_hook(
        lambda *a: log.append("backward")),
    "state_dict": lambda m, log: m.register_state_dict_pre_hook(
        lambda *a: log.append("state_dict")),
    "load_state_dict": lambda m, log: m.register_load_state_dict_post_hook(
        lambda *a: log.append("load")),
}


@pytest.mark.parametrize("hook", list(_HOOKS))
@pytest.mark.parametrize("on", ["bn", "relu"])
def test_fuse_leaves_hooked_pairs_alone(hook, on):
    """A BatchNorm or ReLU with a hook of any kind is not fused (the fused module would run
    none of them): the pair stays as it was, its hooks fire, the other pairs are fused."""
    torch.manual_seed(0)
    m = nn.Sequential(nn.Conv2d(3, 4, 3), nn.BatchNorm2d(4), nn.ReLU(), nn.Conv2d(4, 4, 1),
                      nn.BatchNorm2d(4), nn.ReLU())
    log = []
    _HOOKS[hook](m[1] if on == "bn" else m[2], log)
    fuse_bn_relu(m)
    assert [type(c) for c in m][1:] == [nn.BatchNorm2d, nn.ReLU, nn.Conv2d, BatchNormReLU2d,
                                        nn.Identity]
    x = torch.randn(2, 3, 5, 5, requires_grad=True)
    m(x).sum().backward()
    m.load_state_dict(m.state_dict())
    assert log, hook


def test_fuse_leaves_hooked_resnet_parts_alone():
    """torchvision: a block with a hook on itself, its bn1 or its ReLU, and the stem with a
    hook on bn1, keep their modules (and hooks); the other blocks are fused."""
    torchvision = pytest.importorskip("torchvision")
    torch.manual_seed(0)
    m = torchvision.models.resnet18(num_classes=10).eval()
    ref = copy.deepcopy(m)
    log = []
    for part in (m.bn1, m.layer1[0], m.layer2[0].bn1, m.layer3[1].relu):
        part.register_forward_hook(lambda *a: log.append(1))
    fuse_bn_relu(m)
    assert type(m.bn1) is nn.BatchNorm2d and type(m.relu) is nn.ReLU
    assert [type(b).__name__ for layer in (m.layer1, m.layer2, m.layer3, m.layer4)
            for b in layer] == ["BasicBlock", "_FusedBasicBlock", "BasicBlock",
                                "_FusedBasicBlock", "_FusedBasicBlock", "BasicBlock",
                                "_FusedBasicBlock", "_FusedBasicBlock"]
    x = torch.randn(2, 3, 32, 32)
    torch.testing.assert_close(m(x), ref(x))
    assert len(log) == 1 + 1 + 1 + 2  # layer3[1].relu runs twice in its block


def test_fuse_leaves_resnet_blocks_without_batchnorm_relu_alone():
    """torchvision blocks built with another norm layer (FrozenBatchNorm2d, as detection
    backbones use; GroupNorm) or whose activation was swapped are not BatchNorm -> ReLU:
    fusing leaves the model computing what it did."""
    torchvision = pytest.importorskip("torchvision")
    from torchvision.ops.misc import FrozenBatchNorm2d

    torch.manual_seed(0)
    x = torch.randn(2, 3, 32, 32)
    models = [torchvision.models.resnet18(norm_layer=FrozenBatchNorm2d),
              torchvision.models.resnet18(norm_layer=lambda c: nn.GroupNorm(2, c)),
              torchvision.models.resnet50(num_classes=10)]
    for m in models[2].modules():
        if isinstance(m, torchvision.models.resnet.Bottleneck):
            m.relu = nn.SiLU()
    for ref in models:
        ref.eval()
        ours = fuse_bn_relu(copy.deepcopy(ref))
        assert not any(type(m).__name__.startswith("_Fused") for m in ours.modules())
        torch.testing.assert_close(ours(x), ref(x))


class ResNet(nn.Module):
    """A user's model that happens to share torchvision's class name, its ReLU used twice."""

    def __init__(self):
        super().__init__()
        self.conv1, self.bn1 = nn.Conv2d(3, 8, 3, padding=1), nn.BatchNorm2d(8)
        self.relu = nn.ReLU()
        self.conv2, self.bn2 = nn.Conv2d(8, 8, 3, padding=1), nn.BatchNorm2d(8)

    def forward(self, x):
        x = self.relu(self.bn1(self.conv1(x)))
        return self.relu(self.bn2(self.conv2(x)) + x)


class SkipBlock(nn.Sequential):
    """A Sequential subclass with its own forward, which reads the BN's output twice."""

    def __init__(self):
        super().__init__(nn.BatchNorm2d(4), nn.ReLU(), nn.Conv2d(4, 4, 1))

    def forward(self, x):
        z = self[0](x)
        return self[2](self[1](z)) + z


@pytest.mark.parametrize("make", [ResNet, SkipBlock])
def test_fuse_leaves_lookalikes_alone(make):
    """Only modules known to run BN -> ReLU pairs are changed: not a class merely named
    ResNet (its stem ReLU used to become an Identity), nor a Sequential subclass with its
    own forward."""
    torch.manual_seed(0)
    ref = make().eval()
    x = torch.randn(2, 3 if make is ResNet else 4, 8, 8)
    ours = fuse_bn_relu(copy.deepcopy(ref))
    assert not any(isinstance(m, (BatchNormReLU2d, nn.Identity)) for m in ours.modules())
    torch.testing.assert_close(ours(x), ref(x))


@pytest.mark.parametrize("train", [True, False])
def test_fuse_keeps_the_train_eval_mode(train):
    """Every module fusing puts in (fused BN, fused block, the Identity in a ReLU's place)
    is in the model's mode: an eval model used to come back partly in training mode."""
    torchvision = pytest.importorskip("torchvision")
    model = nn.Sequential(torchvision.models.resnet18(num_classes=4),
                          nn.Sequential(nn.Linear(4, 4), nn.BatchNorm1d(4), nn.ReLU()))
    model.train(train)
    fuse_bn_relu(model)
    assert sum(isinstance(m, nn.Identity) for m in model.modules()) == 2
    assert all(m.training is train for m in model.modules())


def test_fuse_keeps_each_modules_own_mode():
    """A model in training with its BatchNorms frozen in eval (fine-tuning's usual way):
    every module keeps its own mode; fusing used to set every module inside a ResNet block
    to the block's mode, unfreezing the BatchNorms it did not fuse."""
    torchvision = pytest.importorskip("torchvision")
    model = torchvision.models.resnet18(num_classes=4).train()
    for m in model.modules():
        if isinstance(m, nn.BatchNorm2d):
            m.eval()
    modes = {name: m.training for name, m in model.named_modules()}
    frozen = model.layer1[0].bn2.running_mean.clone()
    fuse_bn_relu(model)
    assert {name: m.training for name, m in model.named_modules()} == modes
    model(torch.randn(2, 3, 32, 32))
    assert torch.equal(model.layer1[0].bn2.running_mean, frozen)


def test_mnist_cnn_trains_as_well_fused():
    """A conv-BN-ReLU CNN trained on the shipped MNIST subset reaches the same accuracy with
    its BN+ReLU pairs fused."""
    from fastext.data.files import find_data_dir
    from fastext.data.mnist import load_mnist, normalize
    from fastext.demos.mnist import build_model
    from fastext.learner import DataLoaders, Learner, accuracy

    root = find_data_dir("mnist-small")
    x, y = load_mnist(root, "train")
    xv, yv = load_mnist(root, "test")
    accs = []
    for fused in (False, True):
        torch.manual_seed(0)
        model = build_model()
        if fused:
            fuse_bn_relu(model)
            assert any(isinstance(m, BatchNormReLU2d) for m in model.modules())
        dls = DataLoaders.from_tensors(normalize(x), y, normalize(xv), yv, bs=64, device="cpu")
        learn = Learner(dls, model, F.cross_entropy, metrics=[accuracy], quiet=True)
        learn.fit_one_cycle(3, 1e-2)
        accs.append(learn.validate()[1])
    assert accs[0] > 0.9 and abs(accs[0] - accs[1]) < 0.02, accs
    assert fastext.nn.fuse_bn_relu is fuse_bn_relu


@pytest.mark.parametrize("running_dtype", [torch.float32, torch.float16, torch.float64], ids=str)
@pytest.mark.parametrize("channels_last", [False, True], ids=["nchw", "nhwc"])
def test_op_updates_running_stats_as_batch_norm(device, running_dtype, channels_last):
    """The op's in-place update of running_mean / running_var / num_batches_tracked against
    F.batch_norm's, for running statistics in the statistics' dtype (updated inside the
    kernel on a GPU) and in others (updated by torch ops); the version counters move, as
    after any in-place op."""
    torch.manual_seed(0)
    x = torch.randn(6, 5, 4, 3, device=device) * 3 + 2
    if channels_last:
        x = x.contiguous(memory_format=torch.channels_last)
    w, b = torch.randn(5, device=device), torch.randn(5, device=device)
    rm0 = torch.randn(5, device=device).to(running_dtype)
    rv0 = (torch.rand(5, device=device) + 0.5).to(running_dtype)
    rm, rv = rm0.clone(), rv0.clone()
    nbt = torch.tensor(7, device=device)
    versions = rm._version, rv._version, nbt._version
    out, mean, invstd, var = torch.ops.fastext.bn_relu_forward(x, w, b, rm, rv, nbt, True, 0.3,
                                                               1e-5)
    ref_rm, ref_rv = rm0.double(), rv0.double()
    ref = F.batch_norm(x.double(), ref_rm, ref_rv, w.double(), b.double(), True, 0.3, 1e-5)
    # fp32 activations: statistics good to fp32, whatever the running dtype.
    tol = dict(rtol=1e-3, atol=1e-3) if running_dtype == torch.float16 else dict(rtol=1e-5,
                                                                                atol=1e-6)
    torch.testing.assert_close(rm, ref_rm.to(running_dtype), **tol)
    torch.testing.assert_close(rv, ref_rv.to(running_dtype), **tol)
    torch.testing.assert_close(out, F.relu(ref).float(), rtol=1e-5, atol=1e-5)
    assert nbt.item() == 8
    assert all(a < b for a, b in zip(versions, (rm._version, rv._version, nbt._version),
                                     strict=True))
    # Evaluation reads them and updates nothing.
    before = rm.clone(), rv.clone()
    torch.ops.fastext.bn_relu_forward(x, w, b, rm, rv, nbt, False, 0.3, 1e-5)
    torch.testing.assert_close((rm, rv), before, rtol=0, atol=0)
    assert nbt.item() == 8


def test_bn_relu_empty_batch():
    out = BatchNormReLU2d(3)(torch.randn(0, 3, 4, 4))
    assert out.shape == (0, 3, 4, 4)


@pytest.mark.parametrize("module", [False, True], ids=["functional", "module"])
def test_bn_relu_empty_batch_gives_zero_parameter_gradients(device, module):
    """As stock BatchNorm, an empty batch leaves the weight and bias in the graph: their
    gradients are zeros, not None (DDP's unused-parameter check needs them)."""
    ours, ref = BatchNormReLU2d(3).to(device), nn.BatchNorm2d(3).to(device)
    x = torch.randn(0, 3, 2, 2, device=device, requires_grad=True)
    if module:
        y, yr = ours(x), torch.relu(ref(x))
    else:
        y = fastext.nn.bn_relu(x, None, None, ours.weight, ours.bias, True)
        yr = torch.relu(F.batch_norm(x, None, None, ref.weight, ref.bias, True))
    assert y.shape == yr.shape
    gx, *gp = torch.autograd.grad(y.sum(), [x, *ours.parameters()])
    gxr, *gpr = torch.autograd.grad(yr.sum(), [x, *ref.parameters()])
    assert gx.shape == gxr.shape
    for a, b in zip(gp, gpr, strict=True):
        torch.testing.assert_close(a, b)
    assert ours.num_batches_tracked == ref.num_batches_tracked


@pytest.mark.parametrize("given", ["running_mean", "running_var"])
def test_one_running_stat_is_refused_as_batch_norm(device, given):
    """F.batch_norm refuses a running_mean without a running_var (and the reverse); so do
    both fused layers' functions, before anything is updated."""
    x = torch.randn(4, 3, device=device)
    rm, rv = torch.zeros(3, device=device), torch.ones(3, device=device)
    stats = (rm, None) if given == "running_mean" else (None, rv)
    with pytest.raises(Exception) as stock:  # noqa: PT011 (a ValueError in torch 2.14)
        F.batch_norm(x, *stats, training=True)
    match = str(stock.value)
    calls = [lambda: fastext.nn.bn_relu(x, *stats, training=True),
             lambda: fastext.ops.bn_relu_forward(x, None, None, *stats, True),
             lambda: fastext.nn.inplace_abn(x.clone(), *stats, training=True),
             # the raw op (and below, in inference mode, without autograd)
             lambda: torch.ops.fastext.bn_relu_forward(x, None, None, *stats, None, True,
                                                       0.1, 1e-5)]
    for call in calls:
        with pytest.raises(type(stock.value), match=match):
            call()
    with torch.inference_mode(), pytest.raises(type(stock.value), match=match):
        torch.ops.fastext.bn_relu_forward(x, None, None, *stats, None, True, 0.1, 1e-5)
    assert torch.equal(rm, torch.zeros_like(rm)) and torch.equal(rv, torch.ones_like(rv))


def test_running_stats_of_the_wrong_size_are_named():
    with pytest.raises(RuntimeError, match="running_mean must have C = 3"):
        torch.ops.fastext.bn_relu_forward(torch.randn(4, 3), None, None, torch.zeros(2),
                                          torch.ones(2), None, False, 0.1, 1e-5)
    with pytest.raises(RuntimeError, match="running_var must have C = 3"):
        torch.ops.fastext.bn_relu_forward(torch.randn(4, 3), None, None, torch.zeros(3),
                                          torch.ones(2), None, True, 0.1, 1e-5)


@pytest.mark.parametrize("channels_last", [False, True], ids=["nchw", "nhwc"])
def test_op_refuses_batch_stats_of_an_empty_batch(channels_last):
    x = torch.randn(0, 3, 4, 4)
    if channels_last:
        x = x.contiguous(memory_format=torch.channels_last)
    with pytest.raises(RuntimeError, match="empty batch"):
        torch.ops.fastext.bn_relu_forward(x, None, None, None, None, None, True, 0.1, 1e-5)


def test_compiled_matches_eager(device):
    """Under torch.compile (autograd of the op comes from its C++ registration) a conv block
    with BatchNormReLU2d gives the eager outputs, gradients and running statistics."""
    check_compiled_matches_eager(lambda: nn.Sequential(nn.Conv2d(3, 8, 3), BatchNormReLU2d(8)),
                                 device)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a GPU")
@pytest.mark.parametrize("channels_last", [False, True], ids=["nchw", "nhwc"])
def test_cuda_graph_replays_match_eager(channels_last):
    """A training forward + backward captured in a CUDA graph and replayed on new data gives
    what eager BatchNorm + ReLU gives, running statistics included: a captured reduction
    counts its blocks in its own workspace, which every replay must zero again."""
    shape = (8, 24, 12, 12)
    fmt = torch.channels_last if channels_last else torch.contiguous_format
    ours, ref = pair(2, shape[1], "cuda", torch.float32)
    x = torch.randn(shape, device="cuda").contiguous(memory_format=fmt).requires_grad_()
    dy = torch.randn(shape, device="cuda").contiguous(memory_format=fmt)
    side = torch.cuda.Stream()
    side.wait_stream(torch.cuda.current_stream())
    with torch.cuda.stream(side):  # warm-up outside the capture, as torch.cuda.graph asks
        torch.autograd.grad(ours(x), (x,), dy)
    torch.cuda.current_stream().wait_stream(side)
    ours.load_state_dict(ref[0].state_dict())  # undo the warm-up's running-stat update
    graph = torch.cuda.CUDAGraph()
    with torch.cuda.graph(graph):
        y = ours(x)
        (dx,) = torch.autograd.grad(y, (x,), dy)
    for _ in range(3):
        with torch.no_grad():
            x.copy_(torch.randn(shape, device="cuda") * 2 + 1)
        graph.replay()
        xr = x.detach().clone().requires_grad_()
        yr = ref(xr)
        (dxr,) = torch.autograd.grad(yr, (xr,), dy)
        torch.testing.assert_close(y, yr, **TOL[torch.float32])
        torch.testing.assert_close(dx, dxr, **TOL[torch.float32])
    for name, b in ref[0].named_buffers():
        torch.testing.assert_close(getattr(ours, name), b, rtol=1e-5, atol=1e-6, msg=name)


@pytest.mark.parametrize(("channels", "channels_last"), [(16, True), (64, True), (16, False)],
                         ids=str)
def test_bn_relu_large_float32(device, channels, channels_last):
    """An fp32 activation of 16 MiB with C (channels-last) or H*W (NCHW) a multiple of 16: on
    an AVX-512 CPU its elementwise passes use streaming stores
    (csrc/kernels/cpu/bn_relu_stream.h). The values sit away from the ReLU's edge
    (|x - mean| >= 1 per channel), so that fp32 rounding cannot flip a mask element between
    the two computations."""
    torch.manual_seed(0)
    shape = (8, channels, 4 * 2**20 // (8 * channels * 64), 64)  # 4M elements, 16 MiB
    ours, ref = pair(2, channels, device, torch.float32)
    with torch.no_grad():
        ours.weight.fill_(1.0)
        ours.bias.zero_()
        ref[0].weight.fill_(1.0)
        ref[0].bias.zero_()
    sign = torch.randint(0, 2, shape, device=device) * 2 - 1
    x = (sign * (1 + torch.rand(shape, device=device))).contiguous(
        memory_format=torch.channels_last if channels_last else torch.contiguous_format)
    xo, xr = x.clone().requires_grad_(), x.clone().requires_grad_()
    yo, yr = ours(xo), ref(xr)
    torch.testing.assert_close(yo, yr, rtol=1e-4, atol=1e-5)
    dy = torch.randn_like(x)
    yo.backward(dy)
    yr.backward(dy)
    torch.testing.assert_close(xo.grad, xr.grad, rtol=1e-4, atol=1e-5)
    for po, pr in zip(ours.parameters(), ref[0].parameters(), strict=True):
        torch.testing.assert_close(po.grad, pr.grad, rtol=1e-4, atol=1e-3)
    torch.testing.assert_close(ours.running_var, ref[0].running_var)


def test_direct_binding_is_the_op(device):
    """fastext._C.bn_relu_forward (what eager layers call) gives what torch.ops gives,
    gradients and running statistics included."""
    results = []
    for fn in (torch.ops.fastext.bn_relu_forward.default, fastext._C.bn_relu_forward):
        torch.manual_seed(0)
        x = torch.randn(4, 3, 5, 5, device=device, requires_grad=True)
        w = torch.randn(3, device=device, requires_grad=True)
        rm, rv = torch.zeros(3, device=device), torch.ones(3, device=device)
        nbt = torch.zeros((), dtype=torch.long, device=device)
        out, *stats = fn(x, w, None, rm, rv, nbt, True, 0.1, 1e-5)
        gx, gw = torch.autograd.grad(out.pow(2).sum(), (x, w))
        results.append([out, *stats, gx, gw, rm, rv, nbt])
    for a, b in zip(*results, strict=True):
        torch.testing.assert_close(a, b, rtol=0, atol=0)


def test_subclass_input_goes_through_torch_ops():
    """The direct binding would bypass a subclass's __torch_function__: such inputs take
    torch.ops.fastext.bn_relu_forward, which the subclass sees, with the same result."""
    ours, ref = pair(2, 3, "cpu", torch.float32)
    x = torch.randn(2, 3, 4, 4)
    Logged.seen.clear()
    y = ours(x.as_subclass(Logged))
    assert torch.ops.fastext.bn_relu_forward.default in Logged.seen
    torch.testing.assert_close(y.as_subclass(torch.Tensor), ref(x), **TOL[torch.float32])


def test_parametrized_weight_and_functional_call():
    """The layer reads its parameters and buffers from the module's dicts: a parametrized
    weight (a property, no longer in ``_parameters``), attributes set after construction and
    ``torch.func.functional_call``'s swapped tensors must all be what it uses."""
    from torch.nn.utils import parametrize

    class Double(nn.Module):
        def forward(self, w):
            return 2 * w

    ours, ref = pair(2, 3, "cpu", torch.float32)
    for m in (ours, ref[0]):
        parametrize.register_parametrization(m, "weight", Double())
    x = torch.randn(4, 3, 2, 2)
    torch.testing.assert_close(ours(x), ref(x), **TOL[torch.float32])

    ours, ref = pair(2, 3, "cpu", torch.float32)
    swapped = {"weight": torch.full((3,), -1.5), "bias": torch.ones(3),
               "running_mean": torch.zeros(3), "running_var": torch.ones(3)}
    got = torch.func.functional_call(ours, {k: v.clone() for k, v in swapped.items()}, (x,))
    want = torch.func.functional_call(ref, {f"0.{k}": v.clone() for k, v in swapped.items()},
                                      (x,))
    torch.testing.assert_close(got, want, **TOL[torch.float32])

    ours, ref = pair(2, 3, "cpu", torch.float32)
    for m in (ours, ref[0]):
        m.bias = nn.Parameter(torch.full((3,), 0.25))
        m.eval()
        m.running_mean = None  # evaluation with batch statistics, as nn.BatchNorm2d does
        m.running_var = None
    torch.testing.assert_close(ours(x), ref(x), **TOL[torch.float32])


@pytest.mark.parametrize("shape", [(4, 0, 3, 3), (4, 0), (4, 0, 5)], ids=str)
@pytest.mark.parametrize("train", [True, False], ids=["train", "eval"])
def test_ops_take_zero_channels(device, shape, train):
    """No channels: empty outputs and gradients, one more tracked batch, no error (the CUDA
    reduction once divided by its zero channel blocks, killing the process)."""
    x = torch.randn(shape, device=device)
    rm, rv = torch.zeros(0, device=device), torch.ones(0, device=device)
    nbt = torch.zeros((), dtype=torch.long, device=device)
    w, b = torch.ones(0, device=device), torch.zeros(0, device=device)
    out, mean, invstd, var = torch.ops.fastext.bn_relu_forward(x, w, b, rm, rv, nbt, train, 0.1,
                                                               1e-5)
    assert out.shape == x.shape and mean.shape == invstd.shape == var.shape == (0,)
    assert int(nbt) == int(train)
    dx, dw, db = torch.ops.fastext.bn_relu_backward(torch.randn_like(x), x, w, b, mean, invstd,
                                                    train)
    assert dx.shape == x.shape and dw.shape == db.shape == (0,)
