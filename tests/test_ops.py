"""The native ops through the dispatcher: torch.library.opcheck (schema, fake kernel,
autograd registration, AOT dispatch) and build facts."""

import ctypes
import os
import sys

import pytest
import torch
from logged_tensor import LoggingMode

import fastext


def _lists(n, device, dtype=torch.float32, k=3):
    shapes = [(5, 3), (7,), ()][:n]
    return [[torch.randn(s, device=device, dtype=dtype) for s in shapes] for _ in range(k)]


@pytest.mark.parametrize("amsgrad", [False, True])
@pytest.mark.parametrize("scalars", ["plain", "tensor_lr", "amp"])
def test_opcheck_adamw(device, amsgrad, scalars):
    p, g, m = _lists(3, device)
    v = [t.abs() for t in _lists(3, device)[0]]
    vmax = [t.clone() for t in v] if amsgrad else []
    steps = [torch.zeros((), device=device) for _ in p]
    extra = {
        "plain": (None, None, None),
        "tensor_lr": (torch.tensor(1e-3, device=device), None, None),
        "amp": (None, torch.tensor(4.0, device=device), torch.zeros((), device=device)),
    }[scalars]
    args = (p, g, m, v, vmax, steps, [], 1e-3, 0.9, 0.999, 1e-8, 0.01, amsgrad, False, *extra)
    torch.library.opcheck(torch.ops.fastext.adamw_.default, args)


@pytest.mark.parametrize("centered", [False, True])
@pytest.mark.parametrize("momentum", [0.0, 0.9])
def test_opcheck_rmsprop(device, centered, momentum):
    p, g, gavg = _lists(3, device)
    sq = [t.abs() + 1 for t in _lists(3, device)[0]]
    buf = [torch.zeros_like(t) for t in p] if momentum else []
    steps = [torch.zeros((), device=device) for _ in p]
    args = (p, g, sq, gavg if centered else [], buf, steps, [], 1e-2, 0.99, 1e-8, 0.0, momentum,
            centered, False)
    torch.library.opcheck(torch.ops.fastext.rmsprop_.default, args)


def test_build_info():
    info = fastext.build_info()
    assert info["torch"] == torch.__version__
    assert info["cpu_isa"] in {"avx512", "avx2", "baseline"}
    assert isinstance(info["cuda"], bool)
    if torch.cuda.is_available():
        assert info["cuda"], "a GPU is present but the CUDA kernels were not built"


class _DlInfo(ctypes.Structure):
    _fields_ = [("dli_fname", ctypes.c_char_p), ("dli_fbase", ctypes.c_void_p),
                ("dli_sname", ctypes.c_char_p), ("dli_saddr", ctypes.c_void_p)]


def _defining_file(module_path: str, symbol: str) -> str | None:
    """The file that defines ``symbol`` as the module's own lookups find it (dlsym searches
    the module, then what it depends on), or None where nothing does."""
    try:
        addr = ctypes.cast(getattr(ctypes.CDLL(module_path), symbol), ctypes.c_void_p).value
    except AttributeError:
        return None
    info = _DlInfo()
    assert ctypes.CDLL(None).dladdr(ctypes.c_void_p(addr), ctypes.byref(info))
    return os.path.realpath(info.dli_fname.decode())


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="ELF/glibc lookup (dladdr)")
def test_module_uses_the_shared_cxx_runtime():
    """No copy of libstdc++ inside fastext._C: a static one (the GPU machine's toolchain of
    2026-11-28 linked one in) keeps locale facet ids of its own, and formatting a number
    in any error message then crashed the process instead of raising."""
    module = os.path.realpath(fastext._C.__file__)
    # std::ostream::_M_insert<long>: what formatting an int64 into a message calls.
    found = _defining_file(module, "_ZNSo9_M_insertIlEERSoT_")
    assert found is not None, "no libstdc++ in the module's lookup scope"
    assert found != module, f"{module} carries its own libstdc++ stream code"
    with pytest.raises(RuntimeError, match="running_var must have C = 3 elements, got shape"):
        torch.ops.fastext.bn_relu_forward(torch.randn(2, 3), None, None, torch.zeros(3),
                                          torch.ones(2), None, True, 0.1, 1e-5)


def _bn_layer_call():
    fastext.nn.BatchNormReLU2d(3)(torch.randn(2, 3, 4, 4))


def _abn_layer_call():
    fastext.nn.InPlaceABN2d(3)(torch.randn(2, 3, 4, 4))


def _optimizer_step(cls):
    def call():
        p = torch.nn.Parameter(torch.randn(5))
        p.grad = torch.randn(5)
        cls([p]).step()
    return call


@pytest.mark.parametrize("call, op", [
    (_bn_layer_call, torch.ops.fastext.bn_relu_forward.default),
    (_abn_layer_call, torch.ops.fastext.bn_leaky_relu_.default),
    (_optimizer_step(fastext.optim.AdamW), torch.ops.fastext.adamw_.default),
    (_optimizer_step(fastext.optim.RMSprop), torch.ops.fastext.rmsprop_.default),
], ids=["bn_relu", "inplace_abn", "adamw", "rmsprop"])
def test_torch_function_mode_sees_the_op(call, op):
    """The direct bindings that layers and optimizers call outside a TorchFunctionMode
    would hide the op from one: under a mode they call torch.ops.fastext.*, which it sees."""
    with LoggingMode() as mode:
        call()
    assert op in mode.seen


def test_default_device_keeps_the_direct_binding(monkeypatch):
    """torch.set_default_device / ``with torch.device(...)`` install a DeviceContext mode,
    which only places factory calls: layers and optimizers keep their direct bindings under
    it (the boxed path cost a 161-param step 6-12%), and a mode above it still sees the op."""
    direct: list[str] = []
    for name in ("bn_relu_forward", "adamw_"):
        real = getattr(fastext._C, name)
        monkeypatch.setattr(fastext._C, name,
                            lambda *a, _real=real, _name=name, **k: (direct.append(_name),
                                                                     _real(*a, **k))[1])
    with torch.device("cpu"):
        _bn_layer_call()
        _optimizer_step(fastext.optim.AdamW)()
        assert direct == ["bn_relu_forward", "adamw_"]
        with LoggingMode() as mode:
            _bn_layer_call()
        assert torch.ops.fastext.bn_relu_forward.default in mode.seen
    assert direct == ["bn_relu_forward", "adamw_"]
