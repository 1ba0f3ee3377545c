"""CUDA-only behaviour of the fused optimizers: launch splitting, CUDA graphs, and no host
syncs in the step. Skipped where no GPU exists (their math twins run on the CPU in
test_optim_parity.py)."""

import pytest
import torch
from optim_reference import assert_close, run_pair

import fastext

pytestmark = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a GPU")


@pytest.mark.parametrize("kind", ["adamw", "rmsprop"])
def test_many_tensors_and_chunks_span_launches(kind):
    """More tensors (>192) and more chunks (>1,280 blocks) than one launch holds."""
    params = [torch.randn(n, device="cuda") for n in [3, 70_000, 5] * 70 + [85_000_001]]
    if kind == "adamw":
        pair = (lambda ps: fastext.optim.AdamW(ps, lr=1e-2),
                lambda ps: torch.optim.AdamW(ps, lr=1e-2, foreach=False))
    else:
        pair = (lambda ps: fastext.optim.RMSprop(ps, lr=1e-3, momentum=0.9),
                lambda ps: torch.optim.RMSprop(ps, lr=1e-3, momentum=0.9, foreach=False))
    p, r, _, _ = run_pair(*pair, params, steps=3)
    assert_close(p, r)


@pytest.mark.parametrize("lr_device", ["cuda", "cpu"])  # schedulers keep a CPU tensor lr
@pytest.mark.parametrize("cls", [fastext.optim.AdamW, fastext.optim.RMSprop])
def test_step_has_no_host_sync(cls, lr_device):
    model = torch.nn.Linear(64, 64).cuda()
    opt = cls(model.parameters(), lr=torch.tensor(1e-3, device=lr_device))
    model(torch.randn(8, 64, device="cuda")).sum().backward()
    opt.step()  # state is created on the first step
    grad_scale = torch.tensor(2.0, device="cuda")  # a host-to-device copy: made before
    found_inf = torch.zeros((), device="cuda")
    torch.cuda.synchronize()
    torch.cuda.set_sync_debug_mode("error")
    try:
        opt.step()
        opt.grad_scale, opt.found_inf = grad_scale, found_inf
        opt.step()
    finally:
        torch.cuda.set_sync_debug_mode(0)


def test_capture_refuses_a_cpu_lr_tensor():
    """A CPU lr (what schedulers keep) is read on the host: under capture the graph would
    keep that value for good, so the step says so instead."""
    p = torch.zeros(10, device="cuda", requires_grad=True)
    p.grad = torch.ones_like(p)
    opt = fastext.optim.AdamW([p], lr=torch.tensor(1e-3))
    opt.step()  # state is created outside the capture
    with pytest.raises(RuntimeError, match="CPU lr tensor cannot be captured"):
        with torch.cuda.graph(torch.cuda.CUDAGraph()):
            opt.step()


def test_cuda_graph_capture_matches_eager():
    torch.manual_seed(0)
    ref_p = torch.randn(1000, device="cuda")
    p = ref_p.clone().requires_grad_()
    ref = ref_p.clone().requires_grad_()
    p.grad, ref.grad = torch.zeros_like(p), torch.zeros_like(ref)
    opt = fastext.optim.AdamW([p], lr=torch.tensor(1e-2, device="cuda"), capturable=True)
    ref_opt = fastext.optim.AdamW([ref], lr=1e-2)
    p.grad.normal_()
    opt.step()  # warm-up creates the state outside the graph
    ref.grad.copy_(p.grad)
    ref_opt.step()
    s = torch.cuda.Stream()
    s.wait_stream(torch.cuda.current_stream())
    graph = torch.cuda.CUDAGraph()
    with torch.cuda.stream(s), torch.cuda.graph(graph):
        opt.step()
    torch.cuda.current_stream().wait_stream(s)
    for _ in range(5):
        g = torch.randn(1000, device="cuda")
        p.grad.copy_(g)
        ref.grad.copy_(g)
        graph.replay()
        ref_opt.step()
    torch.cuda.synchronize()
    torch.testing.assert_close(p, ref)
    assert opt.state[p]["step"].item() == 6
