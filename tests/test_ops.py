"""The native ops through the dispatcher: torch.library.opcheck (schema, fake kernel,
autograd registration, AOT dispatch) and build facts."""

import pytest
import torch

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
